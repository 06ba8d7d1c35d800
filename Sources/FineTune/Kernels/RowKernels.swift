import Foundation

// Row-wise kernels on contiguous row-major `rows x cols` matrices: softmax, log-softmax,
// their backward passes, and layer normalization (without the affine part).
//
// Each row is processed with the SIMD16 helpers from VectorMath.swift. Large problems
// (rows * cols > `rowParallelThreshold`) are split into contiguous row ranges, one per
// thread, via `Kernels.parallelFor`. Outputs may alias inputs exactly (in-place use).

extension VectorMath {
    /// Minimum rows * cols before a row kernel spreads rows over threads.
    static let rowParallelThreshold = 1 << 16

    /// Calls `body` on row ranges covering `0..<rows`: one range inline for small problems,
    /// otherwise one contiguous range per thread (at most `Kernels.maxThreads` ranges). Each
    /// call of `body` is profiled as `category`.
    @inline(__always)
    static func forRowRanges(rows: Int, cols: Int, category: KernelProfile.Category, _ body: @Sendable (Range<Int>) -> Void) {
        let threads = Kernels.maxThreads
        let chunks = Swift.min(rows, threads)
        if rows * cols <= Kernels.parallelThreshold(rowParallelThreshold) || chunks <= 1 {
            KernelProfile.measure(category) { body(0..<rows) }
            return
        }
        Kernels.parallelFor(chunks, threads: threads) { c in
            KernelProfile.measure(category) { body((rows * c / chunks)..<(rows * (c + 1) / chunks)) }
        }
    }

    /// Computes r = f(x[i]) in 16-lane steps, optionally stores it to `y`, and returns Σ r.
    /// The padded tail lanes hold `pad`, which must satisfy f(pad) = 0 (e.g. -inf for
    /// exp(x - shift)). Single call site of `f`, like `map`.
    @inline(__always)
    static func mapSum<Op: VectorOp>(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>?, _ count: Int, pad: Float,
                                   _ op: Op) -> Float {
        let full = count & ~15, tail = count &- full
        var tailIn = tail > 0 ? loadPartial(x + full, tail, pad: pad) : V(), tailOut = V()
        var acc = V()
        withUnsafeMutablePointer(to: &tailIn) { tailIn in
            withUnsafeMutablePointer(to: &tailOut) { tailOut in
                let end = tail > 0 ? full &+ 16 : full
                var i = 0
                while i < end {
                    let inTail = i == full
                    let src = inTail ? UnsafeRawPointer(tailIn) : UnsafeRawPointer(x + i)
                    let r = op.vector(src.loadUnaligned(as: V.self))
                    if let y {
                        let dst = inTail ? UnsafeMutableRawPointer(tailOut) : UnsafeMutableRawPointer(y + i)
                        dst.storeBytes(of: r, as: V.self)
                    }
                    acc += r
                    i &+= 16
                }
            }
        }
        if tail > 0, let y { storePartial(tailOut, y + full, tail) }
        return horizontalSum(acc)
    }

    // MARK: Per-row loops
    //
    // Each helper holds exactly one vector loop and is kept out of line, so the loop body is
    // always fully inlined (no closure calls) however the row kernels themselves are inlined.

    /// y = exp(x - shift); returns Σ y.
    @inline(never)
    static func expShiftedStoreSum(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int,
                                   shift: Float) -> Float {
        mapSum(x, y, n, pad: -.infinity, ExpShiftedOp(shift: shift))
    }

