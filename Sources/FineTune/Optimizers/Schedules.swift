import Foundation

/// A learning rate as a function of the optimizer step and the optimizer's base rate.
///
/// The base rate has one source, as in PyTorch: the optimizer's `lr` (``Optimizer/learningRate``).
/// A schedule scales it; only ``OneCycleLR`` sets its own rates from its `maxLR`, as PyTorch's does.
/// `step` is the index of the optimizer step about to run, starting at 0: an optimizer with a
/// schedule trains step `stepCount` with `schedule.learningRate(at: stepCount, base: learningRate)`
/// (``Optimizer/learningRate(at:)``). This is PyTorch's convention of calling `scheduler.step()`
/// after each `optimizer.step()` (per-iteration scheduling). Each parameter then trains with this
/// rate times its `lrMultiplier`.
///
/// ```swift
/// let optimizer = AdamW(model, lr: 3e-4, schedule: CosineWithWarmup(warmupSteps: 500, totalSteps: 10_000, minLR: 1e-5))
/// optimizer.learningRate(at: 250)    // 1.5e-4, halfway through warmup
/// ```
public protocol LearningRateSchedule: Sendable {
    /// The learning rate for optimizer step `step` (0-based) of an optimizer whose `lr` is `base`.
    func learningRate(at step: Int, base: Float) -> Float
    /// The momentum for step `step` when the schedule cycles it (``OneCycleLR``), else nil.
    /// Optimizers use it as SGD's `momentum` or Adam's `beta1`.
    func momentum(at step: Int) -> Float?
}

extension LearningRateSchedule {
    /// Schedules leave momentum alone unless they say otherwise.
    public func momentum(at step: Int) -> Float? { nil }
}

/// Multiplies the rate by `gamma` every `stepSize` steps (`torch.optim.lr_scheduler.StepLR`):
/// `lr * gamma^(step / stepSize)` (integer division).
///
/// ```swift
/// StepLR(stepSize: 30, gamma: 0.1).learningRate(at: 65, base: 0.1)   // 0.001
/// ```
public struct StepLR: LearningRateSchedule {
    public var stepSize: Int
    public var gamma: Float
    public init(stepSize: Int, gamma: Float = 0.1) {
        precondition(stepSize > 0, "StepLR: stepSize must be positive")
        self.stepSize = stepSize; self.gamma = gamma
    }
    public func learningRate(at step: Int, base: Float) -> Float {
        Float(Double(base) * Foundation.pow(Double(gamma), Double(max(step, 0) / stepSize)))
    }
}

/// Multiplies the rate by `gamma` every step (`ExponentialLR`): `lr * gamma^step`.
///
/// ```swift
/// ExponentialLR(gamma: 0.99).learningRate(at: 100, base: 0.1)   // 0.0366
/// ```
public struct ExponentialLR: LearningRateSchedule {
    public var gamma: Float
    public init(gamma: Float) { self.gamma = gamma }
    public func learningRate(at step: Int, base: Float) -> Float {
        Float(Double(base) * Foundation.pow(Double(gamma), Double(max(step, 0))))
    }
}

/// Linear warmup from 0 to the optimizer's `lr` over `warmupSteps`, then cosine decay to
/// `minLR` at `totalSteps` (Hugging Face's `get_cosine_schedule_with_warmup`, with PyTorch's
/// `eta_min` floor). Constant at `minLR` afterwards.
///
/// ```text
/// step < warmup:  lr * step / warmup
/// otherwise:      minLR + (lr - minLR) * 0.5 * (1 + cos(pi * (step - warmup) / (total - warmup)))
/// ```
///
/// ```swift
/// let s = CosineWithWarmup(warmupSteps: 100, totalSteps: 1_100)
/// s.learningRate(at: 600, base: 1e-3)   // 5e-4
/// ```
public struct CosineWithWarmup: LearningRateSchedule {
    public var warmupSteps: Int
    public var totalSteps: Int
    /// The floor the rate decays to (an absolute rate, as PyTorch's `eta_min`).
    public var minLR: Float
    public init(warmupSteps: Int, totalSteps: Int, minLR: Float = 0) {
        precondition(warmupSteps >= 0 && totalSteps >= warmupSteps, "CosineWithWarmup: need 0 <= warmupSteps <= totalSteps")
        self.warmupSteps = warmupSteps; self.totalSteps = totalSteps; self.minLR = minLR
    }
    public func learningRate(at step: Int, base: Float) -> Float {
        let step = max(step, 0)
        if let rate = linearWarmup(step, base: base, warmupSteps: warmupSteps) { return rate }
        let progress = min(1, Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps)))
        let cosine = 0.5 * (1 + Foundation.cos(Double.pi * progress))
        return Float(Double(minLR) + (Double(base) - Double(minLR)) * cosine)
    }
}

