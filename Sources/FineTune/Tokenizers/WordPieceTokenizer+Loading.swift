import Foundation

extension WordPieceTokenizer {
    /// A tokenizer from a `vocab.txt` (one token per line, the line number is the id) with BERT's
    /// pipeline configured by the arguments, as `BertTokenizerFast(vocab_file, ...)` builds it.
    ///
    /// ```swift
    /// let cased = try WordPieceTokenizer(vocabularyURL: url, lowercase: false)
    /// ```
    ///
    /// - Parameters:
    ///   - lowercase: lower-case the text (`do_lower_case`).
    ///   - stripAccents: strip accents; `nil` follows `lowercase`, as in BERT.
    ///   - chineseCharacters: split CJK ideographs into words of their own (`tokenize_chinese_chars`).
    ///   - maxInputCharactersPerWord: longer words become `[UNK]`.
    /// - Throws: `TokenizerError.unreadableFile`, `.invalidVocabulary` (not UTF-8, empty), and
    ///   `.missingSpecialToken` when `[UNK]`, `[CLS]`, `[SEP]` or `[PAD]` is not in the file.
    ///   The mask token is optional.
    public init(vocabularyURL: URL, lowercase: Bool = true, stripAccents: Bool? = nil, chineseCharacters: Bool = true,
                unkToken: String = "[UNK]", clsToken: String = "[CLS]", sepToken: String = "[SEP]",
                padToken: String = "[PAD]", maskToken: String = "[MASK]", maxInputCharactersPerWord: Int = 100,
                modelMaxLength: Int? = nil) throws(TokenizerError) {
        let entries = try Self.readVocabularyFile(vocabularyURL)
        let file = vocabularyURL.lastPathComponent
        let vocabulary = try WordPieceVocabulary(entries: entries, unknownToken: unkToken,
                                                 maxInputCharactersPerWord: maxInputCharactersPerWord, file: file)
        func required(_ token: String, _ role: String) throws(TokenizerError) -> Int {
            guard let id = vocabulary.id(of: token) else { throw .missingSpecialToken(role: role, token: token) }
            return id
        }
        let clsId = try required(clsToken, "classifier"), sepId = try required(sepToken, "separator")
        _ = try required(padToken, "padding")
        // transformers registers the special tokens as added tokens: typed in the text they stay whole.
        var added: [AddedToken] = []
        for token in [padToken, unkToken, clsToken, sepToken, maskToken] where !added.contains(where: { $0.content == token }) {
            if let id = vocabulary.id(of: token) { added.append(AddedToken(content: token, id: id)) }
        }
        try self.init(vocabulary: vocabulary, addedTokens: added,
                      normalizer: BertNormalizer(handleChineseCharacters: chineseCharacters, stripAccents: stripAccents,
                                                 lowercase: lowercase),
                      splitsWords: true, postProcessor: .bert(cls: (clsToken, clsId), sep: (sepToken, sepId)),
                      decoder: ("##", true), padToken: padToken, file: file)
        self.modelMaxLength = modelMaxLength
        maskTokenName = maskToken
    }

    /// A tokenizer from the contents of a Hugging Face `tokenizer.json` with a WordPiece model:
    /// its vocabulary, added tokens, `BertNormalizer`, `BertPreTokenizer`, `TemplateProcessing`
    /// (or `BertProcessing`) and `WordPiece` decoder. The pad token is the file's
    /// `padToken` when given, else the file's `padding.pad_token`, else `[PAD]`; the mask token
    /// `maskToken`, else `[MASK]`. The file's own truncation and padding settings are
    /// ignored, as transformers ignores them: `encode` takes them per call.
    ///
    /// - Throws: `TokenizerError.invalidJSON`, `.invalidValue` (a key of the wrong kind),
    ///   `.unsupportedModel` (BPE, Unigram, ...), `.unsupportedComponent` (another normaliser,
    ///   pre-tokeniser, post-processor or decoder), `.missingSpecialToken`.
    public init(tokenizerJSON data: Data, padToken: String? = nil, maskToken: String = "[MASK]") throws(TokenizerError) {
        try self.init(tokenizerJSON: [UInt8](data), padToken: padToken, file: "tokenizer.json", bertOptions: nil)
        maskTokenName = maskToken
    }

