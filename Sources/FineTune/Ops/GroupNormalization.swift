extension Tensor {
    /// Group normalisation of `x [N, C, ...]` (PyTorch's `F.group_norm`): the channels are split
    /// into `groups` groups and each (sample, group) is normalised over its channels and spatial
    /// positions, `(x - mean) / sqrt(var + eps)` with the biased variance, then scaled and shifted
    /// per channel by `weight` and `bias` (`[C]`). Independent of the batch size, unlike batch
    /// normalisation. One fused kernel each way.
    ///
    /// ```swift
    /// let y = Tensor.groupNorm(features, groups: 32, weight: gamma, bias: beta)   // [N, 256, H, W]
    /// ```
    public static func groupNorm(_ x: Tensor, groups: Int, weight: Tensor? = nil, bias: Tensor? = nil,
                                 eps: Float = 1e-5) -> Tensor {
        Shape.check(x.rank >= 2, op: "groupNorm", shapes: [x.shape], "expected input [N, C, ...]")
        let n = x.shape[0], c = x.shape[1], spatial = x.shape.dropFirst(2).reduce(1, *)
        Shape.check(groups > 0 && c % groups == 0, op: "groupNorm", shapes: [x.shape],
                    "\(c) channels do not split into \(groups) groups")
        for parameter in [weight, bias].compactMap({ $0 }) {
            Shape.check(parameter.shape == [c], op: "groupNorm", shapes: [x.shape, parameter.shape], "weight and bias must be [C] = [\(c)]")
        }
        let xd = x.contiguousData(), wd = weight?.contiguousData(), bd = bias?.contiguousData()
        let y = Tensor(uninitialized: x.shape)
        let mean = Tensor(uninitialized: [n * groups]), rstd = Tensor(uninitialized: [n * groups])
        xd.withDataPointer { px in y.withDataPointer { py in mean.withDataPointer { pm in rstd.withDataPointer { pr in
            wd.withOptionalPointer { pw in bd.withOptionalPointer { pb in
                Kernels.groupNormForward(x: px, weight: pw, bias: pb, y: py, mean: pm, rstd: pr, batch: n, channels: c,
                                         spatial: spatial, groups: groups, eps: eps)
            }}
        }}}}
        let operands = AffineOperands(x, weight: weight, bias: bias)
        return record(y, op: "groupNorm", inputs: operands.inputs) { g, needs in
            let gd = g.contiguousData()
            let grads = operands.gradientBuffers(needs)
            let (dx, dw, db) = grads
            xd.withDataPointer { px in gd.withDataPointer { pg in mean.withDataPointer { pm in rstd.withDataPointer { pr in
                wd.withOptionalPointer { pw in dx.withOptionalPointer { pdx in dw.withOptionalPointer { pdw in db.withOptionalPointer { pdb in
                    Kernels.groupNormBackward(x: px, weight: pw, mean: pm, rstd: pr, gradOutput: pg, gradInput: pdx,
                                              gradWeight: pdw, gradBias: pdb, batch: n, channels: c, spatial: spatial, groups: groups)
                }}}}
            }}}}
            return operands.gradients(grads)
        }
    }
}
