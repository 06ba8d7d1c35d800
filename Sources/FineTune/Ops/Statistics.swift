// Spread and soft maxima: variance and standard deviation with PyTorch's `correction`, and
// logsumexp. Built from the differentiable primitives, so their gradients come from those.

extension Tensor {
    /// Variance over `axes` (PyTorch's `var`): `sum((x - mean)^2) / (N - correction)`.
    ///
    /// `correction: 1` (the default, as in PyTorch) is the unbiased sample variance (Bessel's
    /// correction); `correction: 0` is the population variance that `layerNorm` and `batchNorm`
    /// normalise with. When `N - correction <= 0` the result is infinite or NaN, as in PyTorch.
    ///
    /// ```swift
    /// x.variance(axes: [1])                  // [3, 4] -> [3], divides by 3
    /// x.variance(axes: [1], correction: 0)   // divides by 4
    /// ```
    public func variance(axes: [Int], correction: Int = 1, keepDims: Bool = false) -> Tensor {
        let n = normalizedAxes(axes, op: "variance").reduce(1) { $0 * shape[$1] }
        let centered = self - mean(axes: axes, keepDims: true)
        return (centered * centered).sum(axes: axes, keepDims: keepDims) / Float(Swift.max(n - correction, 0))
    }

    /// Variance over one axis (see ``variance(axes:correction:keepDims:)``).
    public func variance(axis: Int, correction: Int = 1, keepDims: Bool = false) -> Tensor {
        variance(axes: [axis], correction: correction, keepDims: keepDims)
    }

    /// Variance of all elements.
    public func variance(correction: Int = 1) -> Tensor { variance(axes: Array(0..<rank), correction: correction) }

    /// Standard deviation over `axes` (PyTorch's `std`), the square root of
    /// ``variance(axes:correction:keepDims:)``. Where it is 0 the gradient is 0 (not NaN), as in PyTorch.
    public func standardDeviation(axes: [Int], correction: Int = 1, keepDims: Bool = false) -> Tensor {
        variance(axes: axes, correction: correction, keepDims: keepDims)
            .pointwise("standardDeviation", { $0.squareRoot() }, derivative: { _, y in y == 0 ? 0 : 0.5 / y })
    }

    /// Standard deviation over one axis.
    public func standardDeviation(axis: Int, correction: Int = 1, keepDims: Bool = false) -> Tensor {
        standardDeviation(axes: [axis], correction: correction, keepDims: keepDims)
    }

    /// Standard deviation of all elements.
    public func standardDeviation(correction: Int = 1) -> Tensor {
        standardDeviation(axes: Array(0..<rank), correction: correction)
    }

    /// `log(sum(exp(x)))` over `axes`, computed stably by shifting by the maximum (PyTorch's
    /// `logsumexp`). Its gradient is the softmax over the same axes.
    ///
    /// ```swift
    /// let logNormalizer = scores.logsumexp(axes: [-1])   // [B, C] -> [B]
    /// ```
    public func logsumexp(axes: [Int], keepDims: Bool = false) -> Tensor {
        let reduced = normalizedAxes(axes, op: "logsumexp")
        // The shift is a constant (the result does not depend on it); infinite maxima shift by 0, as in PyTorch.
        let shift = Broadcasting.unary(detached().max(axes: Array(reduced), keepDims: true)) { $0.isFinite ? $0 : 0 }
        let result = (self - shift).exp().sum(axes: Array(reduced), keepDims: true).log() + shift
        return keepDims ? result : result.reshaped(shape.enumerated().filter { !reduced.contains($0.offset) }.map(\.element))
    }

    /// `log(sum(exp(x)))` over one axis.
    public func logsumexp(axis: Int, keepDims: Bool = false) -> Tensor { logsumexp(axes: [axis], keepDims: keepDims) }
}
