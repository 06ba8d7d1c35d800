// RMS normalization (rows) and group normalization (NC* planes), forward and backward with the
// affine parameters fused in. Vector loops from VectorMath.swift, sums from VectorReductions.swift.
//
// Threads split rows (RMSNorm) or (sample, group) rows (GroupNorm) when the problem is large;
// parameter gradients are summed in an order fixed by the shapes (by column for RMSNorm, by
// sample for GroupNorm), so results do not depend on the thread count.

extension Kernels {
    /// RMS normalization of each row: `y = x * rstd * weight` with `rstd = 1 / sqrt(mean(x^2) + eps)`
    /// (`weight`, length `cols`, optional). Writes the per-row `rstd` (`rows` values).
    public static func rmsNormForward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                                      rstd: UnsafeMutablePointer<Float>, rows: Int, cols: Int, eps: Float) {
        if rows <= 0 || cols <= 0 { return }
        let xs = UncheckedSendable(x), ws = UncheckedSendable(weight), ys = UncheckedSendable(y), rs = UncheckedSendable(rstd)
        VectorMath.forRowRanges(rows: rows, cols: cols, category: .normalization) { range in
            for r in range {
                let row = xs.value + r * cols, out = ys.value + r * cols
                let inv = 1 / (Kernels.sumOfSquares(row, count: cols) / Float(cols) + eps).squareRoot()
                rs.value[r] = inv
                if let w = ws.value {
                    VectorMath.scaleByWeight(row, w, out, cols, inv)
                } else {
                    VectorMath.lanes(row, out, cols, ScaleOp(alpha: inv))
                }
            }
        }
    }

    /// Gradients of ``rmsNormForward`` from the input, the saved `rstd` and `gradOutput`:
    /// `gradInput = rstd * (gw - x * rstd^2 * mean(gw * x))` with `gw = gradOutput * weight`, and
    /// `gradWeight = sum over rows of gradOutput * x * rstd`. Either output may be nil.
    public static func rmsNormBackward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>?, rstd: UnsafePointer<Float>,
                                       gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                                       gradWeight: UnsafeMutablePointer<Float>?, rows: Int, cols: Int) {
        if rows <= 0 || cols <= 0 { return }
        let xs = UncheckedSendable(x), ws = UncheckedSendable(weight), rs = UncheckedSendable(rstd)
        let gs = UncheckedSendable(gradOutput)
        if let gradInput {
            let dxs = UncheckedSendable(gradInput)
            VectorMath.forRowRanges(rows: rows, cols: cols, category: .normalization) { range in
                for r in range {
                    let o = r * cols, inv = rs.value[r]
                    let (x, g, dx) = (xs.value + o, gs.value + o, dxs.value + o)
                    if let w = ws.value {
                        let d = VectorMath.sumWeightedProduct(g, w, x, cols)
                        VectorMath.rmsNormBackwardApply(g, w, x, dx, cols, rstd: inv, c: inv * inv * inv * d / Float(cols))
                    } else {
                        let d = Kernels.dot(g, x, count: cols)
                        VectorMath.lanes2(g, x, dx, cols, RMSNormGradOp(rstd: inv, c: inv * inv * inv * d / Float(cols)))
                    }
                }
            }
        }
        if let gradWeight {
            // Columns split across threads; each column sums its rows in order.
            let dws = UncheckedSendable(gradWeight)
            let parts = rows * cols >= Kernels.parallelThreshold(VectorMath.rowParallelThreshold) ? Swift.max(1, Swift.min(Kernels.maxThreads, cols / 64)) : 1
            Kernels.parallelFor(parts, threads: parts) { p in
                let c0 = (cols * p / parts) & ~15, c1 = p == parts - 1 ? cols : (cols * (p + 1) / parts) & ~15
                if c0 < c1 {
                    KernelProfile.measure(.normalization) {
                        VectorMath.rmsNormWeightGradient(xs.value + c0, gs.value + c0, rs.value, dws.value + c0,
                                                         rows: rows, cols: c1 - c0, stride: cols)
                    }
                }
            }
        }
    }

    /// Group normalization of `x [batch, channels, spatial]` in `groups` groups of channels:
    /// `y = (x - mean) * rstd * weight[c] + bias[c]` with the biased variance of each
    /// (sample, group). Writes `mean` and `rstd` per (sample, group), `batch * groups` values each.
    public static func groupNormForward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
                                        y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                        rstd: UnsafeMutablePointer<Float>, batch: Int, channels: Int, spatial: Int,
                                        groups: Int, eps: Float) {
        let perGroup = channels / groups, length = perGroup * spatial
        if batch * groups <= 0 || length <= 0 { return }
        let xs = UncheckedSendable(x), ws = UncheckedSendable(weight), bs = UncheckedSendable(bias), ys = UncheckedSendable(y)
        let means = UncheckedSendable(mean), rstds = UncheckedSendable(rstd)
        VectorMath.forRowRanges(rows: batch * groups, cols: length, category: .normalization) { range in
            for row in range {
                let src = xs.value + row * length, dst = ys.value + row * length
                let mu = Kernels.sum(src, count: length) / Float(length)
                let inv = 1 / (VectorMath.sumSquaredDeviations(src, length, shift: mu, scale: 1) / Float(length) + eps).squareRoot()
                means.value[row] = mu
                rstds.value[row] = inv
                for k in 0..<perGroup {
                    let c = (row % groups) * perGroup + k
                    let a = inv * (ws.value?[c] ?? 1), b = (bs.value?[c] ?? 0) - mu * a
                    VectorMath.affine(src + k * spatial, dst + k * spatial, spatial, a, b)
                }
            }
        }
    }

    /// Gradients of ``groupNormForward`` from the input, the saved `mean`/`rstd` and `gradOutput`.
    /// `gradInput`, `gradWeight` and `gradBias` (each optional) are overwritten.
    public static func groupNormBackward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>?, mean: UnsafePointer<Float>,
                                         rstd: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                         gradInput: UnsafeMutablePointer<Float>?, gradWeight: UnsafeMutablePointer<Float>?,
                                         gradBias: UnsafeMutablePointer<Float>?, batch: Int, channels: Int, spatial: Int,
                                         groups: Int) {
        let perGroup = channels / groups, length = perGroup * spatial
        if batch * channels <= 0 { return }
        // Per (sample, channel): sum(g) and sum(g * x) over the plane.
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: 2 * batch * channels)
        defer { sums.deallocate() }
        let xs = UncheckedSendable(x), ws = UncheckedSendable(weight), gs = UncheckedSendable(gradOutput)
        let means = UncheckedSendable(mean), rstds = UncheckedSendable(rstd), ss = UncheckedSendable(sums)
        let dxs = UncheckedSendable(gradInput)
        VectorMath.forRowRanges(rows: batch * groups, cols: Swift.max(length, 1), category: .normalization) { range in
            for row in range {
                let mu = means.value[row], inv = rstds.value[row]
                var meanG: Float = 0, meanGXhat: Float = 0
                for k in 0..<perGroup {
                    let plane = row * perGroup + k, o = plane * spatial, c = (row % groups) * perGroup + k
                    let sg = Kernels.sum(gs.value + o, count: spatial), sgx = Kernels.dot(gs.value + o, xs.value + o, count: spatial)
                    ss.value[2 * plane] = sg
                    ss.value[2 * plane + 1] = sgx
                    let w = ws.value?[c] ?? 1
                    meanG += w * sg
                    meanGXhat += w * inv * (sgx - mu * sg)
                }
                guard let dx = dxs.value else { continue }
                meanG /= Float(length); meanGXhat /= Float(length)
                // dx = rstd * (w g - meanG - xhat * meanGXhat) = alpha g + beta x + gamma per channel.
                let beta = -inv * inv * meanGXhat, gamma = inv * inv * meanGXhat * mu - inv * meanG
                for k in 0..<perGroup {
                    let o = (row * perGroup + k) * spatial, c = (row % groups) * perGroup + k
                    let alpha = inv * (ws.value?[c] ?? 1)
                    VectorMath.groupNormBackwardApply(gs.value + o, xs.value + o, dx + o, spatial, alpha, beta, gamma)
                }
            }
        }
        // Parameter gradients summed over the batch in sample order.
        let parameterGradients = KernelProfile.begin()
        defer { KernelProfile.end(parameterGradients, .normalization) }
        for c in 0..<channels {
            var dw: Float = 0, db: Float = 0
            for n in 0..<batch {
                let plane = n * channels + c, row = n * groups + c / perGroup
                dw += rstd[row] * (sums[2 * plane + 1] - mean[row] * sums[2 * plane])
                db += sums[2 * plane]
            }
            gradWeight?[c] = dw
            gradBias?[c] = db
        }
    }
}

