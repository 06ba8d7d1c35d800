import Foundation

/// Selects parameters by dotted name: a glob or a regular expression.
///
/// Glob syntax: `*` matches within one name segment (no dots), `**` matches across segments,
/// `?` one character. A glob that matches a module path selects every parameter under it, so
/// `backbone` and `backbone.*` select all of the backbone, `**.bias` every bias and
/// `encoder.layers.*.attn.**` the attention of every layer.
///
/// ```swift
/// try model.freeze(matching: "backbone.*")
/// try model.unfreeze(matching: .regex(#"layer4\..*"#))
/// ```
public enum ParameterPattern: Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    case glob(String)
    case regex(String)

    public init(stringLiteral value: String) { self = .glob(value) }

    public var description: String {
        switch self {
        case .glob(let g): return "glob \"\(g)\""
        case .regex(let r): return "regex /\(r)/"
        }
    }

    /// Whether the pattern selects the parameter `name` (directly or through a module prefix).
    /// A regex must match the whole name (as `re.fullmatch`): `layer1|layer1\..*` selects
    /// `layer1.weight` through its second alternative.
    public func matches(_ name: String) throws(SelectionError) -> Bool {
        let regex = try compiled()
        let segments = name.split(separator: ".", omittingEmptySubsequences: false)
        for end in stride(from: segments.count, through: 1, by: -1) {
            let candidate = segments[0..<end].joined(separator: ".")
            // The expression is anchored (^(?:...)$), so any match is a whole-name match: every
            // alternative is tried, not only the first one that matches a prefix.
            if regex.firstMatch(in: candidate, range: NSRange(candidate.startIndex..., in: candidate)) != nil { return true }
            if case .regex = self { break }   // a regex is matched against full names only
        }
        return false
    }

    private func compiled() throws(SelectionError) -> NSRegularExpression {
        let source: String
        switch self {
        case .regex(let r): source = r
        case .glob(let g): source = ParameterPattern.regexSource(forGlob: g)
        }
        do {
            return try NSRegularExpression(pattern: "^(?:\(source))$")
        } catch {
            throw .invalidPattern(description)
        }
    }

    static func regexSource(forGlob glob: String) -> String {
        var out = ""
        var chars = Array(glob)[...]
        while let c = chars.popFirst() {
            switch c {
            case "*":
                if chars.first == "*" {
                    chars.removeFirst()
                    if chars.first == "." { chars.removeFirst(); out += "(?:.*\\.)?" } else { out += ".*" }
                } else {
                    out += "[^.]*"
                }
            case "?": out += "[^.]"
            default: out += NSRegularExpression.escapedPattern(for: String(c))
            }
        }
        return out
    }
}
