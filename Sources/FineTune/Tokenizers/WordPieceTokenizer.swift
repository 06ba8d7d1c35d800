/// BERT's WordPiece tokenizer, matching Hugging Face's `BertTokenizerFast` id for id: BERT
/// normalisation (control characters removed, CJK ideographs split, accents stripped and text
/// lower-cased as configured), splitting on whitespace and punctuation, greedy longest-match
/// word pieces with `##` continuations, `[UNK]` for words it cannot split or longer than
/// `max_input_chars_per_word`, `[CLS]`/`[SEP]` around one sequence or a pair, truncation,
/// padding and attention masks. It returns plain `[Int]` arrays and depends on nothing else in
/// FineTune.
///
/// ```swift
/// let tokenizer = try WordPieceTokenizer(contentsOf: URL(fileURLWithPath: "bert-base-uncased"))
/// let encoding = try tokenizer.encode("Hello, world!", pair: "A second sentence.",
///                                     maxLength: 16, padding: .maxLength, truncation: .longestFirst)
/// encoding.ids            // [CLS] hello , world ! [SEP] a second sentence . [SEP] [PAD] ...
/// encoding.typeIds        // 0 ... 0 1 ... 1 0 ...
/// encoding.attentionMask  // 1 ... 1 0 ...
/// let batch = try tokenizer.encode(batch: ["short", "a longer text"], padding: .longest)
/// tokenizer.decode(encoding.ids, skipSpecialTokens: true)   // "hello, world! a second sentence."
/// ```
///
/// Loading: `init(contentsOf:)` reads a Hugging Face folder (`tokenizer.json`, else `vocab.txt`,
/// with `tokenizer_config.json`), `init(tokenizerJSON:)` a `tokenizer.json`,
/// `init(vocabularyURL:...)` a `vocab.txt` with the options given. Malformed or unsupported
/// files throw `TokenizerError`.
public struct WordPieceTokenizer: Sendable {
    var vocabulary: WordPieceVocabulary
    var addedVocabulary: AddedVocabulary
    /// The token of each id: the vocabulary's, or an added token's (`install(addedTokens:)`).
    var tokenTable: [String?]
    /// `nil` when `tokenizer.json` has no normaliser: the text is used as it is.
    var normalizer: BertNormalizer?
    /// Whether words are split at whitespace and punctuation (`BertPreTokenizer`); without a
    /// pre-tokeniser each piece between added tokens is one word.
    var splitsWords: Bool
    var postProcessor: PostProcessor
    /// The WordPiece decoder's prefix and clean-up, or nil to join tokens with spaces.
    var decoder: (prefix: String, cleanup: Bool)?

    /// The id padding uses.
    public internal(set) var padTokenId: Int
    /// The padding token, `[PAD]` for BERT.
    public let padToken: String
    /// Where padding goes (`padding_side` of `tokenizer_config.json`; default right).
    public var paddingSide: Side = .right
    /// Which end truncation removes tokens from (`truncation_side`; default right).
    public var truncationSide: Side = .right
    /// The length `truncation` and `.maxLength` padding use when `encode` is given no
    /// `maxLength` (`model_max_length`; nil when the folder sets none).
    public var modelMaxLength: Int?
    /// Whether `decode` also removes spaces before punctuation and in contractions, as
    /// transformers' `clean_up_tokenization_spaces` (default false).
    public var cleanUpTokenizationSpaces = false

    /// The id of the unknown token (`[UNK]`).
    public var unkTokenId: Int { vocabulary.unknownId }
    /// The id of `[CLS]` (the first special token of the single-sequence template), if any.
    public var clsTokenId: Int? {
        for case .special(let ids, _, _) in postProcessor.single { return ids.first }
        return nil
    }
    /// The id of `[SEP]` (the last special token of the single-sequence template), if any.
    public var sepTokenId: Int? {
        for case .special(let ids, _, _) in postProcessor.single.reversed() { return ids.last }
        return nil
    }
    /// The mask token's name (`mask_token`; `[MASK]` for BERT).
    var maskTokenName = "[MASK]"
    /// The id of the mask token (`[MASK]`), if the vocabulary has it.
    public var maskTokenId: Int? { id(of: maskTokenName) }

