import Foundation
import Testing
@testable import FineTune

// WordPieceTokenizer against Hugging Face's BertTokenizerFast (transformers 5, tokenizers 0.23):
// Fixtures/wordpiece holds two vocabularies trained locally and the reference encodings of
// scripts/make-tokenizer-fixtures.py: texts with accents, CJK, emoji, control characters,
// whitespace runs, punctuation and unknown or over-long words, under every lower-casing /
// accent / Chinese-character setting, pairs, truncation, padding, decoding and added tokens.

struct WordPieceReference: Decodable {
    struct Encoded: Decodable {
        var ids: [Int]
        /// start, end, start, end, ...
        var offsets: [Int]
    }

    struct EncodedPair: Decodable {
        var ids: [Int]
        var typeIds: [Int]
        var offsets: [Int]
    }

    struct TruncationGroup: Decodable {
        /// [maxLength, ids, length of the first segment] or [maxLength, error message].
        enum Result: Decodable {
            case encoded(maxLength: Int, ids: [Int], firstSegment: Int)
            case refused(maxLength: Int, message: String)

            init(from decoder: any Decoder) throws {
                var items = try decoder.unkeyedContainer()
                let maxLength = try items.decode(Int.self)
                if let message = try? items.decode(String.self) {
                    self = .refused(maxLength: maxLength, message: message)
                } else {
                    self = .encoded(maxLength: maxLength, ids: try items.decode([Int].self), firstSegment: try items.decode(Int.self))
                }
            }
        }

        var text: Int
        var pair: Int?
        var strategy: String
        var side: String
        var results: [Result]
    }

    struct PaddingCase: Decodable {
        /// Text indices, or [first, second] index pairs.
        enum Input: Decodable {
            case single(Int)
            case pair(Int, Int)

            init(from decoder: any Decoder) throws {
                if let index = try? decoder.singleValueContainer().decode(Int.self) {
                    self = .single(index)
                } else {
                    let pair = try decoder.singleValueContainer().decode([Int].self)
                    self = .pair(pair[0], pair[1])
                }
            }
        }

        var inputs: [Input]
        var side: String
        var padding: String
        var maxLength: Int?
        var truncation: String?
        var padToMultipleOf: Int?
        var ids: [[Int]]
        var lengths: [Int]
        var firstSegmentLengths: [Int]
    }

    struct DecodeCase: Decodable {
        var ids: [Int]
        var skipSpecialTokens: Bool
        var cleanUp: Bool
        var text: String
    }

    struct Variant: Decodable {
        var name: String
        var folder: String
        var lowercase: Bool
        var stripAccents: Bool?
        var chineseCharacters: Bool
        var encodings: [Encoded]?
        var differences: [String: Encoded]?
        var pairs: [EncodedPair]?
        var truncation: [TruncationGroup]?
        var padding: [PaddingCase]?
        var decode: [DecodeCase]?
    }

    struct AddedTokensCase: Decodable {
        struct Sample: Decodable {
            var text: String
            var ids: [Int]
            var offsets: [Int]
            var decoded: String
            var decodedSkippingSpecial: String
        }

        struct Token: Codable {
            var id: Int
            var content: String
            var single_word: Bool
            var lstrip: Bool
            var rstrip: Bool
            var normalized: Bool
            var special: Bool
        }

        var addedTokens: [Token]
        var encodings: [Sample]
    }

    struct ShortWordsCase: Decodable {
        struct Sample: Decodable {
            var text: String
            var ids: [Int]
        }

        var maxInputCharsPerWord: Int
        var encodings: [Sample]
    }

    struct ConfigOverrideCase: Decodable {
        struct Sample: Decodable {
            var text: Int
            var ids: [Int]
        }

        var encodings: [Sample]
        var truncatedAndPadded: [Sample]
    }

    struct VocabularyFolderCase: Decodable {
        struct Sample: Decodable {
            var text: String
            var ids: [Int]
            var decoded: String
            var decodedSkippingSpecial: String
        }

        var padTokenId: Int
        var vocabularySize: Int
        var encodings: [Sample]
    }

    var tokenizers: String
    var texts: [String]
    var pairs: [[String]]
    var variants: [Variant]
    var addedTokens: AddedTokensCase
    var shortWords: ShortWordsCase
    var configOverride: ConfigOverrideCase
    var vocabularyFolder: VocabularyFolderCase

