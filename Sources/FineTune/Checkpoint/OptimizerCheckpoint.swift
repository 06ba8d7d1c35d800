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
extension BuiltInOptimizer {
    /// The state as named tensors: buffers (`<name>.exp_avg`, ...) in Float32 and each
    /// parameter's step count (`<name>.step`) as an exact integer.
    public func stateTensors() -> (tensors: [String: Tensor], steps: [String: SafeTensors.Integers]) {
        var tensors: [String: Tensor] = [:], steps: [String: SafeTensors.Integers] = [:]
        for name in parameterNamesWithState {
            let state = state(for: name)!
            for (buffer, tensor) in state.tensors { tensors["\(name).\(buffer)"] = tensor }
            steps["\(name).step"] = .init(Int64(state.step))
        }
        return (tensors, steps)
    }

    /// The state as the bytes of a safetensors file (what ``saveState(to:)`` writes).
    public func stateData() throws(CheckpointError) -> Data {
        let (tensors, steps) = stateTensors()
        return try SafeTensors.encode(tensors, integers: steps, metadata: [
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
        let (tensors, steps) = try Self.stateEntries(in: file, prefix: "")
        let state = try prepareState(tensors: tensors, steps: steps, stepCount: stepCount,
                                     learningRate: file.metadata["learning_rate"].flatMap(Float.init))
        if strict && !state.report.unexpectedKeys.isEmpty { throw .keysDoNotMatch(state.report) }
        restore(state)
        return state.report
    }

    /// The entries of `file` under `prefix`, keyed without it: buffers as Float32 tensors and
    /// step counts (`<name>.step`) as exact integers.
    static func stateEntries(in file: SafeTensors, prefix: String) throws(CheckpointError)
        -> (tensors: [String: Tensor], steps: [String: SafeTensors.Integers]) {
        var tensors: [String: Tensor] = [:], steps: [String: SafeTensors.Integers] = [:]
        for key in file.keys where key.hasPrefix(prefix) {
            let name = String(key.dropFirst(prefix.count))
            if name.hasSuffix(".step") { steps[name] = try file.integers(key) } else { tensors[name] = try file.tensor(key) }
        }
        return (tensors, steps)
    }

    /// Checks state entries (as ``stateTensors()`` names them) against this optimizer's
    /// current parameters, changing nothing: every buffer must have its parameter's shape and
    /// every step count must be one positive integer. Entries of unknown parameters are
    /// reported as unexpected.
    func prepareState(tensors: [String: Tensor], steps: [String: SafeTensors.Integers], stepCount: Int,
                      learningRate: Float?) throws(CheckpointError) -> PreparedOptimizerState {
        let parameters = Dictionary(core.source.namedParameters().map { ($0.name, $0.parameter) }, uniquingKeysWith: { a, _ in a })
        let suffixes = core.bufferNames + ["step"]
        var grouped: [String: Set<String>] = [:]    // parameter -> suffixes present
        var unexpected: [String] = []
        for key in Array(tensors.keys) + Array(steps.keys) {
            guard let suffix = suffixes.first(where: { key.hasSuffix(".\($0)") }) else { unexpected.append(key); continue }
            let name = String(key.dropLast(suffix.count + 1))
            if parameters[name] == nil { unexpected.append(key) } else { grouped[name, default: []].insert(suffix) }
        }
        var states: [String: OptimizerState] = [:], mismatches: [CheckpointError.ShapeMismatch] = []
        for (name, present) in grouped.sorted(by: { $0.key < $1.key }) {
            let bufferKeys = core.bufferNames.map { "\(name).\($0)" }
            guard present.count == suffixes.count, bufferKeys.allSatisfy({ tensors[$0] != nil }),
                  let step = steps["\(name).step"]?.values else {
                throw .malformed(reason: "incomplete state for \(name): has \(present.sorted()), needs \(suffixes)")
            }
            let shape = parameters[name]!.shape
            var buffers: [String: Tensor] = [:]
            for (buffer, key) in zip(core.bufferNames, bufferKeys) {
                let tensor = tensors[key]!
                if tensor.shape != shape { mismatches.append(.init(key: key, expected: shape, found: tensor.shape)) }
                buffers[buffer] = tensor
            }
            guard step.count == 1, step[0] >= 1, let count = Int(exactly: step[0]) else {
                throw .malformed(reason: "\(name).step is not a positive count")
            }
            states[name] = OptimizerState(step: count, tensors: buffers)
        }
        if !mismatches.isEmpty { throw .shapeMismatch(mismatches) }
        let report = LoadReport(loadedKeys: states.keys.sorted(), missingKeys: [], unexpectedKeys: unexpected.sorted())
        return PreparedOptimizerState(stepCount: stepCount, learningRate: learningRate, states: states, report: report)
    }

    /// Replaces the state with a prepared one: the per-parameter state, the step count, and the
    /// learning rate (the schedule's at that position, or the saved one without a schedule).
    func restore(_ state: PreparedOptimizerState) {
        core.restore(stepCount: state.stepCount, states: state.states)
        if let schedule {
            learningRate = schedule.learningRate(at: max(state.stepCount - 1, 0))
        } else if let rate = state.learningRate {
            learningRate = rate
        }
    }
}

/// Optimizer state read from a file and checked against an optimizer, ready to be restored.
struct PreparedOptimizerState {
    let stepCount: Int
    let learningRate: Float?
    let states: [String: OptimizerState]
    /// The parameters that get state, and the keys that belong to no parameter.
    let report: LoadReport
}
