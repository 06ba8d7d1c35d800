/// Updates a model's trainable parameters from their gradients.
///
/// Each optimizer reads the parameters and their fine-tuning controls (`isFrozen`,
/// `lrMultiplier`, `weightDecayMultiplier`, `role`) live at every ``step()``: it re-enumerates
/// `module.namedParameters()`, so freezing, unfreezing, changing a multiplier or replacing a
/// head takes effect at the next step with no rebuild and no parameter groups to keep in sync.
///
/// * A frozen parameter is never changed (bit for bit): no update, no weight decay, no
///   momentum drift. No state is allocated for it; with the default ``UnfreezePolicy/reset``
///   the state it had is dropped, with ``UnfreezePolicy/keep`` it is kept untouched.
/// * A parameter whose gradient is `nil` is skipped, as in PyTorch (no decay, no momentum).
/// * State is keyed by the parameter's dotted name; a different `Parameter` object (or a new
///   shape) under the same name starts with fresh state (a replaced head never inherits the
///   old head's momentum). A parameter object that moved to a new name keeps its state; state
///   of names that are no longer in the model is dropped.
/// * The effective learning rate of a parameter is `learningRate(at: stepCount) * parameter.lrMultiplier`:
///   the optimizer's `lr` (``learningRate``), scaled by the ``schedule`` when there is one.
///
/// ```swift
/// let optimizer = AdamW(model, lr: 1e-3, schedule: CosineWithWarmup(warmupSteps: 100, totalSteps: 1_000))
/// for (x, y) in batches {
///     optimizer.zeroGrad()
///     let loss = Tensor.crossEntropy(model(x), targets: y)
///     loss.backward()
///     clipGradNorm(model, maxNorm: 1)
///     optimizer.step()
/// }
/// ```
public protocol Optimizer: AnyObject {
    /// The base learning rate (the `lr:` it was built with). A ``schedule`` scales it and never
    /// changes it; see ``learningRate(at:)`` for the rate a step trains with.
    var learningRate: Float { get set }
    /// Scales ``learningRate`` at each step (`schedule.learningRate(at: stepCount, base: learningRate)`).
    var schedule: (any LearningRateSchedule)? { get set }
    /// Number of completed calls to ``step()``.
    var stepCount: Int { get }
    /// What happens to a parameter's state when it trains again after being frozen.
    var unfreezePolicy: UnfreezePolicy { get set }
    /// Applies one update to every trainable parameter that has a gradient.
    func step()
    /// Clears the gradient of every parameter, frozen or not (PyTorch's `zero_grad(set_to_none=True)`).
    func zeroGrad()
    /// Names of the parameters that currently hold optimizer state, sorted.
    var parameterNamesWithState: [String] { get }
    /// The state of the parameter with this dotted name, if it has any.
    func state(for name: String) -> OptimizerState?
    /// Drops all state (momentum buffers, moments, per-parameter step counts).
    func resetState()
    /// A copy of the state in memory: per-parameter state, step count and learning rate
    /// (PyTorch's `optimizer.state_dict()`; Checkpoint writes it to files).
    ///
    /// ```swift
    /// let saved = optimizer.exportState()
    /// // ... try something ...
    /// try optimizer.importState(saved)
    /// ```
    func exportState() -> OptimizerStateSnapshot
    /// Replaces the state with `snapshot` (taken from an optimizer of the same kind over
    /// parameters of the same names and shapes). Nothing changes when it throws.
    func importState(_ snapshot: OptimizerStateSnapshot) throws(OptimizerStateError)
}

extension Optimizer {
    /// The base rate step `step` (0-based) trains with: ``learningRate`` as the ``schedule``
    /// sets it for that step, or ``learningRate`` itself without a schedule.
    ///
    /// ```swift
    /// let sgd = SGD(model, lr: 0.1, schedule: StepLR(stepSize: 30, gamma: 0.1))
    /// sgd.learningRate(at: 45)               // 0.01
    /// sgd.learningRate(at: sgd.stepCount)    // the rate of the next step
    /// ```
    public func learningRate(at step: Int) -> Float {
        schedule?.learningRate(at: step, base: learningRate) ?? learningRate
    }
}

