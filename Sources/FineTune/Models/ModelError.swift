/// Why a model family could not be built.
public enum ModelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A ResNet depth without a block layout.
    case unsupportedDepth(Int, supported: [Int])
    /// A `config.json` key the family needs is missing or has the wrong type.
    case invalidConfig(key: String, reason: String)
    /// A `config.json` value that would change the architecture in a way the family does not
    /// implement (it is refused rather than ignored).
    case unsupportedConfig(key: String, value: String, supported: String)

    public var description: String {
        switch self {
        case let .unsupportedDepth(depth, supported):
            return "no ResNet of depth \(depth); supported depths: \(supported.map(String.init).joined(separator: ", "))"
        case let .invalidConfig(key, reason): return "config.json: \(key): \(reason)"
        case let .unsupportedConfig(key, value, supported):
            return "config.json: \(key) = \(value) is not supported (supported: \(supported))"
        }
    }
}
