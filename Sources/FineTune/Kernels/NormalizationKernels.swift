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