extension VectorMath {
    /// y = (x * s) * w.
    @inline(never)
    static func scaleByWeight(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                              _ n: Int, _ s: Float) {
        lanes2(x, w, y, n, ScaledProductOp(s: s))
    }

    /// dx = alpha g + beta x + gamma.
    @inline(never)
    static func groupNormBackwardApply(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                       _ n: Int, _ alpha: Float, _ beta: Float, _ gamma: Float) {
        lanes2(g, x, dx, n, GroupNormGradOp(alpha: alpha, beta: beta, gamma: gamma))
    }

    /// y = x * a + b.
    @inline(never)
    static func affine(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float, _ b: Float) {
        lanes(x, y, n, AffineOp(a: a, b: b))
    }

    /// Σ g w x.
    @inline(never)
    static func sumWeightedProduct(_ g: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                                   _ n: Int) -> Float {
        blockedSum(n, WeightedProductTerm(g: g, w: w, x: x))
    }

    /// dx = rstd * g w - c x.
    @inline(never)
    static func rmsNormBackwardApply(_ g: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                                     _ dx: UnsafeMutablePointer<Float>, _ n: Int, rstd: Float, c: Float) {
        var i = 0
        while i &+ 16 <= n {
            let r = fma(load(x + i), V(repeating: -c), load(g + i) * load(w + i) * rstd)
            store(r, dx + i)
            i &+= 16
        }
        while i < n { dx[i] = (g[i] * w[i] * rstd).addingProduct(x[i], -c); i &+= 1 }
    }