    /// A tokenizer from a Hugging Face tokenizer folder, as `AutoTokenizer.from_pretrained`
    /// reads it: `tokenizer.json` when present, else `vocab.txt`; with `tokenizer_config.json`
    /// (and `special_tokens_map.json`) for the special tokens, `model_max_length`,
    /// `padding_side`, `truncation_side` and `clean_up_tokenization_spaces`.
    ///
    /// For a BERT-family `tokenizer_class` (`BertTokenizer`, `DistilBertTokenizer`, ... with or
    /// without `Fast`), `do_lower_case` (default true), `strip_accents` and
    /// `tokenize_chinese_chars` (default true) of `tokenizer_config.json` decide the
    /// normalisation even when `tokenizer.json` says otherwise, as transformers does.
    ///
    /// - Throws: `TokenizerError.noTokenizerFiles` when the folder has neither file, and the
    ///   errors of `init(tokenizerJSON:)` and `init(vocabularyURL:...)`.
    public init(contentsOf folder: URL) throws(TokenizerError) {
        let config = try TokenizerConfig(folder: folder)
        let jsonURL = folder.appendingPathComponent("tokenizer.json")
        let vocabularyURL = folder.appendingPathComponent("vocab.txt")
        if FileManager.default.fileExists(atPath: jsonURL.path) {
            try self.init(tokenizerJSON: try readFile(jsonURL), padToken: config.padToken, file: "tokenizer.json",
                          bertOptions: config.isBertFamily ? config.normalizer : nil)
        } else if FileManager.default.fileExists(atPath: vocabularyURL.path) {
            try self.init(vocabularyURL: vocabularyURL, lowercase: config.normalizer.lowercase,
                          stripAccents: config.normalizer.stripAccents,
                          chineseCharacters: config.normalizer.handleChineseCharacters,
                          unkToken: config.unkToken ?? "[UNK]", clsToken: config.clsToken ?? "[CLS]",
                          sepToken: config.sepToken ?? "[SEP]", padToken: config.padToken ?? "[PAD]",
                          maskToken: config.maskToken ?? "[MASK]")
            if !config.addedTokens.isEmpty {
                let known = Set(addedVocabulary.tokens.map(\.id))
                try install(addedTokens: addedVocabulary.tokens + config.addedTokens.filter { !known.contains($0.id) },
                            file: "tokenizer_config.json")
            }
        } else {
            throw .noTokenizerFiles(folder: folder.path)
        }
        maskTokenName = config.maskToken ?? "[MASK]"
        modelMaxLength = config.modelMaxLength
        paddingSide = config.paddingSide ?? .right
        truncationSide = config.truncationSide ?? .right
        cleanUpTokenizationSpaces = config.cleanUpTokenizationSpaces ?? false
    }

    /// Assembles the pipeline and checks that every token it needs has an id.
    init(vocabulary: WordPieceVocabulary, addedTokens: [AddedToken], normalizer: BertNormalizer?, splitsWords: Bool,
         postProcessor: PostProcessor, decoder: (prefix: String, cleanup: Bool)?, padToken: String,
         file: String) throws(TokenizerError) {
        self.vocabulary = vocabulary
        self.addedVocabulary = AddedVocabulary(tokens: [], normalizer: nil)
        self.tokenTable = []
        self.normalizer = normalizer
        self.splitsWords = splitsWords
        self.postProcessor = postProcessor
        self.decoder = decoder
        self.padToken = padToken
        padTokenId = 0
        try install(addedTokens: addedTokens, file: file)
        guard let padId = addedVocabulary.id(of: padToken) ?? vocabulary.id(of: padToken) else {
            throw .missingSpecialToken(role: "padding", token: padToken)
        }
        padTokenId = padId
        for piece in postProcessor.single + postProcessor.pair {
            guard case .special(let ids, let tokens, _) = piece else { continue }
            for (id, token) in zip(ids, tokens) where self.token(of: id) == nil {
                throw .missingSpecialToken(role: "template", token: "\(token) (id \(id))")
            }
        }
    }

