extension Tensor {
    /// Layer normalisation over the last `normalizedAxes` dimensions (PyTorch's `F.layer_norm`):
    /// `(x - mean) / sqrt(var + eps) * weight + bias`, biased variance.
    public static func layerNorm(_ x: Tensor, normalizedAxes: Int = 1, weight: Tensor? = nil, bias: Tensor? = nil,
                                 eps: Float = 1e-5) -> Tensor {
        Shape.check(normalizedAxes >= 1 && normalizedAxes <= x.rank, op: "layerNorm", shapes: [x.shape],
                    "cannot normalise over the last \(normalizedAxes) axes")
        let normalizedShape = Array(x.shape.suffix(normalizedAxes))
        for (name, parameter) in [("weight", weight), ("bias", bias)] {
            guard let parameter else { continue }
            Shape.check(parameter.shape == normalizedShape, op: "layerNorm", shapes: [x.shape, parameter.shape],
                        "\(name) must have the normalized shape \(normalizedShape)")
        }
        let cols = normalizedShape.reduce(1, *), rows = x.count / Swift.max(cols, 1)
        let xd = x.contiguousData()
        let xhat = Tensor(uninitialized: x.shape)
        let mean = Tensor(zeros: [rows]), rstd = Tensor(zeros: [rows])
        xd.withDataPointer { px in xhat.withDataPointer { py in mean.withDataPointer { pm in rstd.withDataPointer { pr in
            Kernels.layerNormRows(x: px, y: py, mean: pm, rstd: pr, rows: rows, cols: cols, eps: eps)
        }}}}
        var out = Tensor.record(xhat, op: "layerNorm", inputs: [x]) { g, _ in
            let gd = g.contiguousData(), dx = Tensor(uninitialized: xhat.shape)
            xhat.withDataPointer { py in rstd.withDataPointer { pr in gd.withDataPointer { pg in dx.withDataPointer { pdx in
                Kernels.layerNormRowsBackward(xhat: py, rstd: pr, gradOutput: pg, gradInput: pdx, rows: rows, cols: cols)
            }}}}
            return [dx]
        }
        if let weight { out = out * weight }
        if let bias { out = out + bias }
        return out
    }