    /// dw[j] = Σ_r g[r, j] x[r, j] rstd[r] for the `cols` columns starting at the pointers (row
    /// stride `stride`). Tiles of 256 columns walk the rows in order, so reads stay row-contiguous;
    /// blocks of 64 rows are summed separately first, which keeps the rounding error from growing
    /// with `rows`.
    @inline(never)
    static func rmsNormWeightGradient(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>,
                                      _ dw: UnsafeMutablePointer<Float>, rows: Int, cols: Int, stride: Int) {
        let tile = 256
        let block = UnsafeMutablePointer<Float>.allocate(capacity: tile)
        defer { block.deallocate() }
        var j0 = 0
        while j0 < cols {
            let width = Swift.min(tile, cols &- j0)
            (dw + j0).update(repeating: 0, count: width)
            var r = 0
            while r < rows {
                block.update(repeating: 0, count: width)
                let end = Swift.min(rows, r &+ 64)
                while r < end {
                    let o = r &* stride &+ j0
                    accumulateProduct(g + o, x + o, rstd[r], into: block, width)
                    r &+= 1
                }
                Kernels.add(dw + j0, block, dw + j0, count: width)
            }
            j0 &+= tile
        }
    }

    /// acc += a * b * s.
    @inline(__always)
    static func accumulateProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ s: Float,
                                  into acc: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i &+ 16 <= n {
            store(fma(load(a + i) * load(b + i), V(repeating: s), load(acc + i)), acc + i)
            i &+= 16
        }
        while i < n { acc[i] = acc[i].addingProduct(a[i] * b[i], s); i &+= 1 }
    }

    /// Σ g w x
    struct WeightedProductTerm: VectorSumTerm {
        let g: UnsafePointer<Float>, w: UnsafePointer<Float>, x: UnsafePointer<Float>
        @inline(__always) func adding(to acc: V, at i: Int) -> V { fma(load(g + i) * load(w + i), load(x + i), acc) }
        @inline(__always) func addingPartial(to acc: V, at i: Int, count n: Int) -> V {
            fma(loadPartial(g + i, n) * loadPartial(w + i, n), loadPartial(x + i, n), acc)
        }
    }
}

// The element-wise steps as lane ops: specialised structs always inline, closures sometimes stay calls.

/// x * s.
/// (x * s) * w.
private struct ScaledProductOp: LaneOp2 {
    let s: Float
    @inline(__always) func vector(_ x: VectorMath.V, _ w: VectorMath.V) -> VectorMath.V { (x * s) * w }
    @inline(__always) func scalar(_ x: Float, _ w: Float) -> Float { (x * s) * w }
}

/// x * a + b, fused.
private struct AffineOp: LaneOp {
    let a: Float, b: Float
    @inline(__always) func vector(_ x: VectorMath.V) -> VectorMath.V {
        VectorMath.fma(x, VectorMath.V(repeating: a), VectorMath.V(repeating: b))
    }
    @inline(__always) func scalar(_ x: Float) -> Float { b.addingProduct(x, a) }
}

/// RMSNorm's input gradient without weight: g * rstd - c * x, fused.
private struct RMSNormGradOp: LaneOp2 {
    let rstd: Float, c: Float
    @inline(__always) func vector(_ g: VectorMath.V, _ x: VectorMath.V) -> VectorMath.V {
        VectorMath.fma(x, VectorMath.V(repeating: -c), g * rstd)
    }
    @inline(__always) func scalar(_ g: Float, _ x: Float) -> Float { (g * rstd).addingProduct(x, -c) }
}

