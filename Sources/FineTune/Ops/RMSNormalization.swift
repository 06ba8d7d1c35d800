extension Tensor {
    /// Root-mean-square normalisation over the last `normalizedAxes` axes (PyTorch's
    /// `F.rms_norm`, LLaMA's `RMSNorm`): `x / sqrt(mean(x^2) + eps) * weight`, no mean subtracted
    /// and no bias. `eps` defaults to Float32's machine epsilon (`torch.finfo(torch.float32).eps`),
    /// as PyTorch's `eps=None`; LLaMA checkpoints use 1e-5 or 1e-6. One fused kernel each way.
    ///
    /// ```swift
    /// let y = Tensor.rmsNorm(x, weight: gamma, eps: 1e-6)    // [B, T, D], gamma [D]
    /// ```
    public static func rmsNorm(_ x: Tensor, normalizedAxes: Int = 1, weight: Tensor? = nil, eps: Float? = nil) -> Tensor {
        Shape.check(normalizedAxes >= 1 && normalizedAxes <= x.rank, op: "rmsNorm", shapes: [x.shape],
                    "cannot normalise over the last \(normalizedAxes) axes")
        let normalizedShape = Array(x.shape.suffix(normalizedAxes))
        if let weight {
            Shape.check(weight.shape == normalizedShape, op: "rmsNorm", shapes: [x.shape, weight.shape],
                        "weight must have the normalised shape \(normalizedShape)")
        }
        let cols = Shape.count(normalizedShape), rows = x.count / Swift.max(cols, 1)
        let xd = x.contiguousData(), wd = weight?.contiguousData()
        let y = Tensor(uninitialized: x.shape), rstd = Tensor(uninitialized: [rows])
        xd.withDataPointer { px in y.withDataPointer { py in rstd.withDataPointer { pr in
            wd.withOptionalPointer { pw in
                Kernels.rmsNormForward(x: px, weight: pw, y: py, rstd: pr, rows: rows, cols: cols, eps: eps ?? Float.ulpOfOne)
            }
        }}}
        let inputs = weight.map { [x, $0] } ?? [x]
        return record(y, op: "rmsNorm", inputs: inputs) { g, needs in
            let gd = g.contiguousData()
            let dx = needs[0] ? Tensor(uninitialized: x.shape) : nil
            let dw = needs.count > 1 && needs[1] ? Tensor(uninitialized: normalizedShape) : nil
            xd.withDataPointer { px in rstd.withDataPointer { pr in gd.withDataPointer { pg in
                wd.withOptionalPointer { pw in dx.withOptionalPointer { pdx in dw.withOptionalPointer { pdw in
                    Kernels.rmsNormBackward(x: px, weight: pw, rstd: pr, gradOutput: pg, gradInput: pdx, gradWeight: pdw,
                                            rows: rows, cols: cols)
                }}}
            }}}
            return [dx, dw]
        }
    }
}
