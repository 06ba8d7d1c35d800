import Foundation

extension Tensor {
    /// Mean cross-entropy between `logits [N, C]` and class indices `targets [N]`, with optional
    /// label smoothing (PyTorch's `F.cross_entropy(..., label_smoothing:)`). Fused log-softmax:
    /// the gradient is `(softmax - q) / N` with `q = (1 - eps) onehot + eps / C`.
    public static func crossEntropy(_ logits: Tensor, targets: [Int], labelSmoothing: Float = 0) -> Tensor {
        Shape.check(logits.rank == 2 && logits.shape[0] == targets.count, op: "crossEntropy",
                    shapes: [logits.shape, [targets.count]], "expected logits [N, C] and N targets")
        precondition(labelSmoothing >= 0 && labelSmoothing <= 1, "crossEntropy: labelSmoothing must be in [0, 1]")
        let n = logits.shape[0], c = logits.shape[1]
        for t in targets where t < 0 || t >= c {
            Shape.fail(ShapeError(op: "crossEntropy", shapes: [logits.shape], reason: "target \(t) out of range 0..<\(c)"))
        }
        let x = logits.contiguousData()
        let logp = Tensor(uninitialized: logits.shape)
        x.withDataPointer { px in logp.withDataPointer { pl in Kernels.logSoftmaxRows(px, pl, rows: n, cols: c) } }
        let onTarget = 1 - labelSmoothing, uniform = labelSmoothing / Float(c)
        var total: Double = 0
        logp.withDataPointer { pl in
            for (i, t) in targets.enumerated() {
                let row = pl + i * c
                var loss = -onTarget * row[t]
                if uniform != 0 { loss -= uniform * Kernels.sum(row, count: c) }
                total += Double(loss)
            }
        }
        let out = Tensor(Float(total / Double(Swift.max(n, 1))))
        return Tensor.record(out, op: "crossEntropy", inputs: [logits]) { g, _ in
            let scale = g.item() / Float(Swift.max(n, 1))
            let dx = Tensor(uninitialized: [n, c])
            logp.withDataPointer { pl in dx.withDataPointer { pd in
                Kernels.vExp(pl, pd, count: n * c)
                for (i, t) in targets.enumerated() {
                    let row = pd + i * c
                    for j in 0..<c { row[j] = (row[j] - uniform) * scale }
                    row[t] -= onTarget * scale
                }
            }}
            return [dx]
        }
    }

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