    /// Σ exp(x - shift), nothing stored.
    @inline(never)
    static func expShiftedSum(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Float {
        mapSum(x, nil, n, pad: -.infinity, ExpShiftedOp(shift: shift))
    }

    /// y = (x - a) * b.
    @inline(never)
    static func shiftScale(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float, _ b: Float) {
        map(x, y, n) { ($0 - a) * b }
    }

    /// y = (x - a) - b.
    @inline(never)
    static func shiftShift(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float, _ b: Float) {
        map(x, y, n) { ($0 - a) - b }
    }

    /// Σ ((x - shift) * scale)² (the two-pass variance numerator with scale 1).
    @inline(never)
    static func sumSquaredDeviations(_ x: UnsafePointer<Float>, _ n: Int, shift: Float, scale: Float) -> Float {
        blockedSum(n, SquaredDeviationTerm(x: x, shift: shift, scale: scale))
    }

    /// Σ g · (x - shift) * scale.
    @inline(never)
    static func sumGradXhat(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int,
                            shift: Float, scale: Float) -> Float {
        blockedSum(n, GradXhatTerm(g: g, x: x, shift: shift, scale: scale))
    }

    /// Softmax backward apply: gi = y * (g - d), evaluated as y g - y d (LLVM splits the
    /// vector code for `y * (g - d)` into 128-bit pieces).
    @inline(never)
    static func softmaxBackwardApply(_ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                     _ gi: UnsafeMutablePointer<Float>, _ n: Int, d: Float) {
        lanes2(y, g, gi, n, SoftmaxBackwardOp(d: d))
    }

    /// Log-softmax backward apply: gi = g - exp(y) * s.
    @inline(never)
    static func logSoftmaxBackwardApply(_ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                        _ gi: UnsafeMutablePointer<Float>, _ n: Int, s: Float) {
        map2(y, g, gi, n) { fma(exp($0), -s, $1) }
    }

    /// Layer-norm backward apply: gi = rstd * ((g - meanG) - xhat * meanGXhat), xhat = (x - shift) * scale.
    @inline(never)
    static func layerNormBackwardApply(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                       _ gi: UnsafeMutablePointer<Float>, _ n: Int, shift: Float, scale: Float,
                                       rstd: Float, meanG: Float, meanGXhat: Float) {
        map2(x, g, gi, n) { xv, gv in
            let xhat = (xv - shift) * scale
            return rstd * fma(xhat, V(repeating: -meanGXhat), gv - meanG)
        }
    }

    // MARK: Per-row kernels

    static func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        let m = Kernels.maxValue(x, count: n)
        let s = expShiftedStoreSum(x, y, n, shift: m)
        Kernels.scale(1 / s, y, count: n)
    }

    static func logSoftmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        let m = Kernels.maxValue(x, count: n)
        shiftShift(x, y, n, m, Foundation.log(expShiftedSum(x, n, shift: m)))
    }

    /// Layer-norm backward for one row with xhat = (x - shift) * scale:
    /// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
    static func layerNormBackwardRow(_ x: UnsafePointer<Float>, shift: Float, scale: Float, rstd: Float,
                                     _ g: UnsafePointer<Float>, _ gi: UnsafeMutablePointer<Float>, _ n: Int) {
        let meanG = Kernels.sum(g, count: n) / Float(n)
        let meanGXhat = sumGradXhat(g, x, n, shift: shift, scale: scale) / Float(n)
        layerNormBackwardApply(x, g, gi, n, shift: shift, scale: scale, rstd: rstd, meanG: meanG, meanGXhat: meanGXhat)
    }
}

