import Foundation

/// Saving and restoring optimizer state, so training resumes exactly where it stopped
/// (PyTorch's `optimizer.state_dict()`), in a safetensors file keyed by parameter name:
///
/// ```text
/// fc.weight.exp_avg      F32 [10, 64]      fc.weight.exp_avg_sq   F32 [10, 64]
/// fc.weight.step         I64 []            __metadata__: optimizer, step_count, learning_rate
/// ```
///
/// Names, not positions, tie state to parameters, so a checkpoint still loads after layers
/// were frozen or a head replaced: state for parameters that no longer exist is reported as
/// unexpected, and parameters without saved state start fresh.
///
/// ```swift
/// try model.save(to: modelURL)
/// try optimizer.saveState(to: optimizerURL)
/// // later, after rebuilding model and optimizer:
/// try model.load(from: modelURL)
/// try optimizer.loadState(from: optimizerURL)
/// ```
extension CoreOptimizer {
    /// The state as named tensors plus their dtypes (steps are int64, as in PyTorch).
    public func stateTensors() -> (tensors: [String: Tensor], dtypes: [String: SafeTensors.DType]) {
        var tensors: [String: Tensor] = [:], dtypes: [String: SafeTensors.DType] = [:]
        for name in parameterNamesWithState {
            let state = state(for: name)!
            for (buffer, tensor) in state.tensors { tensors["\(name).\(buffer)"] = tensor }
            tensors["\(name).step"] = Tensor(Float(state.step))
            dtypes["\(name).step"] = .i64
        }
        return (tensors, dtypes)
    }

    /// The state as the bytes of a safetensors file (what ``saveState(to:)`` writes).
    public func stateData() throws(CheckpointError) -> Data {
        let (tensors, dtypes) = stateTensors()
        return try SafeTensors.encode(tensors, dtypes: dtypes, metadata: [
            "optimizer": "\(type(of: self))", "step_count": "\(stepCount)", "learning_rate": "\(learningRate)",
        ])
    }

    /// Writes the state atomically as a safetensors file.
    public func saveState(to url: URL) throws(CheckpointError) {
        try AtomicFile.write(try stateData(), to: url)
    }

    /// Replaces the state with the one in `url` (written by ``saveState(to:)`` for the same
    /// optimizer type), with its step count and (without a schedule) its learning rate. Every
    /// buffer must belong to a current parameter with its shape; with `strict`, state for
    /// unknown parameters throws, otherwise it is skipped and reported. Nothing changes when it throws.
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
        let parameters = Dictionary(core.source.namedParameters().map { ($0.name, $0.parameter) }, uniquingKeysWith: { a, _ in a })
        let suffixes = core.bufferNames + ["step"]
        var grouped: [String: [String: String]] = [:]    // parameter -> buffer -> file key
        var unexpected: [String] = []
        for key in file.keys {
            guard let suffix = suffixes.first(where: { key.hasSuffix(".\($0)") }) else { unexpected.append(key); continue }
            let name = String(key.dropLast(suffix.count + 1))
            if parameters[name] == nil { unexpected.append(key) } else { grouped[name, default: [:]][suffix] = key }
        }
        var states: [String: OptimizerState] = [:], mismatches: [CheckpointError.ShapeMismatch] = []
        for (name, keys) in grouped.sorted(by: { $0.key < $1.key }) {
            guard keys.count == suffixes.count else {
                throw .malformed(reason: "incomplete state for \(name): has \(keys.keys.sorted()), needs \(suffixes)")
            }
            let shape = parameters[name]!.shape
            var tensors: [String: Tensor] = [:]
            for buffer in core.bufferNames {
                let tensor = try file.tensor(keys[buffer]!)
                if tensor.shape != shape { mismatches.append(.init(key: keys[buffer]!, expected: shape, found: tensor.shape)) }
                tensors[buffer] = tensor
            }
            let step = try file.tensor(keys["step"]!).scalars.first ?? -1
            guard step >= 1, step == step.rounded() else { throw .malformed(reason: "\(name).step is not a positive count") }
            states[name] = OptimizerState(step: Int(step), tensors: tensors)
        }
        if !mismatches.isEmpty { throw .shapeMismatch(mismatches) }
        let report = LoadReport(loadedKeys: states.keys.sorted(), missingKeys: [], unexpectedKeys: unexpected.sorted())
        if strict && !report.unexpectedKeys.isEmpty { throw .keysDoNotMatch(report) }
        core.restore(stepCount: stepCount, states: states)
        if let schedule {
            learningRate = schedule.learningRate(at: max(stepCount - 1, 0))
        } else if let rate = file.metadata["learning_rate"].flatMap(Float.init) {
            learningRate = rate
        }
        return report
    }
}