/// GroupNorm's input gradient: alpha g + (beta x + gamma), fused.
private struct GroupNormGradOp: LaneOp2 {
    let alpha: Float, beta: Float, gamma: Float
    @inline(__always) func vector(_ g: VectorMath.V, _ x: VectorMath.V) -> VectorMath.V {
        VectorMath.fma(g, VectorMath.V(repeating: alpha), VectorMath.fma(x, VectorMath.V(repeating: beta), VectorMath.V(repeating: gamma)))
    }
    @inline(__always) func scalar(_ g: Float, _ x: Float) -> Float { gamma.addingProduct(x, beta).addingProduct(g, alpha) }
}

// MARK: - Batch normalization
//
// Batch normalization of x [batch, channels, spatial] per channel, over the batch * spatial
// values of each channel. With spatial > 1 a channel is `batch` planes. Batch statistics are
// taken one channel at a time (the passes after the first find its planes in L2); with running
// statistics, nothing is summed per channel for the output or the input gradient, and one pass
// walks the planes in memory order. With spatial == 1 ([N, C] input) the channels are the
// columns of a matrix, taken in blocks of columns, row by row.
//
// Threads split the channels (column blocks on multiples of 16 columns) or, for the element-wise
// passes, the planes. Every channel's sums are taken by one thread in an order fixed by the
// shape, so results do not depend on the thread count.