    /// Parses `tokenizer.json`; `bertOptions` replaces its normaliser (transformers' BERT classes).
    init(tokenizerJSON bytes: [UInt8], padToken: String?, file: String, bertOptions: BertNormalizer?) throws(TokenizerError) {
        let root = try OrderedJSONParser.parse(bytes, file: file)
        let reader = OrderedJSONReader(file: file)
        guard case .object = root else { throw .invalidValue(file: file, key: "(root)", reason: "must be an object") }
        guard let model = root["model"], case .object = model else {
            throw .invalidValue(file: file, key: "model", reason: "must be an object")
        }
        let modelType = try reader.string(model["type"], "model.type") ?? "WordPiece"
        guard modelType == "WordPiece" else { throw .unsupportedModel(type: modelType) }
        guard case .object(let vocabularyMembers)? = model["vocab"] else {
            throw .invalidValue(file: file, key: "model.vocab", reason: "must be an object of token ids")
        }
        var entries: [(token: String, id: Int)] = []
        entries.reserveCapacity(vocabularyMembers.count)
        for (token, value) in vocabularyMembers {
            guard let id = try reader.integer(value, "model.vocab[\(token.debugDescription)]") else {
                throw .invalidValue(file: file, key: "model.vocab[\(token.debugDescription)]", reason: "must be an integer id")
            }
            entries.append((token, id))
        }
        let maxCharacters = try reader.integer(model["max_input_chars_per_word"], "model.max_input_chars_per_word") ?? 100
        guard maxCharacters >= 0 else {
            throw .invalidValue(file: file, key: "model.max_input_chars_per_word", reason: "must not be negative")
        }
        let vocabulary = try WordPieceVocabulary(
            entries: entries, unknownToken: try reader.string(model["unk_token"], "model.unk_token") ?? "[UNK]",
            continuingSubwordPrefix: try reader.string(model["continuing_subword_prefix"], "model.continuing_subword_prefix") ?? "##",
            maxInputCharactersPerWord: maxCharacters, file: file)

        var addedTokens: [AddedToken] = []
        if case .array(let items)? = root["added_tokens"] {
            for (index, item) in items.enumerated() {
                let key = "added_tokens[\(index)]"
                guard let id = try reader.integer(item["id"], "\(key).id"), id >= 0 else {
                    throw .invalidValue(file: file, key: key, reason: "needs a non-negative id")
                }
                addedTokens.append(try reader.addedToken(item, id: id, key: key))
            }
        } else if let other = root["added_tokens"], !other.isNull {
            throw .invalidValue(file: file, key: "added_tokens", reason: "must be an array, not \(other.typeName)")
        }

        var normalizer: BertNormalizer?
        if let value = root["normalizer"], !value.isNull {
            let type = try reader.string(value["type"], "normalizer.type") ?? "(no type)"
            guard type == "BertNormalizer" else { throw .unsupportedComponent(component: "normalizer", type: type) }
            normalizer = BertNormalizer(
                cleanText: try reader.bool(value["clean_text"], "normalizer.clean_text") ?? true,
                handleChineseCharacters: try reader.bool(value["handle_chinese_chars"], "normalizer.handle_chinese_chars") ?? true,
                stripAccents: try reader.bool(value["strip_accents"], "normalizer.strip_accents"),
                lowercase: try reader.bool(value["lowercase"], "normalizer.lowercase") ?? true)
        }
        if let bertOptions { normalizer = bertOptions }

        var splitsWords = false
        if let value = root["pre_tokenizer"], !value.isNull {
            let type = try reader.string(value["type"], "pre_tokenizer.type") ?? "(no type)"
            guard type == "BertPreTokenizer" else { throw .unsupportedComponent(component: "pre_tokenizer", type: type) }
            splitsWords = true
        }

        var postProcessor = PostProcessor.plain
        if let value = root["post_processor"], !value.isNull {
            postProcessor = try reader.postProcessor(value)
        }

        var decoder: (prefix: String, cleanup: Bool)?
        if let value = root["decoder"], !value.isNull {
            let type = try reader.string(value["type"], "decoder.type") ?? "(no type)"
            guard type == "WordPiece" else { throw .unsupportedComponent(component: "decoder", type: type) }
            decoder = (try reader.string(value["prefix"], "decoder.prefix") ?? "##",
                       try reader.bool(value["cleanup"], "decoder.cleanup") ?? true)
        }

        var filePadToken: String?
        if let padding = root["padding"], !padding.isNull {
            filePadToken = try reader.string(padding["pad_token"], "padding.pad_token")
        }
        try self.init(vocabulary: vocabulary, addedTokens: addedTokens, normalizer: normalizer, splitsWords: splitsWords,
                      postProcessor: postProcessor, decoder: decoder, padToken: padToken ?? filePadToken ?? "[PAD]", file: file)
    }