    static func load() throws -> WordPieceReference {
        try JSONDecoder().decode(WordPieceReference.self, from: Data(contentsOf: fixtureURL("wordpiece/reference.json")))
    }

    /// The encodings of every text under `variant` (its own, or its folder's with its differences).
    func encodings(of variant: Variant) throws -> [Encoded] {
        if let encodings = variant.encodings { return encodings }
        var encodings = try #require(variants.first { $0.name == variant.folder }?.encodings)
        for (index, encoded) in try #require(variant.differences) { encodings[Int(index)!] = encoded }
        return encodings
    }
}

/// Flattened offsets, as the fixture stores them.
private func flat(_ offsets: [Range<Int>]) -> [Int] { offsets.flatMap { [$0.lowerBound, $0.upperBound] } }

private func truncation(_ name: String?) -> WordPieceTokenizer.Truncation {
    switch name {
    case "longest_first": .longestFirst
    case "only_first": .onlyFirst
    case "only_second": .onlySecond
    default: .none
    }
}

private func padding(_ name: String) -> WordPieceTokenizer.Padding {
    switch name {
    case "longest": .longest
    case "max_length": .maxLength
    default: .none
    }
}

/// A copy of `tokenizer.json` of a fixture folder with `edit` applied to its text.
func editedTokenizerJSON(_ folder: String, _ edit: (String) -> String) throws -> Data {
    let text = try String(contentsOf: fixtureURL("wordpiece/\(folder)/tokenizer.json"), encoding: .utf8)
    let edited = edit(text)
    #expect(edited != text, "the edit changed nothing")
    return Data(edited.utf8)
}

@Suite("WordPiece tokenizer: Hugging Face parity")
struct WordPieceTokenizerTests {
    let reference: WordPieceReference

    init() throws {
        reference = try WordPieceReference.load()
    }

    private func folderURL(_ name: String) -> URL { fixtureURL("wordpiece/\(name)") }

    /// The tokenizer of a variant, built from vocab.txt and the variant's options.
    private func tokenizer(for variant: WordPieceReference.Variant) throws -> WordPieceTokenizer {
        try WordPieceTokenizer(vocabularyURL: folderURL(variant.folder).appendingPathComponent("vocab.txt"),
                               lowercase: variant.lowercase, stripAccents: variant.stripAccents,
                               chineseCharacters: variant.chineseCharacters)
    }

    private func expectEncodesTexts(_ tokenizer: WordPieceTokenizer, _ expected: [WordPieceReference.Encoded], _ label: String,
                                    sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(expected.count == reference.texts.count)
        for (text, want) in zip(reference.texts, expected) {
            let encoding = try tokenizer.encode(text)
            #expect(encoding.ids == want.ids, "\(label): \(text.debugDescription)", sourceLocation: sourceLocation)
            #expect(flat(encoding.offsets) == want.offsets, "\(label) offsets: \(text.debugDescription)", sourceLocation: sourceLocation)
            #expect(encoding.typeIds == Array(repeating: 0, count: encoding.count) && encoding.attentionMask == Array(repeating: 1, count: encoding.count))
            #expect(encoding.specialTokensMask == [1] + Array(repeating: 0, count: max(0, encoding.count - 2)) + [1])
            #expect(encoding.tokens.count == encoding.count && encoding.tokens.first == "[CLS]" && encoding.tokens.last == "[SEP]")
        }
    }

    @Test("every text under every lower-casing, accent and Chinese-character setting: ids and offsets")
    func variants() throws {
        #expect(reference.variants.count == 7)
        for variant in reference.variants {
            try expectEncodesTexts(try tokenizer(for: variant), try reference.encodings(of: variant), variant.name)
        }
        // The settings really change the output on this corpus (the fixture would be too weak otherwise).
        let differing = reference.variants.compactMap { $0.differences?.count }
        #expect(differing.filter { $0 >= 3 }.count == 3)
    }

