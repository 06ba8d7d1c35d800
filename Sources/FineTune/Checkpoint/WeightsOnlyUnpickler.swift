import Foundation

/// A PyTorch element type as a pickle names it (`torch.float32`, or a storage class such as
/// `torch.HalfStorage`).
struct TorchDType: Equatable, Sendable {
    /// PyTorch's name without the `torch.` prefix (`"float32"`).
    var name: String
    /// Bytes per element.
    var size: Int
    /// The safetensors type with the same bytes, when FineTune converts it.
    var readable: DType?

    private static let readable: [(String, DType)] = [
        ("float32", .f32), ("float64", .f64), ("float16", .f16), ("bfloat16", .bf16), ("int64", .i64), ("int32", .i32),
        ("int16", .i16), ("int8", .i8), ("uint8", .u8), ("bool", .bool), ("uint16", .u16), ("uint32", .u32), ("uint64", .u64),
    ]
    /// Types PyTorch accepts that FineTune does not convert, with their element sizes.
    private static let unreadable: [(String, Int)] = [
        ("complex32", 4), ("bcomplex32", 4), ("complex64", 8), ("complex128", 16),
        ("float8_e4m3fn", 1), ("float8_e4m3fnuz", 1), ("float8_e5m2", 1), ("float8_e5m2fnuz", 1), ("float8_e8m0fnu", 1),
        ("float4_e2m1fn_x2", 1), ("qint8", 1), ("quint8", 1), ("qint32", 4), ("quint4x2", 1), ("quint2x4", 1),
        ("bits8", 1), ("bits16", 2), ("bits1x8", 1), ("bits2x4", 1), ("bits4x2", 1),
    ] + (1...7).flatMap { [("int\($0)", 1), ("uint\($0)", 1)] }

    /// Every dtype global by its pickle name (`"torch.float32"`).
    static let byGlobal: [String: TorchDType] = Dictionary(uniqueKeysWithValues:
        readable.map { ("torch.\($0.0)", TorchDType(name: $0.0, size: $0.1.bits / 8, readable: $0.1)) }
        + unreadable.map { ("torch.\($0.0)", TorchDType(name: $0.0, size: $0.1, readable: nil)) })

    /// Legacy typed-storage classes (`torch.FloatStorage`, `torch.cuda.FloatStorage`) and their dtypes.
    static let byStorageClass: [String: TorchDType] = {
        let classes = ["BFloat16": "bfloat16", "Bool": "bool", "Byte": "uint8", "Char": "int8", "ComplexDouble": "complex128",
                       "ComplexFloat": "complex64", "Double": "float64", "Float": "float32", "Half": "float16",
                       "Int": "int32", "Long": "int64", "Short": "int16"]
        let quantized = ["QInt32": "qint32", "QInt8": "qint8", "QUInt2x4": "quint2x4", "QUInt4x2": "quint4x2", "QUInt8": "quint8"]
        var table: [String: TorchDType] = [:]
        for (prefix, dtype) in classes {
            table["torch.\(prefix)Storage"] = byGlobal["torch.\(dtype)"]
            table["torch.cuda.\(prefix)Storage"] = byGlobal["torch.\(dtype)"]
        }
        for (prefix, dtype) in quantized { table["torch.\(prefix)Storage"] = byGlobal["torch.\(dtype)"] }
        return table
    }()

    static let uint8 = byGlobal["torch.uint8"]!
}

/// A storage a pickle refers to by persistent id: the `data/<key>` record of the archive.
struct PickleStorage: Equatable, Sendable {
    var key: String
    /// The element type of a typed storage; nil for `torch.storage.UntypedStorage` (bytes).
    var dtype: TorchDType?
    /// The record's bytes in the file.
    var dataRange: Range<Int>
}

/// A tensor rebuilt from a pickle: a strided view of a storage.
struct PickleTensor: Equatable, Sendable {
    var storage: PickleStorage
    var dtype: TorchDType
    /// Elements (of `dtype`) from the start of the storage.
    var offset: Int
    var shape: [Int]
    var strides: [Int]

