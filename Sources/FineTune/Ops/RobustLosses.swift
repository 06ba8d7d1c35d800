extension Tensor {
    /// Huber loss (PyTorch's `F.huber_loss`): per element `0.5 d^2` where `|d| < delta`, else
    /// `delta (|d| - 0.5 delta)`, with `d = prediction - target`. Quadratic near zero, linear
    /// (gradient `±delta`) for outliers.
    ///
    /// ```swift
    /// let loss = Tensor.huber(boxes, targetBoxes, delta: 1)
    /// ```
    public static func huber(_ prediction: Tensor, _ target: Tensor, delta: Float = 1,
                             reduction: LossReduction = .mean) -> Tensor {
        precondition(delta > 0, "huber: delta must be positive, got \(delta)")
        return robustLoss("huber", prediction, target, reduction: reduction,
                          value: { d in Swift.abs(d) < delta ? 0.5 * d * d : delta * (Swift.abs(d) - 0.5 * delta) },
                          slope: { d in Swift.min(Swift.max(d, -delta), delta) })
    }

    /// Smooth L1 loss (PyTorch's `F.smooth_l1_loss`): per element `0.5 d^2 / beta` where
    /// `|d| < beta`, else `|d| - 0.5 beta`; `beta: 0` is the L1 loss. It equals `huber / beta`.
    public static func smoothL1(_ prediction: Tensor, _ target: Tensor, beta: Float = 1,
                                reduction: LossReduction = .mean) -> Tensor {
        precondition(beta >= 0, "smoothL1: beta must be non-negative, got \(beta)")
        return robustLoss("smoothL1", prediction, target, reduction: reduction,
                          value: { d in Swift.abs(d) < beta ? 0.5 * d * d / beta : Swift.abs(d) - 0.5 * beta },
                          slope: { d in Swift.abs(d) < beta ? d / beta : (d > 0 ? 1 : (d < 0 ? -1 : 0)) })
    }

    /// An element-wise loss of `d = prediction - target` (same shapes) with derivative `slope(d)`.
    private static func robustLoss(_ op: String, _ prediction: Tensor, _ target: Tensor, reduction: LossReduction,
                                   value: @escaping (Float) -> Float, slope: @escaping (Float) -> Float) -> Tensor {
        Shape.check(prediction.shape == target.shape, op: op, shapes: [prediction.shape, target.shape],
                    "prediction and target must have the same shape")
        let d = Broadcasting.binary(prediction.detached(), target.detached(), op: op, SubtractOp())
        let terms = Tensor.record(Broadcasting.unary(d, value), op: op, inputs: [prediction, target]) { g, needs in
            let dp = zipMap(g, d, d) { g, d, _ in g * slope(d) }
            return [needs[0] ? dp : nil, needs[1] ? dp.negated() : nil]
        }
        switch reduction {
        case .none: return terms
        case .sum: return terms.sum()
        case .mean: return terms.mean()
        }
    }
}
