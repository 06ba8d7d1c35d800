import Foundation

extension Tensor {
    /// Mean squared error `mean((prediction - target)^2)`.
    public static func mse(_ prediction: Tensor, _ target: Tensor) -> Tensor {
        let d = prediction - target
        return (d * d).mean()
    }

    /// Mean binary cross-entropy on logits, computed stably
    /// (`max(x, 0) - x y + log(1 + e^-|x|)`; gradient `sigmoid(x) - y`).
    public static func binaryCrossEntropyWithLogits(_ logits: Tensor, _ targets: Tensor) -> Tensor {
        Shape.check(logits.shape == targets.shape, op: "binaryCrossEntropyWithLogits",
                    shapes: [logits.shape, targets.shape], "logits and targets must have the same shape")
        let n = Float(Swift.max(logits.count, 1))
        let x = logits.contiguousData(), y = targets.contiguousData()
        let perElement = Broadcasting.binary(x, y, op: "binaryCrossEntropyWithLogits") { x, y in
            Swift.max(x, 0) - x * y + Foundation.log1p(Foundation.exp(-Swift.abs(x)))
        }
        let out = Tensor(perElement.withDataPointer { Kernels.sum($0, count: perElement.count) } / n)
        return Tensor.record(out, op: "binaryCrossEntropyWithLogits", inputs: [logits, targets]) { g, needs in
            let s = g.item() / n
            let dx = needs[0] ? Broadcasting.binary(x, y, op: "bce") { x, y in (1 / (1 + Foundation.exp(-x)) - y) * s } : nil
            let dy = needs[1] ? Broadcasting.unary(x) { -$0 * s } : nil
            return [dx, dy]
        }
    }
}

