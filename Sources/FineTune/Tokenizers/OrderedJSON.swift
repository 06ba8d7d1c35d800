/// A parsed JSON value. Objects keep their members in file order with the keys exactly as
/// written: a vocabulary may hold two tokens that Swift's `String` equality would merge (a
/// precomposed "é" and "e" + U+0301), which a `[String: Any]` from `JSONSerialization` would
/// silently collapse into one.
enum OrderedJSONValue: Sendable {
    case null
    case bool(Bool)
    /// The number, and its exact value when it is an integer literal that fits an `Int`.
    case number(Double, exactInteger: Int?)
    case string(String)
    case array([OrderedJSONValue])
    case object([(key: String, value: OrderedJSONValue)])

    /// The last member named `key` (as serde_json keeps the last of duplicate keys), or nil.
    subscript(key: String) -> OrderedJSONValue? {
        guard case .object(let members) = self else { return nil }
        let scalars = Array(key.unicodeScalars)
        return members.last { $0.key.unicodeScalars.elementsEqual(scalars) }?.value
    }

    var isNull: Bool { if case .null = self { true } else { false } }

    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// A strict JSON parser (RFC 8259) over UTF-8 bytes with a nesting limit; every malformed input
/// is a `TokenizerError.invalidJSON` naming the byte offset.
struct OrderedJSONParser {
    private let bytes: [UInt8]
    private let file: String
    private var position = 0
    private var depth = 0
    static let maximumDepth = 256

    /// Parses a whole document.
    static func parse(_ bytes: [UInt8], file: String) throws(TokenizerError) -> OrderedJSONValue {
        var parser = OrderedJSONParser(bytes: bytes, file: file)
        // A UTF-8 byte-order mark is tolerated, as Python's json module does with utf-8-sig.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { parser.position = 3 }
        let value = try parser.parseValue()
        parser.skipWhitespace()
        if parser.position != bytes.count { throw parser.error("unexpected data after the JSON value") }
        return value
    }

    private init(bytes: [UInt8], file: String) {
        self.bytes = bytes
        self.file = file
    }

    private func error(_ reason: String) -> TokenizerError {
        .invalidJSON(file: file, reason: "\(reason) at byte \(position)")
    }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws(TokenizerError) -> OrderedJSONValue {
        skipWhitespace()
        guard position < bytes.count else { throw error("unexpected end of data") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character")
        }
    }

    private mutating func expectLiteral(_ literal: String) throws(TokenizerError) {
        let expected = Array(literal.utf8)
        guard bytes[position...].starts(with: expected) else { throw error("invalid literal") }
        position += expected.count
    }

    private mutating func enterContainer() throws(TokenizerError) {
        depth += 1
        if depth > Self.maximumDepth { throw error("nesting deeper than \(Self.maximumDepth) levels") }
        position += 1
    }

    private mutating func parseObject() throws(TokenizerError) -> OrderedJSONValue {
        try enterContainer()
        defer { depth -= 1 }
        var members: [(key: String, value: OrderedJSONValue)] = []
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
            position += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw error("expected a member name") }
            let key = try parseString()
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
            position += 1
            members.append((key, try parseValue()))
            skipWhitespace()
            guard position < bytes.count else { throw error("unterminated object") }
            if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
            if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(members) }
            throw error("expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws(TokenizerError) -> OrderedJSONValue {
        try enterContainer()
        defer { depth -= 1 }
        var elements: [OrderedJSONValue] = []
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
            position += 1
            return .array(elements)
        }
        while true {
            elements.append(try parseValue())
            skipWhitespace()
            guard position < bytes.count else { throw error("unterminated array") }
            if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
            if bytes[position] == UInt8(ascii: "]") { position += 1; return .array(elements) }
            throw error("expected ',' or ']'")
        }
    }

    private mutating func parseString() throws(TokenizerError) -> String {
        position += 1  // the opening quote
        var utf8: [UInt8] = []
        while true {
            guard position < bytes.count else { throw error("unterminated string") }
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                position += 1
                break
            }
            if byte < 0x20 { throw error("control character in a string") }
            if byte != UInt8(ascii: "\\") {
                utf8.append(byte)
                position += 1
                continue
            }
            position += 1
            guard position < bytes.count else { throw error("unterminated escape") }
            let escape = bytes[position]
            position += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                var value = try parseHexQuad()
                if (0xD800...0xDBFF).contains(value) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                          bytes[position + 1] == UInt8(ascii: "u") else { throw error("unpaired surrogate escape") }
                    position += 2
                    let low = try parseHexQuad()
                    guard (0xDC00...0xDFFF).contains(low) else { throw error("unpaired surrogate escape") }
                    value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(value) {
                    throw error("unpaired surrogate escape")
                }
                utf8.append(contentsOf: Array(String(Unicode.Scalar(value)!).utf8))
            default:
                throw error("invalid escape")
            }
        }
        guard let string = String(validating: utf8, as: UTF8.self) else { throw error("invalid UTF-8 in a string") }
        return string
    }

    private mutating func parseHexQuad() throws(TokenizerError) -> UInt32 {
        guard position + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw error("invalid \\u escape")
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }

    private mutating func parseNumber() throws(TokenizerError) -> OrderedJSONValue {
        let start = position
        func digits() -> Int {
            let first = position
            while position < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) { position += 1 }
            return position - first
        }
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        let integerStart = position
        let integerDigits = digits()
        if integerDigits == 0 || (integerDigits > 1 && bytes[integerStart] == UInt8(ascii: "0")) {
            throw error("invalid number")
        }
        var isInteger = true
        if position < bytes.count && bytes[position] == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            if digits() == 0 { throw error("invalid number") }
        }
        if position < bytes.count && (bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E")) {
            isInteger = false
            position += 1
            if position < bytes.count && (bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-")) {
                position += 1
            }
            if digits() == 0 { throw error("invalid number") }
        }
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        guard let value = Double(text) else { throw error("invalid number") }
        return .number(value, exactInteger: isInteger ? Int(text) : nil)
    }
}
