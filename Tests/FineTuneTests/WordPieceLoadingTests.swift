import Foundation
import Testing
@testable import FineTune

// WordPieceTokenizer with files that are malformed, hostile or unusual, encoding options that
// cannot be honoured, and the JSON reader under it: every failure is a typed TokenizerError.

/// A vocab.txt with these lines in a fresh directory.
private func vocabularyFile(_ lines: [String], terminator: String = "\n") throws -> URL {
    let url = temporaryDirectory().appendingPathComponent("vocab.txt")
    try Data((lines.joined(separator: terminator) + terminator).utf8).write(to: url)
    return url
}

private let bertSpecials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

private func uncasedJSON() throws -> Data {
    try Data(contentsOf: fixtureURL("wordpiece/uncased/tokenizer.json"))
}

private func expectError(_ expected: TokenizerError, sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected \(expected)", sourceLocation: sourceLocation)
    } catch {
        #expect(error as? TokenizerError == expected, sourceLocation: sourceLocation)
    }
}

/// Loads `data` as tokenizer.json: it must load or throw a TokenizerError, nothing else.
private func loadsOrThrowsTyped(_ data: Data) -> Bool {
    do {
        let tokenizer = try WordPieceTokenizer(tokenizerJSON: data)
        _ = try tokenizer.encode("Hello, world! Café 中文", pair: "[SEP] again", maxLength: 12, padding: .maxLength,
                                 truncation: .longestFirst)
        return true
    } catch {
        return false
    }
}