extension Kernels {
    /// Batch normalization `y = (x - mean) * rstd * weight + bias` per channel of
    /// `x [batch, channels, spatial]`, with `rstd = 1 / sqrt(variance + eps)`; `weight` and `bias`
    /// (`channels` values each) are optional. Each element is one fused multiply-add
    /// `(x - mean) * a + bias` with `a = rstd * weight`.
    ///
    /// With `batchStatistics` it first writes each channel's batch `mean` and biased `variance`
    /// (two passes: the mean, then the squared deviations from it; Float SIMD blocks added up in
    /// Double); without, it reads them (running statistics). It writes `rstd` either way.
    ///
    /// With `residual` (laid out as `x`) and `relu`, `y = relu(normalized + residual)`: the add and
    /// ReLU that follow a ResNet block's last batch norm, in the same pass (spatial > 1 only).
    public static func batchNormForward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
                                        y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                        variance: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                                        batch: Int, channels: Int, spatial: Int, eps: Float, batchStatistics: Bool,
                                        residual: UnsafePointer<Float>? = nil, relu: Bool = false,
                                        threads: Int = Kernels.maxThreads) {
        let shape = BatchNormShape(batch: batch, channels: channels, spatial: spatial)
        if spatial == 1 {
            precondition(residual == nil && !relu, "batchNormForward: a residual or ReLU needs spatial > 1")
            shape.forEachChannelBlock(threads: threads) { columns in
                VectorMath.batchNormForwardColumns(shape, columns, x: x, weight: weight, bias: bias, y: y, mean: mean,
                                                   variance: variance, rstd: rstd, eps: eps, batchStatistics: batchStatistics)
            }
            return
        }
        /// y = (x - mean) * rstd * weight + bias on the plane at offset `o` of channel `c`.
        func normalize(_ o: Int, _ c: Int) {
            VectorMath.normalizedAffine(x + o, y + o, residual: residual.map { $0 + o }, spatial, shift: mean[c],
                                        scale: batchNormScale(rstd: rstd[c], weight: weight?[c]), offset: bias?[c] ?? 0, relu: relu)
        }
        guard batchStatistics else {
            for c in 0..<channels { rstd[c] = batchNormReciprocalDeviation(variance: variance[c], eps: eps) }
            shape.forEachPlaneBlock(threads: threads) { planes in
                for p in planes { normalize(p &* spatial, p % channels) }
            }
            return
        }
        shape.forEachChannelBlock(threads: threads) { block in
            for c in block {
                var total: Double = 0
                for n in 0..<batch { total += VectorMath.sumTotal(x + shape.plane(n, c), spatial) }
                let mu = Float(total / shape.perChannel)
                var squares: Double = 0
                for n in 0..<batch { squares += VectorMath.squaredDeviationTotal(x + shape.plane(n, c), spatial, shift: mu) }
                mean[c] = mu
                variance[c] = Float(squares / shape.perChannel)
                rstd[c] = batchNormReciprocalDeviation(variance: variance[c], eps: eps)
                for n in 0..<batch { normalize(shape.plane(n, c), c) }
            }
        }
    }

    /// Gradients of ``batchNormForward(x:weight:bias:y:mean:variance:rstd:batch:channels:spatial:eps:batchStatistics:threads:)``
    /// from its `mean` and `rstd` and `gradOutput`; `gradInput`, `gradWeight` and `gradBias` (each
    /// optional) are overwritten. Per channel, with `m = batch * spatial`, `xhat = (x - mean) * rstd`,
    /// `sg = Σ g` and `sgx = Σ g xhat`:
    ///
    /// - `gradBias = sg`, `gradWeight = sgx`;
    /// - with `batchStatistics` (the statistics depend on x) `gradInput = rstd * weight * (g - sg / m - xhat * sgx / m)`,
    ///   else `gradInput = rstd * weight * g`.
    ///
    /// `x` may be nil only when it is not read: without `batchStatistics` and `gradWeight`.
    ///
    /// After a forward with a residual and ReLU, `reluOutput` is its output `y`: `gradOutput` is
    /// first masked where ReLU cut (`y > 0 ? g : 0`), as ReLU's own gradient would, and the masked
    /// gradient, the residual's, is written to `gradResidual` when given (spatial > 1 only).
    public static func batchNormBackward(x: UnsafePointer<Float>?, weight: UnsafePointer<Float>?, mean: UnsafePointer<Float>,
                                         rstd: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                         gradInput: UnsafeMutablePointer<Float>?, gradWeight: UnsafeMutablePointer<Float>?,
                                         gradBias: UnsafeMutablePointer<Float>?, batch: Int, channels: Int, spatial: Int,
                                         batchStatistics: Bool, reluOutput: UnsafePointer<Float>? = nil,
                                         gradResidual: UnsafeMutablePointer<Float>? = nil, threads: Int = Kernels.maxThreads) {
        let dxNeedsSums = batchStatistics && gradInput != nil
        let sums = (g: gradBias != nil || dxNeedsSums, gx: gradWeight != nil || dxNeedsSums)
        precondition(x != nil || !sums.gx, "batchNormBackward: x is needed for the weight gradient and batch statistics")
        // Read only when present (the precondition); the fallback keeps the loops free of optionals.
        let xp = x ?? gradOutput, g = gradOutput
        let shape = BatchNormShape(batch: batch, channels: channels, spatial: spatial)
        if spatial == 1 {
            precondition(reluOutput == nil && gradResidual == nil, "batchNormBackward: a residual or ReLU needs spatial > 1")
            shape.forEachChannelBlock(threads: threads) { columns in
                VectorMath.batchNormBackwardColumns(shape, columns, x: xp, weight: weight, mean: mean, rstd: rstd, gradOutput: g,
                                                    gradInput: gradInput, gradWeight: gradWeight, gradBias: gradBias,
                                                    sums: sums, batchStatistics: batchStatistics)
            }
            return
        }
        let passes = BatchNormGradientPasses(gradOutput: g, reluOutput: reluOutput, gradResidual: gradResidual, spatial: spatial)
        if sums.g || sums.gx {
            shape.forEachChannelBlock(threads: threads) { block in
                passes.withScratch { scratch in
                    for c in block {
                        let mu = mean[c], r = rstd[c]
                        var sumG: Double = 0, sumGX: Double = 0
                        for n in 0..<batch {
                            let o = shape.plane(n, c), gp = passes.firstRead(o, scratch)
                            if sums.g { sumG += VectorMath.sumTotal(gp, spatial) }
                            if sums.gx { sumGX += VectorMath.gradCenteredTotal(gp, xp + o, spatial, shift: mu) }
                        }
                        gradBias?[c] = Float(sumG)
                        gradWeight?[c] = Float(sumGX * Double(r))
                        guard dxNeedsSums, let dx = gradInput else { continue }
                        let k = batchNormScale(rstd: r, weight: weight?[c])
                        let (c0, c1) = shape.inputGradientTerms(k: k, rstd: r, sumG: sumG, sumGX: sumGX)
                        for n in 0..<batch {
                            let o = shape.plane(n, c)
                            VectorMath.batchNormGradApply(passes.laterRead(o, scratch), xp + o, dx + o, spatial, shift: mu,
                                                          k: k, c0: c0, c1: c1)
                        }
                    }
                }
            }
        } else if gradResidual != nil {
            // No per-channel pass ran: the residual's gradient gets one of its own.
            shape.forEachPlaneBlock(threads: threads) { planes in
                for p in planes { _ = passes.firstRead(p &* spatial, nil) }
            }
        }
        if !batchStatistics, let dx = gradInput {
            shape.forEachPlaneBlock(threads: threads) { planes in
                passes.withScratch { scratch in
                    for p in planes {
                        let c = p % channels, o = p &* spatial
                        VectorMath.scaled(passes.laterRead(o, scratch), dx + o, spatial,
                                          batchNormScale(rstd: rstd[c], weight: weight?[c]))
                    }
                }
            }
        }
    }
}