extension Kernels {
    /// Row-wise softmax: y[r, :] = exp(x[r, :] - max) / sum(exp(x[r, :] - max)).
    public static func softmaxRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        if rows <= 0 || cols <= 0 { return }
        let xs = UncheckedSendable(x), ys = UncheckedSendable(y)
        VectorMath.forRowRanges(rows: rows, cols: cols, category: .elementwise) { range in
            for r in range { VectorMath.softmaxRow(xs.value + r * cols, ys.value + r * cols, cols) }
        }
    }

    /// Row-wise log-softmax: y = (x - max) - log(sum(exp(x - max))).
    public static func logSoftmaxRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        if rows <= 0 || cols <= 0 { return }
        let xs = UncheckedSendable(x), ys = UncheckedSendable(y)
        VectorMath.forRowRanges(rows: rows, cols: cols, category: .elementwise) { range in
            for r in range { VectorMath.logSoftmaxRow(xs.value + r * cols, ys.value + r * cols, cols) }
        }
    }

    /// Softmax backward from its output y: dx = y * (g - sum(g * y)) per row.
    public static func softmaxRowsBackward(y: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                           gradInput: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        if rows <= 0 || cols <= 0 { return }
        let ys = UncheckedSendable(y), gs = UncheckedSendable(gradOutput), gis = UncheckedSendable(gradInput)
        VectorMath.forRowRanges(rows: rows, cols: cols, category: .elementwise) { range in
            for r in range {
                let y = ys.value + r * cols, g = gs.value + r * cols
                VectorMath.softmaxBackwardApply(y, g, gis.value + r * cols, cols, d: Kernels.dot(g, y, count: cols))
            }
        }
    }

    /// Log-softmax backward from its output y: dx = g - exp(y) * sum(g) per row.
    public static func logSoftmaxRowsBackward(y: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                              gradInput: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        if rows <= 0 || cols <= 0 { return }
        let ys = UncheckedSendable(y), gs = UncheckedSendable(gradOutput), gis = UncheckedSendable(gradInput)
        VectorMath.forRowRanges(rows: rows, cols: cols, category: .elementwise) { range in
            for r in range {
                let y = ys.value + r * cols, g = gs.value + r * cols
                VectorMath.logSoftmaxBackwardApply(y, g, gis.value + r * cols, cols, s: Kernels.sum(g, count: cols))
            }
        }
    }

    /// Layer normalization over each row (no affine): y = (x - mean) * rstd with the biased
    /// variance, rstd = 1/√(var + eps). Writes per-row `mean` and `rstd` (`rows` values each).
    public static func layerNormRows(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                                     mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                                     rows: Int, cols: Int, eps: Float) {
        if rows <= 0 || cols <= 0 { return }
        let xs = UncheckedSendable(x), ys = UncheckedSendable(y)
        let means = UncheckedSendable(mean), rstds = UncheckedSendable(rstd)
        VectorMath.forRowRanges(rows: rows, cols: cols, category: .normalization) { range in
            for r in range {
                let x = xs.value + r * cols
                let mu = Kernels.sum(x, count: cols) / Float(cols)
                let variance = VectorMath.sumSquaredDeviations(x, cols, shift: mu, scale: 1) / Float(cols)
                let inv = 1 / (variance + eps).squareRoot()
                means.value[r] = mu
                rstds.value[r] = inv
                VectorMath.shiftScale(x, ys.value + r * cols, cols, mu, inv)
            }
        }
    }

    /// Layer-norm backward (no affine) from the input x and the forward's per-row `mean` and
    /// `rstd`: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), xhat = (x - mean) * rstd.
    public static func layerNormRowsBackward(x: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                                             rstd: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                             gradInput: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        if rows <= 0 || cols <= 0 { return }
        let xs = UncheckedSendable(x), means = UncheckedSendable(mean), rstds = UncheckedSendable(rstd)
        let gs = UncheckedSendable(gradOutput), gis = UncheckedSendable(gradInput)
        VectorMath.forRowRanges(rows: rows, cols: cols, category: .normalization) { range in
            for r in range {
                let o = r * cols
                VectorMath.layerNormBackwardRow(xs.value + o, shift: means.value[r], scale: rstds.value[r],
                                                rstd: rstds.value[r], gs.value + o, gis.value + o, cols)
            }
        }
    }

    /// Layer-norm backward (no affine) from the normalized output xhat and per-row `rstd`:
    /// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
    public static func layerNormRowsBackward(xhat: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                             gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
                                             rows: Int, cols: Int) {
        if rows <= 0 || cols <= 0 { return }
        let xs = UncheckedSendable(xhat), rstds = UncheckedSendable(rstd)
        let gs = UncheckedSendable(gradOutput), gis = UncheckedSendable(gradInput)
        VectorMath.forRowRanges(rows: rows, cols: cols, category: .normalization) { range in
            for r in range {
                let o = r * cols
                VectorMath.layerNormBackwardRow(xs.value + o, shift: 0, scale: 1, rstd: rstds.value[r],
                                                gs.value + o, gis.value + o, cols)
            }
        }
    }
}

/// exp(x - shift) (softmax numerators; `mapSum` pads its tail with -inf, so no scalar form).
private struct ExpShiftedOp: VectorOp {
    let shift: Float
    @inline(__always) func vector(_ v: VectorMath.V) -> VectorMath.V { VectorMath.exp(v - shift) }
}

/// y g - y d with one rounding for the product sum, in both forms.
private struct SoftmaxBackwardOp: LaneOp2 {
    let d: Float
    @inline(__always) func vector(_ y: VectorMath.V, _ g: VectorMath.V) -> VectorMath.V { VectorMath.fma(y, g, y * -d) }
    @inline(__always) func scalar(_ y: Float, _ g: Float) -> Float { (y * -d).addingProduct(y, g) }
}
