import Foundation

/// Named tensors read on demand from a checkpoint: a safetensors file (``SafeTensors``), a
/// PyTorch file (``PyTorchFile``) or a Hugging Face model folder (``PretrainedFolder``).
///
/// Shapes are known without reading any tensor data, so a module can check every key and
/// shape before anything is converted (``Module/load(from:strict:renaming:)-(TensorArchive,_,_)``).
///
/// ```swift
/// let archive: any TensorArchive = try PyTorchFile(contentsOf: URL(fileURLWithPath: "resnet18.pth"))
/// for key in archive.keys { print(key, archive.shape(of: key)!) }
/// let weight = try archive.tensor("conv1.weight")     // converted to Float32
/// ```
public protocol TensorArchive: Sendable {
    /// Tensor names, sorted.
    var keys: [String] { get }
    /// The shape of the tensor named `key`, or nil when there is none.
    func shape(of key: String) -> [Int]?
    /// The tensor named `key`, converted to Float32 (a contiguous copy).
    func tensor(_ key: String) throws(CheckpointError) -> Tensor
}

extension TensorArchive {
    /// Every tensor, converted to Float32.
    public func tensors() throws(CheckpointError) -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        for key in keys { result[key] = try tensor(key) }
        return result
    }
}

extension SafeTensors: TensorArchive {
    /// The shape of the tensor named `key` in the header, or nil when there is none.
    public func shape(of key: String) -> [Int]? { entries[key]?.shape }
}

/// Reads a whole file for the checkpoint readers, memory-mapped when the system allows.
enum CheckpointFile {
    static func read(_ url: URL) throws(CheckpointError) -> Data {
        do {
            return try Data(contentsOf: url, options: .mappedIfSafe)
        } catch {
            throw .io(path: url.path, reason: SafeTensors.reason(error))
        }
    }
}
