/// Everything the tokenizer throws: malformed or unsupported files, and encoding options that
/// cannot be honoured. Nothing a file or an input text contains makes the tokenizer crash.
public enum TokenizerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A file could not be read.
    case unreadableFile(path: String, reason: String)
    /// A folder holds neither `tokenizer.json` nor `vocab.txt`.
    case noTokenizerFiles(folder: String)
    /// A JSON file is not valid JSON (the reason names the byte offset).
    case invalidJSON(file: String, reason: String)
    /// A JSON file is valid but a key is missing or holds the wrong kind of value.
    case invalidValue(file: String, key: String, reason: String)
    /// `vocab.txt` is not UTF-8 text, or a vocabulary is empty or has an id out of range.
    case invalidVocabulary(file: String, reason: String)
    /// `tokenizer.json` names a model other than WordPiece (BPE, Unigram, WordLevel, ...).
    case unsupportedModel(type: String)
    /// `tokenizer.json` uses a normaliser, pre-tokeniser, post-processor or decoder this
    /// tokenizer does not implement; `component` is e.g. `"normalizer"`.
    case unsupportedComponent(component: String, type: String)
    /// A token the tokenizer needs (`[UNK]`, `[CLS]`, `[SEP]`, `[PAD]`) is not in the vocabulary.
    case missingSpecialToken(role: String, token: String)
    /// `maxLength` cannot hold even the special tokens the template adds. (Hugging Face's
    /// tokenizers then silently skip truncation; FineTune refuses.)
    case maxLengthTooShort(maxLength: Int, specialTokens: Int)
    /// `onlyFirst`/`onlySecond` truncation would have to remove more tokens than that sequence
    /// has (Hugging Face: "Sequence to truncate too short to respect the provided max_length").
    case sequenceTooShortToTruncate(maxLength: Int)
    /// `onlySecond` truncation of an input without a second sequence.
    case secondSequenceNotProvided
    /// Padding or truncation to a maximum length without one (no `maxLength`, no `model_max_length`).
    case missingMaxLength
    /// Options that contradict each other, e.g. a different number of texts and pairs.
    case invalidOptions(String)

    public var description: String {
        switch self {
        case .unreadableFile(let path, let reason): "cannot read \(path): \(reason)"
        case .noTokenizerFiles(let folder): "\(folder) holds neither tokenizer.json nor vocab.txt"
        case .invalidJSON(let file, let reason): "\(file) is not valid JSON: \(reason)"
        case .invalidValue(let file, let key, let reason): "\(file): \(key) \(reason)"
        case .invalidVocabulary(let file, let reason): "invalid vocabulary in \(file): \(reason)"
        case .unsupportedModel(let type): "tokenizer.json has a \(type) model; only WordPiece is supported"
        case .unsupportedComponent(let component, let type):
            "tokenizer.json has a \(component) of type \(type), which this WordPiece tokenizer does not implement"
        case .missingSpecialToken(let role, let token): "the \(role) token \(token) is not in the vocabulary"
        case .maxLengthTooShort(let maxLength, let specialTokens):
            "maxLength \(maxLength) cannot hold the \(specialTokens) special tokens added around the text"
        case .sequenceTooShortToTruncate(let maxLength):
            "the sequence to truncate is too short to respect maxLength \(maxLength)"
        case .secondSequenceNotProvided: "onlySecond truncation needs a second sequence"
        case .missingMaxLength: "padding or truncating to a maximum length needs maxLength (or model_max_length)"
        case .invalidOptions(let reason): reason
        }
    }
}
