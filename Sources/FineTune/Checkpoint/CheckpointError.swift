/// Why a checkpoint could not be read, written or loaded into a module.
///
/// Every checkpoint API throws this one type (`throws(CheckpointError)`), and nothing is
/// changed when it throws: a file is replaced only by a complete new one, and a module only
/// receives values once every key and shape has been checked.
public enum CheckpointError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be read or written (missing, unreadable, no space, ...).
    case io(path: String, reason: String)
    /// The bytes are not a valid safetensors file (truncated, bad header, bad offsets, ...).
    case malformed(reason: String)
    /// A tensor's element type is one FineTune cannot convert to Float32.
    case unsupportedDType(key: String, dtype: String)
    /// No tensor of this name in the file.
    case missingTensor(key: String)
    /// Tensors whose shape in the checkpoint differs from the module's (all of them, sorted).
    case shapeMismatch([ShapeMismatch])
    /// A strict load found missing or unexpected keys (the report lists them).
    case keysDoNotMatch(LoadReport)
    /// `renaming:` mapped two checkpoint keys to the same module key (nothing was loaded).
    case renamingCollision(key: String, fileKeys: [String])
    /// An adapter folder or configuration FineTune cannot apply (bad JSON, unsupported options,
    /// targets that match nothing).
    case invalidAdapter(reason: String)
    /// A PyTorch file FineTune cannot read: not a `torch.save` zip archive, a damaged zip or
    /// pickle, or content FineTune does not represent (sparse or meta tensors, ...).
    case unreadablePyTorchFile(reason: String)
    /// The pickle names a global that `torch.load(weights_only=True)` refuses (`"os.system"`,
    /// `"torch.nn.modules.linear.Linear"` of a pickled module, ...). Nothing was executed.
    case disallowedGlobal(String)
    /// The pickle uses an opcode outside the weights-only unpickler's set (`"STACK_GLOBAL (0x93)"`).
    case disallowedOpcode(String)
    /// A file in PyTorch's legacy (pre-1.6, non-zip) format.
    case legacyPyTorchFormat
    /// A PyTorch file written on a big-endian machine (its `byteorder` record says `big`).
    case bigEndianPyTorchFile
    /// A Hugging Face model folder that cannot be read: no weights file, a broken index, a missing shard.
    case invalidFolder(path: String, reason: String)
    /// A `config.json` that is not a JSON object.
    case malformedConfig(reason: String)
    /// A required key (dotted path, e.g. `text_config.hidden_size`) is not in the configuration.
    case missingConfigKey(String)
    /// A configuration value of another type than the one asked for.
    case wrongConfigType(key: String, expected: String, found: String)
    /// A ``TrainingState`` that does not fit the model or optimizer it is restored into (module
    /// paths that differ, a layer of another kind where the state has a LoRA layer, another
    /// optimizer type, ...).
    case incompatibleTrainingState(reason: String)

    /// One key whose checkpoint shape differs from the module's.
    public struct ShapeMismatch: Equatable, Sendable, CustomStringConvertible {
        public var key: String
        /// The shape the module expects.
        public var expected: [Int]
        /// The shape in the checkpoint.
        public var found: [Int]
        public var description: String { "\(key): checkpoint has \(found), module expects \(expected)" }
    }

    public var description: String {
        switch self {
        case let .io(path, reason): return "checkpoint I/O failed for \(path): \(reason)"
        case let .malformed(reason): return "not a valid safetensors file: \(reason)"
        case let .unsupportedDType(key, dtype): return "tensor \(key) has unsupported dtype \(dtype)"
        case let .missingTensor(key): return "no tensor named \(key) in the checkpoint"
        case let .shapeMismatch(list):
            return "size mismatch for \(list.count) tensor(s):\n" + list.map { "  " + $0.description }.joined(separator: "\n")
        case let .keysDoNotMatch(report): return "strict load failed:\n\(report)"
        case let .renamingCollision(key, fileKeys):
            return "renaming maps both \(fileKeys.joined(separator: " and ")) to \(key); nothing was loaded"
        case let .invalidAdapter(reason): return "cannot apply the adapter: \(reason)"
        case let .unreadablePyTorchFile(reason): return "cannot read the PyTorch file: \(reason)"
        case let .disallowedGlobal(name):
            return "the pickle refers to \(name), which torch.load(weights_only=True) also refuses; "
                + "only tensors, state dicts and plain containers are read, nothing is executed"
        case let .disallowedOpcode(name):
            return "the pickle uses opcode \(name), which torch.load(weights_only=True) also refuses"
        case .legacyPyTorchFormat:
            return "the file uses PyTorch's legacy (pre-1.6, non-zip) format; re-save it with a current PyTorch: "
                + "torch.save(torch.load(path, weights_only=True), new_path) (the zip format, "
                + "_use_new_zipfile_serialization=True, is the default)"
        case .bigEndianPyTorchFile:
            return "the PyTorch file was saved on a big-endian machine; load it with torch.load and save it again "
                + "on a little-endian one (x86-64, ARM)"
        case let .invalidFolder(path, reason): return "cannot read the model folder \(path): \(reason)"
        case let .malformedConfig(reason): return "malformed configuration: \(reason)"
        case let .missingConfigKey(key): return "the configuration has no \(key)"
        case let .wrongConfigType(key, expected, found): return "configuration value \(key) is \(found), expected \(expected)"
        case let .incompatibleTrainingState(reason): return "the training state does not fit: \(reason)"
        }
    }
}
