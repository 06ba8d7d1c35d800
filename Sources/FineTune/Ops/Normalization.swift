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
    /// variance); in evaluation mode it uses the running statistics.
    public static func batchNorm(_ x: Tensor, runningMean: inout Tensor?, runningVar: inout Tensor?,
                                 weight: Tensor? = nil, bias: Tensor? = nil, training: Bool,
                                 momentum: Float = 0.1, eps: Float = 1e-5) -> Tensor {
        Shape.check(x.rank >= 2, op: "batchNorm", shapes: [x.shape], "expected [N, C, ...]")
        let c = x.shape[1]
        for (name, parameter) in [("weight", weight), ("bias", bias), ("runningMean", runningMean), ("runningVar", runningVar)] {
            guard let parameter else { continue }
            Shape.check(parameter.shape == [c], op: "batchNorm", shapes: [x.shape, parameter.shape], "\(name) must be [C] = [\(c)]")
        }
        var affine = Array(repeating: 1, count: x.rank)
        affine[1] = c
        var out: Tensor
        if training || runningMean == nil || runningVar == nil {
            let (xhat, mean, variance) = batchNormalize(x, eps: eps)
            out = xhat
            let n = x.count / Swift.max(c, 1)
            if training, let rm = runningMean, let rv = runningVar {
                let unbiased = variance * (Float(n) / Float(Swift.max(n - 1, 1)))
                runningMean = withoutGradients { rm * (1 - momentum) + mean * momentum }
                runningVar = withoutGradients { rv * (1 - momentum) + unbiased * momentum }
            }
        } else {
            let scale = withoutGradients { (runningVar! + eps).sqrt() }
            out = (x - runningMean!.reshaped(affine)) / scale.reshaped(affine)
        }
        if let weight { out = out * weight.reshaped(affine) }
        if let bias { out = out + bias.reshaped(affine) }
        return out
    }

    /// Per-channel `(x - mean) * rstd` over all axes but 1, with the batch mean and biased variance.
    static func batchNormalize(_ x: Tensor, eps: Float = 1e-5) -> (Tensor, mean: Tensor, variance: Tensor) {
        let n = x.shape[0], c = x.shape[1], spatial = x.count / Swift.max(n * c, 1), m = n * spatial
        let xd = x.contiguousData()
        let xhat = Tensor(zeros: x.shape), mean = Tensor(zeros: [c]), variance = Tensor(zeros: [c]), rstd = Tensor(zeros: [c])
        xd.withDataPointer { px in xhat.withDataPointer { py in
        mean.withDataPointer { pm in variance.withDataPointer { pv in rstd.withDataPointer { pr in
            let region = KernelProfile.begin()
            defer { KernelProfile.end(region, .normalization) }
            for ch in 0..<c {
                var s: Double = 0
                for i in 0..<n { s += Double(Kernels.sum(px + (i * c + ch) * spatial, count: spatial)) }
                let mu = Float(s / Double(Swift.max(m, 1)))
                var ss: Double = 0
                for i in 0..<n {
                    let row = px + (i * c + ch) * spatial
                    var acc: Float = 0
                    for j in 0..<spatial { let d = row[j] - mu; acc += d * d }
                    ss += Double(acc)
                }
                let v = Float(ss / Double(Swift.max(m, 1)))
                let r = 1 / (v + eps).squareRoot()
                pm[ch] = mu; pv[ch] = v; pr[ch] = r
                for i in 0..<n {
                    let src = px + (i * c + ch) * spatial, dst = py + (i * c + ch) * spatial
                    for j in 0..<spatial { dst[j] = (src[j] - mu) * r }
                }
            }
        }}}}}
        let out = Tensor.record(xhat, op: "batchNorm", inputs: [x]) { g, _ in
            // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), means over the channel's N*spatial elements.
            let gd = g.contiguousData(), dx = Tensor(uninitialized: xhat.shape)
            gd.withDataPointer { pg in xhat.withDataPointer { py in rstd.withDataPointer { pr in dx.withDataPointer { pdx in
                let region = KernelProfile.begin()
                defer { KernelProfile.end(region, .normalization) }
                for ch in 0..<c {
                    var sg: Float = 0, sgy: Float = 0
                    for i in 0..<n {
                        let o = (i * c + ch) * spatial
                        sg += Kernels.sum(pg + o, count: spatial)
                        sgy += Kernels.dot(pg + o, py + o, count: spatial)
                    }
                    let mg = sg / Float(Swift.max(m, 1)), mgy = sgy / Float(Swift.max(m, 1)), r = pr[ch]
                    for i in 0..<n {
                        let o = (i * c + ch) * spatial
                        for j in 0..<spatial { pdx[o + j] = r * (pg[o + j] - mg - py[o + j] * mgy) }
                    }
                }
            }}}}
            return [dx]
        }
        return (out, mean, variance)
    }
}
