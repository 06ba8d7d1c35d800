import Foundation

/// Adam with coupled L2 weight decay: exactly the algorithm of `torch.optim.Adam`
/// (`amsgrad=False`).
///
/// For each trainable parameter with a gradient, with `lr = learningRate(at: stepCount) * lrMultiplier` (the scheduled rate) and
/// `t` the parameter's own step count (so a parameter whose state was reset starts its bias
/// correction at 1, like a fresh PyTorch state):
///
/// ```text
/// g = grad + weightDecay * p                    (skipped for biases/norms by default)
/// m = beta1 * m + (1 - beta1) * g
/// v = beta2 * v + (1 - beta2) * g * g
/// p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// ```
///
/// For decoupled weight decay use ``AdamW``. Frozen parameters and parameters without a
/// gradient are skipped; see ``Optimizer``.
///
/// ```swift
/// let adam = Adam(model, lr: 1e-3)
/// loss.backward(); adam.step(); adam.zeroGrad()
/// ```
public class Adam: BuiltInOptimizer {
    public let beta1: Float
    public let beta2: Float
    public let eps: Float
    /// Weight decay, scaled by each parameter's `weightDecayMultiplier`: coupled L2 (added to
    /// the gradient) in `Adam`, decoupled (`p -= lr * weightDecay * p`) in ``AdamW``.
    public let weightDecay: Float
    /// Whether weight decay is decoupled from the gradient (``AdamW``).
    public let isDecoupled: Bool
    /// Whether weight decay also applies to `.bias` and `.normalization` parameters.
    public let decayBiasesAndNorms: Bool

    /// An optimizer over `module`'s parameters, re-enumerated at every step.
    public convenience init(_ module: Module, lr: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                            eps: Float = 1e-8, weightDecay: Float = 0, decayBiasesAndNorms: Bool = false,
                            schedule: (any LearningRateSchedule)? = nil, unfreezePolicy: UnfreezePolicy = .reset) {
        self.init(source: .module(module), lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay,
                  decayBiasesAndNorms: decayBiasesAndNorms, schedule: schedule, unfreezePolicy: unfreezePolicy,
                  decoupled: false)
    }

    /// An optimizer over a fixed list of named parameters.
    public convenience init(parameters: [(name: String, parameter: Parameter)], lr: Float = 1e-3, beta1: Float = 0.9,
                            beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0,
                            decayBiasesAndNorms: Bool = false, schedule: (any LearningRateSchedule)? = nil,
                            unfreezePolicy: UnfreezePolicy = .reset) {
        self.init(source: .deduplicated(parameters), lr: lr, beta1: beta1, beta2: beta2, eps: eps,
                  weightDecay: weightDecay, decayBiasesAndNorms: decayBiasesAndNorms, schedule: schedule,
                  unfreezePolicy: unfreezePolicy, decoupled: false)
    }

    init(source: ParameterSource, lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float,
         decayBiasesAndNorms: Bool, schedule: (any LearningRateSchedule)?, unfreezePolicy: UnfreezePolicy,
         decoupled: Bool) {
        AdamStep.validate(beta1: beta1, beta2: beta2, eps: eps)
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
        self.weightDecay = weightDecay
        self.isDecoupled = decoupled
        self.decayBiasesAndNorms = decayBiasesAndNorms
        super.init(core: OptimizerBookkeeping(source: source, learningRate: lr, schedule: schedule, weightDecay: weightDecay,
                             decayBiasesAndNorms: decayBiasesAndNorms, unfreezePolicy: unfreezePolicy,
                             bufferNames: AdamStep.bufferNames))
    }

    public override func step() {
        AdamStep.run(core, beta1: beta1, beta2: beta2, eps: eps, decoupled: isDecoupled)
    }
}