    /// Hugging Face's `WordPiece::read_file`: one token per line (`\n`, or `\r\n`), trailing
    /// whitespace removed, the line number as id.
    static func readVocabularyFile(_ url: URL) throws(TokenizerError) -> [(token: String, id: Int)] {
        let bytes = try readFile(url)
        var entries: [(token: String, id: Int)] = []
        var lineStart = 0
        var lineNumber = 0
        while lineStart < bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != 0x0A { lineEnd += 1 }
            var contentEnd = lineEnd
            if contentEnd > lineStart && bytes[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            guard let line = String(validating: bytes[lineStart..<contentEnd], as: UTF8.self) else {
                throw .invalidVocabulary(file: url.lastPathComponent, reason: "line \(lineNumber + 1) is not UTF-8")
            }
            var scalars = Array(line.unicodeScalars)
            while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() }
            var token = ""
            token.unicodeScalars.append(contentsOf: scalars)
            entries.append((token, lineNumber))
            lineNumber += 1
            lineStart = lineEnd + 1
        }
        return entries
    }
}

/// The bytes of a file, or `TokenizerError.unreadableFile`.
func readFile(_ url: URL) throws(TokenizerError) -> [UInt8] {
    do {
        return [UInt8](try Data(contentsOf: url))
    } catch {
        throw .unreadableFile(path: url.path, reason: "\(error.localizedDescription)")
    }
}

/// Typed reads of optional JSON values: nil when absent or null, an error when of another kind.
struct OrderedJSONReader {
    let file: String

    func string(_ value: OrderedJSONValue?, _ key: String) throws(TokenizerError) -> String? {
        switch value {
        case nil, .null?: return nil
        case .string(let string)?: return string
        case let other?: throw .invalidValue(file: file, key: key, reason: "must be a string, not \(other.typeName)")
        }
    }

    func bool(_ value: OrderedJSONValue?, _ key: String) throws(TokenizerError) -> Bool? {
        switch value {
        case nil, .null?: return nil
        case .bool(let bool)?: return bool
        case let other?: throw .invalidValue(file: file, key: key, reason: "must be a boolean, not \(other.typeName)")
        }
    }

    func integer(_ value: OrderedJSONValue?, _ key: String) throws(TokenizerError) -> Int? {
        switch value {
        case nil, .null?: return nil
        case .number(_, let exact?)?: return exact
        case let other?: throw .invalidValue(file: file, key: key, reason: "must be an integer, not \(other.typeName)")
        }
    }

    /// An added token's content and flags (`normalized` defaults to the opposite of `special`).
    func addedToken(_ item: OrderedJSONValue, id: Int, key: String) throws(TokenizerError) -> AddedToken {
        guard let content = try string(item["content"], "\(key).content") else {
            throw .invalidValue(file: file, key: key, reason: "needs a content")
        }
        let special = try bool(item["special"], "\(key).special") ?? false
        return AddedToken(content: content, id: id,
                          singleWord: try bool(item["single_word"], "\(key).single_word") ?? false,
                          leftStrip: try bool(item["lstrip"], "\(key).lstrip") ?? false,
                          rightStrip: try bool(item["rstrip"], "\(key).rstrip") ?? false,
                          normalized: try bool(item["normalized"], "\(key).normalized") ?? !special,
                          special: special)
    }

    /// A special token in `tokenizer_config.json`: a string, or an object with a `content`.
    func tokenContent(_ value: OrderedJSONValue?, _ key: String) throws(TokenizerError) -> String? {
        if case .object? = value { return try string(value?["content"], "\(key).content") }
        return try string(value, key)
    }