/// Where `batchNormBackward`'s passes read the gradient after ReLU's mask, plane by plane: the
/// output gradient itself without ReLU; with ReLU, the residual's gradient once the first pass has
/// written it there, or else a plane masked into per-thread scratch by each pass.
struct BatchNormGradientPasses {
    let gradOutput: UnsafePointer<Float>, reluOutput: UnsafePointer<Float>?
    let gradResidual: UnsafeMutablePointer<Float>?, spatial: Int

    /// Runs `body` with a plane of scratch where planes are masked per pass (nil otherwise).
    @inline(__always)
    func withScratch(_ body: (UnsafeMutablePointer<Float>?) -> Void) {
        guard reluOutput != nil && gradResidual == nil else { return body(nil) }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: spatial) { body($0.baseAddress!) }
    }

    /// The plane at offset `o` in the first pass over it: writes the residual's gradient.
    @inline(__always)
    func firstRead(_ o: Int, _ scratch: UnsafeMutablePointer<Float>?) -> UnsafePointer<Float> {
        if let gradResidual {
            if let reluOutput {
                VectorMath.reluMasked(reluOutput + o, gradOutput + o, gradResidual + o, spatial)
            } else {
                ConvLoops.copy(gradResidual + o, gradOutput + o, spatial)
            }
            return UnsafePointer(gradResidual + o)
        }
        return laterRead(o, scratch)
    }

    /// The plane at offset `o` in a later pass.
    @inline(__always)
    func laterRead(_ o: Int, _ scratch: UnsafeMutablePointer<Float>?) -> UnsafePointer<Float> {
        if let gradResidual { return UnsafePointer(gradResidual + o) }
        guard let reluOutput, let scratch else { return gradOutput + o }
        VectorMath.reluMasked(reluOutput + o, gradOutput + o, scratch, spatial)
        return UnsafePointer(scratch)
    }
}

/// The shape of a batch-norm problem, `[batch, channels, spatial]`, and how it splits.
struct BatchNormShape {
    let batch: Int, channels: Int, spatial: Int
    /// Values per channel, `batch * spatial` (at least 1: an empty batch divides by 1).
    var perChannel: Double { Double(Swift.max(batch * spatial, 1)) }

    /// Offset of the plane of sample `n`, channel `c`.
    @inline(__always)
    func plane(_ n: Int, _ c: Int) -> Int { (n &* channels &+ c) &* spatial }

    /// Columns per block of the [N, C] path (its scratch rows stay in L1).
    static let columnBlock = 256

    /// Calls `body` on blocks of channels covering `0..<channels`: one block (or, for [N, C],
    /// blocks of at most ``columnBlock`` columns) for small problems; up to 4 per thread,
    /// spread over `threads` threads, for large ones. Column blocks start on multiples of 16.
    func forEachChannelBlock(threads: Int, _ body: (Range<Int>) -> Void) {
        if channels <= 0 { return }
        let unit = spatial == 1 ? 16 : 1, units = (channels + unit - 1) / unit
        let parallel = threads > 1 && batch * channels * spatial >= VectorMath.rowParallelThreshold
        var parts = parallel ? Swift.min(units, 4 * threads) : 1
        if spatial == 1 { parts = Swift.max(parts, (channels + Self.columnBlock - 1) / Self.columnBlock) }
        Kernels.parallelFor(parts, threads: parallel ? threads : 1) { p in
            let start = units * p / parts * unit, end = Swift.min(channels, units * (p + 1) / parts * unit)
            if start < end { KernelProfile.measure(.normalization) { body(start..<end) } }
        }
    }

    /// Calls `body` on blocks of the `batch * channels` planes (in memory order) covering all of
    /// them: one block for small problems, one per thread for large ones. For the element-wise passes.
    func forEachPlaneBlock(threads: Int, _ body: (Range<Int>) -> Void) {
        let planes = batch * channels
        if planes <= 0 { return }
        let parts = threads > 1 && planes * spatial >= VectorMath.rowParallelThreshold ? Swift.min(planes, threads) : 1
        Kernels.parallelFor(parts, threads: threads) { p in
            KernelProfile.measure(.normalization) { body((planes * p / parts)..<(planes * (p + 1) / parts)) }
        }
    }

    /// The per-channel constants of the input gradient with batch statistics,
    /// `dx = k g + c0 + c1 (x - mean)`: `c0 = -k sg / m`, `c1 = -k rstd² Σ g (x - mean) / m`
    /// (`k = rstd * weight`, `sumGX` = Σ g (x - mean)), in Double before the final rounding.
    func inputGradientTerms(k: Float, rstd: Float, sumG: Double, sumGX: Double) -> (c0: Float, c1: Float) {
        let k = Double(k), r = Double(rstd)
        return (Float(-k * sumG / perChannel), Float(-k * r * r * sumGX / perChannel))
    }
}

