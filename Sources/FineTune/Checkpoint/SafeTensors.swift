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
    /// The element types of the format. FineTune reads every type with whole-byte elements
    /// except the 8-bit floats and complex numbers, converting to Float32, and writes the
    /// ones in ``writable``.
    public enum DType: String, CaseIterable, Sendable {
        case bool = "BOOL", u8 = "U8", i8 = "I8", f8e5m2 = "F8_E5M2", f8e4m3 = "F8_E4M3", f8e8m0 = "F8_E8M0"
        case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16"
        case i32 = "I32", u32 = "U32", f32 = "F32"
        case i64 = "I64", u64 = "U64", f64 = "F64", c64 = "C64"
        case f4 = "F4", f6e2m3 = "F6_E2M3", f6e3m2 = "F6_E3M2"

        /// Bits per element.
        public var bits: Int {
            switch self {
            case .f4: return 4
            case .f6e2m3, .f6e3m2: return 6
            case .bool, .u8, .i8, .f8e5m2, .f8e4m3, .f8e8m0: return 8
            case .i16, .u16, .f16, .bf16: return 16
            case .i32, .u32, .f32: return 32
            case .i64, .u64, .f64, .c64: return 64
            }
        }

        /// The types ``SafeTensors/write(_:dtypes:metadata:to:)`` can store.
        public static let writable: Set<DType> = [.f32, .f16, .bf16, .f64, .i64, .i32]
    }

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
    /// another type from ``DType/writable`` for a key), with the tensors in name order.
    public static func encode(_ tensors: [String: Tensor], dtypes: [String: DType] = [:],
                              metadata: [String: String] = [:]) throws(CheckpointError) -> Data {
        let names = tensors.keys.sorted()
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            fields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        var layout: [(Tensor, DType, Range<Int>)] = []
        for name in names {
            guard name != "__metadata__" else { throw .malformed(reason: "a tensor cannot be named __metadata__") }
            let tensor = tensors[name]!, dtype = dtypes[name] ?? .f32
            guard DType.writable.contains(dtype) else { throw .unsupportedDType(key: name, dtype: dtype.rawValue) }
            let size = tensor.count * dtype.bits / 8
            layout.append((tensor, dtype, offset..<offset + size))
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            fields.append("\(jsonString(name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + size)]}")
            offset += size
        }
        var header = Array("{\(fields.joined(separator: ","))}".utf8)
        header += repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8)    // 8-byte aligned data
        var file = Data(count: 8 + header.count + offset)
        file.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt64(header.count).littleEndian, as: UInt64.self)
            raw.baseAddress!.advanced(by: 8).copyMemory(from: header, byteCount: header.count)
            let body = UnsafeMutableRawBufferPointer(rebasing: raw[(8 + header.count)...])
            for (tensor, dtype, range) in layout {
                tensor.withUnsafeBufferPointer { ElementCodec.write($0, as: dtype, into: UnsafeMutableRawBufferPointer(rebasing: body[range])) }
            }
        }
        return file
    }

    /// Writes a safetensors file atomically: a temporary file in the same directory, flushed,
    /// then renamed over `url`, so a crash or a full disk never leaves a half-written checkpoint.
    public static func write(_ tensors: [String: Tensor], dtypes: [String: DType] = [:], metadata: [String: String] = [:],
                             to url: URL) throws(CheckpointError) {
        try AtomicFile.write(try encode(tensors, dtypes: dtypes, metadata: metadata), to: url)
    }

    // MARK: Validation

    private static func entry(_ key: String, _ value: Any) throws(CheckpointError) -> Entry {
        guard let fields = value as? [String: Any] else { throw .malformed(reason: "entry \(key) is not an object") }
        guard let name = fields["dtype"] as? String else { throw .malformed(reason: "entry \(key) has no dtype") }
        guard let dtype = DType(rawValue: name) else { throw .malformed(reason: "entry \(key) has unknown dtype \(name)") }
        guard let shape = integers(fields["shape"]), shape.allSatisfy({ $0 >= 0 }) else {
            throw .malformed(reason: "entry \(key) has no valid shape")
        }
        guard let offsets = integers(fields["data_offsets"]), offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1] else {
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
    private static func integers(_ value: Any?) -> [Int]? {
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