    /// `TemplateProcessing` or `BertProcessing`.
    func postProcessor(_ value: OrderedJSONValue) throws(TokenizerError) -> PostProcessor {
        let type = try string(value["type"], "post_processor.type") ?? "(no type)"
        switch type {
        case "BertProcessing":
            guard case .array(let sep)? = value["sep"], sep.count == 2, case .array(let cls)? = value["cls"], cls.count == 2,
                  let sepToken = try string(sep[0], "post_processor.sep"), let sepId = try integer(sep[1], "post_processor.sep"),
                  let clsToken = try string(cls[0], "post_processor.cls"), let clsId = try integer(cls[1], "post_processor.cls")
            else { throw .invalidValue(file: file, key: "post_processor", reason: "needs sep and cls as [token, id]") }
            return .bert(cls: (clsToken, clsId), sep: (sepToken, sepId))
        case "TemplateProcessing":
            var specials: [String: (ids: [Int], tokens: [String])] = [:]
            if case .object(let members)? = value["special_tokens"] {
                for (name, special) in members {
                    let key = "post_processor.special_tokens[\(name.debugDescription)]"
                    guard case .array(let idValues)? = special["ids"], case .array(let tokenValues)? = special["tokens"],
                          idValues.count == tokenValues.count else {
                        throw .invalidValue(file: file, key: key, reason: "needs ids and tokens of one length")
                    }
                    var ids: [Int] = [], tokens: [String] = []
                    for (idValue, tokenValue) in zip(idValues, tokenValues) {
                        guard let id = try integer(idValue, key), id >= 0, let token = try string(tokenValue, key) else {
                            throw .invalidValue(file: file, key: key, reason: "has an invalid id or token")
                        }
                        ids.append(id)
                        tokens.append(token)
                    }
                    specials[name] = (ids, tokens)
                }
            }
            func template(_ key: String, allowsSecond: Bool) throws(TokenizerError) -> [PostProcessor.Piece] {
                guard case .array(let items)? = value[key] else {
                    throw .invalidValue(file: file, key: "post_processor.\(key)", reason: "must be an array")
                }
                var pieces: [PostProcessor.Piece] = []
                for item in items {
                    if let sequence = item["Sequence"] {
                        let name = try string(sequence["id"], "post_processor.\(key)")
                        guard name == "A" || (name == "B" && allowsSecond) else {
                            throw .invalidValue(file: file, key: "post_processor.\(key)", reason: "names sequence \(name ?? "nil")")
                        }
                        let typeId = try integer(sequence["type_id"], "post_processor.\(key)") ?? 0
                        guard typeId >= 0 else { throw .invalidValue(file: file, key: "post_processor.\(key)", reason: "has a negative type id") }
                        pieces.append(.sequence(isFirst: name == "A", typeId: typeId))
                    } else if let special = item["SpecialToken"] {
                        guard let name = try string(special["id"], "post_processor.\(key)"), let entry = specials[name] else {
                            throw .invalidValue(file: file, key: "post_processor.\(key)", reason: "uses a special token not in special_tokens")
                        }
                        let typeId = try integer(special["type_id"], "post_processor.\(key)") ?? 0
                        guard typeId >= 0 else { throw .invalidValue(file: file, key: "post_processor.\(key)", reason: "has a negative type id") }
                        pieces.append(.special(ids: entry.ids, tokens: entry.tokens, typeId: typeId))
                    } else {
                        throw .invalidValue(file: file, key: "post_processor.\(key)", reason: "has an item that is neither Sequence nor SpecialToken")
                    }
                }
                return pieces
            }
            return PostProcessor(single: try template("single", allowsSecond: false), pair: try template("pair", allowsSecond: true))
        default:
            throw .unsupportedComponent(component: "post_processor", type: type)
        }
    }
}

