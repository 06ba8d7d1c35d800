/// A WordPiece vocabulary: a trie over Unicode scalars for greedy longest-match lookups, and the
/// token of each id.
///
/// Tokens are compared scalar by scalar, as Hugging Face's Rust code compares bytes: "é"
/// (U+00E9) and "e" + U+0301 are different tokens here, although Swift's `String` equality
/// would call them equal.
struct WordPieceVocabulary: Sendable {
    /// Child node of each (node, scalar) edge, keyed by `node << 21 | scalar`.
    private var children: [UInt64: Int32] = [:]
    /// The id of the token each node spells, or -1.
    private var idOfNode: [Int32] = [-1]
    /// The token of each id (the last one when a file lists a token twice).
    private(set) var tokenOfId: [Int: String] = [:]
    /// The node reached by the continuing-subword prefix (`##`), or -1 when no token starts with it.
    private var continuationRoot: Int32 = -1
    let continuingSubwordPrefix: String
    let maxInputCharactersPerWord: Int
    /// The id of the unknown token, which stands for a word that cannot be split into pieces.
    private(set) var unknownId = 0
    let unknownToken: String

    /// One more than the largest id.
    private(set) var idLimit = 0

    /// Builds the vocabulary from (token, id) entries in file order; a token listed again takes
    /// the later id, as Hugging Face's loaders do. Throws when `unknownToken` is missing.
    init(entries: [(token: String, id: Int)], unknownToken: String, continuingSubwordPrefix: String = "##",
         maxInputCharactersPerWord: Int = 100, file: String) throws(TokenizerError) {
        guard !entries.isEmpty else { throw .invalidVocabulary(file: file, reason: "the vocabulary is empty") }
        self.continuingSubwordPrefix = continuingSubwordPrefix
        self.maxInputCharactersPerWord = maxInputCharactersPerWord
        self.unknownToken = unknownToken
        children.reserveCapacity(entries.count * 4)
        var lastEntryOfNode: [Int32: Int] = [:]
        for (index, (token, id)) in entries.enumerated() {
            guard id >= 0 && id <= Int(Int32.max) else {
                throw .invalidVocabulary(file: file, reason: "token \(token.debugDescription) has id \(id), outside 0...\(Int32.max)")
            }
            var node: Int32 = 0
            for scalar in token.unicodeScalars { node = childOrInsert(node, scalar) }
            idOfNode[Int(node)] = Int32(id)
            lastEntryOfNode[node] = index
        }
        // Decoding: each id shows its token; where two tokens share an id, the later one.
        for index in lastEntryOfNode.values.sorted() { tokenOfId[entries[index].id] = entries[index].token }
        idLimit = (tokenOfId.keys.max() ?? -1) + 1
        continuationRoot = walk(from: 0, continuingSubwordPrefix.unicodeScalars)
        guard let unknown = id(of: unknownToken) else { throw .missingSpecialToken(role: "unknown", token: unknownToken) }
        unknownId = unknown
    }

    private mutating func childOrInsert(_ node: Int32, _ scalar: Unicode.Scalar) -> Int32 {
        let key = UInt64(node) << 21 | UInt64(scalar.value)
        if let child = children[key] { return child }
        let child = Int32(idOfNode.count)
        idOfNode.append(-1)
        children[key] = child
        return child
    }

    @inline(__always)
    private func child(_ node: Int32, _ scalar: Unicode.Scalar) -> Int32 {
        children[UInt64(node) << 21 | UInt64(scalar.value)] ?? -1
    }

    private func walk(from start: Int32, _ scalars: String.UnicodeScalarView) -> Int32 {
        var node = start
        for scalar in scalars {
            node = child(node, scalar)
            if node < 0 { return -1 }
        }
        return node
    }

    /// The id of `token`, compared scalar by scalar.
    func id(of token: String) -> Int? {
        let node = walk(from: 0, token.unicodeScalars)
        return node >= 0 && idOfNode[Int(node)] >= 0 ? Int(idOfNode[Int(node)]) : nil
    }

    /// Splits the word `text.scalars[word]` into the longest pieces of the vocabulary, left to
    /// right, continuing pieces spelled with the `##` prefix. A word longer than
    /// `maxInputCharactersPerWord` scalars, or one with a piece missing from the vocabulary,
    /// becomes a single unknown token.
    func tokenize(word: Range<Int>, of text: AlignedScalars, into tokens: inout [RawToken]) {
        if word.count > maxInputCharactersPerWord {
            tokens.append(RawToken(id: unknownId, offsets: text.originalRange(of: word)))
            return
        }
        let firstNew = tokens.count
        var start = word.lowerBound
        while start < word.upperBound {
            var node: Int32 = start == word.lowerBound ? 0 : continuationRoot
            var matchEnd = -1, matchId: Int32 = -1
            var index = start
            while node >= 0 && index < word.upperBound {
                node = child(node, text.scalars[index])
                index += 1
                if node >= 0 && idOfNode[Int(node)] >= 0 {
                    matchEnd = index
                    matchId = idOfNode[Int(node)]
                }
            }
            if matchEnd < 0 {
                tokens.removeSubrange(firstNew...)
                tokens.append(RawToken(id: unknownId, offsets: text.originalRange(of: word)))
                return
            }
            tokens.append(RawToken(id: Int(matchId), offsets: text.originalRange(of: start..<matchEnd)))
            start = matchEnd
        }
    }
}

/// A token before post-processing: its id and its range of scalars in the input text.
struct RawToken: Equatable, Sendable {
    var id: Int
    var offsets: Range<Int>
}
