import Foundation

/// Saving and restoring optimizer state, so training resumes exactly where it stopped
/// (PyTorch's `optimizer.state_dict()`), in a safetensors file keyed by parameter name:
///
/// ```text
/// fc.weight.exp_avg      F32 [10, 64]      fc.weight.exp_avg_sq   F32 [10, 64]
/// fc.weight.step         I64 []            __metadata__: optimizer, step_count, learning_rate
/// ```
///
/// Step counts are stored as exact 64-bit integers (files that hold them as whole-number
/// floats still load). Names, not positions, tie state to parameters, so a checkpoint still
/// loads after layers were frozen or a head replaced: state for parameters that no longer
/// exist is reported as unexpected, and parameters without saved state start fresh.
/// ``TrainingState`` stores the same entries, under `optimizer.`, next to everything else a
/// resumed run needs.
///
/// ```swift
/// try model.save(to: modelURL)
/// try optimizer.saveState(to: optimizerURL)
/// // later, after rebuilding model and optimizer:
/// try model.load(from: modelURL)
/// try optimizer.loadState(from: optimizerURL)
/// ```
extension Optimizer {
    /// The state as named tensors: buffers (`<name>.exp_avg`, ...) in Float32 and each
    /// parameter's step count (`<name>.step`) as an exact integer.
    public func stateTensors() -> (tensors: [String: Tensor], steps: [String: SafeTensors.Integers]) {
        OptimizerStateEntries.entries(of: exportState())
    }

    /// The state as the bytes of a safetensors file (what ``saveState(to:)`` writes).
    public func stateData() throws(CheckpointError) -> Data {
        let snapshot = exportState()
        let (tensors, steps) = OptimizerStateEntries.entries(of: snapshot)
        return try SafeTensors.encode(tensors, integers: steps, metadata: [
            "optimizer": "\(type(of: self))", "step_count": "\(snapshot.stepCount)",
            "learning_rate": "\(snapshot.learningRate)",
        ])
    }

    /// Writes the state atomically as a safetensors file.
    public func saveState(to url: URL) throws(CheckpointError) {
        try AtomicFile.write(try stateData(), to: url)
    }

    /// Replaces the state with the one in `url` (written by ``saveState(to:)`` for the same
    /// optimizer type), with its step count and base learning rate. Every buffer must belong to
    /// a current parameter with its shape; with `strict`, state for unknown parameters throws,
    /// otherwise it is skipped and reported. Nothing changes when it throws.
    @discardableResult
    public func loadState(from url: URL, strict: Bool = true) throws(CheckpointError) -> LoadReport {
        try loadState(from: SafeTensors(contentsOf: url), strict: strict)
    }

    /// Replaces the state with the one in an opened file (or ``stateData()`` parsed in memory).
    @discardableResult
    public func loadState(from file: SafeTensors, strict: Bool = true) throws(CheckpointError) -> LoadReport {
        let kind = "\(type(of: self))"
        guard file.metadata["optimizer"] == kind else {
            throw .malformed(reason: "the file holds \(file.metadata["optimizer"] ?? "no") optimizer state, not \(kind)")
        }
        guard let stepCount = file.metadata["step_count"].flatMap(Int.init), stepCount >= 0 else {
            throw .malformed(reason: "step_count is missing from the metadata")
        }
        let (tensors, steps) = try OptimizerStateEntries.read(in: file, prefix: "")
        let snapshot = try OptimizerStateEntries.snapshot(
            tensors: tensors, steps: steps, stepCount: stepCount,
            learningRate: file.metadata["learning_rate"].flatMap(Float.init) ?? learningRate)
        return try OptimizerStateEntries.importing(snapshot, into: self, strict: strict)
    }
}

/// Optimizer state as file entries (`<parameter>.<buffer>` tensors and `<parameter>.step`
/// integers) and back, through ``Optimizer/exportState()`` and ``Optimizer/importState(_:)``.
enum OptimizerStateEntries {
    /// The entries of a snapshot.
    static func entries(of snapshot: OptimizerStateSnapshot) -> (tensors: [String: Tensor], steps: [String: SafeTensors.Integers]) {
        var tensors: [String: Tensor] = [:], steps: [String: SafeTensors.Integers] = [:]
        for (name, state) in snapshot.parameters {
            for (buffer, tensor) in state.tensors { tensors["\(name).\(buffer)"] = tensor }
            steps["\(name).step"] = .init(Int64(state.step))
        }
        return (tensors, steps)
    }

