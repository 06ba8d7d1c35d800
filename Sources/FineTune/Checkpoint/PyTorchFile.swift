import Foundation

/// A file written by `torch.save` (`.pt`, `.pth`, `pytorch_model.bin`): a zip archive holding
/// a pickle (`data.pkl`) and one record per tensor storage (`data/0`, `data/1`, ...).
///
/// The pickle is read by a Swift copy of PyTorch's weights-only unpickler: it accepts exactly
/// the opcodes and globals `torch.load(weights_only=True)` accepts and never executes anything,
/// so a pickled module or a malicious file throws ``CheckpointError/disallowedGlobal(_:)`` or
/// ``CheckpointError/disallowedOpcode(_:)``. Tensors of every dtype FineTune converts (F32,
/// F16, BF16, F64, the integer types, bool) are read as Float32, with their storage offsets and
/// strides (non-contiguous saves, several tensors sharing one storage). Nested dicts and lists
/// are flattened into dotted keys (`{"model": {"fc.weight": ...}}` gives `model.fc.weight`);
/// values that are not tensors (epoch counters, hyper-parameters) are skipped.
///
/// Legacy pre-1.6 files throw ``CheckpointError/legacyPyTorchFormat``, files saved on a
/// big-endian machine ``CheckpointError/bigEndianPyTorchFile``; anything damaged or hostile
/// throws ``CheckpointError/unreadablePyTorchFile(reason:)``, never crashes.
///
/// ```swift
/// let file = try PyTorchFile(contentsOf: URL(fileURLWithPath: "resnet18-f37072fd.pth"))
/// file.entries["conv1.weight"]?.dtype          // "float32"
/// let report = try model.load(from: file)      // key and shape checks as for safetensors
/// ```
public struct PyTorchFile: TensorArchive {
    /// One tensor of the file, before conversion.
    public struct Entry: Equatable, Sendable {
        /// PyTorch's dtype name (`"float32"`, `"bfloat16"`, `"int64"`, ...).
        public var dtype: String
        public var shape: [Int]
        /// Elements to skip per step along each dimension, as saved (non-contiguous views keep theirs).
        public var strides: [Int]
        /// Elements between the start of the storage and the first element.
        public var storageOffset: Int
        /// The storage record (`data/<key>`): tensors with the same key are views of one storage.
        public var storageKey: String
    }

    /// The tensors by dotted key.
    public let entries: [String: Entry]
    /// The `version` record of the archive.
    public let formatVersion: Int
    private let tensors: [String: PickleTensor]
    private let file: Data

    /// Tensor names, sorted.
    public var keys: [String] { entries.keys.sorted() }

    /// The newest archive format version PyTorch reads (`kMaxSupportedFileFormatVersion`).
    static let newestFormatVersion = 10

    /// Reads and validates a file (memory-mapped when the system allows).
    public init(contentsOf url: URL) throws(CheckpointError) {
        try self.init(data: CheckpointFile.read(url))
    }