    /// One more than the largest id (vocabulary and added tokens): the rows an embedding needs.
    public var vocabularySize: Int { tokenTable.count }
    /// Whether the text is lower-cased.
    public var lowercases: Bool { normalizer?.lowercase ?? false }
    /// Whether accents are stripped.
    public var stripsAccents: Bool { normalizer?.stripsAccents ?? false }

    /// The id of a token (added tokens first, then the vocabulary), compared scalar by scalar.
    public func id(of token: String) -> Int? {
        addedVocabulary.id(of: token) ?? vocabulary.id(of: token)
    }

    /// The token of an id, or nil for an id no token has.
    public func token(of id: Int) -> String? {
        id >= 0 && id < tokenTable.count ? tokenTable[id] : nil
    }

    /// Replaces the added tokens (and their entries in the token table).
    mutating func install(addedTokens: [AddedToken], file: String) throws(TokenizerError) {
        let maximum = WordPieceVocabulary.maximumId(tokenCount: vocabulary.idLimit + addedTokens.count)
        if let token = addedTokens.first(where: { $0.id > maximum }) {
            throw .invalidValue(file: file, key: "added_tokens", reason: "token \(token.content.debugDescription) has id \(token.id), beyond \(maximum)")
        }
        addedVocabulary = AddedVocabulary(tokens: addedTokens, normalizer: normalizer)
        var table = vocabulary.tokenOfId
        for token in addedTokens {
            if token.id >= table.count { table += Array(repeating: nil, count: token.id + 1 - table.count) }
            table[token.id] = addedVocabulary.decodedContent(of: token.id)
        }
        tokenTable = table
    }

    // MARK: Encoding

    /// The tokens of `text` without special tokens, e.g. `["hello", ",", "wo", "##rld"]`.
    public func tokenize(_ text: String) -> [String] {
        tokenizeSequence(Array(text.unicodeScalars)).map { token(of: $0.id) ?? vocabulary.unknownToken }
    }

    /// Encodes a text, or a pair of texts, as BERT expects them.
    ///
    /// - Parameters:
    ///   - pair: a second sequence (`[CLS] text [SEP] pair [SEP]`, type ids 1 for the pair part).
    ///   - maxLength: the length truncation and `.maxLength` padding aim at, special tokens
    ///     included; `modelMaxLength` when nil.
    ///   - padding: `.maxLength` pads to `maxLength`; `.longest` leaves a single text as it is.
    ///   - truncation: which sequence loses tokens when the encoding is longer than `maxLength`.
    ///   - padToMultipleOf: rounds the padded length up to a multiple of this.
    ///   - addSpecialTokens: false leaves out `[CLS]` and `[SEP]`.
    /// - Throws: `TokenizerError.maxLengthTooShort` when `maxLength` cannot hold the special
    ///   tokens, `.sequenceTooShortToTruncate` / `.secondSequenceNotProvided` for `onlyFirst`
    ///   and `onlySecond` truncation that cannot be done, `.missingMaxLength`, `.invalidOptions`.
    public func encode(_ text: String, pair: String? = nil, maxLength: Int? = nil, padding: Padding = .none,
                       truncation: Truncation = .none, padToMultipleOf: Int? = nil,
                       addSpecialTokens: Bool = true) throws(TokenizerError) -> Encoding {
        try encode(batch: [text], pairs: pair.map { [$0] }, maxLength: maxLength, padding: padding,
                   truncation: truncation, padToMultipleOf: padToMultipleOf, addSpecialTokens: addSpecialTokens)[0]
    }

