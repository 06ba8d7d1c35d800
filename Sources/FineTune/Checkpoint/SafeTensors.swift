import Foundation

/// A safetensors file: named tensors plus optional string metadata, the format Hugging Face
/// and PyTorch users exchange weights in (`safetensors.torch.save_file`).
///
/// The layout is an 8-byte little-endian header length, a JSON header
/// (`{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "__metadata__": {...}}`)
/// and the raw little-endian tensor bytes. Every field is checked before any tensor is read:
/// a truncated, oversized or malicious file throws ``CheckpointError/malformed(reason:)``,
/// never crashes.
///
/// ```swift
/// let file = try SafeTensors(contentsOf: URL(fileURLWithPath: "model.safetensors"))
/// file.keys                                  // ["0.bias", "0.weight", ...]
/// let w = try file.tensor("0.weight")        // converted to Float32 (F16, BF16, I64 ... too)
/// try SafeTensors.write(["w": w], to: URL(fileURLWithPath: "copy.safetensors"))
/// ```
public struct SafeTensors: Sendable {
    /// One tensor's header entry.
    public struct Entry: Equatable, Sendable {
        public var dtype: DType
        public var shape: [Int]
        /// Byte range inside the data section.
        public var byteRange: Range<Int>
    }

    /// The largest header accepted (the reference implementation's limit).
    public static let maximumHeaderBytes = 100_000_000

    /// The `__metadata__` strings (e.g. `{"format": "pt"}`).
    public let metadata: [String: String]
    /// Header entries by tensor name.
    public let entries: [String: Entry]
    /// The tensor bytes (everything after the header).
    private let data: Data

    /// Tensor names, sorted.
    public var keys: [String] { entries.keys.sorted() }

    /// Reads and validates a file (memory-mapped when the system allows).
    public init(contentsOf url: URL) throws(CheckpointError) {
        let bytes: Data
        do {
            bytes = try Data(contentsOf: url, options: .mappedIfSafe)
        } catch {
            throw .io(path: url.path, reason: Self.reason(error))
        }
        try self.init(data: bytes)
    }