    /// Parses and validates the bytes of a file.
    public init(data: Data) throws(CheckpointError) {
        let data = data.startIndex == 0 ? data : Data(data)
        guard ZipArchive.looksLikeZip(data) else { throw Self.notAZipError(data) }
        let zip = try ZipArchive(data)
        guard let first = zip.entries.first, let slash = first.name.firstIndex(of: "/") else {
            throw .unreadablePyTorchFile(reason: "the zip archive has no top-level folder, as torch.save writes")
        }
        let prefix = String(first.name[...slash])
        if let stray = zip.entries.first(where: { !$0.name.hasPrefix(prefix) }) {
            throw .unreadablePyTorchFile(reason: "zip entry \(stray.name) is outside the archive folder \(prefix)")
        }
        func record(_ name: String) -> Data? { zip.entry(prefix + name).map(zip.contents) }
        func text(_ name: String) -> String? {
            record(name).map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
        }

        guard let pickle = record("data.pkl") else {
            if record("constants.pkl") != nil || zip.entries.contains(where: { $0.name.hasPrefix(prefix + "code/") }) {
                throw .unreadablePyTorchFile(reason: "this is a TorchScript archive (torch.jit.save); in PyTorch, load it "
                                             + "with torch.jit.load and save model.state_dict() with torch.save")
            }
            throw .unreadablePyTorchFile(reason: "the archive has no data.pkl record")
        }
        switch text("byteorder") {
        case nil, "little": break
        case "big": throw .bigEndianPyTorchFile
        case let order?: throw .unreadablePyTorchFile(reason: "unknown byteorder \(order)")
        }
        guard let versionText = text(".data/version") ?? text("version"), let version = Int(versionText),
              (1...Self.newestFormatVersion).contains(version) else {
            throw .unreadablePyTorchFile(reason: "the archive's version record is missing or not a supported version")
        }

        var storages: [String: PickleStorage] = [:]
        let graph = try WeightsOnlyUnpickler.load([UInt8](pickle)) { id throws(CheckpointError) in
            let storage = try Self.storage(id, in: zip, prefix: prefix)
            // The first reference to a key decides its type, as in torch.load.
            if let existing = storages[storage.key] { return existing }
            storages[storage.key] = storage
            return storage
        }
        var flattener = Flattener(graph: graph, budget: 16 * pickle.count + 1_024)
        try flattener.visit(graph.root, path: nil, depth: 0)

        self.tensors = flattener.tensors
        self.entries = flattener.tensors.mapValues {
            Entry(dtype: $0.dtype.name, shape: $0.shape, strides: $0.strides, storageOffset: $0.offset, storageKey: $0.storage.key)
        }
        self.formatVersion = version
        self.file = data
    }

    public func shape(of key: String) -> [Int]? { entries[key]?.shape }

    /// The tensor named `key`, converted to Float32 (a contiguous copy, whatever its strides).
    public func tensor(_ key: String) throws(CheckpointError) -> Tensor {
        guard let source = tensors[key] else { throw .missingTensor(key: key) }
        guard let dtype = source.dtype.readable, let read = ElementCodec.reader(for: dtype) else {
            throw .unsupportedDType(key: key, dtype: source.dtype.name)
        }
        let count = Shape.count(source.shape)
        guard count > 0 else { return Tensor(zeros: source.shape) }
        // Convert the storage elements the view reaches, then gather them in row-major order.
        let span = source.span, size = source.dtype.size
        let start = source.storage.dataRange.lowerBound + source.offset * size
        var elements = Tensor(uninitialized: [span])
        file.withUnsafeBytes { raw in
            let bytes = UnsafeRawBufferPointer(rebasing: raw[start..<start + span * size])
            elements.withUnsafeMutableBufferPointer { read(bytes, $0) }
        }
        return Tensor(storage: elements.storage, shape: source.shape, strides: source.strides, offset: 0).contiguousData()
    }

    // MARK: Validation

    /// The error for a file that is not a zip archive: the legacy format, or something else.
    private static func notAZipError(_ data: Data) -> CheckpointError {
        // Legacy torch.save: a pickled magic number (PROTO n, LONG1 of 10 bytes 0x1950a86a20f9469cfc6c),
        // or the even older tar archive.
        let magic: [UInt8] = [0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
        if data.count >= 14, data[0] == 0x80, data[2..<14].elementsEqual(magic) { return .legacyPyTorchFormat }
        if data.count >= 262, data[257..<262].elementsEqual("ustar".utf8) { return .legacyPyTorchFormat }
        if data.count >= 9, data[8] == UInt8(ascii: "{") {
            return .unreadablePyTorchFile(reason: "not a zip archive (this looks like a safetensors file: read it with SafeTensors)")
        }
        return .unreadablePyTorchFile(reason: "not a zip archive written by torch.save")
    }

    /// torch.load's `persistent_load`: `("storage", storage_type, key, location, numel)`.
    private static func storage(_ id: PickleValue, in zip: ZipArchive, prefix: String) throws(CheckpointError) -> PickleStorage {
        func invalid(_ reason: String) -> CheckpointError { .unreadablePyTorchFile(reason: "pickle: \(reason)") }
        guard case .tuple(let fields) = id, fields.count == 5 else { throw invalid("a persistent id is not a 5-tuple") }
        let typename: String?
        switch fields[0] {
        case .string(let name): typename = name
        case .bytes(let raw): typename = String(validating: raw, as: UTF8.self)
        default: typename = nil
        }
        guard typename == "storage" else { throw invalid("only storages may be loaded by persistent id") }
        guard case .global(let storageClass) = fields[1], case .string(let key) = fields[2], case .int(let count) = fields[4],
              count >= 0 else {
            throw invalid("a storage id is not (\"storage\", class, key, location, numel)")
        }
        let dtype: TorchDType?
        if storageClass == "torch.storage.UntypedStorage" {
            dtype = nil
        } else if let typed = TorchDType.byStorageClass[storageClass] {
            dtype = typed
        } else {
            throw invalid("\(storageClass) is not a storage class")
        }
        guard let entry = zip.entry("\(prefix)data/\(key)") else { throw invalid("storage \(key) has no data/\(key) record") }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype?.size ?? 1)
        guard !overflow, bytes == entry.dataRange.count else {
            throw invalid("storage \(key) should hold \(count) elements but its record has \(entry.dataRange.count) bytes")
        }
        return PickleStorage(key: key, dtype: dtype, dataRange: entry.dataRange)
    }
}

