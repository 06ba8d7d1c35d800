import Foundation
import Testing
@testable import FineTune

// The BERT normaliser and pre-tokeniser against what Hugging Face's `tokenizers` build does
// with every one of the 1,114,112 code points (Fixtures/wordpiece/unicode.json, written by
// scripts/make-tokenizer-fixtures.py): its Rust crates use Unicode 8.0 categories and
// decompositions, so Swift's newer Unicode data alone would disagree on hundreds of characters.

private struct UnicodeTables: Decodable {
    struct Lowercase: Decodable {
        var runs: [[Int]]
        var multiScalar: [String: String]
    }

    var removedByCleanText: [[Int]]
    var spaceByCleanText: [[Int]]
    var whitespace: [[Int]]
    var chinese: [[Int]]
    var removedByStripAccents: [[Int]]
    var stripAccents: [String: String]
    var lowercase: Lowercase
    var punctuation: [[Int]]
}

private func flags(_ ranges: [[Int]]) -> [Bool] {
    var flags = [Bool](repeating: false, count: 0x110000)
    for range in ranges { for value in range[0]...range[1] { flags[value] = true } }
    return flags
}

private func scalars(_ string: String) -> [Unicode.Scalar] { Array(string.unicodeScalars) }

/// Every scalar value, each followed by "x" so that no two combining marks meet (canonical
/// ordering would otherwise move them across code points).
private let everyScalar: [Unicode.Scalar] = {
    var scalars: [Unicode.Scalar] = []
    scalars.reserveCapacity(0x220000)
    for value in 0..<UInt32(0x110000) {
        guard let scalar = Unicode.Scalar(value) else { continue }
        scalars.append(scalar)
        scalars.append("x")
    }
    return scalars
}()

/// Normalises `everyScalar` once; returns the code points whose output differs from `expected`
/// (at most a dozen, as hex).
private func mismatches(of normalizer: BertNormalizer, expected: (Int) -> [Unicode.Scalar]) -> [String] {
    var output = AlignedScalars(capacity: everyScalar.count * 2)
    normalizer.normalize(everyScalar, range: 0..<everyScalar.count, into: &output)
    var found: [String] = []
    var position = 0
    for index in stride(from: 0, to: everyScalar.count, by: 2) {
        // The output of everyScalar[index], then of its "x".
        let start = position
        while position < output.count && output.origins[position] == index { position += 1 }
        let got = output.scalars[start..<position]
        let value = Int(everyScalar[index].value)
        if !got.elementsEqual(expected(value)) && found.count < 12 {
            found.append("U+\(String(value, radix: 16, uppercase: true)) gave \(got.map { String($0.value, radix: 16) })")
        }
        while position < output.count && output.origins[position] == index + 1 { position += 1 }
    }
    if position != output.count { found.append("output out of order at \(position)") }
    return found
}

@Suite("WordPiece: every code point as tokenizers classifies it")
struct WordPieceUnicodeTests {
    private let tables: UnicodeTables

    init() throws {
        tables = try JSONDecoder().decode(UnicodeTables.self, from: Data(contentsOf: fixtureURL("wordpiece/unicode.json")))
    }

    @Test("clean_text removes Cc/Cf/Co of Unicode 8.0 and makes whitespace a space")
    func cleanText() {
        let removed = flags(tables.removedByCleanText), spaced = flags(tables.spaceByCleanText)
        let wrong = mismatches(of: BertNormalizer(cleanText: true, handleChineseCharacters: false, stripAccents: false, lowercase: false)) {
            removed[$0] ? [] : spaced[$0] ? [" "] : [Unicode.Scalar(UInt32($0))!]
        }
        #expect(wrong.isEmpty, "\(wrong)")
        #expect(tables.removedByCleanText.count > 20 && tables.spaceByCleanText.count > 5)
    }

    @Test("CJK ideographs are surrounded by spaces")
    func chinese() {
        let chinese = flags(tables.chinese)
        let wrong = mismatches(of: BertNormalizer(cleanText: false, handleChineseCharacters: true, stripAccents: false, lowercase: false)) {
            chinese[$0] ? [" ", Unicode.Scalar(UInt32($0))!, " "] : [Unicode.Scalar(UInt32($0))!]
        }
        #expect(wrong.isEmpty, "\(wrong)")
    }

    @Test("strip_accents: canonical decomposition of Unicode 8.0, nonspacing marks removed")
    func stripAccents() {
        let removed = flags(tables.removedByStripAccents)
        var mapped: [Int: [Unicode.Scalar]] = [:]
        for (key, value) in tables.stripAccents { mapped[Int(key)!] = scalars(value) }
        let wrong = mismatches(of: BertNormalizer(cleanText: false, handleChineseCharacters: false, stripAccents: true, lowercase: false)) { value in
            if removed[value] { return [] }
            if let output = mapped[value] { return output }
            if (0xAC00...0xD7A3).contains(value) {  // Hangul syllables: L V (T) jamo
                let index = UInt32(value - 0xAC00)
                let t = index % 28
                return [Unicode.Scalar(0x1100 + index / 588)!, Unicode.Scalar(0x1161 + (index % 588) / 28)!]
                    + (t == 0 ? [] : [Unicode.Scalar(0x11A7 + t)!])
            }
            return [Unicode.Scalar(UInt32(value))!]
        }
        #expect(wrong.isEmpty, "\(wrong)")
        #expect(mapped.count > 1000 && tables.removedByStripAccents.count > 100)
    }

    @Test("lowercase: Rust's full lower-case mappings")
    func lowercase() {
        var mapped: [Int: [Unicode.Scalar]] = [:]
        for run in tables.lowercase.runs {
            for i in 0..<run[1] { mapped[run[0] + i * run[2]] = [Unicode.Scalar(UInt32(run[0] + i * run[2] + run[3]))!] }
        }
        for (key, value) in tables.lowercase.multiScalar { mapped[Int(key)!] = scalars(value) }
        let wrong = mismatches(of: BertNormalizer(cleanText: false, handleChineseCharacters: false, stripAccents: false, lowercase: true)) {
            mapped[$0] ?? [Unicode.Scalar(UInt32($0))!]
        }
        #expect(wrong.isEmpty, "\(wrong)")
        #expect(mapped.count > 1000 && mapped[0x130] == scalars("i\u{307}"))
    }

    @Test("BertPreTokenizer splits at whitespace and at ASCII or Unicode 8.0 punctuation")
    func punctuationAndWhitespace() {
        let punctuation = flags(tables.punctuation), whitespace = flags(tables.whitespace)
        var wrong: [String] = []
        for value in 0..<0x110000 {
            guard let scalar = Unicode.Scalar(UInt32(value)) else { continue }
            if BertCharacters.isPunctuation(scalar) != punctuation[value] || BertCharacters.isWhitespace(scalar) != whitespace[value] {
                wrong.append("U+\(String(value, radix: 16, uppercase: true))")
                if wrong.count >= 12 { break }
            }
        }
        #expect(wrong.isEmpty, "\(wrong)")
        #expect(punctuation[0x24] && punctuation[0xA7] && !punctuation[0x2E52], "$ and § split; U+2E52 (Unicode 13) does not")
    }
}