    /// Elements from the offset to the last one the view reaches (1 for a scalar; the
    /// rebuild has checked that this cannot overflow).
    var span: Int { zip(shape, strides).reduce(1) { $0 + max($1.0 - 1, 0) * $1.1 } }
}

/// A value of the restricted unpickler. Lists and dicts live in the unpickler's arena and are
/// referred to by index, so APPEND/SETITEM after memoisation behave as in Python and a
/// self-referencing pickle cannot create a reference cycle.
enum PickleValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer beyond 64 bits (LONG1 up to 255 bytes); never a valid size.
    case bigInteger
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(Int)
    case dict(Int)
    /// An allowlisted global (`"torch._utils._rebuild_tensor_v2"`, `"torch.float32"`, ...).
    case global(String)
    case storage(PickleStorage)
    case tensor(PickleTensor)
    /// `torch.Tensor.__new__` waiting for the BUILD that sets its storage (legacy tensor pickles).
    case emptyTensor(Int)
    /// An allowlisted object FineTune has no use for (`torch.device`, a set, a layout, ...).
    case object(String)
    /// A tensor kind PyTorch accepts that FineTune does not read (sparse, meta, ...).
    case unsupportedTensor(String)

    /// What the value is, for error messages.
    var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "a bool"
        case .int, .bigInteger: return "an int"
        case .float: return "a float"
        case .string: return "a string"
        case .bytes: return "bytes"
        case .tuple: return "a tuple"
        case .list: return "a list"
        case .dict: return "a dict"
        case .global(let name): return name
        case .storage: return "a storage"
        case .tensor, .emptyTensor: return "a tensor"
        case .object(let name): return "a \(name)"
        case .unsupportedTensor(let kind): return "a \(kind)"
        }
    }
}

/// A dict of the arena: insertion-ordered, string and int keys replaced like Python's.
struct PickleDict: Sendable {
    enum Kind: Sendable { case plain, ordered, counter }
    var kind: Kind
    var entries: [(key: PickleValue, value: PickleValue)] = []
    private var stringKeys: [String: Int] = [:]
    private var intKeys: [Int: Int] = [:]

    init(kind: Kind) { self.kind = kind }

    mutating func set(_ key: PickleValue, _ value: PickleValue) {
        let existing: Int?
        switch key {
        case .string(let s): existing = stringKeys[s]
        case .int(let i): existing = intKeys[i]
        default: existing = nil
        }
        if let existing {
            entries[existing].value = value
            return
        }
        switch key {
        case .string(let s): stringKeys[s] = entries.count
        case .int(let i): intKeys[i] = entries.count
        default: break
        }
        entries.append((key, value))
    }
}

/// The object graph of one pickle.
struct PickleGraph: Sendable {
    var root: PickleValue
    var lists: [[PickleValue]]
    var dicts: [PickleDict]
}

/// PyTorch's weights-only unpickler (`torch/_weights_only_unpickler.py`, what
/// `torch.load(weights_only=True)` runs) in Swift: the same opcodes and the same allowlisted
/// globals, anything else refused with ``CheckpointError/disallowedOpcode(_:)`` or
/// ``CheckpointError/disallowedGlobal(_:)``. Nothing is ever executed: globals are names, and
/// the few calls a state dict needs (the tensor rebuild functions, `OrderedDict`, ...) are
/// interpreted here. Every length is checked against the remaining bytes before it is read,
/// so the work and memory are bounded by the size of the pickle.
struct WeightsOnlyUnpickler {
    typealias StorageLoader = (_ persistentID: PickleValue) throws(CheckpointError) -> PickleStorage

    private let bytes: [UInt8]
    private var position = 0
    private var stack: [PickleValue] = []
    private var marks: [[PickleValue]] = []
    private var memo: [UInt32: PickleValue] = [:]
    private var lists: [[PickleValue]] = []
    private var dicts: [PickleDict] = []
    /// Memo keys holding each pending `torch.Tensor.__new__`, updated when BUILD sets it.
    private var pendingTensors: [[UInt32]] = []
    private let loadStorage: StorageLoader

