/// The tokenizer's output for one text or one pair of texts: plain `[Int]` arrays of one length,
/// ready for a model's `input_ids`, `token_type_ids` and `attention_mask`.
public struct Encoding: Equatable, Sendable {
    /// Token ids, special tokens and padding included.
    public var ids: [Int]
    /// 0 for the first sequence (and `[CLS]`, its `[SEP]`, padding), 1 for the second.
    public var typeIds: [Int]
    /// 1 for real tokens, 0 for padding.
    public var attentionMask: [Int]
    /// 1 for tokens the template or padding added (`[CLS]`, `[SEP]`, `[PAD]`), 0 for the text's.
    public var specialTokensMask: [Int]
    /// Each token's range in its text, in Unicode scalars (Python's `str` indices, as
    /// Hugging Face's `offset_mapping`); tokens of the second sequence count from the start of
    /// the second text. Special tokens and padding have `0..<0`.
    public var offsets: [Range<Int>]
    /// The vocabulary token of each id (`[UNK]` for unknown words).
    public var tokens: [String]

    /// The number of tokens, padding included.
    public var count: Int { ids.count }

    init() {
        ids = []
        typeIds = []
        attentionMask = []
        specialTokensMask = []
        offsets = []
        tokens = []
    }

    mutating func append(id: Int, typeId: Int, token: String, offsets range: Range<Int>, special: Bool, attended: Bool = true) {
        ids.append(id)
        typeIds.append(typeId)
        tokens.append(token)
        offsets.append(range)
        specialTokensMask.append(special ? 1 : 0)
        attentionMask.append(attended ? 1 : 0)
    }

    /// Pads with `padId` up to `length` tokens on `side`; longer encodings stay as they are.
    mutating func pad(to length: Int, padId: Int, padToken: String, side: WordPieceTokenizer.Side) {
        let missing = length - count
        guard missing > 0 else { return }
        func padded<T>(_ values: inout [T], with value: T) {
            switch side {
            case .right: values.append(contentsOf: repeatElement(value, count: missing))
            case .left: values.insert(contentsOf: repeatElement(value, count: missing), at: 0)
            }
        }
        padded(&ids, with: padId)
        padded(&typeIds, with: 0)
        padded(&attentionMask, with: 0)
        padded(&specialTokensMask, with: 1)
        padded(&offsets, with: 0..<0)
        padded(&tokens, with: padToken)
    }
}

extension WordPieceTokenizer {
    /// How `encode` pads (Hugging Face's `padding=`).
    public enum Padding: Sendable, Equatable {
        /// No padding (`False`, `"do_not_pad"`).
        case none
        /// To the longest encoding of the batch (`True`, `"longest"`); a single text stays as it is.
        case longest
        /// To `maxLength`, or the tokenizer's `modelMaxLength` (`"max_length"`).
        case maxLength
    }

    /// How `encode` truncates to `maxLength` (Hugging Face's `truncation=`). The special tokens
    /// count towards the length.
    public enum Truncation: Sendable, Equatable {
        /// No truncation (`False`).
        case none
        /// Removes tokens from the longer sequence of a pair until both fit, then from both in
        /// turn (`True`, `"longest_first"`).
        case longestFirst
        /// Removes tokens only from the first sequence (`"only_first"`).
        case onlyFirst
        /// Removes tokens only from the second sequence (`"only_second"`).
        case onlySecond
    }

    /// Which end padding or truncation works on.
    public enum Side: Sendable, Equatable {
        /// The start of the sequence (padding before the tokens; truncation keeps the last ones).
        case left
        /// The end of the sequence (padding after the tokens; truncation keeps the first ones).
        case right
    }
}

/// The tokens of one sequence while truncation is decided.
struct SequenceTokens {
    var raw: [RawToken]

    var count: Int { raw.count }

    /// Keeps `length` tokens: the first ones (truncation side right) or the last ones (left).
    mutating func truncate(to length: Int, side: WordPieceTokenizer.Side) {
        guard length < raw.count else { return }
        switch side {
        case .right: raw.removeLast(raw.count - length)
        case .left: raw.removeFirst(raw.count - length)
        }
    }
}

/// Hugging Face's `truncate_encodings`: `maxLength` here excludes the special tokens;
/// `requestedMaxLength` (with them) is what errors report.
func truncate(_ first: inout SequenceTokens, _ second: inout SequenceTokens?, maxLength: Int, requestedMaxLength: Int,
              strategy: WordPieceTokenizer.Truncation, side: WordPieceTokenizer.Side) throws(TokenizerError) {
    if maxLength == 0 {
        first.truncate(to: 0, side: side)
        second?.truncate(to: 0, side: side)
        return
    }
    let total = first.count + (second?.count ?? 0)
    guard total > maxLength else { return }
    let toRemove = total - maxLength
    switch strategy {
    case .none:
        return
    case .longestFirst:
        guard var other = second else {
            first.truncate(to: maxLength, side: side)
            return
        }
        // The shorter sequence keeps its length if the longer one can absorb the cut; otherwise
        // both get half of maxLength, the longer one the odd token.
        var n1 = first.count, n2 = other.count
        let swapped = n1 > n2
        if swapped { swap(&n1, &n2) }
        n2 = n1 > maxLength ? n1 : max(n1, maxLength - n1)
        if n1 + n2 > maxLength {
            n1 = maxLength / 2
            n2 = n1 + maxLength % 2
        }
        if swapped { swap(&n1, &n2) }
        first.truncate(to: n1, side: side)
        other.truncate(to: n2, side: side)
        second = other
    case .onlyFirst:
        guard first.count > toRemove else { throw .sequenceTooShortToTruncate(maxLength: requestedMaxLength) }
        first.truncate(to: first.count - toRemove, side: side)
    case .onlySecond:
        guard var other = second else { throw .secondSequenceNotProvided }
        guard other.count > toRemove else { throw .sequenceTooShortToTruncate(maxLength: requestedMaxLength) }
        other.truncate(to: other.count - toRemove, side: side)
        second = other
    }
}