    @Test("tokenizer.json, vocab.txt and the folder loaders agree with transformers")
    func loaders() throws {
        for name in ["uncased", "cased"] {
            let variant = try #require(reference.variants.first { $0.name == name })
            let expected = try reference.encodings(of: variant)
            try expectEncodesTexts(try WordPieceTokenizer(contentsOf: folderURL(name)), expected, "\(name) folder")
            let json = try Data(contentsOf: folderURL(name).appendingPathComponent("tokenizer.json"))
            try expectEncodesTexts(try WordPieceTokenizer(tokenizerJSON: json), expected, "\(name) tokenizer.json")
            // A folder with only vocab.txt and tokenizer_config.json (do_lower_case decides).
            let vocabularyOnly = temporaryDirectory()
            for file in ["vocab.txt", "tokenizer_config.json"] {
                try FileManager.default.copyItem(at: folderURL(name).appendingPathComponent(file),
                                                 to: vocabularyOnly.appendingPathComponent(file))
            }
            let fromVocabulary = try WordPieceTokenizer(contentsOf: vocabularyOnly)
            #expect(fromVocabulary.lowercases == (name == "uncased"))
            try expectEncodesTexts(fromVocabulary, expected, "\(name) vocab.txt folder")
        }
    }

    @Test("tokenizer_config.json of a BERT class overrides tokenizer.json's normaliser, length and sides")
    func configOverride() throws {
        let folder = temporaryDirectory()
        for file in ["vocab.txt", "tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: folderURL("uncased").appendingPathComponent(file), to: folder.appendingPathComponent(file))
        }
        let configURL = folder.appendingPathComponent("tokenizer_config.json")
        var config = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["do_lower_case"] = false
        config["model_max_length"] = 16
        config["padding_side"] = "left"
        config["truncation_side"] = "left"
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let tokenizer = try WordPieceTokenizer(contentsOf: folder)
        #expect(!tokenizer.lowercases && tokenizer.modelMaxLength == 16 && tokenizer.paddingSide == .left)
        for sample in reference.configOverride.encodings {
            #expect(try tokenizer.encode(reference.texts[sample.text]).ids == sample.ids)
        }
        for sample in reference.configOverride.truncatedAndPadded {
            #expect(try tokenizer.encode(reference.texts[sample.text], padding: .maxLength, truncation: .longestFirst).ids == sample.ids)
        }
        // The same file without a BERT tokenizer_class: tokenizer.json's normaliser stands.
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        #expect(try WordPieceTokenizer(contentsOf: folder).lowercases)
    }