    /// The globals `torch.load(weights_only=True)` allows (PyTorch 2.15's `_get_allowed_globals()`;
    /// a test compares this set with the one exported by scripts/make-checkpoint-fixtures.py).
    static let allowedGlobals: Set<String> = {
        var names: Set<String> = [
            "collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
            "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device", "_codecs.encode",
            "builtins.bytearray", "builtins.set", "builtins.complex", "torch._tensor._rebuild_from_type_v2",
            "torch.storage.TypedStorage", "torch.storage.UntypedStorage",
            "torch.per_tensor_affine", "torch.per_tensor_symmetric", "torch.per_channel_affine",
            "torch.per_channel_symmetric", "torch.per_channel_affine_float_qparams",
        ]
        names.formUnion(rebuildFunctions.map { "torch._utils.\($0)" })
        names.formUnion(TorchDType.byGlobal.keys)
        names.formUnion(TorchDType.byStorageClass.keys)
        let tensorClasses = ["BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short"]
        for prefix in ["torch.", "torch.cuda."] { names.formUnion(tensorClasses.map { "\(prefix)\($0)Tensor" }) }
        for prefix in ["torch.sparse.", "torch.cuda.sparse."] {
            names.formUnion(tensorClasses.filter { $0 != "Bool" }.map { "\(prefix)\($0)Tensor" })
        }
        return names
    }()

    private static let rebuildFunctions = [
        "_rebuild_parameter", "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_tensor", "_rebuild_tensor_v2",
        "_rebuild_tensor_v3", "_rebuild_sparse_tensor", "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass",
        "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor",
    ]

    /// Modules PyTorch refuses even when allowlisted.
    private static let blockedModules: Set<String> = ["sys", "os", "posix", "nt"]

    /// Parses `bytes`; `loadStorage` resolves each persistent id (BINPERSID) to a storage record.
    static func load(_ bytes: [UInt8], loadStorage: @escaping StorageLoader) throws(CheckpointError) -> PickleGraph {
        var unpickler = WeightsOnlyUnpickler(bytes: bytes, loadStorage: loadStorage)
        let root = try unpickler.run()
        return PickleGraph(root: root, lists: unpickler.lists, dicts: unpickler.dicts)
    }

    private init(bytes: [UInt8], loadStorage: @escaping StorageLoader) {
        self.bytes = bytes
        self.loadStorage = loadStorage
    }

    // MARK: The opcode loop

