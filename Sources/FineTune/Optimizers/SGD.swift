/// Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight
/// decay: exactly the algorithm of `torch.optim.SGD`.
///
/// For each trainable parameter with a gradient, with `lr = learningRate(at: stepCount) * lrMultiplier` (the scheduled rate):
///
/// ```text
/// g = grad + weightDecay * p                        (coupled L2; skipped for biases/norms by default)
/// buf = g                              on the parameter's first step
/// buf = momentum * buf + (1 - dampening) * g        afterwards
/// g = nesterov ? g + momentum * buf : buf           (when momentum != 0)
/// p -= lr * g
/// ```
///
/// Frozen parameters and parameters without a gradient are skipped; see ``Optimizer``.
///
/// ```swift
/// let sgd = SGD(model, lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 5e-4)
/// model.parameter(named: "head.weight")?.lrMultiplier = 10
/// loss.backward(); sgd.step(); sgd.zeroGrad()
/// ```
public final class SGD: BuiltInOptimizer {
    public let momentum: Float
    public let dampening: Float
    public let nesterov: Bool
    /// Coupled L2 weight decay (scaled by each parameter's `weightDecayMultiplier`).
    public let weightDecay: Float
    /// Whether weight decay also applies to `.bias` and `.normalization` parameters.
    public let decayBiasesAndNorms: Bool

    /// An optimizer over `module`'s parameters, re-enumerated at every step.
    public convenience init(_ module: Module, lr: Float = 1e-3, momentum: Float = 0, dampening: Float = 0,
                            nesterov: Bool = false, weightDecay: Float = 0, decayBiasesAndNorms: Bool = false,
                            schedule: (any LearningRateSchedule)? = nil, unfreezePolicy: UnfreezePolicy = .reset) {
        self.init(source: .module(module), lr: lr, momentum: momentum, dampening: dampening, nesterov: nesterov,
                  weightDecay: weightDecay, decayBiasesAndNorms: decayBiasesAndNorms, schedule: schedule,
                  unfreezePolicy: unfreezePolicy)
    }

    /// An optimizer over a fixed list of named parameters (e.g. `model.namedParameters()` filtered).
    public convenience init(parameters: [(name: String, parameter: Parameter)], lr: Float = 1e-3, momentum: Float = 0,
                            dampening: Float = 0, nesterov: Bool = false, weightDecay: Float = 0,
                            decayBiasesAndNorms: Bool = false, schedule: (any LearningRateSchedule)? = nil,
                            unfreezePolicy: UnfreezePolicy = .reset) {
        self.init(source: .deduplicated(parameters), lr: lr, momentum: momentum, dampening: dampening,
                  nesterov: nesterov, weightDecay: weightDecay, decayBiasesAndNorms: decayBiasesAndNorms,
                  schedule: schedule, unfreezePolicy: unfreezePolicy)
    }

    init(source: ParameterSource, lr: Float, momentum: Float, dampening: Float, nesterov: Bool, weightDecay: Float,
         decayBiasesAndNorms: Bool, schedule: (any LearningRateSchedule)?, unfreezePolicy: UnfreezePolicy) {
        precondition(momentum >= 0 && momentum.isFinite, "SGD: invalid momentum \(momentum)")
        precondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov momentum requires a momentum and zero dampening")
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        self.decayBiasesAndNorms = decayBiasesAndNorms
        super.init(core: OptimizerBookkeeping(source: source, learningRate: lr, schedule: schedule, weightDecay: weightDecay,
                             decayBiasesAndNorms: decayBiasesAndNorms, unfreezePolicy: unfreezePolicy,
                             bufferNames: ["momentum_buffer"]))
    }

    public override func step() {
        let dampening = dampening, nesterov = nesterov, configured = momentum
        precondition(momentum != 0 || schedule?.momentum(at: stepCount) == nil,
                     "SGD: the schedule cycles momentum, so SGD needs a non-zero momentum "
                     + "(e.g. SGD(model, momentum: 0.9)) or a schedule with cycleMomentum: false")
        let core = core
        core.step(needsState: momentum != 0, makeBuffers: { [Tensor.zeros($0.parameter.shape)] }) { u, slot in
            let lr = u.learningRate, wd = u.weightDecay
            let momentum = core.scheduledMomentum ?? configured
            u.gradient.withUnsafeBufferPointer { gb in
                u.parameter.value.withUnsafeMutableBufferPointer { wb in
                    let g = gb.baseAddress!, w = wb.baseAddress!, n = wb.count
                    guard let slot else {
                        OptimizerKernels.sgd(w: w, g: g, count: n, lr: lr, weightDecay: wd)
                        return
                    }
                    let firstStep = slot.step == 1
                    slot.buffers[0].withUnsafeMutableBufferPointer { bb in
                        OptimizerKernels.sgdMomentum(w: w, g: g, buffer: bb.baseAddress!, count: n, lr: lr, weightDecay: wd,
                                                     momentum: momentum, dampening: dampening, nesterov: nesterov,
                                                     firstStep: firstStep)
                    }
                }
            }
        }
    }
}