extension VectorMath {
    /// Σ x before the final rounding (see ``blockedTotal(_:_:)``).
    @inline(never)
    static func sumTotal(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
        blockedTotal(n, SumTerm(x: x))
    }

    /// Σ (x - shift)², before the final rounding.
    @inline(never)
    static func squaredDeviationTotal(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Double {
        blockedTotal(n, SquaredDeviationTerm(x: x, shift: shift, scale: 1))
    }

    /// Σ g (x - shift), before the final rounding.
    @inline(never)
    static func gradCenteredTotal(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Double {
        blockedTotal(n, GradXhatTerm(g: g, x: x, shift: shift, scale: 1))
    }

    /// dx = (g k + c0) + (x - shift) c1, fused.
    @inline(never)
    static func batchNormGradApply(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                   _ n: Int, shift: Float, k: Float, c0: Float, c1: Float) {
        lanes2(g, x, dx, n, BatchNormGradOp(shift: shift, k: k, c0: c0, c1: c1))
    }

    /// y = x * s.
    @inline(never)
    static func scaled(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ s: Float) {
        lanes(x, y, n, ScaleOp(alpha: s))
    }

    // MARK: Batch normalization of [N, C] (columns)

    /// ``Kernels/batchNormForward(x:weight:bias:y:mean:variance:rstd:batch:channels:spatial:eps:batchStatistics:threads:)``
    /// for spatial == 1, on the columns `block`: the statistics add up rows in Double per column
    /// (each row's squared deviation rounded to Float first), then one pass writes the rows.
    static func batchNormForwardColumns(_ shape: BatchNormShape, _ block: Range<Int>, x: UnsafePointer<Float>,
                                        weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
                                        y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                        variance: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                                        eps: Float, batchStatistics: Bool) {
        let c0 = block.lowerBound, width = block.count, stride = shape.channels
        withUnsafeTemporaryAllocation(of: Double.self, capacity: width) { totalBuffer in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * width) { scaleBuffer in
            let totals = totalBuffer.baseAddress!, a = scaleBuffer.baseAddress!, b = a + width
            let mu = mean + c0
            if batchStatistics {
                totals.update(repeating: 0, count: width)
                for r in 0..<shape.batch { addColumns(x + (r &* stride &+ c0), totals, width) }
                for j in 0..<width { mu[j] = Float(totals[j] / shape.perChannel) }
                totals.update(repeating: 0, count: width)
                for r in 0..<shape.batch { addSquaredDeviations(x + (r &* stride &+ c0), mu, totals, width) }
                for j in 0..<width { variance[c0 + j] = Float(totals[j] / shape.perChannel) }
            }
            for j in 0..<width {
                let c = c0 + j, inv = Kernels.batchNormReciprocalDeviation(variance: variance[c], eps: eps)
                rstd[c] = inv
                a[j] = Kernels.batchNormScale(rstd: inv, weight: weight?[c])
                b[j] = bias?[c] ?? 0
            }
            for r in 0..<shape.batch {
                let o = r &* stride &+ c0
                columnsCenteredAffine(x + o, y + o, width, shift: mu, a, b)
            }
        }}
    }

    /// ``Kernels/batchNormBackward(x:weight:mean:rstd:gradOutput:gradInput:gradWeight:gradBias:batch:channels:spatial:batchStatistics:threads:)``
    /// for spatial == 1, on the columns `block`: Σ g and Σ g (x - mean) per column in Double, then
    /// one pass writes the input gradient rows.
    static func batchNormBackwardColumns(_ shape: BatchNormShape, _ block: Range<Int>, x: UnsafePointer<Float>,
                                         weight: UnsafePointer<Float>?, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                         gradOutput g: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                                         gradWeight: UnsafeMutablePointer<Float>?, gradBias: UnsafeMutablePointer<Float>?,
                                         sums: (g: Bool, gx: Bool), batchStatistics: Bool) {
        let c0 = block.lowerBound, width = block.count, stride = shape.channels, mu = mean + c0
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * width) { totalBuffer in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * width) { termBuffer in
            let sumG = totalBuffer.baseAddress!, sumGX = sumG + width
            let k = termBuffer.baseAddress!, t0 = k + width, t1 = t0 + width
            sumG.update(repeating: 0, count: 2 * width)
            for r in 0..<shape.batch where sums.g || sums.gx {
                let o = r &* stride &+ c0
                if sums.g { addColumns(g + o, sumG, width) }
                if sums.gx { addGradCentered(g + o, x + o, mu, sumGX, width) }
            }
            for j in 0..<width {
                let c = c0 + j
                gradBias?[c] = Float(sumG[j])
                gradWeight?[c] = Float(sumGX[j] * Double(rstd[c]))
                k[j] = Kernels.batchNormScale(rstd: rstd[c], weight: weight?[c])
                (t0[j], t1[j]) = batchStatistics ? shape.inputGradientTerms(k: k[j], rstd: rstd[c], sumG: sumG[j], sumGX: sumGX[j]) : (0, 0)
            }
            guard let dx = gradInput else { return }
            for r in 0..<shape.batch {
                let o = r &* stride &+ c0
                if batchStatistics {
                    columnsGradApply(g + o, x + o, dx + o, width, shift: mu, k: k, c0: t0, c1: t1)
                } else {
                    Kernels.mul(g + o, k, dx + o, count: width)
                }
            }
        }}
    }

    /// totals[j] += Double(x[j]).
    @inline(never)
    static func addColumns(_ x: UnsafePointer<Float>, _ totals: UnsafeMutablePointer<Double>, _ n: Int) {
        var j = 0
        while j < n { totals[j] += Double(x[j]); j &+= 1 }
    }

    /// totals[j] += Double((x[j] - shift[j])²), the square rounded to Float.
    @inline(never)
    static func addSquaredDeviations(_ x: UnsafePointer<Float>, _ shift: UnsafePointer<Float>,
                                     _ totals: UnsafeMutablePointer<Double>, _ n: Int) {
        var j = 0
        while j < n {
            let d = x[j] - shift[j]
            totals[j] += Double(d * d)
            j &+= 1
        }
    }

    /// totals[j] += Double(g[j] (x[j] - shift[j])), the product rounded to Float.
    @inline(never)
    static func addGradCentered(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ shift: UnsafePointer<Float>,
                                _ totals: UnsafeMutablePointer<Double>, _ n: Int) {
        var j = 0
        while j < n {
            totals[j] += Double(g[j] * (x[j] - shift[j]))
            j &+= 1
        }
    }

    /// y[j] = (x[j] - shift[j]) * a[j] + b[j], fused.
    @inline(never)
    static func columnsCenteredAffine(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int,
                                      shift: UnsafePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) {
        var j = 0
        while j &+ 16 <= n {
            store(fma(load(x + j) - load(shift + j), load(a + j), load(b + j) as V), y + j)
            j &+= 16
        }
        while j < n { y[j] = b[j].addingProduct(x[j] - shift[j], a[j]); j &+= 1 }
    }

    /// dx[j] = (g[j] k[j] + c0[j]) + (x[j] - shift[j]) c1[j], fused.
    @inline(never)
    static func columnsGradApply(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                 _ n: Int, shift: UnsafePointer<Float>, k: UnsafePointer<Float>, c0: UnsafePointer<Float>,
                                 c1: UnsafePointer<Float>) {
        var j = 0
        while j &+ 16 <= n {
            let centered: V = load(x + j) - load(shift + j)
            store(fma(centered, load(c1 + j), fma(load(g + j), load(k + j), load(c0 + j) as V)), dx + j)
            j &+= 16
        }
        while j < n { dx[j] = c0[j].addingProduct(g[j], k[j]).addingProduct(x[j] - shift[j], c1[j]); j &+= 1 }
    }
}

