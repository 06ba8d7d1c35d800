/// A token matched in the text before normalisation and WordPiece, as `[CLS]` or `[MASK]`
/// typed into the input (Hugging Face's `AddedToken`).
struct AddedToken: Sendable, Equatable {
    var content: String
    var id: Int
    /// Matches only where no word character touches it on either side.
    var singleWord = false
    /// Takes the whitespace on its left into the token.
    var leftStrip = false
    /// Takes the whitespace on its right into the token.
    var rightStrip = false
    /// Matched in the normalised text (its content normalised too) rather than the input.
    var normalized = false
    /// Skipped by `decode(_:skipSpecialTokens: true)`.
    var special = true
}

/// A piece of text between added tokens, or an added token (an index into the tokens).
struct AddedTokenSplit: Equatable {
    var token: Int?
    var range: Range<Int>
}

/// The added tokens and the two pattern sets Hugging Face matches them with: tokens that are not
/// normalised against the input, normalised ones against each normalised piece between them.
struct AddedVocabulary: Sendable {
    let tokens: [AddedToken]
    private let inputPatterns: PatternSet
    private let normalizedPatterns: PatternSet
    /// The text `decode` shows for each added token's id (normalised content for normalised tokens).
    private let decodedContent: [Int: String]
    private let specialContents: Set<[Unicode.Scalar]>

    init(tokens: [AddedToken], normalizer: BertNormalizer?) {
        self.tokens = tokens
        var input: [(pattern: [Unicode.Scalar], token: Int)] = []
        var normalized: [(pattern: [Unicode.Scalar], token: Int)] = []
        var decodedContent: [Int: String] = [:]
        for (index, token) in tokens.enumerated() where !token.content.isEmpty {
            let content = Array(token.content.unicodeScalars)
            if token.normalized {
                var pattern = AlignedScalars()
                if let normalizer {
                    normalizer.normalize(content, range: 0..<content.count, into: &pattern)
                } else {
                    for (i, scalar) in content.enumerated() { pattern.append(scalar, origin: i) }
                }
                normalized.append((pattern.scalars, index))
                var text = ""
                text.unicodeScalars.append(contentsOf: pattern.scalars)
                decodedContent[token.id] = text
            } else {
                input.append((content, index))
                decodedContent[token.id] = token.content
            }
        }
        inputPatterns = PatternSet(input)
        normalizedPatterns = PatternSet(normalized)
        self.decodedContent = decodedContent
        specialContents = Set(tokens.filter(\.special).map { Array($0.content.unicodeScalars) })
    }

    var hasInputPatterns: Bool { !inputPatterns.isEmpty }
    var hasNormalizedPatterns: Bool { !normalizedPatterns.isEmpty }

    /// The id of the added token whose content is exactly `content`.
    func id(of content: String) -> Int? {
        let scalars = Array(content.unicodeScalars)
        return tokens.last { $0.content.unicodeScalars.elementsEqual(scalars) }?.id
    }

    func decodedContent(of id: Int) -> String? { decodedContent[id] }

    func isSpecial(_ token: String) -> Bool { specialContents.contains(Array(token.unicodeScalars)) }

    /// Splits `scalars[range]` around the added tokens (`normalized`: the normalised ones),
    /// leftmost-longest, as Hugging Face's `AddedVocabulary::find_matches`.
    func split(_ scalars: [Unicode.Scalar], range: Range<Int>, normalized: Bool) -> [AddedTokenSplit] {
        let patterns = normalized ? normalizedPatterns : inputPatterns
        var splits: [AddedTokenSplit] = []
        var pieceStart = range.lowerBound
        var index = range.lowerBound
        while index < range.upperBound {
            guard let (tokenIndex, matchEnd) = patterns.longestMatch(in: scalars, at: index, limit: range.upperBound) else {
                index += 1
                continue
            }
            var start = index, stop = matchEnd
            index = matchEnd  // the search resumes after the match, kept or not
            let token = tokens[tokenIndex]
            if token.singleWord {
                let wordBefore = start > range.lowerBound && BertCharacters.isWordCharacter(scalars[start - 1])
                let wordAfter = stop < range.upperBound && BertCharacters.isWordCharacter(scalars[stop])
                if wordBefore || wordAfter { continue }
            }
            if token.leftStrip {
                while start > pieceStart && scalars[start - 1].properties.isWhitespace { start -= 1 }
            }
            if token.rightStrip {
                while stop < range.upperBound && scalars[stop].properties.isWhitespace { stop += 1 }
            }
            start = max(start, pieceStart)
            guard stop > start else { continue }
            if pieceStart < start { splits.append(AddedTokenSplit(token: nil, range: pieceStart..<start)) }
            splits.append(AddedTokenSplit(token: tokenIndex, range: start..<stop))
            pieceStart = stop
            index = max(index, stop)
        }
        if pieceStart < range.upperBound { splits.append(AddedTokenSplit(token: nil, range: pieceStart..<range.upperBound)) }
        return splits
    }
}

/// Patterns grouped by their first scalar, longest first, so the longest match at a position is
/// the first one found.
private struct PatternSet: Sendable {
    private var patternsByFirstScalar: [Unicode.Scalar: [(pattern: [Unicode.Scalar], token: Int)]] = [:]
    /// Whether some pattern starts with each ASCII character (most text never reaches the dictionary).
    private var asciiStarts = [Bool](repeating: false, count: 128)

    init(_ patterns: [(pattern: [Unicode.Scalar], token: Int)]) {
        for entry in patterns where !entry.pattern.isEmpty {
            patternsByFirstScalar[entry.pattern[0], default: []].append(entry)
            if entry.pattern[0].value < 128 { asciiStarts[Int(entry.pattern[0].value)] = true }
        }
        for key in patternsByFirstScalar.keys {
            patternsByFirstScalar[key]!.sort { $0.pattern.count > $1.pattern.count }
        }
    }

    var isEmpty: Bool { patternsByFirstScalar.isEmpty }

    func longestMatch(in scalars: [Unicode.Scalar], at index: Int, limit: Int) -> (token: Int, end: Int)? {
        let first = scalars[index]
        if first.value < 128 && !asciiStarts[Int(first.value)] { return nil }
        guard let candidates = patternsByFirstScalar[first] else { return nil }
        for (pattern, token) in candidates where index + pattern.count <= limit {
            if scalars[index..<(index + pattern.count)].elementsEqual(pattern) { return (token, index + pattern.count) }
        }
        return nil
    }
}