    /// Encodes several texts (and, optionally, one pair text for each) with the same options;
    /// `.longest` padding pads all to the longest encoding of the batch.
    public func encode(batch texts: [String], pairs: [String]? = nil, maxLength: Int? = nil, padding: Padding = .none,
                       truncation: Truncation = .none, padToMultipleOf: Int? = nil,
                       addSpecialTokens: Bool = true) throws(TokenizerError) -> [Encoding] {
        if let pairs, pairs.count != texts.count {
            throw .invalidOptions("\(texts.count) texts but \(pairs.count) pair texts")
        }
        if let maxLength, maxLength < 0 { throw .invalidOptions("maxLength \(maxLength) is negative") }
        if let padToMultipleOf, padToMultipleOf < 0 { throw .invalidOptions("padToMultipleOf \(padToMultipleOf) is negative") }
        var truncationLength: Int?
        if truncation != .none {
            guard let length = maxLength ?? modelMaxLength else { throw .missingMaxLength }
            truncationLength = length
        }
        var padLength: Int?
        if padding == .maxLength {
            guard let length = maxLength ?? modelMaxLength else { throw .missingMaxLength }
            padLength = length
        }
        if padding != .none, let multiple = padToMultipleOf, multiple > 0, let length = truncationLength, length % multiple != 0 {
            throw .invalidOptions("truncation to maxLength \(length) and padding to a multiple of \(multiple) contradict each other")
        }
        var encodings: [Encoding] = []
        encodings.reserveCapacity(texts.count)
        for (index, text) in texts.enumerated() {
            encodings.append(try encodeOne(text, pair: pairs?[index], truncationLength: truncationLength,
                                           truncation: truncation, addSpecialTokens: addSpecialTokens))
        }
        guard padding != .none, !encodings.isEmpty else { return encodings }
        var length = padLength ?? encodings.map(\.count).max()!
        if let multiple = padToMultipleOf, multiple > 0, length % multiple != 0 { length += multiple - length % multiple }
        for index in encodings.indices {
            encodings[index].pad(to: length, padId: padTokenId, padToken: padToken, side: paddingSide)
        }
        return encodings
    }

    private func encodeOne(_ text: String, pair: String?, truncationLength: Int?, truncation: Truncation,
                           addSpecialTokens: Bool) throws(TokenizerError) -> Encoding {
        var first = SequenceTokens(raw: tokenizeSequence(Array(text.unicodeScalars)))
        var second = pair.map { SequenceTokens(raw: tokenizeSequence(Array($0.unicodeScalars))) }
        if let truncationLength {
            let added = addSpecialTokens ? postProcessor.addedTokenCount(isPair: pair != nil) : 0
            guard truncationLength >= added else {
                throw .maxLengthTooShort(maxLength: truncationLength, specialTokens: added)
            }
            try truncate(&first, &second, maxLength: truncationLength - added, requestedMaxLength: truncationLength,
                         strategy: truncation, side: truncationSide)
        }
        var encoding = Encoding()
        for piece in pair == nil ? postProcessor.single : postProcessor.pair {
            switch piece {
            case .sequence(let isFirst, let typeId):
                guard let sequence = isFirst ? first : second else { continue }
                for token in sequence.raw {
                    encoding.append(id: token.id, typeId: typeId, token: self.token(of: token.id) ?? vocabulary.unknownToken,
                                    offsets: token.offsets, special: false)
                }
            case .special(let ids, let tokens, let typeId):
                guard addSpecialTokens else { continue }
                for (id, token) in zip(ids, tokens) {
                    encoding.append(id: id, typeId: typeId, token: token, offsets: 0..<0, special: true)
                }
            }
        }
        return encoding
    }

    /// Added tokens, normalisation, word splitting and WordPiece for one sequence.
    func tokenizeSequence(_ input: [Unicode.Scalar]) -> [RawToken] {
        var tokens: [RawToken] = []
        tokens.reserveCapacity(input.count / 3 + 4)
        let inputPieces = addedVocabulary.hasInputPatterns
            ? addedVocabulary.split(input, range: 0..<input.count, normalized: false)
            : [AddedTokenSplit(token: nil, range: 0..<input.count)]
        var normalized = AlignedScalars()
        for piece in inputPieces {
            if let index = piece.token {
                tokens.append(RawToken(id: addedVocabulary.tokens[index].id, offsets: piece.range))
                continue
            }
            normalized.scalars.removeAll(keepingCapacity: true)
            normalized.origins.removeAll(keepingCapacity: true)
            if let normalizer {
                normalizer.normalize(input, range: piece.range, into: &normalized)
            } else {
                for index in piece.range { normalized.append(input[index], origin: index) }
            }
            let normalizedPieces = addedVocabulary.hasNormalizedPatterns
                ? addedVocabulary.split(normalized.scalars, range: 0..<normalized.count, normalized: true)
                : [AddedTokenSplit(token: nil, range: 0..<normalized.count)]
            for normalizedPiece in normalizedPieces {
                if let index = normalizedPiece.token {
                    tokens.append(RawToken(id: addedVocabulary.tokens[index].id,
                                           offsets: normalized.originalRange(of: normalizedPiece.range)))
                } else if splitsWords {
                    splitWords(normalized, range: normalizedPiece.range, into: &tokens)
                } else if !normalizedPiece.range.isEmpty {
                    vocabulary.tokenize(word: normalizedPiece.range, of: normalized, into: &tokens)
                }
            }
        }
        return tokens
    }