/// An optimizer's whole state in memory (see ``Optimizer/exportState()``).
public struct OptimizerStateSnapshot {
    /// Number of completed steps.
    public var stepCount: Int
    /// The base learning rate (``Optimizer/learningRate``) at the time of the snapshot.
    public var learningRate: Float
    /// Per-parameter state by dotted parameter name.
    public var parameters: [String: OptimizerState]

    public init(stepCount: Int, learningRate: Float, parameters: [String: OptimizerState]) {
        self.stepCount = stepCount; self.learningRate = learningRate; self.parameters = parameters
    }
}

/// Why ``Optimizer/importState(_:)`` refused a snapshot.
public enum OptimizerStateError: Error, Equatable, CustomStringConvertible {
    /// State for a name that is not a parameter of this optimizer.
    case unknownParameter(String)
    /// A parameter's state holds other buffers than this optimizer keeps.
    case buffersDoNotMatch(parameter: String, expected: [String], found: [String])
    /// A state buffer's shape differs from its parameter's.
    case shapeMismatch(parameter: String, buffer: String, expected: [Int], found: [Int])
    /// A negative step count, or a parameter's step below 1.
    case invalidStep(parameter: String?)

    public var description: String {
        switch self {
        case .unknownParameter(let name): return "optimizer state for unknown parameter \(name)"
        case .buffersDoNotMatch(let name, let expected, let found):
            return "optimizer state for \(name) has buffers \(found), expected \(expected)"
        case .shapeMismatch(let name, let buffer, let expected, let found):
            return "optimizer state \(name).\(buffer) has shape \(found), parameter has \(expected)"
        case .invalidStep(let name): return "invalid step count" + (name.map { " for \($0)" } ?? "")
        }
    }
}

/// The plumbing the built-in optimizers share: parameters re-read at every step, state keyed
/// by parameter name, the schedule and the unfreeze policy. Subclasses supply ``step()``.
public class BuiltInOptimizer: Optimizer {
    let core: OptimizerBookkeeping

    init(core: OptimizerBookkeeping) { self.core = core }

    public var learningRate: Float {
        get { core.learningRate }
        set { core.learningRate = newValue }
    }
    public var schedule: (any LearningRateSchedule)? {
        get { core.schedule }
        set { core.schedule = newValue }
    }
    public var unfreezePolicy: UnfreezePolicy {
        get { core.unfreezePolicy }
        set { core.unfreezePolicy = newValue }
    }
    public var stepCount: Int { core.stepCount }
    public var parameterNamesWithState: [String] { core.parameterNamesWithState }
    public func state(for name: String) -> OptimizerState? { core.state(for: name) }
    public func resetState() { core.resetState() }
    public func zeroGrad() { core.zeroGrad() }

    public func exportState() -> OptimizerStateSnapshot {
        var parameters: [String: OptimizerState] = [:]
        for name in parameterNamesWithState {
            var state = state(for: name)!
            state.tensors = state.tensors.mapValues { $0.contiguousCopy() }   // the optimizer updates its buffers in place
            parameters[name] = state
        }
        return OptimizerStateSnapshot(stepCount: stepCount, learningRate: learningRate, parameters: parameters)
    }

    public func importState(_ snapshot: OptimizerStateSnapshot) throws(OptimizerStateError) {
        guard snapshot.stepCount >= 0 else { throw .invalidStep(parameter: nil) }
        let current = Dictionary(core.source.namedParameters().map { ($0.name, $0.parameter) }, uniquingKeysWith: { a, _ in a })
        var states: [String: OptimizerState] = [:]
        for (name, state) in snapshot.parameters.sorted(by: { $0.key < $1.key }) {
            guard let parameter = current[name] else { throw .unknownParameter(name) }
            guard Set(state.tensors.keys) == Set(core.bufferNames) else {
                throw .buffersDoNotMatch(parameter: name, expected: core.bufferNames.sorted(), found: state.tensors.keys.sorted())
            }
            guard state.step >= 1 else { throw .invalidStep(parameter: name) }
            for buffer in core.bufferNames where state.tensors[buffer]!.shape != parameter.shape {
                throw .shapeMismatch(parameter: name, buffer: buffer, expected: parameter.shape, found: state.tensors[buffer]!.shape)
            }
            var copy = state
            copy.tensors = state.tensors.mapValues { $0.contiguousCopy() }
            states[name] = copy
        }
        core.restore(stepCount: snapshot.stepCount, states: states)
        learningRate = snapshot.learningRate
    }