/// (x - shift) * a + b, fused.
struct CenteredAffineOp: LaneOp {
    let shift: Float, a: Float, b: Float
    @inline(__always) func vector(_ x: VectorMath.V) -> VectorMath.V {
        VectorMath.fma(x - shift, VectorMath.V(repeating: a), VectorMath.V(repeating: b))
    }
    // Rounds as a vector lane does: the convolution epilogue splits planes into rows, so an
    // element may take the tail here that the batch-norm kernel's whole-plane pass vectorises.
    @inline(__always) func scalar(_ x: Float) -> Float { GEMMSIMD.multiplyAdd(x - shift, a, b) }
}

/// Batch norm's input gradient with batch statistics: (g k + c0) + (x - shift) c1, fused.
private struct BatchNormGradOp: LaneOp2 {
    let shift: Float, k: Float, c0: Float, c1: Float
    @inline(__always) func vector(_ g: VectorMath.V, _ x: VectorMath.V) -> VectorMath.V {
        VectorMath.fma(x - shift, VectorMath.V(repeating: c1), VectorMath.fma(g, VectorMath.V(repeating: k), VectorMath.V(repeating: c0)))
    }
    @inline(__always) func scalar(_ g: Float, _ x: Float) -> Float { c0.addingProduct(g, k).addingProduct(x - shift, c1) }
}
