import Foundation

/// A model's `config.json` as Hugging Face `transformers` writes it, with typed lookups for
/// the model families that build modules from it.
///
/// A missing key throws ``CheckpointError/missingConfigKey(_:)``, a value of another type
/// ``CheckpointError/wrongConfigType(key:expected:found:)``; both name the dotted key. Integer
/// values read as `Float`/`Double` too, and `2.0` reads as `Int` (Python writes either).
///
/// ```swift
/// let config = try PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json"))
/// let hidden = try config.value("hidden_size", as: Int.self)                  // 768
/// let eps = try config.value("layer_norm_eps", default: Float(1e-12))        // missing or null: the default
/// let names = try config.value("architectures", as: [String].self)           // ["BertModel"]
/// let vision = try config.section("vision_config")                           // errors say vision_config.<key>
/// ```
public struct PretrainedConfig: Equatable, Sendable {
    /// The values by key.
    public var fields: [String: JSONValue]
    /// Where these fields sit in the file (`""` at the top, `"vision_config"` for a section);
    /// errors name keys with it.
    public let path: String

    /// A configuration holding `fields` (for writing with ``Module/savePretrained(to:config:maxShardSize:)``).
    public init(_ fields: [String: JSONValue] = [:]) {
        self.init(fields, path: "")
    }

    private init(_ fields: [String: JSONValue], path: String) {
        self.fields = fields
        self.path = path
    }

    /// Parses `config.json` text: one JSON object.
    public init(data: Data) throws(CheckpointError) {
        let value: JSONValue
        do { value = try JSONValue.parse(data) } catch { throw .malformedConfig(reason: "not valid JSON: \(error.message)") }
        guard case .object(let fields) = value else { throw .malformedConfig(reason: "the file holds \(value.typeName), not an object") }
        self.init(fields)
    }

    /// Reads a `config.json` file.
    public init(contentsOf url: URL) throws(CheckpointError) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw .io(path: url.path, reason: SafeTensors.reason(error)) }
        try self.init(data: data)
    }

    /// The raw value of `key`, if present.
    public subscript(key: String) -> JSONValue? {
        get { fields[key] }
        set { fields[key] = newValue }
    }

    /// The value of a required key, as `type`.
    public func value<T: ConfigValue>(_ key: String, as type: T.Type = T.self) throws(CheckpointError) -> T {
        guard let raw = fields[key] else { throw .missingConfigKey(dotted(key)) }
        return try convert(raw, key)
    }

    /// The value of an optional key: `defaultValue` when it is missing or null.
    public func value<T: ConfigValue>(_ key: String, default defaultValue: T) throws(CheckpointError) -> T {
        guard let raw = fields[key], raw != .null else { return defaultValue }
        return try convert(raw, key)
    }

    /// A nested configuration object (`text_config`, `vision_config`, ...).
    public func section(_ key: String) throws(CheckpointError) -> PretrainedConfig {
        guard let raw = fields[key] else { throw .missingConfigKey(dotted(key)) }
        guard case .object(let nested) = raw else { throw .wrongConfigType(key: dotted(key), expected: "an object", found: raw.typeName) }
        return PretrainedConfig(nested, path: dotted(key))
    }

    /// The file's text as `transformers` writes it (`json.dumps(indent=2, sort_keys=True)` plus a newline).
    public func jsonData() -> Data {
        Data((JSONValue.object(fields).pythonJSONText() + "\n").utf8)
    }

    /// Writes `config.json` atomically.
    public func write(to url: URL) throws(CheckpointError) {
        try AtomicFile.write(jsonData(), to: url)
    }

    private func dotted(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private func convert<T: ConfigValue>(_ raw: JSONValue, _ key: String) throws(CheckpointError) -> T {
        guard let value = T(configValue: raw) else {
            var found = raw.typeName
            if case .array(let items) = raw, !items.isEmpty {
                var kinds: [String] = []
                for item in items where !kinds.contains(item.typeName) { kinds.append(item.typeName) }
                found += " of " + kinds.joined(separator: " and ")
            }
            throw .wrongConfigType(key: dotted(key), expected: T.configTypeName, found: found)
        }
        return value
    }
}

/// A type a configuration value can be read as: `Int`, `Float`, `Double`, `String`, `Bool`,
/// arrays and optionals of them (null reads as nil), or ``JSONValue`` itself. A model family
/// can add its own:
///
/// ```swift
/// enum Activation: String, ConfigValue {
///     case gelu, relu
///     static var configTypeName: String { "Activation" }
///     init?(configValue: JSONValue) {
///         guard case .string(let name) = configValue else { return nil }
///         self.init(rawValue: name)
///     }
/// }
/// let activation = try config.value("hidden_act", as: Activation.self)   // .gelu
/// ```
public protocol ConfigValue {
    /// The name used in ``CheckpointError/wrongConfigType(key:expected:found:)``.
    static var configTypeName: String { get }
    /// The value, or nil when `configValue` has another type.
    init?(configValue: JSONValue)
}

extension Int: ConfigValue {
    public static var configTypeName: String { "Int" }
    public init?(configValue: JSONValue) {
        switch configValue {
        case .int(let i): self = i
        case .double(let d): guard let i = Int(exactly: d) else { return nil }; self = i
        default: return nil
        }
    }
}

extension Double: ConfigValue {
    public static var configTypeName: String { "Double" }
    public init?(configValue: JSONValue) {
        switch configValue {
        case .int(let i): self = Double(i)
        case .double(let d): self = d
        default: return nil
        }
    }
}

extension Float: ConfigValue {
    public static var configTypeName: String { "Float" }
    public init?(configValue: JSONValue) {
        guard let d = Double(configValue: configValue) else { return nil }
        // A finite number beyond Float's range is not a Float (rather than silently infinite).
        guard !d.isFinite || abs(d) <= Double(Float.greatestFiniteMagnitude) else { return nil }
        self = Float(d)
    }
}

extension String: ConfigValue {
    public static var configTypeName: String { "String" }
    public init?(configValue: JSONValue) {
        guard case .string(let s) = configValue else { return nil }
        self = s
    }
}

extension Bool: ConfigValue {
    public static var configTypeName: String { "Bool" }
    public init?(configValue: JSONValue) {
        guard case .bool(let b) = configValue else { return nil }
        self = b
    }
}

extension JSONValue: ConfigValue {
    public static var configTypeName: String { "any JSON value" }
    public init?(configValue: JSONValue) { self = configValue }
}

extension Array: ConfigValue where Element: ConfigValue {
    public static var configTypeName: String { "[\(Element.configTypeName)]" }
    public init?(configValue: JSONValue) {
        guard case .array(let items) = configValue else { return nil }
        var result: [Element] = []
        for item in items {
            guard let element = Element(configValue: item) else { return nil }
            result.append(element)
        }
        self = result
    }
}

extension Optional: ConfigValue where Wrapped: ConfigValue {
    public static var configTypeName: String { "\(Wrapped.configTypeName)?" }
    public init?(configValue: JSONValue) {
        if configValue == .null { self = .none; return }
        guard let wrapped = Wrapped(configValue: configValue) else { return nil }
        self = .some(wrapped)
    }
}