@Suite("WordPiece tokenizer: files, errors and options")
struct WordPieceLoadingTests {
    @Test("vocab.txt without [UNK], [CLS], [SEP] or [PAD] is refused by name; [MASK] is optional")
    func missingSpecialTokens() throws {
        let roles = ["[PAD]": "padding", "[UNK]": "unknown", "[CLS]": "classifier", "[SEP]": "separator"]
        for (token, role) in roles {
            let url = try vocabularyFile(bertSpecials.filter { $0 != token } + ["hello"])
            expectError(.missingSpecialToken(role: role, token: token)) { _ = try WordPieceTokenizer(vocabularyURL: url) }
        }
        let withoutMask = try WordPieceTokenizer(vocabularyURL: try vocabularyFile(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello"]))
        #expect(withoutMask.maskTokenId == nil && withoutMask.padTokenId == 0 && withoutMask.clsTokenId == 2)
        #expect(try withoutMask.encode("hello [MASK]").ids == [2, 4, 1, 1, 1, 3], "[MASK] is plain text: [ MASK ] each unknown")
        // Other names for the special tokens.
        let renamed = try WordPieceTokenizer(vocabularyURL: try vocabularyFile(["<pad>", "<unk>", "<s>", "</s>", "hi"]),
                                             unkToken: "<unk>", clsToken: "<s>", sepToken: "</s>", padToken: "<pad>")
        #expect(try renamed.encode("hi there", maxLength: 6, padding: .maxLength).ids == [2, 4, 1, 3, 0, 0])
    }

    @Test("pad token: the argument, else tokenizer.json's padding.pad_token, else [PAD]; the mask token by name")
    func padAndMaskTokens() throws {
        let json = try editedTokenizerJSON("uncased") {
            $0.replacingOccurrences(of: "\"padding\": null", with: "\"padding\": {\"pad_token\": \"[MASK]\", \"pad_id\": 4}")
        }
        #expect(try WordPieceTokenizer(tokenizerJSON: json).padTokenId == 4)
        #expect(try WordPieceTokenizer(tokenizerJSON: json, padToken: "[PAD]").padTokenId == 0)
        #expect(try WordPieceTokenizer(tokenizerJSON: uncasedJSON()).padTokenId == 0)
        expectError(.missingSpecialToken(role: "padding", token: "<pad>")) { _ = try WordPieceTokenizer(tokenizerJSON: json, padToken: "<pad>") }
        #expect(try WordPieceTokenizer(tokenizerJSON: json, maskToken: "[SEP]").maskTokenId == 3)
        #expect(try WordPieceTokenizer(tokenizerJSON: json, maskToken: "<mask>").maskTokenId == nil)
    }

    @Test("vocab.txt: line numbers are ids, \\r\\n and trailing whitespace trimmed, a repeated token takes its last id")
    func vocabularyLines() throws {
        let url = try vocabularyFile(bertSpecials + ["hello  ", "##lo\t", "he", "hello"], terminator: "\r\n")
        let tokenizer = try WordPieceTokenizer(vocabularyURL: url)
        #expect(tokenizer.id(of: "hello") == 8 && tokenizer.id(of: "##lo") == 6 && tokenizer.id(of: "hello  ") == nil)
        #expect(try tokenizer.encode("Hello helo").ids == [2, 8, 7, 6, 3])
        #expect(tokenizer.token(of: 5) == nil, "the first \"hello\" line lost its id to the later one")
        #expect(tokenizer.decode([2, 5, 8, 3]) == "[CLS] hello [SEP]")
        #expect(tokenizer.vocabularySize == 9)
    }

    @Test("tokens differing only in Unicode normal form stay distinct, as Hugging Face compares bytes")
    func canonicalEquivalents() throws {
        // "é" precomposed (U+00E9) and "e" + U+0301 are equal Swift Strings but different tokens.
        let lines = bertSpecials + ["\u{E9}", "e\u{301}", "e", "##\u{301}"]
        let fromLines = try WordPieceTokenizer(vocabularyURL: try vocabularyFile(lines), lowercase: false)
        #expect(fromLines.id(of: "\u{E9}") == 5 && fromLines.id(of: "e\u{301}") == 6)
        #expect(try fromLines.encode("\u{E9} e\u{301}").ids == [2, 5, 6, 3])
        #expect(fromLines.tokenize("\u{E9}x") == ["[UNK]"])
        // The same in tokenizer.json, whose vocab object has both keys.
        let vocab = lines.enumerated().map { "\"\($0.element)\": \($0.offset)" }.joined(separator: ", ")
        let json = """
            {"added_tokens": [], "normalizer": null, "pre_tokenizer": {"type": "BertPreTokenizer"},
             "post_processor": null, "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
             "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {\(vocab)}}}
            """
        let fromJSON = try WordPieceTokenizer(tokenizerJSON: Data(json.utf8))
        #expect(try fromJSON.encode("\u{E9} e\u{301}").ids == [5, 6], "no post-processor: no [CLS]/[SEP]")
        #expect(fromJSON.decode([5, 6]).unicodeScalars.elementsEqual("\u{E9} e\u{301}".unicodeScalars))
        #expect(try fromJSON.encode("e\u{301}x").ids == [1])
    }

    @Test("files that are not tokenizers: typed errors naming the problem")
    func unreadableAndMalformedFiles() throws {
        let missing = temporaryDirectory().appendingPathComponent("vocab.txt")
        do {
            _ = try WordPieceTokenizer(vocabularyURL: missing)
            Issue.record("loaded a missing file")
        } catch {
            guard case .unreadableFile(let path, _) = error else { Issue.record("\(error)"); return }
            #expect(path == missing.path)
        }
        let empty = temporaryDirectory().appendingPathComponent("vocab.txt")
        try Data().write(to: empty)
        expectError(.invalidVocabulary(file: "vocab.txt", reason: "the vocabulary is empty")) { _ = try WordPieceTokenizer(vocabularyURL: empty) }
        let binary = temporaryDirectory().appendingPathComponent("vocab.txt")
        try Data(Array("[PAD]\n[UNK]\n".utf8) + [0xFF, 0xFE, 0x0A]).write(to: binary)
        expectError(.invalidVocabulary(file: "vocab.txt", reason: "line 3 is not UTF-8")) { _ = try WordPieceTokenizer(vocabularyURL: binary) }
        let emptyFolder = temporaryDirectory()
        expectError(.noTokenizerFiles(folder: emptyFolder.path)) { _ = try WordPieceTokenizer(contentsOf: emptyFolder) }
        expectError(.invalidJSON(file: "tokenizer.json", reason: "unexpected end of data at byte 0")) {
            _ = try WordPieceTokenizer(tokenizerJSON: Data())
        }
    }

    @Test("tokenizer.json with another model or component, or values of the wrong kind")
    func unsupportedAndInvalidJSON() throws {
        let original = String(decoding: try uncasedJSON(), as: UTF8.self)
        func load(_ from: String, _ to: String) throws(TokenizerError) {
            precondition(original.contains(from), from)
            _ = try WordPieceTokenizer(tokenizerJSON: Data(original.replacingOccurrences(of: from, with: to).utf8))
        }
        expectError(.unsupportedModel(type: "BPE")) { try load("\"type\": \"WordPiece\",\n    \"unk_token\"", "\"type\": \"BPE\",\n    \"unk_token\"") }
        expectError(.unsupportedComponent(component: "normalizer", type: "Lowercase")) { try load("\"BertNormalizer\"", "\"Lowercase\"") }
        expectError(.unsupportedComponent(component: "pre_tokenizer", type: "Whitespace")) { try load("\"BertPreTokenizer\"", "\"Whitespace\"") }
        expectError(.unsupportedComponent(component: "post_processor", type: "RobertaProcessing")) {
            try load("\"TemplateProcessing\"", "\"RobertaProcessing\"")
        }
        expectError(.unsupportedComponent(component: "decoder", type: "ByteLevel")) {
            try load("\"type\": \"WordPiece\",\n    \"prefix\"", "\"type\": \"ByteLevel\",\n    \"prefix\"")
        }
        expectError(.invalidValue(file: "tokenizer.json", key: "normalizer.lowercase", reason: "must be a boolean, not a string")) {
            try load("\"lowercase\": true", "\"lowercase\": \"yes\"")
        }
        expectError(.invalidValue(file: "tokenizer.json", key: "model.vocab[\"[UNK]\"]", reason: "must be an integer, not a number")) {
            try load("\"[UNK]\": 1,", "\"[UNK]\": 1.5,")
        }
        expectError(.invalidVocabulary(file: "tokenizer.json", reason: "token \"[UNK]\" has id -1, outside 0...73536")) {
            try load("\"[UNK]\": 1,", "\"[UNK]\": -1,")
        }
        // Ids index arrays: one far beyond the number of tokens is refused rather than allocated.
        expectError(.invalidVocabulary(file: "tokenizer.json", reason: "token \"[UNK]\" has id 2000000000, outside 0...73536")) {
            try load("\"[UNK]\": 1,", "\"[UNK]\": 2000000000,")
        }
        expectError(.invalidValue(file: "tokenizer.json", key: "added_tokens", reason: "token \"[MASK]\" has id 9000000000, beyond 73616")) {
            try load("\"id\": 4,", "\"id\": 9000000000,")
        }
        expectError(.missingSpecialToken(role: "unknown", token: "<unk>")) { try load("\"unk_token\": \"[UNK]\"", "\"unk_token\": \"<unk>\"") }
        expectError(.missingSpecialToken(role: "template", token: "[CLS] (id 9999)")) { try load("\"ids\": [\n          2\n", "\"ids\": [\n          9999\n") }
        expectError(.invalidValue(file: "tokenizer.json", key: "post_processor.single", reason: "uses a special token not in special_tokens")) {
            try load("\"SpecialToken\": {\n          \"id\": \"[CLS]\"", "\"SpecialToken\": {\n          \"id\": \"[BOS]\"")
        }
        expectError(.invalidValue(file: "tokenizer.json", key: "model", reason: "must be an object")) { try load("\"model\": {", "\"model\": [], \"x\": {") }
    }

    @Test("truncated and corrupted tokenizer.json never crashes")
    func hostileJSON() throws {
        let bytes = [UInt8](try uncasedJSON())
        var loaded = 0
        for end in stride(from: 0, to: bytes.count, by: 97) where loadsOrThrowsTyped(Data(bytes[..<end])) { loaded += 1 }
        #expect(loaded == 0, "a truncated file loaded")
        var generator = RandomGenerator(seed: 14)
        var refused = 0
        let noise: [UInt8] = Array("{}[]\",:0123456789-eE.\\u".utf8) + [0x00, 0x0A, 0xC3, 0xFF]
        for _ in 0..<300 {
            var corrupted = bytes
            for _ in 0..<Int(generator.next() % 3 + 1) {
                corrupted[Int(generator.next() % UInt64(bytes.count))] = noise[Int(generator.next() % UInt64(noise.count))]
            }
            if !loadsOrThrowsTyped(Data(corrupted)) { refused += 1 }
        }
        #expect(refused > 150, "most corruptions are refused (\(refused) of 300)")
        let deep = Data((String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).utf8)
        expectError(.invalidJSON(file: "tokenizer.json", reason: "nesting deeper than 256 levels at byte 256")) {
            _ = try WordPieceTokenizer(tokenizerJSON: deep)
        }
    }

    @Test("the JSON reader: escapes, surrogate pairs, duplicate keys, numbers, byte-order mark")
    func jsonReader() throws {
        let text = "\u{FEFF}{\"a\": \"x\\u00e9\\ud83d\\ude00\\n\\\"\", \"a\": 2, \"big\": 1000000000000000019884624838656, \"f\": -1.5e3, \"l\": [true, false, null]}"
        let value = try OrderedJSONParser.parse(Array(text.utf8), file: "t.json")
        guard case .object(let members) = value else { Issue.record("not an object"); return }
        #expect(members.count == 5)
        guard case .string(let string) = members[0].value else { Issue.record("not a string"); return }
        #expect(string == "x\u{E9}\u{1F600}\n\"")
        guard case .number(2, 2)? = value["a"] else { Issue.record("the last duplicate key wins"); return }
        guard case .number(let big, nil)? = value["big"], big > 1e29 else { Issue.record("1e30 is not an Int"); return }
        guard case .number(-1500, nil)? = value["f"] else { Issue.record("-1.5e3"); return }
        for bad in ["{\"a\": \"\\ud83d\"}", "{\"a\": \"\\ude00\"}", "[01]", "[1.]", "[-]", "{\"a\" 1}", "[1,]", "\"\u{1}\"", "tru", "[1] x", "{\"a\": \"\\q\"}"] {
            #expect(throws: TokenizerError.self, "\(bad)") { _ = try OrderedJSONParser.parse(Array(bad.utf8), file: "t.json") }
        }
        #expect(throws: TokenizerError.self) { _ = try OrderedJSONParser.parse([0x22, 0xC3, 0x28, 0x22], file: "t.json") }
    }

    @Test("options that cannot be honoured throw; addSpecialTokens false; tokenize, id and token")
    func encodingOptions() throws {
        let tokenizer = try WordPieceTokenizer(contentsOf: fixtureURL("wordpiece/uncased"))
        #expect(tokenizer.modelMaxLength == nil, "transformers' 1e30 means no limit")
        expectError(.missingMaxLength) { _ = try tokenizer.encode("hello", truncation: .longestFirst) }
        expectError(.missingMaxLength) { _ = try tokenizer.encode("hello", padding: .maxLength) }
        expectError(.secondSequenceNotProvided) { _ = try tokenizer.encode("one two three four", maxLength: 4, truncation: .onlySecond) }
        expectError(.maxLengthTooShort(maxLength: 2, specialTokens: 3)) { _ = try tokenizer.encode("a", pair: "b", maxLength: 2, truncation: .onlyFirst) }
        expectError(.invalidOptions("2 texts but 1 pair texts")) { _ = try tokenizer.encode(batch: ["a", "b"], pairs: ["c"]) }
        expectError(.invalidOptions("maxLength -1 is negative")) { _ = try tokenizer.encode("a", maxLength: -1) }
        expectError(.invalidOptions("truncation to maxLength 10 and padding to a multiple of 4 contradict each other")) {
            _ = try tokenizer.encode("a", maxLength: 10, padding: .longest, truncation: .longestFirst, padToMultipleOf: 4)
        }
        // Without special tokens: no [CLS]/[SEP], and truncation counts only the text.
        let plain = try tokenizer.encode("the model learns", maxLength: 2, truncation: .longestFirst, addSpecialTokens: false)
        #expect(plain.tokens == ["the", "model"] && plain.specialTokensMask == [0, 0])
        let withSpecials = try tokenizer.encode("the model learns")
        #expect(withSpecials.ids == [tokenizer.clsTokenId!] + (try tokenizer.encode("the model learns", addSpecialTokens: false).ids) + [tokenizer.sepTokenId!])
        #expect(tokenizer.tokenize("The model") == ["the", "model"])
        #expect(tokenizer.id(of: "[MASK]") == tokenizer.maskTokenId && tokenizer.maskTokenId == 4)
        #expect(tokenizer.token(of: tokenizer.padTokenId) == "[PAD]" && tokenizer.token(of: 100_000) == nil)
        #expect(try tokenizer.encode(batch: []).isEmpty)
        // A single text with .longest padding stays as it is, except for the multiple.
        let length = try tokenizer.encode("the model").count
        let longest = try tokenizer.encode("the model", padding: .longest)
        #expect(length == 4 && longest.count == length)
        let rounded = try tokenizer.encode("the model", padding: .longest, padToMultipleOf: 8)
        #expect(rounded.count == 8 && rounded.attentionMask == [1, 1, 1, 1, 0, 0, 0, 0])
    }
}
