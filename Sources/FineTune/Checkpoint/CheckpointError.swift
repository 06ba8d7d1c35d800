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
    /// An adapter folder or configuration FineTune cannot apply (bad JSON, unsupported options,
    /// targets that match nothing).
    case invalidAdapter(reason: String)
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
        case let .invalidAdapter(reason): return "cannot apply the adapter: \(reason)"
        case let .incompatibleTrainingState(reason): return "the training state does not fit: \(reason)"
        }
    }
}
