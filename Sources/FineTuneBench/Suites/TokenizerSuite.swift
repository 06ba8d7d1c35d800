import Foundation
import FineTune

/// WordPiece tokenization of a batch of 256 sentences (about 40 KB of text), uncased BERT
/// pipeline, truncated and padded to 128 tokens: English, and text mixing accents, CJK and emoji.
struct TokenizerSuite: BenchSuite {
    let name = "tokenizer"
    let summary = "WordPieceTokenizer.encode(batch:): 256 sentences (~40 KB), uncased, max length 128, padded"

    func cases() -> [BenchCase] {
        [
            BenchCase(name: "wordpiece_batch_en", detail: "256 English sentences", flops: nil, usesThreads: false) {
                try TokenizerWorkload(words: TokenizerWorkload.englishWords, seed: 1)
            },
            BenchCase(name: "wordpiece_batch_mixed", detail: "256 sentences with accents, CJK, emoji, punctuation",
                      flops: nil, usesThreads: false) {
                try TokenizerWorkload(words: TokenizerWorkload.englishWords + TokenizerWorkload.otherWords, seed: 2)
            },
        ]
    }
}

/// Random sentences and a vocabulary built from them (frequent words whole, every character as
/// a piece), so that tokenization exercises both whole-word and piece-by-piece matches.
final class TokenizerWorkload: Workload {
    static let englishWords = """
        the of and to in is was for on that with as by at from model training tokenizer layer frozen weights \
        learning rate optimizer gradient batch fine-tuning pretrained encoder decoder attention embedding \
        representation classification language vision transformer network parameters checkpoint dataset \
        evaluation accuracy validation interesting unbelievable internationalization Hello World quickly
        """.split(separator: " ").map(String.init)
    static let otherWords = """
        café naïve résumé Zürich Ångström Dvořák 中文 分词 日本語 東京 한국어 😀 👍🏽 🇫🇷 «quotes» — ¿Qué? ¡Sí! \
        Ελληνικά привет Straße déjà-vu 3.14 $100 ∑x²
        """.split(separator: " ").map(String.init)

    private let tokenizer: WordPieceTokenizer
    private let sentences: [String]
    private var lastSum = 0

    init(words: [String], seed: UInt64) throws {
        var state = seed
        func next(_ bound: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(bound))
        }
        sentences = (0..<256).map { _ in
            (0..<(12 + next(24))).map { _ in words[next(words.count)] }.joined(separator: next(4) == 0 ? ", " : " ") + "."
        }
        var counts: [String: Int] = [:]
        var characters = Set<String>()
        for sentence in sentences {
            for word in sentence.lowercased().split(whereSeparator: { $0 == " " || $0 == "," || $0 == "." }) {
                counts[String(word), default: 0] += 1
            }
            for scalar in sentence.lowercased().unicodeScalars { characters.insert(String(scalar)) }
        }
        let frequent = counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(40).map(\.key)
        let lines = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + characters.sorted() + characters.sorted().map { "##" + $0 } + frequent
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-bench-vocab-\(seed).txt")
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }    // a leftover temporary file is harmless
        tokenizer = try WordPieceTokenizer(vocabularyURL: url)
    }

    func run(threads: Int) {
        let encodings = try! tokenizer.encode(batch: sentences, maxLength: 128, padding: .maxLength, truncation: .longestFirst)
        lastSum = encodings.reduce(0) { $0 + $1.ids.reduce(0, +) }
    }

    func checksum() -> Double { Double(lastSum) }
}