    @Test("vocab.txt folder: added_tokens_decoder and pad_token of tokenizer_config.json")
    func vocabularyFolderConfig() throws {
        let folder = temporaryDirectory()
        try FileManager.default.copyItem(at: folderURL("uncased").appendingPathComponent("vocab.txt"),
                                         to: folder.appendingPathComponent("vocab.txt"))
        // The fixture's config with the script's changes (read from reference.json, merged by Foundation).
        let referenceJSON = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: fixtureURL("wordpiece/reference.json"))) as? [String: Any])
        let changes = try #require((referenceJSON["vocabularyFolder"] as? [String: Any])?["config"] as? [String: Any])
        var config = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: folderURL("uncased").appendingPathComponent("tokenizer_config.json"))) as? [String: Any])
        config.merge(changes) { $1 }
        try JSONSerialization.data(withJSONObject: config).write(to: folder.appendingPathComponent("tokenizer_config.json"))
        let tokenizer = try WordPieceTokenizer(contentsOf: folder)
        let expected = reference.vocabularyFolder
        #expect(tokenizer.padTokenId == expected.padTokenId && tokenizer.vocabularySize == expected.vocabularySize)
        for sample in expected.encodings {
            let ids = try tokenizer.encode(sample.text, maxLength: 12, padding: .maxLength).ids
            #expect(ids == sample.ids, "\(sample.text)")
            #expect(tokenizer.decode(ids) == sample.decoded)
            #expect(tokenizer.decode(ids, skipSpecialTokens: true) == sample.decodedSkippingSpecial)
        }
    }

    @Test("pairs: [CLS] A [SEP] B [SEP] with type ids and offsets into each text")
    func pairs() throws {
        for name in ["uncased", "cased"] {
            let variant = try #require(reference.variants.first { $0.name == name })
            let tokenizer = try WordPieceTokenizer(contentsOf: folderURL(name))
            let expected = try #require(variant.pairs)
            #expect(expected.count == reference.pairs.count)
            for (pair, want) in zip(reference.pairs, expected) {
                let encoding = try tokenizer.encode(pair[0], pair: pair[1])
                #expect(encoding.ids == want.ids, "\(name): \(pair)")
                #expect(encoding.typeIds == want.typeIds, "\(name): \(pair)")
                #expect(flat(encoding.offsets) == want.offsets, "\(name): \(pair)")
                #expect(encoding.specialTokensMask.filter { $0 == 1 }.count == 3)
            }
        }
    }

    @Test("truncation: longest_first, only_first, only_second on both sides; refusals as typed errors")
    func truncationCases() throws {
        let variant = try #require(reference.variants.first { $0.name == "uncased" })
        var tokenizer = try WordPieceTokenizer(contentsOf: folderURL("uncased"))
        var checked = (encoded: 0, refused: 0, tooShort: 0)
        for group in try #require(variant.truncation) {
            tokenizer.truncationSide = group.side == "left" ? .left : .right
            let text = reference.texts[group.text], pair = group.pair.map { reference.texts[$0] }
            let specialTokens = pair == nil ? 2 : 3
            for result in group.results {
                switch result {
                case .encoded(let maxLength, let ids, let firstSegment):
                    if maxLength < specialTokens {
                        // Hugging Face's tokenizers skip truncation here (an unsigned underflow) and
                        // return more than maxLength tokens; FineTune refuses with a typed error.
                        #expect(ids.count > maxLength)
                        #expect(throws: TokenizerError.maxLengthTooShort(maxLength: maxLength, specialTokens: specialTokens)) {
                            try tokenizer.encode(text, pair: pair, maxLength: maxLength, truncation: truncation(group.strategy))
                        }
                        checked.tooShort += 1
                        continue
                    }
                    let encoding = try tokenizer.encode(text, pair: pair, maxLength: maxLength, truncation: truncation(group.strategy))
                    #expect(encoding.ids == ids, "\(group.strategy) \(group.side) \(maxLength): \(text) | \(pair ?? "-")")
                    #expect(encoding.typeIds == Array(repeating: 0, count: firstSegment) + Array(repeating: 1, count: ids.count - firstSegment))
                    checked.encoded += 1
                case .refused(let maxLength, let message):
                    #expect(message.contains("too short"))
                    #expect(throws: TokenizerError.sequenceTooShortToTruncate(maxLength: maxLength)) {
                        try tokenizer.encode(text, pair: pair, maxLength: maxLength, truncation: truncation(group.strategy))
                    }
                    checked.refused += 1
                }
            }
        }
        #expect(checked.encoded > 50 && checked.refused > 30 && checked.tooShort > 30, "\(checked)")
    }

    @Test("batches padded to the longest, to maxLength, to multiples, left and right")
    func paddingCases() throws {
        let variant = try #require(reference.variants.first { $0.name == "uncased" })
        var tokenizer = try WordPieceTokenizer(contentsOf: folderURL("uncased"))
        let cases = try #require(variant.padding)
        #expect(cases.count > 20)
        for padCase in cases {
            tokenizer.paddingSide = padCase.side == "left" ? .left : .right
            var texts: [String] = [], pairs: [String] = []
            for input in padCase.inputs {
                switch input {
                case .single(let index): texts.append(reference.texts[index])
                case .pair(let first, let second):
                    texts.append(reference.texts[first])
                    pairs.append(reference.texts[second])
                }
            }
            let encodings = try tokenizer.encode(batch: texts, pairs: pairs.isEmpty ? nil : pairs, maxLength: padCase.maxLength,
                                                 padding: padding(padCase.padding), truncation: truncation(padCase.truncation),
                                                 padToMultipleOf: padCase.padToMultipleOf)
            let label = "\(padCase.padding) \(padCase.side) max \(padCase.maxLength ?? -1) multiple \(padCase.padToMultipleOf ?? -1)"
            #expect(encodings.map(\.ids) == padCase.ids, "\(label)")
            for (index, encoding) in encodings.enumerated() {
                let length = padCase.lengths[index], pad = encoding.count - length, first = padCase.firstSegmentLengths[index]
                let mask = Array(repeating: 1, count: length), padMask = Array(repeating: 0, count: pad)
                let types = Array(repeating: 0, count: first) + Array(repeating: 1, count: length - first)
                #expect(encoding.attentionMask == (padCase.side == "right" ? mask + padMask : padMask + mask), "\(label)")
                #expect(encoding.typeIds == (padCase.side == "right" ? types + padMask : padMask + types), "\(label)")
                #expect(encoding.specialTokensMask.filter { $0 == 1 }.count == pad + (pairs.isEmpty ? 2 : 3))
                #expect(encoding.offsets.count == encoding.count && encoding.tokens.count == encoding.count)
            }
        }
    }

    @Test("decode with and without special tokens and clean-up")
    func decoding() throws {
        let variant = try #require(reference.variants.first { $0.name == "uncased" })
        let tokenizer = try WordPieceTokenizer(contentsOf: folderURL("uncased"))
        let cases = try #require(variant.decode)
        for decodeCase in cases {
            let text = tokenizer.decode(decodeCase.ids, skipSpecialTokens: decodeCase.skipSpecialTokens,
                                        cleanUpTokenizationSpaces: decodeCase.cleanUp)
            #expect(text == decodeCase.text && text.unicodeScalars.elementsEqual(decodeCase.text.unicodeScalars),
                    "\(decodeCase.ids) skip \(decodeCase.skipSpecialTokens) clean \(decodeCase.cleanUp)")
        }
        // The clean-up options change the results on these cases.
        #expect(Set(cases.map(\.text)).count > cases.count / 2)
    }

    @Test("added tokens with lstrip, rstrip, single_word and normalized, as tokenizers matches them")
    func addedTokens() throws {
        let added = reference.addedTokens
        let encoder = JSONEncoder()
        let items = try added.addedTokens.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
        let json = try editedTokenizerJSON("uncased") {
            $0.replacingOccurrences(of: "\"added_tokens\": [", with: "\"added_tokens\": [" + items.joined(separator: ",") + ",")
        }
        let tokenizer = try WordPieceTokenizer(tokenizerJSON: json)
        #expect(tokenizer.vocabularySize == 500 + added.addedTokens.filter { $0.id >= 500 }.count)
        for sample in added.encodings {
            let encoding = try tokenizer.encode(sample.text)
            #expect(encoding.ids == sample.ids, "\(sample.text.debugDescription)")
            #expect(flat(encoding.offsets) == sample.offsets, "\(sample.text.debugDescription)")
            #expect(tokenizer.decode(encoding.ids) == sample.decoded)
            #expect(tokenizer.decode(encoding.ids, skipSpecialTokens: true) == sample.decodedSkippingSpecial)
        }
    }

    @Test("max_input_chars_per_word from tokenizer.json: longer words (after normalisation) are [UNK]")
    func shortWords() throws {
        let json = try editedTokenizerJSON("uncased") {
            $0.replacingOccurrences(of: "\"max_input_chars_per_word\": 100", with: "\"max_input_chars_per_word\": \(reference.shortWords.maxInputCharsPerWord)")
        }
        let tokenizer = try WordPieceTokenizer(tokenizerJSON: json)
        for sample in reference.shortWords.encodings {
            #expect(try tokenizer.encode(sample.text).ids == sample.ids, "\(sample.text)")
        }
        #expect(reference.shortWords.encodings.contains { $0.ids.contains(tokenizer.unkTokenId) })
    }

    @Test("README: the Tokenizers snippet")
    func readmeSnippet() throws {
        let tokenizer = try WordPieceTokenizer(contentsOf: folderURL("uncased"))
        let encoding = try tokenizer.encode("Fine-tuning is fun!", pair: "Is it?", maxLength: 24,
                                            padding: .maxLength, truncation: .longestFirst)
        let firstSegment = try #require(encoding.ids.firstIndex(of: tokenizer.sepTokenId!)) + 1
        let length = encoding.attentionMask.filter { $0 == 1 }.count
        #expect(encoding.count == 24 && encoding.ids.first == tokenizer.clsTokenId && encoding.ids.last == tokenizer.padTokenId)
        #expect(encoding.typeIds == Array(repeating: 0, count: firstSegment) + Array(repeating: 1, count: length - firstSegment)
            + Array(repeating: 0, count: 24 - length))
        let batch = try tokenizer.encode(batch: ["short", "a longer sentence"], padding: .longest)
        #expect(batch[0].count == batch[1].count && batch[0].attentionMask.contains(0))
        #expect(tokenizer.decode(encoding.ids, skipSpecialTokens: true) == "fine - tuning is fun! is it?")
        let cased = try WordPieceTokenizer(vocabularyURL: folderURL("cased").appendingPathComponent("vocab.txt"), lowercase: false)
        #expect(!cased.lowercases && !cased.stripsAccents)
    }
}
