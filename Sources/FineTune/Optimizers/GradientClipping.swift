import Foundation

/// Why ``clipGradNorm(_:maxNorm:normType:errorIfNonfinite:)`` refused to clip.
public enum GradientClippingError: Error, CustomStringConvertible, Sendable {
    /// The total gradient norm is NaN or infinite; no gradient was changed.
    case nonFiniteNorm(Float)

    public var description: String {
        switch self {
        case .nonFiniteNorm(let norm):
            return "the total gradient norm is \(norm); gradients were left unchanged"
        }
    }
}

/// Scales the gradients of `parameters` so that their total norm is at most `maxNorm`, like
/// `torch.nn.utils.clip_grad_norm_`, and returns the total norm *before* clipping.
///
/// Only trainable (unfrozen) parameters with a gradient count and are changed. The norm is the
/// `normType`-norm of all gradients concatenated (`.infinity` for the max-abs norm), accumulated
/// in Double. When the total exceeds `maxNorm`, every gradient is multiplied by
/// `maxNorm / (total + 1e-6)`. A non-finite total is returned as is (and, as in PyTorch, the
/// gradients are multiplied by the resulting NaN or zero factor): check the result, or use
/// the `errorIfNonfinite:` overload to get an error instead.
///
/// ```swift
/// loss.backward()
/// let norm = clipGradNorm(model, maxNorm: 1.0)
/// if norm.isFinite { optimizer.step() }
/// ```
@discardableResult
public func clipGradNorm(_ parameters: [Parameter], maxNorm: Float, normType: Float = 2) -> Float {
    GradientClipping.clipNorm(parameters, maxNorm: maxNorm, normType: normType, errorIfNonfinite: false).norm
}

/// ``clipGradNorm(_:maxNorm:normType:)`` over the parameters of `module`.
@discardableResult
public func clipGradNorm(_ module: Module, maxNorm: Float, normType: Float = 2) -> Float {
    clipGradNorm(module.parameters(), maxNorm: maxNorm, normType: normType)
}

/// ``clipGradNorm(_:maxNorm:normType:)`` that throws ``GradientClippingError/nonFiniteNorm(_:)``
/// (changing no gradient) when the total norm is NaN or infinite and `errorIfNonfinite` is true.
///
/// ```swift
/// do { try clipGradNorm(model, maxNorm: 1, errorIfNonfinite: true); optimizer.step() }
/// catch { print("skipping step:", error) }
/// ```
@discardableResult
public func clipGradNorm(_ parameters: [Parameter], maxNorm: Float, normType: Float = 2,
                         errorIfNonfinite: Bool) throws(GradientClippingError) -> Float {
    let result = GradientClipping.clipNorm(parameters, maxNorm: maxNorm, normType: normType,
                                           errorIfNonfinite: errorIfNonfinite)
    if result.refused { throw .nonFiniteNorm(result.norm) }
    return result.norm
}

/// The throwing ``clipGradNorm(_:maxNorm:normType:errorIfNonfinite:)`` over `module`'s parameters.
@discardableResult
public func clipGradNorm(_ module: Module, maxNorm: Float, normType: Float = 2,
                         errorIfNonfinite: Bool) throws(GradientClippingError) -> Float {
    try clipGradNorm(module.parameters(), maxNorm: maxNorm, normType: normType, errorIfNonfinite: errorIfNonfinite)
}

/// Clamps every gradient element of the trainable `parameters` to `[-clipValue, clipValue]`,
/// like `torch.nn.utils.clip_grad_value_`. Frozen parameters and missing gradients are skipped.
///
/// ```swift
/// clipGradValue(model, clipValue: 0.5)
/// ```
public func clipGradValue(_ parameters: [Parameter], clipValue: Float) {
    precondition(clipValue >= 0, "clipGradValue: clipValue must be non-negative, got \(clipValue)")
    for p in parameters where !p.isFrozen {
        GradientClipping.modifyGradient(of: p) { OptimizerKernels.clamp($0, count: $1, limit: clipValue) }
    }
}

/// ``clipGradValue(_:clipValue:)`` over the parameters of `module`.
public func clipGradValue(_ module: Module, clipValue: Float) {
    clipGradValue(module.parameters(), clipValue: clipValue)
}

enum GradientClipping {
    static func clipNorm(_ parameters: [Parameter], maxNorm: Float, normType: Float,
                         errorIfNonfinite: Bool) -> (norm: Float, refused: Bool) {
        precondition(normType > 0, "clipGradNorm: normType must be positive, got \(normType)")
        precondition(maxNorm >= 0, "clipGradNorm: maxNorm must be non-negative, got \(maxNorm)")
        var seen = Set<ObjectIdentifier>()
        let trainable = parameters.filter { !$0.isFrozen && $0.grad != nil && seen.insert(ObjectIdentifier($0)).inserted }
        guard !trainable.isEmpty else { return (0, false) }
        var accumulated: Double = 0
        for p in trainable {
            let part = p.grad!.withUnsafeBufferPointer {
                OptimizerKernels.normAccumulate($0.baseAddress!, count: $0.count, p: normType)
            }
            if normType == .infinity {
                accumulated = part > accumulated || part.isNaN ? part : accumulated
            } else {
                accumulated += part
            }
        }
        let total: Double
        switch normType {
        case .infinity, 1: total = accumulated
        case 2: total = accumulated.squareRoot()
        default: total = pow(accumulated, 1 / Double(normType))
        }
        let norm = Float(total)
        if errorIfNonfinite && !norm.isFinite { return (norm, true) }
        let coefficient = Float(Double(maxNorm) / (Double(norm) + 1e-6))
        if coefficient < 1 || coefficient.isNaN {
            for p in trainable {
                modifyGradient(of: p) { g, n in KernelProfile.measure(.optimizer) { Kernels.scale(coefficient, g, count: n) } }
            }
        }
        return (norm, false)
    }

    /// Edits a parameter's gradient in place (detached from the parameter meanwhile, so its
    /// storage is uniquely owned and not copied).
    static func modifyGradient(of p: Parameter, _ body: (UnsafeMutablePointer<Float>, Int) -> Void) {
        guard var g = p.grad else { return }
        p.grad = nil
        g.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        p.grad = g
    }
}