    /// `BertPreTokenizer`: whitespace ends a word and is dropped; each punctuation character is
    /// a word of its own. Each word goes through WordPiece.
    private func splitWords(_ text: AlignedScalars, range: Range<Int>, into tokens: inout [RawToken]) {
        var wordStart = -1
        for index in range {
            let scalar = text.scalars[index]
            let isSpace = BertCharacters.isWhitespace(scalar)
            if isSpace || BertCharacters.isPunctuation(scalar) {
                if wordStart >= 0 {
                    vocabulary.tokenize(word: wordStart..<index, of: text, into: &tokens)
                    wordStart = -1
                }
                if !isSpace { vocabulary.tokenize(word: index..<(index + 1), of: text, into: &tokens) }
            } else if wordStart < 0 {
                wordStart = index
            }
        }
        if wordStart >= 0 { vocabulary.tokenize(word: wordStart..<range.upperBound, of: text, into: &tokens) }
    }

    // MARK: Decoding

    /// The text of `ids`: WordPiece continuations joined to the previous piece, other tokens
    /// separated by spaces (Hugging Face's `decode`). Ids no token has are skipped.
    ///
    /// - Parameters:
    ///   - skipSpecialTokens: leaves out `[CLS]`, `[SEP]`, `[PAD]` and other special tokens.
    ///   - cleanUpTokenizationSpaces: removes spaces before `.`, `?`, `!`, `,` and in
    ///     contractions (`" n't"`, `" 's"`, ...); `self.cleanUpTokenizationSpaces` when nil.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false, cleanUpTokenizationSpaces: Bool? = nil) -> String {
        var tokens: [[Unicode.Scalar]] = []
        for id in ids {
            guard let token = token(of: id) else { continue }
            if skipSpecialTokens && addedVocabulary.isSpecial(token) { continue }
            tokens.append(Array(token.unicodeScalars))
        }
        var text: [Unicode.Scalar] = []
        if let decoder {
            let prefix = Array(decoder.prefix.unicodeScalars)
            for (index, var token) in tokens.enumerated() {
                if index != 0 {
                    if token.starts(with: prefix) { token.removeFirst(prefix.count) } else { token.insert(" ", at: 0) }
                }
                if decoder.cleanup { token = cleanUp(token, rules: Self.wordPieceCleanup) }
                text += token
            }
        } else {
            for (index, token) in tokens.enumerated() { text += index == 0 ? token : [" "] + token }
        }
        if cleanUpTokenizationSpaces ?? self.cleanUpTokenizationSpaces {
            text = cleanUp(text, rules: Self.transformersCleanup)
        }
        var result = ""
        result.unicodeScalars.append(contentsOf: text)
        return result
    }

    /// transformers' `clean_up_tokenization`.
    private static let transformersCleanup: [(pattern: [Unicode.Scalar], replacement: [Unicode.Scalar])] = [
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
        (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ].map { (Array($0.0.unicodeScalars), Array($0.1.unicodeScalars)) }

    /// The WordPiece decoder's clean-up: transformers' rules and `" do not"` -> `" don't"`.
    private static let wordPieceCleanup: [(pattern: [Unicode.Scalar], replacement: [Unicode.Scalar])] =
        Array(transformersCleanup.prefix(7)) + [(Array(" do not".unicodeScalars), Array(" don't".unicodeScalars))]
        + Array(transformersCleanup.suffix(3))

    /// Applies each replacement in turn to the whole text, left to right without overlaps, as
    /// Rust's and Python's `replace` do (scalar by scalar, not by `Character`).
    private func cleanUp(_ text: [Unicode.Scalar], rules: [(pattern: [Unicode.Scalar], replacement: [Unicode.Scalar])]) -> [Unicode.Scalar] {
        var text = text
        for (pattern, replacement) in rules where text.count >= pattern.count {
            var output: [Unicode.Scalar] = []
            output.reserveCapacity(text.count)
            var index = 0
            while index < text.count {
                if index + pattern.count <= text.count && text[index..<(index + pattern.count)].elementsEqual(pattern) {
                    output += replacement
                    index += pattern.count
                } else {
                    output.append(text[index])
                    index += 1
                }
            }
            text = output
        }
        return text
    }
}