    /// Applies the optimizer's update rule (each subclass overrides it).
    public func step() {
        preconditionFailure("\(type(of: self)) must override step()")
    }
}

extension Optimizer {
    /// Number of parameters that hold optimizer state.
    public var stateCount: Int { parameterNamesWithState.count }
}

/// What an optimizer does with a parameter's state when the parameter is unfrozen.
///
/// A freeze is noticed when ``Optimizer/step()`` runs while the parameter is frozen.
public enum UnfreezePolicy: Sendable, Equatable {
    /// Drop the state as soon as the optimizer sees the parameter frozen, so it starts fresh
    /// when unfrozen (momentum buffers start from the gradient, Adam's bias correction starts
    /// at step 1), and frozen parameters hold no memory. The default.
    case reset
    /// Keep the state while frozen (untouched) and continue from it when unfrozen.
    case keep
}

/// A snapshot of one parameter's optimizer state, with PyTorch's state-dict names
/// (`momentum_buffer`, `exp_avg`, `exp_avg_sq`).
public struct OptimizerState {
    /// Updates this parameter has received since its state was created.
    public var step: Int
    /// State tensors by name.
    public var tensors: [String: Tensor]
}

/// Where an optimizer finds its parameters.
enum ParameterSource {
    case module(Module)
    case list([(name: String, parameter: Parameter)])

    func namedParameters() -> [(name: String, parameter: Parameter)] {
        switch self {
        case .module(let m): return m.namedParameters()
        case .list(let l): return l
        }
    }

    /// A fixed list, with parameters listed twice kept once (under their first name).
    static func deduplicated(_ list: [(name: String, parameter: Parameter)]) -> ParameterSource {
        var seen = Set<ObjectIdentifier>()
        var names = Set<String>()
        var out: [(name: String, parameter: Parameter)] = []
        for entry in list where seen.insert(ObjectIdentifier(entry.parameter)).inserted {
            precondition(names.insert(entry.name).inserted, "optimizer: two parameters are named \(entry.name)")
            out.append(entry)
        }
        return .list(out)
    }
}

/// The state an optimizer keeps for one parameter.
final class ParameterSlot {
    /// The parameter the state belongs to (weak: a replaced parameter is not kept alive, and a
    /// new object under the same name never matches, even at a reused address).
    weak var parameter: Parameter?
    let shape: [Int]
    var step = 0
    var buffers: [Tensor]

    init(parameter: Parameter, buffers: [Tensor]) {
        self.parameter = parameter
        self.shape = parameter.shape
        self.buffers = buffers
    }

    /// Whether this state belongs to `p`: the same object, with the same shape.
    func matches(_ p: Parameter) -> Bool { parameter === p && shape == p.shape }
}

/// One parameter's update as the core hands it to an optimizer.
struct ParameterUpdate {
    let parameter: Parameter
    let gradient: Tensor
    /// The step's (scheduled) base learning rate times the parameter's multiplier.
    let learningRate: Float
    /// Weight decay times the parameter's multiplier (0 for exempt roles).
    let weightDecay: Float
}

/// The bookkeeping shared by all optimizers: live enumeration, frozen/no-grad skipping,
/// name-keyed state with identity checks, multipliers, the schedule and the step count.
final class OptimizerBookkeeping {
    let source: ParameterSource
    var learningRate: Float
    var schedule: (any LearningRateSchedule)?
    /// The momentum (SGD) or beta1 (Adam) the schedule set for the step being run, if it cycles one.
    private(set) var scheduledMomentum: Float?
    var unfreezePolicy: UnfreezePolicy
    let weightDecay: Float
    let decayBiasesAndNorms: Bool
    private(set) var stepCount = 0
    private(set) var slots: [String: ParameterSlot] = [:]
    /// State tensor names, in `ParameterSlot.buffers` order.
    let bufferNames: [String]