/// What `tokenizer_config.json` and `special_tokens_map.json` say (all optional).
struct TokenizerConfig {
    var tokenizerClass: String?
    var normalizer = BertNormalizer()
    var unkToken: String?, clsToken: String?, sepToken: String?, padToken: String?, maskToken: String?
    var modelMaxLength: Int?
    var paddingSide: WordPieceTokenizer.Side?
    var truncationSide: WordPieceTokenizer.Side?
    var cleanUpTokenizationSpaces: Bool?
    /// `added_tokens_decoder` entries, for folders without `tokenizer.json`.
    var addedTokens: [AddedToken] = []

    /// transformers' BERT-family tokenizer classes rebuild the normaliser from this config.
    var isBertFamily: Bool {
        guard let tokenizerClass else { return false }
        return tokenizerClass.hasSuffix("BertTokenizer") || tokenizerClass.hasSuffix("BertTokenizerFast")
    }

    init(folder: URL) throws(TokenizerError) {
        let configURL = folder.appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: configURL.path) {
            let file = "tokenizer_config.json"
            let root = try OrderedJSONParser.parse(try readFile(configURL), file: file)
            guard case .object = root else { throw .invalidValue(file: file, key: "(root)", reason: "must be an object") }
            let reader = OrderedJSONReader(file: file)
            tokenizerClass = try reader.string(root["tokenizer_class"], "tokenizer_class")
            normalizer = BertNormalizer(
                handleChineseCharacters: try reader.bool(root["tokenize_chinese_chars"], "tokenize_chinese_chars") ?? true,
                stripAccents: try reader.bool(root["strip_accents"], "strip_accents"),
                lowercase: try reader.bool(root["do_lower_case"], "do_lower_case") ?? true)
            try readSpecialTokens(root, reader)
            switch root["model_max_length"] ?? root["max_len"] {
            case .number(_, let exact?)?: modelMaxLength = exact >= 0 ? exact : nil
            case .number?, .null?, nil: modelMaxLength = nil  // transformers writes 1e30 for "no limit"
            case let other?: throw .invalidValue(file: file, key: "model_max_length", reason: "must be a number, not \(other.typeName)")
            }
            paddingSide = try Self.side(reader.string(root["padding_side"], "padding_side"), "padding_side", file)
            truncationSide = try Self.side(reader.string(root["truncation_side"], "truncation_side"), "truncation_side", file)
            cleanUpTokenizationSpaces = try reader.bool(root["clean_up_tokenization_spaces"], "clean_up_tokenization_spaces")
            if case .object(let members)? = root["added_tokens_decoder"] {
                for (key, item) in members {
                    guard let id = Int(key), id >= 0 else {
                        throw .invalidValue(file: file, key: "added_tokens_decoder.\(key)", reason: "needs a non-negative integer key")
                    }
                    addedTokens.append(try reader.addedToken(item, id: id, key: "added_tokens_decoder.\(key)"))
                }
            }
        }
        let mapURL = folder.appendingPathComponent("special_tokens_map.json")
        if FileManager.default.fileExists(atPath: mapURL.path) {
            let file = "special_tokens_map.json"
            let root = try OrderedJSONParser.parse(try readFile(mapURL), file: file)
            guard case .object = root else { throw .invalidValue(file: file, key: "(root)", reason: "must be an object") }
            try readSpecialTokens(root, OrderedJSONReader(file: file))
        }
    }

    private mutating func readSpecialTokens(_ root: OrderedJSONValue, _ reader: OrderedJSONReader) throws(TokenizerError) {
        unkToken = try reader.tokenContent(root["unk_token"], "unk_token") ?? unkToken
        clsToken = try reader.tokenContent(root["cls_token"], "cls_token") ?? clsToken
        sepToken = try reader.tokenContent(root["sep_token"], "sep_token") ?? sepToken
        padToken = try reader.tokenContent(root["pad_token"], "pad_token") ?? padToken
        maskToken = try reader.tokenContent(root["mask_token"], "mask_token") ?? maskToken
    }

    private static func side(_ value: String?, _ key: String, _ file: String) throws(TokenizerError) -> WordPieceTokenizer.Side? {
        switch value {
        case nil: return nil
        case "left": return .left
        case "right": return .right
        case let other?: throw .invalidValue(file: file, key: key, reason: "must be \"left\" or \"right\", not \(other.debugDescription)")
        }
    }
}
