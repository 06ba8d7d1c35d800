/// Why a selection or an edit of a module tree (freezing by pattern, replacing a module,
/// LoRA and adapters) was refused.
public enum SelectionError: Error, Equatable, CustomStringConvertible {
    /// The pattern matched no parameter: a typo must not silently select nothing.
    case noMatch(pattern: String, examples: [String])
    /// The pattern is not a valid glob or regular expression.
    case invalidPattern(String)
    /// A depth or child index outside the module's children.
    case outOfRange(String)
    /// No module at this dotted path.
    case noModule(path: String, examples: [String])
    /// The module at `path` is not of a kind the operation supports.
    case unsupportedModule(path: String, type: String, expected: String)
    /// The replacement is not of the type the parent declares for that child.
    case incompatibleReplacement(path: String, property: String, expected: String, actual: String)
    /// The parent holds the child in a plain property; declare it `@Child var` to replace it.
    case notReplaceable(path: String, property: String)
    /// The new module contains the parent it would be placed in.
    case wouldCreateCycle(path: String)

    public var description: String {
        switch self {
        case .noMatch(let p, let examples):
            return "\(p) matches no parameter; names look like: \(examples.joined(separator: ", "))"
        case .invalidPattern(let p): return "invalid pattern \(p)"
        case .outOfRange(let why): return why
        case .noModule(let path, let examples):
            return "no module at \"\(path)\"; module paths look like: \(examples.joined(separator: ", "))"
        case .unsupportedModule(let path, let type, let expected):
            return "\(path) is a \(type), expected \(expected)"
        case let .incompatibleReplacement(path, property, expected, actual):
            return "cannot place a \(actual) at \(path): \(property) is declared \(expected)"
        case let .notReplaceable(path, property):
            return "cannot replace \(path): \(property) is a plain property; declare it `@Child var` to make it replaceable"
        case let .wouldCreateCycle(path):
            return "cannot place the module at \(path): it contains the module it would be placed in"
        }
    }
}