/// Collects the tensors of an unpickled object graph under dotted keys.
///
/// Each list or dict is expanded once: one holding tensors that is reached twice would give
/// the same tensors two names, which is refused; a cycle is not followed. The nodes visited
/// are bounded by `budget` (tuples are values, so memoised tuples could otherwise multiply).
private struct Flattener {
    let graph: PickleGraph
    var budget: Int
    var tensors: [String: PickleTensor] = [:]
    /// Containers expanded so far (list ids even, dict ids odd), and whether they held tensors.
    private var expanded: [Int: Bool] = [:]

    init(graph: PickleGraph, budget: Int) {
        self.graph = graph
        self.budget = budget
    }

    mutating func visit(_ value: PickleValue, path: String?, depth: Int) throws(CheckpointError) {
        budget -= 1
        guard budget >= 0, depth <= 200 else { throw invalid("the object graph is too large or too deep") }
        switch value {
        case .tensor(let tensor):
            guard let path else { throw invalid("the file holds a single tensor, not a state dict") }
            guard tensors.updateValue(tensor, forKey: path) == nil else { throw invalid("two tensors are named \(path)") }
        case .emptyTensor:
            throw invalid("\(path ?? "the root") is a tensor without storage")
        case .unsupportedTensor(let kind):
            throw invalid("\(path ?? "the root") is a \(kind), which FineTune cannot read")
        case .tuple(let items):
            for (i, item) in items.enumerated() { try visit(item, path: Self.join(path, "\(i)"), depth: depth + 1) }
        case .list(let id):
            try expand(container: 2 * id, path: path) { this throws(CheckpointError) in
                for (i, item) in this.graph.lists[id].enumerated() { try this.visit(item, path: Self.join(path, "\(i)"), depth: depth + 1) }
            }
        case .dict(let id):
            try expand(container: 2 * id + 1, path: path) { this throws(CheckpointError) in
                for (key, item) in this.graph.dicts[id].entries {
                    let component: String
                    switch key {
                    case .string(let name): component = name
                    case .int(let index): component = "\(index)"
                    default: continue    // keys FineTune cannot name hold no weights it could load
                    }
                    try this.visit(item, path: Self.join(path, component), depth: depth + 1)
                }
            }
        default:
            guard path != nil else { throw invalid("the file holds \(value.kind), not a state dict") }
        }
    }

    private mutating func expand(container: Int, path: String?,
                                 _ body: (inout Flattener) throws(CheckpointError) -> Void) throws(CheckpointError) {
        if let heldTensors = expanded[container] {
            // Seen before: a cycle (still expanding, marked false) or a second reference.
            guard !heldTensors else { throw invalid("the same container of tensors is referenced again at \(path ?? "the root")") }
            return
        }
        expanded[container] = false
        let before = tensors.count
        try body(&self)
        expanded[container] = tensors.count > before
    }

    private static func join(_ path: String?, _ component: String) -> String {
        path.map { "\($0).\(component)" } ?? component
    }

    private func invalid(_ reason: String) -> CheckpointError { .unreadablePyTorchFile(reason: reason) }
}