    /// Batch normalisation over `[N, C, ...]` per channel C (PyTorch's `F.batch_norm`).
    ///
    /// In training mode it normalises with the batch statistics and updates the running
    /// statistics in place (`running = (1 - momentum) * running + momentum * batch`, unbiased
    /// variance); in evaluation mode it uses the running statistics. One fused kernel each way:
    /// the affine `weight` and `bias` are applied in the same pass, and the backward computes only
    /// the gradients that are needed (a frozen `weight` or `bias` costs nothing).
    ///
    /// `residual` and `relu` give `relu(batchNorm(x) + residual)`, a ResNet block's end, in the
    /// same pass each way (bit-identical to the separate ops; `residual` broadcasts as `+` does).
    ///
    /// ```swift
    /// var mean: Tensor? = Tensor.zeros([16]), variance: Tensor? = Tensor.ones([16])
    /// let y = Tensor.batchNorm(x, runningMean: &mean, runningVar: &variance, weight: gamma, bias: beta, training: true)
    /// let z = Tensor.batchNorm(x, runningMean: &mean, runningVar: &variance, training: true, adding: shortcut, relu: true)
    /// ```
    public static func batchNorm(_ x: Tensor, runningMean: inout Tensor?, runningVar: inout Tensor?,
                                 weight: Tensor? = nil, bias: Tensor? = nil, training: Bool,
                                 momentum: Float = 0.1, eps: Float = 1e-5,
                                 adding residual: Tensor? = nil, relu: Bool = false) -> Tensor {
        Shape.check(x.rank >= 2, op: "batchNorm", shapes: [x.shape], "expected [N, C, ...]")
        if (residual != nil || relu) && (x.rank < 3 || x.count / Swift.max(x.shape[0] * x.shape[1], 1) <= 1
                                         || residual.map({ $0.shape != x.shape }) == true) {
            // [N, C] input or a broadcast residual: the separate ops.
            var y = batchNorm(x, runningMean: &runningMean, runningVar: &runningVar, weight: weight, bias: bias,
                              training: training, momentum: momentum, eps: eps)
            if let residual { y = y + residual }
            return relu ? y.relu() : y
        }
        let c = x.shape[1]
        for (name, parameter) in [("weight", weight), ("bias", bias), ("runningMean", runningMean), ("runningVar", runningVar)] {
            guard let parameter else { continue }
            Shape.check(parameter.shape == [c], op: "batchNorm", shapes: [x.shape, parameter.shape], "\(name) must be [C] = [\(c)]")
        }
        let batch = x.shape[0], spatial = x.count / Swift.max(batch * c, 1)
        let batchStatistics = training || runningMean == nil || runningVar == nil
        let xd = x.contiguousData(), wd = weight?.contiguousData(), bd = bias?.contiguousData()
        // Batch statistics are written by the kernel; running ones are copied (the backward keeps the mean).
        let mean = batchStatistics ? Tensor(uninitialized: [c]) : runningMean!.contiguousCopy()
        let variance = batchStatistics ? Tensor(uninitialized: [c]) : runningVar!.contiguousCopy()
        let rstd = Tensor(uninitialized: [c]), y = Tensor(uninitialized: x.shape)
        let rd = residual?.contiguousData()
        xd.withDataPointer { px in y.withDataPointer { py in
        mean.withDataPointer { pm in variance.withDataPointer { pv in rstd.withDataPointer { pr in
            wd.withOptionalPointer { pw in bd.withOptionalPointer { pb in rd.withOptionalPointer { presidual in
                Kernels.batchNormForward(x: px, weight: pw, bias: pb, y: py, mean: pm, variance: pv, rstd: pr, batch: batch,
                                         channels: c, spatial: spatial, eps: eps, batchStatistics: batchStatistics,
                                         residual: presidual.map { UnsafePointer($0) }, relu: relu)
            }}}
        }}}}}
        if training, let rm = runningMean, let rv = runningVar {
            let n = x.count / Swift.max(c, 1)
            let unbiased = variance * (Float(n) / Float(Swift.max(n - 1, 1)))
            runningMean = withoutGradients { rm * (1 - momentum) + mean * momentum }
            runningVar = withoutGradients { rv * (1 - momentum) + unbiased * momentum }
        }
        let operands = AffineOperands(x, weight: weight, bias: bias)
        // The backward reads the input for its own gradient with batch statistics and for the weight's.
        let readsX = (batchStatistics && willRecord(inputs: [x])) || weight.map { willRecord(inputs: [$0]) } == true
        let savedX = readsX ? xd : nil
        // ReLU's gradient reads the output; the residual's gradient is the (masked) output gradient.
        let savedY = relu ? y : nil
        let inputs = operands.inputs + (residual.map { [$0] } ?? [])
        return record(y, op: residual != nil || relu ? "batchNorm+relu" : "batchNorm", inputs: inputs) { g, needs in
            let gd = g.contiguousData()
            let grads = operands.gradientBuffers(needs)
            let (dx, dw, db) = grads
            let dr = residual != nil && needs[inputs.count - 1] ? Tensor(uninitialized: y.shape) : nil
            savedX.withOptionalPointer { px in gd.withDataPointer { pg in mean.withDataPointer { pm in rstd.withDataPointer { pr in
                wd.withOptionalPointer { pw in dx.withOptionalPointer { pdx in dw.withOptionalPointer { pdw in db.withOptionalPointer { pdb in
                savedY.withOptionalPointer { py in dr.withOptionalPointer { pdr in
                    Kernels.batchNormBackward(x: px, weight: pw, mean: pm, rstd: pr, gradOutput: pg, gradInput: pdx,
                                              gradWeight: pdw, gradBias: pdb, batch: batch, channels: c, spatial: spatial,
                                              batchStatistics: batchStatistics, reluOutput: py.map { UnsafePointer($0) },
                                              gradResidual: pdr)
                }}
                }}}}
            }}}}
            return operands.gradients(grads) + (residual == nil ? [] : [dr])
        }
    }
}
