/// Text as the tokenizer works on it: Unicode scalars, each remembering the position (scalar
/// index) of the input scalar it came from, so tokens can report offsets into the input.
struct AlignedScalars {
    var scalars: [Unicode.Scalar] = []
    /// `origins[i]` is the index in the input text of the scalar `scalars[i]` came from.
    var origins: [Int] = []

    init() {}

    init(capacity: Int) {
        scalars.reserveCapacity(capacity)
        origins.reserveCapacity(capacity)
    }

    var count: Int { scalars.count }

    @inline(__always)
    mutating func append(_ scalar: Unicode.Scalar, origin: Int) {
        scalars.append(scalar)
        origins.append(origin)
    }

    /// The input range (scalar indices) covered by `scalars[range]`: from the origin of its first
    /// scalar to just after the origin of its last.
    func originalRange(of range: Range<Int>) -> Range<Int> {
        guard !range.isEmpty else { return 0..<0 }
        let lower = origins[range.lowerBound], upper = origins[range.upperBound - 1] + 1
        return lower..<max(lower, upper)
    }
}

/// Hugging Face's `BertNormalizer`: removes control characters and turns whitespace into
/// spaces (`clean_text`), puts spaces around CJK ideographs, strips accents (canonical
/// decomposition, then nonspacing marks removed) and lower-cases, in that order.
struct BertNormalizer: Sendable, Equatable {
    var cleanText = true
    var handleChineseCharacters = true
    /// `nil` follows `lowercase`, as in BERT.
    var stripAccents: Bool?
    var lowercase = true

    var stripsAccents: Bool { stripAccents ?? lowercase }

    /// Normalises `input[range]`, appending the result to `output`.
    func normalize(_ input: [Unicode.Scalar], range: Range<Int>, into output: inout AlignedScalars) {
        let strip = stripsAccents
        // With accents stripped, the text is decomposed first, reordered as NFD orders combining
        // marks, and only then filtered and lower-cased.
        var decomposition = Decomposition()
        for index in range {
            var scalar = input[index]
            if cleanText {
                if scalar.value == 0 || scalar.value == 0xFFFD || BertCharacters.isControl(scalar) { continue }
                if BertCharacters.isWhitespace(scalar) { scalar = " " }
            }
            let chinese = handleChineseCharacters && BertCharacters.isChinese(scalar)
            if strip {
                if chinese { decomposition.append(" ", origin: index) }
                decomposition.append(scalar, origin: index)
                if chinese { decomposition.append(" ", origin: index) }
            } else {
                if chinese { output.append(" ", origin: index) }
                emit(scalar, origin: index, into: &output)
                if chinese { output.append(" ", origin: index) }
            }
        }
        guard strip else { return }
        decomposition.reorderAndAlign()
        for (scalar, origin) in zip(decomposition.scalars, decomposition.origins) where !BertCharacters.isNonspacingMark(scalar) {
            emit(scalar, origin: origin, into: &output)
        }
    }

    /// Appends `scalar`, lower-cased when asked (a scalar may lower-case to several).
    @inline(__always)
    private func emit(_ scalar: Unicode.Scalar, origin: Int, into output: inout AlignedScalars) {
        guard lowercase else { return output.append(scalar, origin: origin) }
        if scalar.value < 0x80 {
            let v = scalar.value
            output.append((0x41...0x5A).contains(v) ? Unicode.Scalar(v + 32)! : scalar, origin: origin)
        } else if !scalar.properties.changesWhenLowercased {
            output.append(scalar, origin: origin)
        } else {
            for lowered in scalar.properties.lowercaseMapping.unicodeScalars { output.append(lowered, origin: origin) }
        }
    }
}

/// The canonical decomposition (NFD) of a text, aligned as Hugging Face's
/// `unicode-normalization-alignments` aligns it: the first scalar of each character's
/// decomposition takes the next input character's origin, the others the origin of the last
/// character taken. The canonical reordering of combining marks moves the scalars (with that
/// first-or-not flag) but not the origins, so a reordered mark reports the position it lands on.
private struct Decomposition {
    var scalars: [Unicode.Scalar] = []
    private var isFirst: [Bool] = []
    /// The origin of each input character, in order.
    private var inputOrigins: [Int] = []
    /// The origin of each scalar, once `reorderAndAlign` has run.
    private(set) var origins: [Int] = []

    mutating func append(_ scalar: Unicode.Scalar, origin: Int) {
        inputOrigins.append(origin)
        if scalar.value < 0xC0 {
            scalars.append(scalar)
            isFirst.append(true)
            return
        }
        let start = scalars.count
        BertCharacters.appendDecomposition(of: scalar, to: &scalars)
        isFirst.append(true)
        isFirst.append(contentsOf: repeatElement(false, count: scalars.count - start - 1))
    }

    /// Canonical ordering (a stable insertion sort of every run of non-starters by combining
    /// class), then the origins.
    mutating func reorderAndAlign() {
        for i in scalars.indices.dropFirst() {
            let combiningClass = BertCharacters.combiningClass(scalars[i])
            guard combiningClass != 0 else { continue }
            let scalar = scalars[i], first = isFirst[i]
            var j = i
            while j > 0 {
                let previous = BertCharacters.combiningClass(scalars[j - 1])
                if previous == 0 || previous <= combiningClass { break }
                scalars[j] = scalars[j - 1]
                isFirst[j] = isFirst[j - 1]
                j -= 1
            }
            scalars[j] = scalar
            isFirst[j] = first
        }
        origins.reserveCapacity(scalars.count)
        var taken = -1
        for first in isFirst {
            if first { taken += 1 }
            origins.append(inputOrigins[max(taken, 0)])
        }
    }
}
