/// Root-mean-square normalisation over the trailing `normalizedShape` axes (PyTorch's
/// `nn.RMSNorm`, the `LlamaRMSNorm` of Hugging Face): `x / sqrt(mean(x^2) + eps) * weight`;
/// `weight` starts at ones. `eps: nil` uses Float32's machine epsilon as PyTorch does; LLaMA
/// configurations set `rms_norm_eps` (1e-5 or 1e-6).
///
/// The state-dict key is `weight`, as in both PyTorch and Hugging Face.
///
/// ```swift
/// let norm = RMSNorm(4096, eps: 1e-5)    // [B, T, 4096] -> [B, T, 4096]
/// ```
public final class RMSNorm: Module, ParameterInitializing {
    /// Scale of shape `normalizedShape` (nil without `elementwiseAffine`).
    public let weight: Parameter?

    /// The trailing axes normalised over.
    public let normalizedShape: [Int]
    /// Added to the mean square; nil means Float32's machine epsilon.
    public let eps: Float?

    /// Normalises over the trailing axes `normalizedShape`.
    public init(_ normalizedShape: [Int], eps: Float? = nil, elementwiseAffine: Bool = true) {
        precondition(!normalizedShape.isEmpty && normalizedShape.allSatisfy { $0 > 0 },
                     "RMSNorm: normalizedShape must be non-empty and positive, got \(normalizedShape)")
        self.normalizedShape = normalizedShape
        self.eps = eps
        weight = elementwiseAffine ? Parameter(Tensor.ones(normalizedShape), role: .normalization) : nil
        super.init()
    }

    /// Normalises over the last axis, of size `normalizedShape`.
    public convenience init(_ normalizedShape: Int, eps: Float? = nil, elementwiseAffine: Bool = true) {
        self.init([normalizedShape], eps: eps, elementwiseAffine: elementwiseAffine)
    }

    /// Sets `weight` to ones.
    public func resetParameters(generator: inout RandomGenerator) {
        if let weight { weight.value = Tensor.ones(weight.shape) }
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let n = normalizedShape.count
        Shape.check(x.rank >= n && Array(x.shape.suffix(n)) == normalizedShape, op: "RMSNorm(\(normalizedShape))",
                    shapes: [x.shape, normalizedShape], "expected input [..., \(normalizedShape.map(String.init).joined(separator: ", "))]")
        return Tensor.rmsNorm(x, normalizedAxes: n, weight: weight?.value, eps: eps)
    }
}