    private mutating func run() throws(CheckpointError) -> PickleValue {
        while true {
            let opcode = try byte()
            switch opcode {
            case 0x80: _ = try byte()                                              // PROTO
            case 0x2E:                                                             // STOP
                guard let result = stack.popLast() else { throw malformed("STOP with an empty stack") }
                return result
            case 0x63: stack.append(.global(try global()))                         // GLOBAL
            case 0x81:                                                             // NEWOBJ
                let args = try arguments(try pop()), cls = try pop()
                guard case .global(let name) = cls else { throw malformed("NEWOBJ of \(cls.kind)") }
                stack.append(try construct(name, args))
            case 0x52:                                                             // REDUCE
                let args = try arguments(try pop()), function = try top()
                guard case .global(let name) = function else { throw malformed("REDUCE on \(function.kind)") }
                stack[stack.count - 1] = try call(name, args)
            case 0x62: try build(state: try pop())                                 // BUILD
            case 0x61:                                                             // APPEND
                let item = try pop()
                try append([item])
            case 0x65: try append(try popMark())                                   // APPENDS
            case 0x73:                                                             // SETITEM
                let value = try pop(), key = try pop()
                try setItems([key, value])
            case 0x75: try setItems(try popMark())                                 // SETITEMS
            case 0x28:                                                             // MARK
                marks.append(stack)
                stack = []
            case 0x74: stack.append(.tuple(try popMark()))                         // TUPLE
            case 0x85: try tuple(1)                                                // TUPLE1
            case 0x86: try tuple(2)                                                // TUPLE2
            case 0x87: try tuple(3)                                                // TUPLE3
            case 0x4E: stack.append(.none)                                         // NONE
            case 0x89: stack.append(.bool(false))                                  // NEWFALSE
            case 0x88: stack.append(.bool(true))                                   // NEWTRUE
            case 0x29: stack.append(.tuple([]))                                    // EMPTY_TUPLE
            case 0x5D:                                                             // EMPTY_LIST
                lists.append([])
                stack.append(.list(lists.count - 1))
            case 0x7D: stack.append(newDict(.plain))                               // EMPTY_DICT
            case 0x8F: stack.append(.object("set"))                                // EMPTY_SET
            case 0x4A: stack.append(.int(Int(Int32(bitPattern: try littleEndian(4)))))    // BININT
            case 0x4B: stack.append(.int(Int(try byte())))                         // BININT1
            case 0x4D: stack.append(.int(Int(try littleEndian(2))))                // BININT2
            case 0x47:                                                             // BINFLOAT (big-endian)
                let raw = try read(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                stack.append(.float(Double(bitPattern: raw)))
            case 0x58:                                                             // BINUNICODE
                stack.append(.string(try text(Int(try littleEndian(4)))))
            case 0x55: stack.append(.string(try text(Int(try byte()))))            // SHORT_BINSTRING
            case 0x51:                                                             // BINPERSID
                let id = try pop()
                stack.append(.storage(try loadStorage(id)))
            case 0x68: try get(UInt32(try byte()))                                 // BINGET
            case 0x6A: try get(UInt32(try littleEndian(4)))                        // LONG_BINGET
            case 0x71: try put(UInt32(try byte()))                                 // BINPUT
            case 0x72: try put(UInt32(try littleEndian(4)))                        // LONG_BINPUT
            case 0x8A: stack.append(try long(Int(try byte())))                     // LONG1
            default: throw .disallowedOpcode(Self.opcodeName(opcode))
            }
        }
    }

    // MARK: Reading bytes

    private func malformed(_ reason: String) -> CheckpointError {
        .unreadablePyTorchFile(reason: "pickle: \(reason) (byte \(position) of data.pkl)")
    }

    private mutating func byte() throws(CheckpointError) -> UInt8 {
        guard position < bytes.count else { throw malformed("the pickle ends without STOP (truncated?)") }
        position += 1
        return bytes[position - 1]
    }

    private mutating func read(_ count: Int) throws(CheckpointError) -> ArraySlice<UInt8> {
        guard count <= bytes.count - position else {
            throw malformed("\(count) bytes requested, \(bytes.count - position) left (truncated?)")
        }
        position += count
        return bytes[position - count..<position]
    }

    private mutating func littleEndian(_ count: Int) throws(CheckpointError) -> UInt32 {
        try read(count).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }

    private mutating func text(_ count: Int) throws(CheckpointError) -> String {
        let raw = try read(count)
        guard let string = String(validating: raw, as: UTF8.self) else { throw malformed("a string is not UTF-8") }
        return string
    }

    /// A newline-terminated UTF-8 line (GLOBAL's operands).
    private mutating func line() throws(CheckpointError) -> String {
        guard let newline = bytes[position...].firstIndex(of: 0x0A) else { throw malformed("GLOBAL without a newline") }
        let string = try text(newline - position)
        position += 1
        return string
    }

    /// LONG1: a little-endian two's-complement integer of `count` bytes.
    private mutating func long(_ count: Int) throws(CheckpointError) -> PickleValue {
        let raw = Array(try read(count))
        guard let last = raw.last else { return .int(0) }
        let fill: UInt8 = last & 0x80 == 0 ? 0 : 0xFF
        // Bytes beyond the eighth must only repeat the sign for the value to fit in 64 bits.
        guard raw.count <= 8 || (raw[8...].allSatisfy { $0 == fill } && (raw[7] & 0x80 == 0) == (fill == 0)) else {
            return .bigInteger
        }
        var value: UInt64 = 0
        for i in (0..<8).reversed() { value = value << 8 | UInt64(i < raw.count ? raw[i] : fill) }
        return .int(Int(Int64(bitPattern: value)))
    }

    // MARK: Stack and memo

    private mutating func pop() throws(CheckpointError) -> PickleValue {
        guard let value = stack.popLast() else { throw malformed("stack underflow") }
        return value
    }

    private func top() throws(CheckpointError) -> PickleValue {
        guard let value = stack.last else { throw malformed("stack underflow") }
        return value
    }

    private mutating func popMark() throws(CheckpointError) -> [PickleValue] {
        guard let outer = marks.popLast() else { throw malformed("no MARK to pop to") }
        let items = stack
        stack = outer
        return items
    }

    private mutating func tuple(_ count: Int) throws(CheckpointError) {
        guard stack.count >= count else { throw malformed("stack underflow") }
        let items = Array(stack.suffix(count))
        stack.removeLast(count)
        stack.append(.tuple(items))
    }

    private mutating func get(_ key: UInt32) throws(CheckpointError) {
        guard let value = memo[key] else { throw malformed("memo key \(key) was never stored") }
        stack.append(value)
    }

    private mutating func put(_ key: UInt32) throws(CheckpointError) {
        let value = try top()
        memo[key] = value
        if case .emptyTensor(let id) = value { pendingTensors[id].append(key) }
    }

    private mutating func newDict(_ kind: PickleDict.Kind) -> PickleValue {
        dicts.append(PickleDict(kind: kind))
        return .dict(dicts.count - 1)
    }

    private mutating func append(_ items: [PickleValue]) throws(CheckpointError) {
        let target = try top()
        guard case .list(let id) = target else { throw malformed("APPEND to \(target.kind); only lists take items") }
        lists[id] += items
    }

    private mutating func setItems(_ items: [PickleValue]) throws(CheckpointError) {
        let target = try top()
        guard case .dict(let id) = target else { throw malformed("SETITEM on \(target.kind); only dicts take items") }
        guard items.count % 2 == 0 else { throw malformed("SETITEMS with an odd number of items") }
        for i in stride(from: 0, to: items.count, by: 2) { dicts[id].set(items[i], items[i + 1]) }
    }

    // MARK: Globals and calls

    /// GLOBAL's operands, checked against the allowlist (Python 2 `__builtin__` maps to `builtins`).
    private mutating func global() throws(CheckpointError) -> String {
        var module = try line()
        let name = try line()
        if module == "__builtin__" { module = "builtins" }
        let fullName = "\(module).\(name)"
        guard !Self.blockedModules.contains(module), Self.allowedGlobals.contains(fullName) else {
            throw .disallowedGlobal(fullName)
        }
        return fullName
    }

    /// The arguments of a call: a tuple (or list) of values.
    private func arguments(_ value: PickleValue) throws(CheckpointError) -> [PickleValue] {
        switch value {
        case .tuple(let items): return items
        case .list(let id): return lists[id]
        default: throw malformed("call arguments are \(value.kind), not a tuple")
        }
    }

    /// NEWOBJ: `cls.__new__(cls, *args)` for the allowlisted classes.
    private mutating func construct(_ name: String, _ args: [PickleValue]) throws(CheckpointError) -> PickleValue {
        switch name {
        case "torch.nn.parameter.Parameter": return try call(name, args)
        case "torch.Tensor":
            pendingTensors.append([])
            return .emptyTensor(pendingTensors.count - 1)
        case "collections.OrderedDict": return newDict(.ordered)
        case "collections.Counter": return newDict(.counter)
        case _ where name.hasPrefix("torch._utils.") || name == "torch._tensor._rebuild_from_type_v2" || name == "_codecs.encode":
            throw malformed("NEWOBJ of the function \(name)")
        default: return .object(name)
        }
    }

    /// REDUCE: the allowlisted callables, interpreted.
    private mutating func call(_ name: String, _ args: [PickleValue]) throws(CheckpointError) -> PickleValue {
        switch name {
        case "collections.OrderedDict", "collections.Counter":
            let dict = newDict(name == "collections.OrderedDict" ? .ordered : .counter)
            guard case .dict(let id) = dict else { return dict }
            if let source = args.first {
                guard args.count == 1 else { throw malformed("\(name) takes one argument") }
                try fill(id, from: source)
            }
            return dict
        case "torch.Size":
            guard args.count <= 1 else { throw malformed("torch.Size takes one argument") }
            guard let sizes = args.first else { return .tuple([]) }
            return .tuple(try arguments(sizes))
        case "_codecs.encode":
            guard args.count == 2, case .string(let text) = args[0] else { throw malformed("_codecs.encode takes (str, encoding)") }
            var latin1: [UInt8] = []
            for scalar in text.unicodeScalars {
                guard scalar.value < 256 else { throw malformed("_codecs.encode of a non-latin-1 string") }
                latin1.append(UInt8(scalar.value))
            }
            return .bytes(latin1)
        case "builtins.set", "builtins.bytearray", "builtins.complex", "torch.device", "torch.serialization._get_layout":
            return .object(name)
        case "torch.Tensor":
            return try construct(name, args)
        case "torch.nn.parameter.Parameter", "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
             "torch._utils._rebuild_device_tensor_from_cpu_tensor":
            guard let data = args.first, case .tensor = data else { throw malformed("\(name) needs a tensor") }
            return data
        case "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_qtensor":
            guard args.count >= 4, case .storage(let storage) = args[0] else { throw malformed("\(name) needs a storage") }
            return .tensor(try rebuild(storage, dtype: storage.dtype ?? TorchDType.uint8, args, name))
        case "torch._utils._rebuild_tensor_v3":
            guard args.count >= 7, case .storage(let storage) = args[0], case .global(let dtypeName) = args[6],
                  let dtype = TorchDType.byGlobal[dtypeName] else {
                throw malformed("\(name) needs a storage and a dtype")
            }
            return .tensor(try rebuild(storage, dtype: dtype, args, name))
        case "torch._tensor._rebuild_from_type_v2":
            // (func, new_type, args, state): a tensor subclass or a tensor with Python attributes.
            guard args.count == 4, case .global(let function) = args[0], function.hasPrefix("torch._utils._rebuild") else {
                throw malformed("\(name) needs a rebuild function")
            }
            let tensor = try call(function, try arguments(args[2]))
            guard case .tensor = tensor else { throw malformed("\(name) did not rebuild a tensor") }
            return tensor
        case "torch._utils._rebuild_sparse_tensor": return .unsupportedTensor("sparse tensor")
        case "torch._utils._rebuild_meta_tensor_no_storage": return .unsupportedTensor("meta tensor (no data)")
        case "torch._utils._rebuild_wrapper_subclass": return .unsupportedTensor("tensor subclass without storage")
        case "torch._utils._rebuild_device_tensor_from_numpy": return .unsupportedTensor("NumPy-backed device tensor")
        default: throw malformed("\(name) cannot be called")
        }
    }

    /// OrderedDict(pairs) / Counter(mapping).
    private mutating func fill(_ id: Int, from source: PickleValue) throws(CheckpointError) {
        switch source {
        case .dict(let other):
            for (key, value) in dicts[other].entries { dicts[id].set(key, value) }
        case .list, .tuple:
            for pair in try arguments(source) {
                guard case .tuple(let items) = pair, items.count == 2 else { throw malformed("a dict item is not a pair") }
                dicts[id].set(items[0], items[1])
            }
        default: throw malformed("cannot build a dict from \(source.kind)")
        }
    }

    /// `storage[offset:]` viewed with `size` and `stride` (args 1...3), checked against the storage.
    private func rebuild(_ storage: PickleStorage, dtype: TorchDType, _ args: [PickleValue], _ name: String) throws(CheckpointError) -> PickleTensor {
        guard case .int(let offset) = args[1], offset >= 0 else { throw malformed("\(name): bad storage offset") }
        let shape = try sizes(args[2], name), strides = try sizes(args[3], name)
        guard shape.count == strides.count else { throw malformed("\(name): \(shape.count) sizes but \(strides.count) strides") }
        let tensor = PickleTensor(storage: storage, dtype: dtype, offset: offset, shape: shape, strides: strides)
        // Elements reachable from the offset, with overflow checks.
        var count = 1, last = offset
        for (size, stride) in zip(shape, strides) {
            let (product, overflow) = count.multipliedReportingOverflow(by: size)
            let (step, stepOverflow) = max(size - 1, 0).multipliedReportingOverflow(by: stride)
            let (reach, reachOverflow) = last.addingReportingOverflow(step)
            guard !overflow, !stepOverflow, !reachOverflow else { throw malformed("\(name): size \(shape) overflows") }
            count = product; last = reach
        }
        guard count > 0, dtype.readable != nil else { return tensor }
        // An element count above the storage's bounds the memory a (zero-stride) tensor may need.
        let elements = storage.dataRange.count / dtype.size
        guard last < elements, count <= elements else {
            throw malformed("\(name): a \(shape) view with strides \(strides) at offset \(offset) "
                            + "needs more than the \(elements) elements of storage \(storage.key)")
        }
        return tensor
    }

    private func sizes(_ value: PickleValue, _ name: String) throws(CheckpointError) -> [Int] {
        var result: [Int] = []
        for item in try arguments(value) {
            guard case .int(let size) = item, size >= 0 else { throw malformed("\(name): sizes and strides must be non-negative ints") }
            result.append(size)
        }
        return result
    }

    /// BUILD: `set_` for a legacy tensor, attributes (ignored) for tensors, OrderedDicts and objects.
    private mutating func build(state: PickleValue) throws(CheckpointError) {
        let instance = try top()
        switch instance {
        case .emptyTensor(let id):
            guard case .tuple(let args) = state, args.count == 4, case .storage(let storage) = args[0] else {
                throw malformed("BUILD of a tensor needs (storage, offset, size, stride)")
            }
            let tensor = PickleValue.tensor(try rebuild(storage, dtype: storage.dtype ?? TorchDType.uint8, args, "Tensor.set_"))
            stack[stack.count - 1] = tensor
            for key in pendingTensors[id] { memo[key] = tensor }
        case .tensor, .object: break
        case .dict(let id) where dicts[id].kind != .plain: break
        default: throw malformed("BUILD on \(instance.kind); only tensors, OrderedDicts and allowlisted objects are built")
        }
    }

    // MARK: Opcode names

    static func opcodeName(_ opcode: UInt8) -> String {
        let names: [UInt8: String] = [
            0x28: "MARK", 0x2E: "STOP", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x46: "FLOAT", 0x49: "INT",
            0x4A: "BININT", 0x4B: "BININT1", 0x4C: "LONG", 0x4D: "BININT2", 0x4E: "NONE", 0x50: "PERSID",
            0x51: "BINPERSID", 0x52: "REDUCE", 0x53: "STRING", 0x54: "BINSTRING", 0x55: "SHORT_BINSTRING",
            0x56: "UNICODE", 0x58: "BINUNICODE", 0x61: "APPEND", 0x62: "BUILD", 0x63: "GLOBAL", 0x64: "DICT",
            0x7D: "EMPTY_DICT", 0x65: "APPENDS", 0x67: "GET", 0x68: "BINGET", 0x69: "INST", 0x6A: "LONG_BINGET",
            0x6C: "LIST", 0x5D: "EMPTY_LIST", 0x6F: "OBJ", 0x70: "PUT", 0x71: "BINPUT", 0x72: "LONG_BINPUT",
            0x73: "SETITEM", 0x74: "TUPLE", 0x29: "EMPTY_TUPLE", 0x75: "SETITEMS", 0x47: "BINFLOAT",
            0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1", 0x86: "TUPLE2",
            0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8A: "LONG1", 0x8B: "LONG4", 0x42: "BINBYTES",
            0x43: "SHORT_BINBYTES", 0x8C: "SHORT_BINUNICODE", 0x8D: "BINUNICODE8", 0x8E: "BINBYTES8",
            0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL",
            0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
        ]
        let hex = "0x" + String(opcode, radix: 16, uppercase: true)
        return names[opcode].map { "\($0) (\(hex))" } ?? "unknown opcode \(hex)"
    }
}