    init(source: ParameterSource, learningRate: Float, schedule: (any LearningRateSchedule)?,
         weightDecay: Float, decayBiasesAndNorms: Bool, unfreezePolicy: UnfreezePolicy, bufferNames: [String]) {
        precondition(learningRate >= 0 && learningRate.isFinite, "optimizer: invalid learning rate \(learningRate)")
        precondition(weightDecay >= 0 && weightDecay.isFinite, "optimizer: invalid weight decay \(weightDecay)")
        self.source = source
        self.schedule = schedule
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.decayBiasesAndNorms = decayBiasesAndNorms
        self.unfreezePolicy = unfreezePolicy
        self.bufferNames = bufferNames
    }

    /// Whether weight decay applies to a parameter of this role.
    func decays(_ role: Parameter.Role) -> Bool {
        switch role {
        case .bias, .normalization: return decayBiasesAndNorms
        case .weight, .embedding, .other: return true
        }
    }

    /// Runs one optimizer step. `update` is called once per trainable parameter with a
    /// gradient, with its slot when `needsState` (created by `makeBuffers` on first use).
    func step(needsState: Bool, makeBuffers: (ParameterUpdate) -> [Tensor],
              update: (ParameterUpdate, ParameterSlot?) -> Void) {
        let rate = schedule?.learningRate(at: stepCount, base: learningRate) ?? learningRate
        scheduledMomentum = schedule?.momentum(at: stepCount)
        let named = source.namedParameters()
        let present = Set(named.map(\.name))
        // State under names that left the model, by parameter object: a parameter that moved
        // to a new name (e.g. wrapped in a container) keeps its state, as in PyTorch.
        var orphans: [ObjectIdentifier: ParameterSlot]?
        withoutGradients {
            for (name, p) in named {
                if p.isFrozen {
                    if unfreezePolicy == .reset { slots[name] = nil }
                    continue
                }
                guard let gradient = p.grad else { continue }
                precondition(gradient.shape == p.shape,
                             "optimizer: gradient of \(name) has shape \(gradient.shape), parameter has \(p.shape)")
                let wd = decays(p.role) ? weightDecay * p.weightDecayMultiplier : 0
                let u = ParameterUpdate(parameter: p, gradient: gradient,
                                        learningRate: rate * p.lrMultiplier, weightDecay: wd)
                guard needsState else {
                    slots[name] = nil
                    update(u, nil)
                    continue
                }
                let slot: ParameterSlot
                if let existing = slots[name], existing.matches(p) {
                    slot = existing
                } else {
                    if orphans == nil {
                        orphans = [:]
                        for (key, s) in slots where !present.contains(key) {
                            if let owner = s.parameter { orphans![ObjectIdentifier(owner)] = s }
                        }
                    }
                    if let moved = orphans![ObjectIdentifier(p)], moved.matches(p) {
                        slot = moved
                        orphans![ObjectIdentifier(p)] = nil
                    } else {
                        slot = ParameterSlot(parameter: p, buffers: makeBuffers(u))
                    }
                    slots[name] = slot
                }
                slot.step += 1
                update(u, slot)
            }
        }
        if !slots.isEmpty {
            // Drop state of names that left the model (moved slots are also under their new name).
            for name in slots.keys where !present.contains(name) { slots[name] = nil }
        }
        stepCount += 1
    }

    func zeroGrad() {
        for (_, p) in source.namedParameters() { p.grad = nil }
    }

    var parameterNamesWithState: [String] { slots.keys.sorted() }

    func state(for name: String) -> OptimizerState? {
        guard let slot = slots[name] else { return nil }
        var tensors: [String: Tensor] = [:]
        for (key, t) in zip(bufferNames, slot.buffers) { tensors[key] = t }
        return OptimizerState(step: slot.step, tensors: tensors)
    }

    func resetState() { slots.removeAll() }

    /// Replaces all state: `states` by parameter name (the names must be current parameters
    /// with matching buffer shapes; the caller checked), and the step count.
    func restore(stepCount: Int, states: [String: OptimizerState]) {
        let parameters = Dictionary(source.namedParameters().map { ($0.name, $0.parameter) }, uniquingKeysWith: { a, _ in a })
        slots.removeAll()
        for (name, state) in states {
            let slot = ParameterSlot(parameter: parameters[name]!, buffers: bufferNames.map { state.tensors[$0]! })
            slot.step = state.step
            slots[name] = slot
        }
        self.stepCount = stepCount
    }
}