/// Linear warmup from 0 to the optimizer's `lr` over `warmupSteps`, then linear decay to
/// `minLR` at `totalSteps` (Hugging Face's `get_linear_schedule_with_warmup`, with a floor).
///
/// ```swift
/// let s = LinearWarmupDecay(warmupSteps: 10, totalSteps: 110)
/// s.learningRate(at: 5, base: 2e-5)    // 1e-5
/// s.learningRate(at: 60, base: 2e-5)   // 1e-5
/// ```
public struct LinearWarmupDecay: LearningRateSchedule {
    public var warmupSteps: Int
    public var totalSteps: Int
    /// The floor the rate decays to (an absolute rate).
    public var minLR: Float
    public init(warmupSteps: Int, totalSteps: Int, minLR: Float = 0) {
        precondition(warmupSteps >= 0 && totalSteps >= warmupSteps, "LinearWarmupDecay: need 0 <= warmupSteps <= totalSteps")
        self.warmupSteps = warmupSteps; self.totalSteps = totalSteps; self.minLR = minLR
    }
    public func learningRate(at step: Int, base: Float) -> Float {
        let step = max(step, 0)
        if let rate = linearWarmup(step, base: base, warmupSteps: warmupSteps) { return rate }
        let remaining = max(0, Double(totalSteps - step) / Double(max(1, totalSteps - warmupSteps)))
        return Float(Double(minLR) + (Double(base) - Double(minLR)) * remaining)
    }
}

/// The 1cycle policy with PyTorch's `OneCycleLR` defaults (two phases, `three_phase=False`):
/// from `maxLR / divFactor` up to `maxLR` over the first `pctStart` of `totalSteps`, then down
/// to `maxLR / divFactor / finalDivFactor` at step `totalSteps - 1`, with cosine (default) or
/// linear annealing. Steps past the end stay at the final rate (PyTorch raises instead).
/// Like PyTorch's, it sets the rates from `maxLR` and ignores the optimizer's `lr`.
///
/// Momentum cycles the other way (`cycle_momentum=True`, as in PyTorch and fastai): from
/// `maxMomentum` down to `baseMomentum` while the rate rises, back up while it falls. It
/// drives SGD's `momentum` (which must be non-zero, as PyTorch requires) or Adam's `beta1`.
///
/// ```swift
/// let s = OneCycleLR(maxLR: 0.01, totalSteps: 1_000)
/// s.learningRate(at: 0, base: 1)      // 0.0004 (whatever the optimizer's lr)
/// s.learningRate(at: 299, base: 1)    // 0.01
/// s.learningRate(at: 999, base: 1)    // 4e-8
/// s.momentum(at: 299)        // 0.85
/// ```
public struct OneCycleLR: LearningRateSchedule {
    public enum Annealing: Sendable { case cosine, linear }
    public var maxLR: Float
    public var totalSteps: Int
    public var pctStart: Float
    public var divFactor: Float
    public var finalDivFactor: Float
    public var annealing: Annealing
    /// Whether momentum cycles inversely to the rate (PyTorch's `cycle_momentum`).
    public var cycleMomentum: Bool
    /// The momentum at the peak rate, and at the start and end.
    public var baseMomentum: Float, maxMomentum: Float

    public init(maxLR: Float, totalSteps: Int, pctStart: Float = 0.3, divFactor: Float = 25,
                finalDivFactor: Float = 1e4, annealing: Annealing = .cosine,
                cycleMomentum: Bool = true, baseMomentum: Float = 0.85, maxMomentum: Float = 0.95) {
        precondition(totalSteps > 1, "OneCycleLR: totalSteps must be at least 2")
        precondition(pctStart > 0 && pctStart < 1, "OneCycleLR: pctStart must be in (0, 1)")
        precondition(baseMomentum >= 0 && maxMomentum < 1 && baseMomentum <= maxMomentum,
                     "OneCycleLR: need 0 <= baseMomentum <= maxMomentum < 1")
        self.maxLR = maxLR; self.totalSteps = totalSteps; self.pctStart = pctStart
        self.divFactor = divFactor; self.finalDivFactor = finalDivFactor; self.annealing = annealing
        self.cycleMomentum = cycleMomentum; self.baseMomentum = baseMomentum; self.maxMomentum = maxMomentum
    }