    /// Parses and validates the bytes of a file.
    public init(data file: Data) throws(CheckpointError) {
        let file = file.startIndex == 0 ? file : Data(file)    // indices from 0 below
        guard file.count >= 8 else { throw .malformed(reason: "\(file.count) bytes is too short for the 8-byte header length") }
        let length = file.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard length <= UInt64(Self.maximumHeaderBytes) else {
            throw .malformed(reason: "header length \(length) exceeds the \(Self.maximumHeaderBytes)-byte limit")
        }
        let headerEnd = 8 + Int(length)
        guard headerEnd <= file.count else {
            throw .malformed(reason: "header length \(length) runs past the end of the \(file.count)-byte file (truncated?)")
        }
        guard length >= 2, file[8] == UInt8(ascii: "{") else { throw .malformed(reason: "the header is not a JSON object") }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: file.subdata(in: 8..<headerEnd))
        } catch {
            throw .malformed(reason: "the header is not valid JSON")
        }
        guard let header = json as? [String: Any] else { throw .malformed(reason: "the header is not a JSON object") }

        var metadata: [String: String] = [:]
        var entries: [String: Entry] = [:]
        for (key, value) in header {
            if key == "__metadata__" {
                guard let strings = value as? [String: Any] else { throw .malformed(reason: "__metadata__ is not an object") }
                for (name, text) in strings {
                    guard let text = text as? String else { throw .malformed(reason: "__metadata__.\(name) is not a string") }
                    metadata[name] = text
                }
            } else {
                entries[key] = try Self.entry(key, value)
            }
        }
        try Self.checkCoverage(entries, dataBytes: file.count - headerEnd)
        self.metadata = metadata
        self.entries = entries
        self.data = file.subdata(in: headerEnd..<file.count)
    }

    /// The tensor named `key`, converted to Float32.
    public func tensor(_ key: String) throws(CheckpointError) -> Tensor {
        guard let entry = entries[key] else { throw .missingTensor(key: key) }
        guard let read = ElementCodec.reader(for: entry.dtype) else {
            throw .unsupportedDType(key: key, dtype: entry.dtype.rawValue)
        }
        var tensor = Tensor(uninitialized: entry.shape)
        data.withUnsafeBytes { raw in
            let bytes = UnsafeRawBufferPointer(rebasing: raw[entry.byteRange])
            tensor.withUnsafeMutableBufferPointer { read(bytes, $0) }
        }
        return tensor
    }

    /// Every tensor, converted to Float32.
    public func tensors() throws(CheckpointError) -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        for key in keys { result[key] = try tensor(key) }
        return result
    }

    // MARK: Writing

    /// The bytes of a safetensors file holding `tensors` (Float32 unless `dtypes` names
    /// another type from ``DType/writable`` for a key) and `integers` (I64, exactly), with the
    /// tensors in name order.
    public static func encode(_ tensors: [String: Tensor], dtypes: [String: DType] = [:], integers: [String: Integers] = [:],
                              metadata: [String: String] = [:]) throws(CheckpointError) -> Data {
        var payloads = integers.mapValues { Payload.integers($0) }
        for (name, tensor) in tensors {
            guard payloads[name] == nil else { throw .malformed(reason: "\(name) is given both as a tensor and as integers") }
            payloads[name] = .floats(tensor, dtypes[name] ?? .f32)
        }
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            fields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        var layout: [(Payload, Range<Int>)] = []
        for name in payloads.keys.sorted() {
            guard name != "__metadata__" else { throw .malformed(reason: "a tensor cannot be named __metadata__") }
            let payload = payloads[name]!
            guard DType.writable.contains(payload.dtype) else { throw .unsupportedDType(key: name, dtype: payload.dtype.rawValue) }
            let size = Shape.count(payload.shape) * payload.dtype.bits / 8
            layout.append((payload, offset..<offset + size))
            let shape = payload.shape.map(String.init).joined(separator: ",")
            fields.append("\(jsonString(name)):{\"dtype\":\"\(payload.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + size)]}")
            offset += size
        }
        var header = Array("{\(fields.joined(separator: ","))}".utf8)
        header += repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8)    // 8-byte aligned data
        var file = Data(count: 8 + header.count + offset)
        file.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt64(header.count).littleEndian, as: UInt64.self)
            raw.baseAddress!.advanced(by: 8).copyMemory(from: header, byteCount: header.count)
            let body = UnsafeMutableRawBufferPointer(rebasing: raw[(8 + header.count)...])
            for (payload, range) in layout {
                let destination = UnsafeMutableRawBufferPointer(rebasing: body[range])
                switch payload {
                case let .floats(tensor, dtype):
                    tensor.withUnsafeBufferPointer { ElementCodec.write($0, as: dtype, into: destination) }
                case let .integers(integers):
                    for (i, value) in integers.values.enumerated() {
                        destination.storeBytes(of: value.littleEndian, toByteOffset: i * 8, as: Int64.self)
                    }
                }
            }
        }
        return file
    }

    /// Writes a safetensors file atomically: a temporary file in the same directory, flushed,
    /// then renamed over `url`, so a crash or a full disk never leaves a half-written checkpoint.
    public static func write(_ tensors: [String: Tensor], dtypes: [String: DType] = [:], integers: [String: Integers] = [:],
                             metadata: [String: String] = [:], to url: URL) throws(CheckpointError) {
        try AtomicFile.write(try encode(tensors, dtypes: dtypes, integers: integers, metadata: metadata), to: url)
    }

    /// What ``encode(_:dtypes:integers:metadata:)`` writes under one name.
    private enum Payload {
        case floats(Tensor, DType)
        case integers(Integers)

        var dtype: DType {
            switch self {
            case .floats(_, let dtype): return dtype
            case .integers: return .i64
            }
        }

        var shape: [Int] {
            switch self {
            case .floats(let tensor, _): return tensor.shape
            case .integers(let integers): return integers.shape
            }
        }
    }

    // MARK: Exact integers

    /// An integer tensor held exactly (64-bit), for counters such as optimizer step counts,
    /// which Float32 would round beyond 2^24. Written as I64.
    ///
    /// ```swift
    /// let data = try SafeTensors.encode([:], integers: ["steps": .init(40_000_001)])
    /// try SafeTensors(data: data).integers("steps").values     // [40000001]
    /// ```
    public struct Integers: Equatable, Sendable {
        public let shape: [Int]
        /// The elements in row-major order.
        public let values: [Int64]

        /// A tensor of `shape` holding `values` in row-major order.
        public init(shape: [Int], values: [Int64]) {
            precondition(shape.allSatisfy { $0 >= 0 } && Shape.count(shape) == values.count,
                         "SafeTensors.Integers: \(values.count) values for shape \(shape)")
            self.shape = shape
            self.values = values
        }

        /// A 0-D tensor holding `value`.
        public init(_ value: Int64) { self.init(shape: [], values: [value]) }
    }

    /// The tensor named `key` as exact integers. Integer dtypes are read as stored (a U64
    /// value above `Int64.max` throws); float dtypes are accepted when every element is a
    /// whole number in range, so counts once written as floats still read. Other values throw
    /// ``CheckpointError/malformed(reason:)``, unreadable dtypes ``CheckpointError/unsupportedDType(key:dtype:)``.
    public func integers(_ key: String) throws(CheckpointError) -> Integers {
        guard let entry = entries[key] else { throw .missingTensor(key: key) }
        guard ElementCodec.reader(for: entry.dtype) != nil else { throw .unsupportedDType(key: key, dtype: entry.dtype.rawValue) }
        let count = Shape.count(entry.shape)
        let values: [Int64]? = data.withUnsafeBytes { raw in
            let bytes = UnsafeRawBufferPointer(rebasing: raw[entry.byteRange])
            func read<T: FixedWidthInteger>(_: T.Type) -> [Int64]? {
                var out: [Int64] = []
                out.reserveCapacity(count)
                for i in 0..<count {
                    let value = T(littleEndian: bytes.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
                    guard let exact = Int64(exactly: value) else { return nil }
                    out.append(exact)
                }
                return out
            }
            switch entry.dtype {
            case .i64: return read(Int64.self)
            case .u64: return read(UInt64.self)
            case .i32: return read(Int32.self)
            case .u32: return read(UInt32.self)
            case .i16: return read(Int16.self)
            case .u16: return read(UInt16.self)
            case .i8: return read(Int8.self)
            case .u8, .bool: return read(UInt8.self)
            case .f64:
                return (0..<count).map { i in
                    Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)))
                }.wholeNumbers()
            default:    // F32, F16, BF16: every value is exact as a Float
                return (try? tensor(key))?.scalars.map(Double.init).wholeNumbers()
            }
        }
        guard let values else {
            throw .malformed(reason: "\(key) (\(entry.dtype.rawValue)) does not hold integers that fit in Int64")
        }
        return Integers(shape: entry.shape, values: values)
    }

    // MARK: Validation

    private static func entry(_ key: String, _ value: Any) throws(CheckpointError) -> Entry {
        guard let fields = value as? [String: Any] else { throw .malformed(reason: "entry \(key) is not an object") }
        guard let name = fields["dtype"] as? String else { throw .malformed(reason: "entry \(key) has no dtype") }
        guard let dtype = DType(rawValue: name) else { throw .malformed(reason: "entry \(key) has unknown dtype \(name)") }
        guard let shape = jsonIntegers(fields["shape"]), shape.allSatisfy({ $0 >= 0 }) else {
            throw .malformed(reason: "entry \(key) has no valid shape")
        }
        guard let offsets = jsonIntegers(fields["data_offsets"]), offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1] else {
            throw .malformed(reason: "entry \(key) has no valid data_offsets")
        }
        var count = 1
        for dimension in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow, product <= Int.max / 64 else { throw .malformed(reason: "entry \(key) has an impossibly large shape \(shape)") }
            count = product
        }
        guard (count * dtype.bits) % 8 == 0, offsets[1] - offsets[0] == count * dtype.bits / 8 else {
            throw .malformed(reason: "entry \(key): \(shape) of \(name) needs \(count * dtype.bits / 8) bytes, "
                             + "data_offsets give \(offsets[1] - offsets[0])")
        }
        return Entry(dtype: dtype, shape: shape, byteRange: offsets[0]..<offsets[1])
    }

    /// JSON integers (a float, string or nested value fails).
    private static func jsonIntegers(_ value: Any?) -> [Int]? {
        guard let array = value as? [Any] else { return nil }
        var result: [Int] = []
        for element in array {
            guard let int = element as? Int else { return nil }
            result.append(int)
        }
        return result
    }

    /// The tensors must tile the data section exactly: no gaps, no overlaps, nothing after.
    private static func checkCoverage(_ entries: [String: Entry], dataBytes: Int) throws(CheckpointError) {
        var position = 0
        for (key, entry) in entries.sorted(by: { ($0.value.byteRange.lowerBound, $0.key) < ($1.value.byteRange.lowerBound, $1.key) }) {
            guard entry.byteRange.lowerBound == position else {
                throw .malformed(reason: entry.byteRange.lowerBound < position
                                 ? "entry \(key) overlaps the previous tensor's bytes"
                                 : "a gap of unused bytes before entry \(key)")
            }
            position = entry.byteRange.upperBound
        }
        guard position == dataBytes else {
            throw .malformed(reason: position > dataBytes
                             ? "tensor data needs \(position) bytes but the file holds \(dataBytes) (truncated?)"
                             : "\(dataBytes - position) bytes after the last tensor")
        }
    }

    /// JSON string literal with the escapes JSON requires.
    private static func jsonString(_ text: String) -> String { JSONValue.quoted(text, asciiOnly: false) }

    static func reason(_ error: any Error) -> String {
        (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
    }
}

private extension Array where Element == Double {
    /// The elements as Int64 when every one is a whole number in range, else nil.
    func wholeNumbers() -> [Int64]? {
        var out: [Int64] = []
        out.reserveCapacity(count)
        for value in self {
            guard let exact = Int64(exactly: value) else { return nil }
            out.append(exact)
        }
        return out
    }
}
