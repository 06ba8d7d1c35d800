/// A WordPiece vocabulary: a trie over Unicode scalars for greedy longest-match lookups, and the
/// token of each id.
///
/// Tokens are compared scalar by scalar, as Hugging Face's Rust code compares bytes: "é"
/// (U+00E9) and "e" + U+0301 are different tokens here, although Swift's `String` equality
/// would call them equal.
struct WordPieceVocabulary: Sendable {
    /// The trie's edges: the child node of each (node, scalar).
    private var children = TrieEdges()
    /// The id of the token each node spells, or -1.
    private var idOfNode: [Int32] = [-1]
    /// The token of each id (the last one when a file lists a token twice), nil for unused ids.
    private(set) var tokenOfId: [String?] = []
    /// The node reached by the continuing-subword prefix (`##`), or -1 when no token starts with it.
    private var continuationRoot: Int32 = -1
    let continuingSubwordPrefix: String
    let maxInputCharactersPerWord: Int
    /// The id of the unknown token, which stands for a word that cannot be split into pieces.
    private(set) var unknownId = 0
    let unknownToken: String

    /// One more than the largest id.
    var idLimit: Int { tokenOfId.count }

    /// Ids are array indices: a file may leave gaps, but not ids far beyond its number of tokens.
    static func maximumId(tokenCount: Int) -> Int { 16 * tokenCount + 65_536 }

    /// Builds the vocabulary from (token, id) entries in file order; a token listed again takes
    /// the later id, as Hugging Face's loaders do. Throws when `unknownToken` is missing.
    init(entries: [(token: String, id: Int)], unknownToken: String, continuingSubwordPrefix: String = "##",
         maxInputCharactersPerWord: Int = 100, file: String) throws(TokenizerError) {
        guard !entries.isEmpty else { throw .invalidVocabulary(file: file, reason: "the vocabulary is empty") }
        self.continuingSubwordPrefix = continuingSubwordPrefix
        self.maxInputCharactersPerWord = maxInputCharactersPerWord
        self.unknownToken = unknownToken
        var lastEntryOfNode: [Int32: Int] = [:]
        for (index, (token, id)) in entries.enumerated() {
            let maximum = Self.maximumId(tokenCount: entries.count)
            guard id >= 0 && id <= maximum else {
                throw .invalidVocabulary(file: file, reason: "token \(token.debugDescription) has id \(id), outside 0...\(maximum)")
            }
            var node: Int32 = 0
            for scalar in token.unicodeScalars { node = childOrInsert(node, scalar) }
            idOfNode[Int(node)] = Int32(id)
            lastEntryOfNode[node] = index
        }
        // Decoding: each id shows its token; where two tokens share an id, the later one.
        let sortedEntries = lastEntryOfNode.values.sorted()
        tokenOfId = Array(repeating: nil, count: (sortedEntries.map { entries[$0].id }.max() ?? -1) + 1)
        for index in sortedEntries { tokenOfId[entries[index].id] = entries[index].token }
        continuationRoot = walk(from: 0, continuingSubwordPrefix.unicodeScalars)
        guard let unknown = id(of: unknownToken) else { throw .missingSpecialToken(role: "unknown", token: unknownToken) }
        unknownId = unknown
    }

    private mutating func childOrInsert(_ node: Int32, _ scalar: Unicode.Scalar) -> Int32 {
        let existing = children.child(of: node, scalar)
        if existing >= 0 { return existing }
        let child = Int32(idOfNode.count)
        idOfNode.append(-1)
        children.insert(child, of: node, scalar)
        return child
    }

    @inline(__always)
    private func child(_ node: Int32, _ scalar: Unicode.Scalar) -> Int32 {
        children.child(of: node, scalar)
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

/// The edges of a trie in an open-addressing hash table (linear probing, a multiplicative hash
/// of `node << 21 | scalar`): one short probe per scalar of a word, cheaper than `Dictionary`'s
/// seeded SipHash on this path.
struct TrieEdges: Sendable {
    /// Each slot's key with bit 63 set, or 0 when the slot is empty.
    private var keys = [UInt64](repeating: 0, count: 16)
    private var children = [Int32](repeating: -1, count: 16)
    private var count = 0
    private var shift: UInt64 = 60

    @inline(__always)
    private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    @inline(__always)
    private static func key(_ node: Int32, _ scalar: Unicode.Scalar) -> UInt64 {
        1 << 63 | UInt64(UInt32(bitPattern: node)) << 21 | UInt64(scalar.value)
    }

    /// The child of `node` along `scalar`, or -1.
    @inline(__always)
    func child(of node: Int32, _ scalar: Unicode.Scalar) -> Int32 {
        let key = Self.key(node, scalar)
        let mask = keys.count - 1
        var index = slot(key)
        while true {
            let stored = keys[index]
            if stored == key { return children[index] }
            if stored == 0 { return -1 }
            index = (index + 1) & mask
        }
    }

    /// Adds an edge that is not there yet.
    mutating func insert(_ child: Int32, of node: Int32, _ scalar: Unicode.Scalar) {
        if 2 * (count + 1) > keys.count { grow() }
        place(Self.key(node, scalar), child)
        count += 1
    }

    private mutating func place(_ key: UInt64, _ child: Int32) {
        let mask = keys.count - 1
        var index = slot(key)
        while keys[index] != 0 { index = (index + 1) & mask }
        keys[index] = key
        children[index] = child
    }

    private mutating func grow() {
        let oldKeys = keys, oldChildren = children
        keys = [UInt64](repeating: 0, count: oldKeys.count * 2)
        children = [Int32](repeating: -1, count: oldKeys.count * 2)
        shift -= 1
        for (key, child) in zip(oldKeys, oldChildren) where key != 0 { place(key, child) }
    }
}