    /// The rate at step 0.
    public var initialLR: Float { Float(Double(maxLR) / Double(divFactor)) }
    /// The rate at the last step.
    public var finalLR: Float { Float(Double(maxLR) / Double(divFactor) / Double(finalDivFactor)) }

    /// The rate from `maxLR` (`base`, the optimizer's `lr`, is not used, as in PyTorch).
    public func learningRate(at step: Int, base: Float) -> Float {
        let initial = Double(maxLR) / Double(divFactor)
        return Float(cycle(step, start: initial, peak: Double(maxLR), end: initial / Double(finalDivFactor)))
    }

    public func momentum(at step: Int) -> Float? {
        guard cycleMomentum else { return nil }
        return Float(cycle(step, start: Double(maxMomentum), peak: Double(baseMomentum), end: Double(maxMomentum)))
    }

    /// `start` to `peak` over the first phase, then `peak` to `end` (rate and momentum alike).
    private func cycle(_ step: Int, start: Double, peak: Double, end: Double) -> Double {
        let peakStep = Double(pctStart) * Double(totalSteps) - 1    // PyTorch: float(pct_start * total_steps) - 1
        let lastStep = Double(totalSteps - 1)
        let t = Double(min(max(step, 0), totalSteps - 1))
        if t <= peakStep {
            return anneal(start, peak, pct: peakStep > 0 ? t / peakStep : 1)
        }
        return anneal(peak, end, pct: (t - peakStep) / (lastStep - peakStep))
    }

    private func anneal(_ start: Double, _ end: Double, pct: Double) -> Double {
        switch annealing {
        case .cosine: return end + (start - end) / 2 * (Foundation.cos(Double.pi * pct) + 1)
        case .linear: return (end - start) * pct + start
        }
    }
}

/// ULMFiT's slanted triangular learning rate (Howard & Ruder 2018): a short linear increase
/// over the first `cutFrac` of `totalSteps`, then a long linear decay, from `lr / ratio`
/// to the optimizer's `lr` (the peak) and back.
///
/// ```text
/// cut = floor(totalSteps * cutFrac)
/// p = step < cut ? step / cut : 1 - (step - cut) / (cut * (1 / cutFrac - 1))
/// rate = lr * (1 + p * (ratio - 1)) / ratio
/// ```
///
/// ```swift
/// let s = SlantedTriangular(totalSteps: 1_000)
/// s.learningRate(at: 100, base: 0.01)   // 0.01 (the peak)
/// ```
public struct SlantedTriangular: LearningRateSchedule {
    public var totalSteps: Int
    public var cutFrac: Float
    public var ratio: Float

    public init(totalSteps: Int, cutFrac: Float = 0.1, ratio: Float = 32) {
        precondition(totalSteps > 0 && cutFrac > 0 && cutFrac < 1, "SlantedTriangular: need totalSteps > 0 and 0 < cutFrac < 1")
        precondition(ratio >= 1, "SlantedTriangular: ratio must be at least 1")
        self.totalSteps = totalSteps; self.cutFrac = cutFrac; self.ratio = ratio
    }

    public func learningRate(at step: Int, base: Float) -> Float {
        let t = Double(max(step, 0))
        let cut = max(1, (Double(totalSteps) * Double(cutFrac)).rounded(.down))
        let p = t < cut ? t / cut : max(0, 1 - (t - cut) / (cut * (1 / Double(cutFrac) - 1)))
        return Float(Double(base) * (1 + p * (Double(ratio) - 1)) / Double(ratio))
    }
}

/// A schedule from a closure that returns the factor for a step (PyTorch's `LambdaLR`):
/// the rate is `lr * factor(step)`.
///
/// ```swift
/// let s = LambdaLR { step in 1 / Float(1 + step / 1000) }
/// s.learningRate(at: 2_500, base: 0.1)   // 0.0333
/// ```
public struct LambdaLR: LearningRateSchedule {
    public let factor: @Sendable (Int) -> Float
    public init(_ factor: @escaping @Sendable (Int) -> Float) { self.factor = factor }
    public func learningRate(at step: Int, base: Float) -> Float { base * factor(step) }
}

/// The rate `base * step / warmupSteps` while `step < warmupSteps` (the linear warmup shared by
/// the warmup schedules), else nil.
private func linearWarmup(_ step: Int, base: Float, warmupSteps: Int) -> Float? {
    step < warmupSteps ? Float(Double(base) * Double(step) / Double(max(1, warmupSteps))) : nil
}