/// Adam with decoupled weight decay: exactly the algorithm of `torch.optim.AdamW`.
///
/// Before the Adam update (without L2 term), each parameter decays by its own effective
/// learning rate: `p -= lr * weightDecay * p`, with `lr = learningRate(at: stepCount) * lrMultiplier` (the scheduled rate) and
/// `weightDecay` scaled by the parameter's `weightDecayMultiplier`. Biases and normalisation
/// parameters are not decayed unless `decayBiasesAndNorms` (the usual transformer recipe;
/// PyTorch decays everything unless you build parameter groups). Embeddings are decayed.
///
/// ```swift
/// let opt = AdamW(model, lr: 2e-5, weightDecay: 0.01,
///                 schedule: LinearWarmupDecay(warmupSteps: 100, totalSteps: 3_000))   // scales lr
/// ```
public final class AdamW: Adam {
    /// An optimizer over `module`'s parameters, re-enumerated at every step.
    public convenience init(_ module: Module, lr: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                            eps: Float = 1e-8, weightDecay: Float = 0.01, decayBiasesAndNorms: Bool = false,
                            schedule: (any LearningRateSchedule)? = nil, unfreezePolicy: UnfreezePolicy = .reset) {
        self.init(source: .module(module), lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay,
                  decayBiasesAndNorms: decayBiasesAndNorms, schedule: schedule, unfreezePolicy: unfreezePolicy,
                  decoupled: true)
    }

    /// An optimizer over a fixed list of named parameters.
    public convenience init(parameters: [(name: String, parameter: Parameter)], lr: Float = 1e-3, beta1: Float = 0.9,
                            beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0.01,
                            decayBiasesAndNorms: Bool = false, schedule: (any LearningRateSchedule)? = nil,
                            unfreezePolicy: UnfreezePolicy = .reset) {
        self.init(source: .deduplicated(parameters), lr: lr, beta1: beta1, beta2: beta2, eps: eps,
                  weightDecay: weightDecay, decayBiasesAndNorms: decayBiasesAndNorms, schedule: schedule,
                  unfreezePolicy: unfreezePolicy, decoupled: true)
    }
}

/// The update shared by ``Adam`` and ``AdamW``.
enum AdamStep {
    static let bufferNames = ["exp_avg", "exp_avg_sq"]

    static func validate(beta1: Float, beta2: Float, eps: Float) {
        precondition(beta1 >= 0 && beta1 < 1, "Adam: beta1 must be in [0, 1), got \(beta1)")
        precondition(beta2 >= 0 && beta2 < 1, "Adam: beta2 must be in [0, 1), got \(beta2)")
        precondition(eps >= 0 && eps.isFinite, "Adam: invalid eps \(eps)")
    }

    static func run(_ core: OptimizerBookkeeping, beta1: Float, beta2: Float, eps: Float, decoupled: Bool) {
        core.step(needsState: true, makeBuffers: { u in [Tensor.zeros(u.parameter.shape), Tensor.zeros(u.parameter.shape)] }) { u, slot in
            guard let slot else { return }
            let beta1 = core.scheduledMomentum ?? beta1    // a one-cycle schedule cycles beta1
            // Bias corrections in Double, as PyTorch computes them on Python floats.
            let t = Double(slot.step)
            let bc1 = 1 - Foundation.pow(Double(beta1), t)
            let bc2 = 1 - Foundation.pow(Double(beta2), t)
            let stepSize = Float(Double(u.learningRate) / bc1)
            let bc2Sqrt = Float(bc2.squareRoot())
            let decay: Float = decoupled ? Float(1 - Double(u.learningRate) * Double(u.weightDecay)) : 1
            let l2: Float = decoupled ? 0 : u.weightDecay
            // Take the moments out of the slot so each is uniquely owned and written in place.
            var m = slot.buffers[0], v = slot.buffers[1]
            slot.buffers = []
            defer { slot.buffers = [m, v] }
            u.gradient.withUnsafeBufferPointer { gb in
                u.parameter.value.withUnsafeMutableBufferPointer { wb in
                    m.withUnsafeMutableBufferPointer { mb in
                        v.withUnsafeMutableBufferPointer { vb in
                            OptimizerKernels.adam(w: wb.baseAddress!, g: gb.baseAddress!, m: mb.baseAddress!,
                                                  v: vb.baseAddress!, count: wb.count, decay: decay, l2: l2,
                                                  beta1: beta1, beta2: beta2, eps: eps,
                                                  stepSize: stepSize, biasCorrection2Sqrt: bc2Sqrt)
                        }
                    }
                }
            }
        }
    }
}