    /// The entries of `file` under `prefix`, keyed without it: buffers as Float32 tensors and
    /// step counts (`<name>.step`) as exact integers.
    static func read(in file: SafeTensors, prefix: String) throws(CheckpointError)
        -> (tensors: [String: Tensor], steps: [String: SafeTensors.Integers]) {
        var tensors: [String: Tensor] = [:], steps: [String: SafeTensors.Integers] = [:]
        for key in file.keys where key.hasPrefix(prefix) {
            let name = String(key.dropFirst(prefix.count))
            if name.hasSuffix(".step") { steps[name] = try file.integers(key) } else { tensors[name] = try file.tensor(key) }
        }
        return (tensors, steps)
    }

    /// Groups entries by parameter (the name before the last dot; buffer names have none).
    /// Every parameter needs one positive step count and at least one buffer.
    static func snapshot(tensors: [String: Tensor], steps: [String: SafeTensors.Integers], stepCount: Int,
                         learningRate: Float) throws(CheckpointError) -> OptimizerStateSnapshot {
        var buffers: [String: [String: Tensor]] = [:]
        for (key, tensor) in tensors {
            guard let dot = key.lastIndex(of: "."), dot != key.startIndex else {
                throw .malformed(reason: "optimizer state entry \(key) is not <parameter>.<buffer>")
            }
            buffers[String(key[..<dot]), default: [:]][String(key[key.index(after: dot)...])] = tensor
        }
        var parameters: [String: OptimizerState] = [:]
        for (name, tensors) in buffers {
            guard let step = steps["\(name).step"]?.values else {
                throw .malformed(reason: "incomplete state for \(name): no step count")
            }
            guard step.count == 1, step[0] >= 1, let count = Int(exactly: step[0]) else {
                throw .malformed(reason: "\(name).step is not a positive count")
            }
            parameters[name] = OptimizerState(step: count, tensors: tensors)
        }
        if let orphan = steps.keys.sorted().first(where: { buffers[String($0.dropLast(".step".count))] == nil }) {
            throw .malformed(reason: "incomplete state: \(orphan) without buffers")
        }
        return OptimizerStateSnapshot(stepCount: stepCount, learningRate: learningRate, parameters: parameters)
    }

    /// Imports `snapshot` into `optimizer`. State of parameters the optimizer does not have is
    /// skipped and reported as unexpected, or, with `strict`, throws
    /// ``CheckpointError/keysDoNotMatch(_:)``; buffers of the wrong shape throw
    /// ``CheckpointError/shapeMismatch(_:)`` listing all of them. Nothing changes when it throws.
    @discardableResult
    static func importing(_ snapshot: OptimizerStateSnapshot, into optimizer: any Optimizer,
                          strict: Bool) throws(CheckpointError) -> LoadReport {
        var snapshot = snapshot
        var unexpected: [String] = [], mismatches: [CheckpointError.ShapeMismatch] = []
        // Taken before the first refusal (which changes nothing), put back if the import that
        // finally succeeds (without the refused parameters) must not stand.
        var previous: OptimizerStateSnapshot?
        while true {
            do throws(OptimizerStateError) {
                try optimizer.importState(snapshot)
                break
            } catch .unknownParameter(let name) {
                let state = snapshot.parameters.removeValue(forKey: name)!
                unexpected += state.tensors.keys.map { "\(name).\($0)" } + ["\(name).step"]
                if strict { previous = previous ?? optimizer.exportState() }
            } catch .shapeMismatch(let name, _, let expected, _) {
                let state = snapshot.parameters.removeValue(forKey: name)!
                for (buffer, tensor) in state.tensors where tensor.shape != expected {
                    mismatches.append(.init(key: "\(name).\(buffer)", expected: expected, found: tensor.shape))
                }
                previous = previous ?? optimizer.exportState()
            } catch {
                throw .malformed(reason: error.description)
            }
        }
        let report = LoadReport(loadedKeys: snapshot.parameters.keys.sorted(), missingKeys: [],
                                unexpectedKeys: unexpected.sorted())
        if let previous {
            do { try optimizer.importState(previous) } catch {
                preconditionFailure("the optimizer refused its own exported state: \(error)")
            }
            if !mismatches.isEmpty { throw .shapeMismatch(mismatches.sorted { $0.key < $1.key }) }
            throw .keysDoNotMatch(report)
        }
        return report
    }
}
