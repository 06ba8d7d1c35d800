// Depthwise convolutions (one input channel per group, any channel multiplier) computed directly:
// as sgemm calls they would have a single row of depth KH * KW per group.
//
// Strides are handled by splitting rows into column phases (`PhasePlane`, `PhaseRows`): padded
// column c of a row is stored in run c % s at position c / s. Output column ox of tap kx reads
// padded input column ox * sw + kx * dw, which is run (kx * dw) % sw at position ox + (kx * dw) / sw,
// so for every stride and dilation a run of outputs reads a contiguous run of inputs, with no
// bounds checks. Stride-2 rows are split and merged with vector shuffles, 32 floats at a time.
//
// Forward: each input plane is split once into a zero-padded buffer; every output row is then a
// sum of KH * KW shifted runs times the tap weights, 16 outputs of 4 rows at a time in registers
// (`depthwiseRows`).
//
// Input gradient, in gather form (no scatter, each dx element written once): padded input row
// r = R * sh + ρ, column c = q * sw + φ receives tap (ky, kx) iff ky * dh ≡ ρ (mod sh) and
// kx * dw ≡ φ (mod sw), from gradOutput[R - ky * dh / sh, q - kx * dw / sw]. Each phase (ρ, φ) of
// dx is therefore again a sum of shifted runs, of the zero-padded gradOutput plane, over that
// phase's taps (`DepthwiseGather`): the same row kernel writes the phases of a dx row, which are
// merged into the row. With stride 1 this is the usual convolution with the flipped kernel.
// Average pooling's gradient uses the same gather with a kernel of ones (Pooling.swift).
//
// Weight gradient: per tap, a dot product of gradOutput with the split input plane at the tap's
// offset, three taps at a time (`depthwiseWeightTaps`). Vector lanes past a row's last output are
// masked, so input values that no output reads never meet a zero (0 * Inf would be NaN where the
// direct sum has none).
//
// Threads split the planes (forward and input gradient: input planes; weight gradient: groups,
// each summing its samples in order), so every output element is computed in the same order
// whatever the thread count.

/// A zero-padded copy of one `h x w` plane with its columns split into `phases` runs per row.
struct PhasePlane {
    /// Padded rows, and floats per phase of a row.
    let rows: Int, phaseLength: Int, phases: Int
    let top: Int, left: Int
    var rowStride: Int { phases * phaseLength }
    var count: Int { rows * rowStride }

    /// At least `rows` padded rows whose runs hold at least `reads` floats, with the plane at row
    /// `top`, padded column `left`.
    init(h: Int, w: Int, top: Int, left: Int, rows: Int, reads: Int, phases: Int) {
        self.top = top; self.left = left; self.phases = phases
        self.rows = max(rows, top + h)
        phaseLength = max(reads, (left + w + phases - 1) / phases)
    }

    /// The input planes of `g` as the forward and weight-gradient kernels read them: every output
    /// row, in whole 16-float vectors, at every tap.
    init(input g: Conv2dGeometry) {
        self.init(h: g.height, w: g.width, top: g.padH, left: g.padW,
                  rows: (g.outHeight - 1) * g.strideH + (g.kernelHeight - 1) * g.dilationH + 1,
                  reads: (g.outWidth + 15) / 16 * 16 + (g.kernelWidth - 1) * g.dilationW / g.strideW, phases: g.strideW)
    }

    /// Offset, from the start of a row, of the run read by tap column `kx`.
    @inline(__always)
    func tapOffset(_ kx: Int, dilation: Int) -> Int {
        let p = kx * dilation
        return p % phases * phaseLength + p / phases
    }

    /// Zeroes what ``write(_:h:w:into:)`` leaves: the rows above and below the plane and, in each
    /// of its rows, every run's positions outside the plane's columns.
    func zeroPadding(_ dst: UnsafeMutablePointer<Float>, h: Int, w: Int) {
        ConvLoops.zero(dst, top * rowStride)
        ConvLoops.zero(dst + (top + h) * rowStride, (rows - top - h) * rowStride)
        for k in 0..<phases {
            // Padded column c = i * phases + k holds a value for left <= c < left + w.
            let lo = min(phaseLength, max(0, (left - k + phases - 1) / phases))
            let hi = max(lo, min(phaseLength, (left + w - k + phases - 1) / phases))
            for r in top..<(top + h) {
                let run = dst + r * rowStride + k * phaseLength
                for i in 0..<lo { run[i] = 0 }
                for i in hi..<phaseLength { run[i] = 0 }
            }
        }
    }

    /// Writes the plane's values; the padding must already be zero (it is never written).
    func write(_ src: UnsafePointer<Float>, h: Int, w: Int, into dst: UnsafeMutablePointer<Float>) {
        PhaseRows.split(src, srcStride: w, into: dst + top * rowStride, dstStride: rowStride, rows: h, width: w,
                        left: left, phases: phases, phaseLength: phaseLength)
    }
}

/// Moves rows between the plain and the phase-split layout: column x, after `left` padding
/// columns, is padded column c = x + left, stored in run c % phases (runs `phaseLength` floats
/// apart) at position c / phases. Columns x = k + phases * m (for each k < phases) thus form one
/// contiguous stretch of one run. Stride 2 moves even and odd columns with vector shuffles.
enum PhaseRows {
    typealias V = SIMD16<Float>

    /// Writes `rows` rows of `width` floats from `src` into the runs of rows at `dst`.
    @inline(never)
    static func split(_ src: UnsafePointer<Float>, srcStride: Int, into dst: UnsafeMutablePointer<Float>, dstStride: Int,
                      rows: Int, width: Int, left: Int, phases: Int, phaseLength: Int) {
        move(intoRuns: true, plain: UnsafeMutablePointer(mutating: src), plainStride: srcStride, runs: dst, runsStride: dstStride,
             rows: rows, width: width, left: left, phases: phases, phaseLength: phaseLength)
    }

    /// Reads `rows` rows of `width` floats back from the runs of rows at `src` (the inverse of `split`).
    @inline(never)
    static func merge(_ src: UnsafePointer<Float>, srcStride: Int, into dst: UnsafeMutablePointer<Float>, dstStride: Int,
                      rows: Int, width: Int, left: Int, phases: Int, phaseLength: Int) {
        move(intoRuns: false, plain: dst, plainStride: dstStride, runs: UnsafeMutablePointer(mutating: src), runsStride: srcStride,
             rows: rows, width: width, left: left, phases: phases, phaseLength: phaseLength)
    }

    /// `split` or `merge` (only the side being written is written). One row loop per stride case,
    /// each keeping its pointers in registers.
    @inline(__always)
    private static func move(intoRuns: Bool, plain: UnsafeMutablePointer<Float>, plainStride: Int,
                             runs: UnsafeMutablePointer<Float>, runsStride: Int,
                             rows: Int, width w: Int, left: Int, phases: Int, phaseLength: Int) {
        @inline(__always) func eachRow(_ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
            for r in 0..<rows { body(plain + r &* plainStride, runs + r &* runsStride) }
        }
        let even = stretch(0, left: left, phases: phases, phaseLength: phaseLength)
        let odd = stretch(1, left: left, phases: phases, phaseLength: phaseLength)
        switch phases {
        case 1: eachRow { row, run in intoRuns ? copy(run + left, row, w) : copy(row, run + left, w) }
        case 2:
            eachRow { row, run in
                if intoRuns {
                    splitPairs(row, w, even: run + even, odd: run + odd)
                } else {
                    mergePairs(even: run + even, odd: run + odd, w, into: row)
                }
            }
        default:
            eachRow { row, run in
                for k in 0..<min(phases, w) {
                    let stretchStart = run + stretch(k, left: left, phases: phases, phaseLength: phaseLength)
                    let n = (w &- k &+ phases &- 1) / phases
                    if intoRuns {
                        ConvLoops.gather(stretchStart, row + k, n, stride: phases)
                    } else {
                        ConvLoops.scatter(row + k, stretchStart, n, stride: phases)
                    }
                }
            }
        }
    }

    /// Offset, from the start of a row's runs, of the stretch holding columns k, k + phases, ...
    @inline(__always)
    static func stretch(_ k: Int, left: Int, phases: Int, phaseLength: Int) -> Int {
        let c = k &+ left
        return c % phases &* phaseLength &+ c / phases
    }

    /// `dst[0..<n] = src[0..<n]` in vectors, the last one overlapping (a loop the compiler does not
    /// turn into a `memmove` call, which costs more than these short rows).
    @inline(__always)
    static func copy(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
        if n < 16 {
            for j in 0..<n { dst[j] = src[j] }
            return
        }
        var x = 0
        while x &+ 16 < n {
            VectorMath.store(VectorMath.load(src + x, as: V.self), dst + x)
            x &+= 16
        }
        VectorMath.store(VectorMath.load(src + (n &- 16), as: V.self), dst + (n &- 16))
    }

    /// `even[m] = src[2m]`, `odd[m] = src[2m + 1]` for the `n` floats of `src`: 32, 16 and 8 at a time.
    @inline(__always)
    static func splitPairs(_ src: UnsafePointer<Float>, _ n: Int, even: UnsafeMutablePointer<Float>,
                           odd: UnsafeMutablePointer<Float>) {
        var x = 0
        while x &+ 32 <= n {
            let a = VectorMath.load(src + x, as: V.self), b = VectorMath.load(src + (x &+ 16), as: V.self)
            VectorMath.store(V(lowHalf: a.evenHalf, highHalf: b.evenHalf), even + x >> 1)
            VectorMath.store(V(lowHalf: a.oddHalf, highHalf: b.oddHalf), odd + x >> 1)
            x &+= 32
        }
        if x &+ 16 <= n {
            let a = VectorMath.load(src + x, as: V.self)
            VectorMath.store(a.evenHalf, even + x >> 1); VectorMath.store(a.oddHalf, odd + x >> 1)
            x &+= 16
        }
        if x &+ 8 <= n {
            let a = VectorMath.load(src + x, as: SIMD8<Float>.self)
            VectorMath.store(a.evenHalf, even + x >> 1); VectorMath.store(a.oddHalf, odd + x >> 1)
            x &+= 8
        }
        while x < n {
            (x & 1 == 0 ? even : odd)[x >> 1] = src[x]
            x &+= 1
        }
    }

    /// The inverse of `splitPairs`: `dst[2m] = even[m]`, `dst[2m + 1] = odd[m]` for `n` floats of `dst`.
    @inline(__always)
    static func mergePairs(even: UnsafePointer<Float>, odd: UnsafePointer<Float>, _ n: Int, into dst: UnsafeMutablePointer<Float>) {
        var x = 0
        while x &+ 32 <= n {
            let e = VectorMath.load(even + x >> 1, as: V.self), o = VectorMath.load(odd + x >> 1, as: V.self)
            VectorMath.store(interleave(e.lowHalf, o.lowHalf), dst + x)
            VectorMath.store(interleave(e.highHalf, o.highHalf), dst + (x &+ 16))
            x &+= 32
        }
        if x &+ 16 <= n {
            let e = VectorMath.load(even + x >> 1, as: SIMD8<Float>.self), o = VectorMath.load(odd + x >> 1, as: SIMD8<Float>.self)
            VectorMath.store(interleave(e, o), dst + x)
            x &+= 16
        }
        if x &+ 8 <= n {
            let e = VectorMath.load(even + x >> 1, as: SIMD4<Float>.self), o = VectorMath.load(odd + x >> 1, as: SIMD4<Float>.self)
            VectorMath.store(SIMD8(e[0], o[0], e[1], o[1], e[2], o[2], e[3], o[3]), dst + x)
            x &+= 8
        }
        while x < n {
            dst[x] = (x & 1 == 0 ? even : odd)[x >> 1]
            x &+= 1
        }
    }

    /// `(a[0], b[0], a[1], b[1], ..., a[7], b[7])`.
    @inline(__always)
    static func interleave(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> V {
        V(a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], a[4], b[4], a[5], b[5], a[6], b[6], a[7], b[7])
    }
}

/// The input gradient of a depthwise convolution in gather form (see the top of the file): the
/// zero-padded gradOutput plane, and for every phase (ρ, φ) of a padded dx row and column its taps.
struct DepthwiseGather {
    /// gradOutput planes padded by `(KH - 1) * dh / sh` rows on top and `(KW - 1) * dw / sw` columns
    /// on the left (the largest tap shifts), with room for whole vectors of every phase.
    let dy: PhasePlane
    /// Per column phase φ, the first position in its run and the number of dx columns it holds.
    let first: UnsafeMutablePointer<Int>, count: UnsafeMutablePointer<Int>
    /// Floats per run of a dx row's phases (room for whole vectors from `first`).
    let runLength: Int
    /// Phase (ρ, φ), numbered ρ * sw + φ, has taps `tapStart[phase]..<tapStart[phase + 1]`: tap `i`
    /// is `tapIndex[i] = ky * KW + kx` and reads `offsets[i]` floats from dy[R + top][q + left].
    let tapStart: UnsafeMutablePointer<Int>, tapIndex: UnsafeMutablePointer<Int>, offsets: UnsafeMutablePointer<Int>
    /// The convolution (for average pooling's gradient: one channel, the pooling window).
    let g: Conv2dGeometry

    init(_ g: Conv2dGeometry) {
        self.g = g
        let sh = g.strideH, sw = g.strideW, taps = g.kernelHeight * g.kernelWidth
        first = .allocate(capacity: sw); count = .allocate(capacity: sw)
        var reads = 0
        for phi in 0..<sw {
            first[phi] = (g.padW - phi + sw - 1) / sw
            count[phi] = (g.padW + g.width - phi + sw - 1) / sw - first[phi]
            reads = max(reads, first[phi] + (count[phi] + 15) / 16 * 16)
        }
        runLength = reads
        let top = (g.kernelHeight - 1) * g.dilationH / sh, left = (g.kernelWidth - 1) * g.dilationW / sw
        dy = PhasePlane(h: g.outHeight, w: g.outWidth, top: top, left: left,
                        rows: top + (g.height - 1 + g.padH) / sh + 1, reads: left + reads, phases: 1)
        tapStart = .allocate(capacity: sh * sw + 1); tapIndex = .allocate(capacity: taps); offsets = .allocate(capacity: taps)
        var i = 0
        for rho in 0..<sh {
            for phi in 0..<sw {
                tapStart[rho * sw + phi] = i
                for ky in 0..<g.kernelHeight where ky * g.dilationH % sh == rho {
                    for kx in 0..<g.kernelWidth where kx * g.dilationW % sw == phi {
                        tapIndex[i] = ky * g.kernelWidth + kx
                        offsets[i] = -(ky * g.dilationH / sh * dy.rowStride + kx * g.dilationW / sw)
                        i += 1
                    }
                }
            }
        }
        tapStart[sh * sw] = i
    }

    func deallocate() {
        first.deallocate(); count.deallocate(); tapStart.deallocate(); tapIndex.deallocate(); offsets.deallocate()
    }

    /// Floats of scratch `gradInput` needs for the phase runs of every dx row (none for stride 1).
    var runsCount: Int { g.strideW == 1 ? 0 : g.height * g.strideW * runLength }

    /// `weight` (`[groups * perGroup, KH * KW]`) in phase order: phase k of group `grp` holds its
    /// taps `[j][t]` from `(grp * perGroup) * taps + perGroup * tapStart[k]`.
    func phaseOrder(_ weight: UnsafePointer<Float>, groups: Int, perGroup opg: Int, into to: UnsafeMutablePointer<Float>) {
        let taps = g.kernelHeight * g.kernelWidth
        for grp in 0..<groups {
            for k in 0..<(g.strideH * g.strideW) {
                let start = tapStart[k], n = tapStart[k + 1] - start
                let phase = to + grp * opg * taps + opg * start
                for j in 0..<opg {
                    for t in 0..<n { phase[j * n + t] = weight[(grp * opg + j) * taps + tapIndex[start + t]] }
                }
            }
        }
    }

    /// One plane of the input gradient, `dx` (`H x W`, overwritten), from `planes` padded gradOutput
    /// planes (`dy` layout, `planeStride` apart) and their weights in phase order (one group's
    /// part of `phaseOrder`). `runs` is scratch of `runsCount` floats.
    func gradInput(_ dyPlanes: UnsafePointer<Float>, planes: Int, planeStride: Int, phaseWeights: UnsafePointer<Float>,
                   runs: UnsafeMutablePointer<Float>, into dx: UnsafeMutablePointer<Float>) {
        let sh = g.strideH, sw = g.strideW
        // Phase by phase: the dx rows iy = iy0, iy0 + sh, ... have row phase rho.
        for rho in 0..<sh {
            let iy0 = ((rho - g.padH) % sh + sh) % sh
            if iy0 >= g.height { continue }
            for phi in 0..<sw {
                let k = rho * sw + phi, start = tapStart[k]
                let source = dyPlanes + ((iy0 + g.padH) / sh + dy.top) * dy.rowStride + dy.left + first[phi]
                // Stride 1 writes the dx rows directly; otherwise their phase runs, merged below.
                let out = sw == 1 ? dx + iy0 * g.width : runs + (iy0 * sw + phi) * runLength + first[phi]
                Kernels.depthwiseRows(source, srcStride: dy.rowStride, planes: planes, planeStride: planeStride,
                                      offsets: offsets + start, taps: tapStart[k + 1] - start,
                                      weights: phaseWeights + planes * start, bias: 0, out: out,
                                      outStride: sw == 1 ? g.width * sh : sh * sw * runLength,
                                      rows: (g.height - iy0 + sh - 1) / sh, n: count[phi])
            }
        }
        if sw > 1 {
            PhaseRows.merge(runs, srcStride: sw * runLength, into: dx, dstStride: g.width, rows: g.height, width: g.width,
                            left: g.padW, phases: sw, phaseLength: runLength)
        }
    }
}

extension Kernels {
    /// `out[r * outStride + x] = bias + sum_i sum_t weights[i * taps + t] * src[r * srcStride + i * planeStride + offsets[t] + x]`
    /// for rows `r < rows` and `x < n`: `planes` sources, each read at `taps` offsets. Outputs are
    /// summed in registers, 16 per vector, four rows at a time (independent FMA chains sharing each
    /// weight broadcast; past the last row, the last is computed again). Sources are read in whole
    /// vectors (they need room past `n`); `out` is written below `n` only.
    @inline(__always)
    static func depthwiseRows(_ src: UnsafePointer<Float>, srcStride: Int, planes: Int, planeStride: Int,
                              offsets: UnsafePointer<Int>, taps: Int, weights: UnsafePointer<Float>, bias: Float,
                              out: UnsafeMutablePointer<Float>, outStride: Int, rows: Int, n: Int) {
        typealias V = SIMD16<Float>
        @inline(__always) func store(_ v: V, _ to: UnsafeMutablePointer<Float>, _ count: Int) {
            if count >= 16 { return VectorMath.store(v, to) }
            for j in 0..<count { to[j] = v[j] }
        }
        var r = 0
        while r < rows {
            let r1 = min(r &+ 1, rows &- 1), r2 = min(r &+ 2, rows &- 1), r3 = min(r &+ 3, rows &- 1)
            let src0 = src + r &* srcStride, src1 = src + r1 &* srcStride
            let src2 = src + r2 &* srcStride, src3 = src + r3 &* srcStride
            var x = 0
            while x < n {
                var acc0 = V(repeating: bias), acc1 = acc0, acc2 = acc0, acc3 = acc0
                for i in 0..<planes {
                    let plane = i &* planeStride &+ x, w = weights + i &* taps
                    for t in 0..<taps {
                        let wv = V(repeating: w[t]), at = plane &+ offsets[t]
                        acc0 = GEMMSIMD.multiplyAdd(wv, VectorMath.load(src0 + at, as: V.self), acc0)
                        acc1 = GEMMSIMD.multiplyAdd(wv, VectorMath.load(src1 + at, as: V.self), acc1)
                        acc2 = GEMMSIMD.multiplyAdd(wv, VectorMath.load(src2 + at, as: V.self), acc2)
                        acc3 = GEMMSIMD.multiplyAdd(wv, VectorMath.load(src3 + at, as: V.self), acc3)
                    }
                }
                store(acc0, out + (r &* outStride &+ x), n &- x)
                store(acc1, out + (r1 &* outStride &+ x), n &- x)
                store(acc2, out + (r2 &* outStride &+ x), n &- x)
                store(acc3, out + (r3 &* outStride &+ x), n &- x)
                x &+= 16
            }
            r &+= 4
        }
    }

    /// `gw[t] += sum_(oy < rows, ox < width) dy[oy * dyStride + ox] * x[oy * xStride + offsets[t] + ox]`
    /// for every tap `t`. Taps go three at a time (a short last group repeats its last tap), each dy
    /// vector loaded once for the three; rows alternate between two sets of accumulators. `dy` rows
    /// are zero from `width` to the next multiple of 16 and those `x` lanes are masked to zero, so
    /// only inputs that outputs read enter the sums. (Not inlined: its loops keep their registers.)
    @inline(never)
    static func depthwiseWeightTaps(_ x: UnsafePointer<Float>, offsets: UnsafePointer<Int>, taps: Int, xStride: Int,
                                    _ dy: UnsafePointer<Float>, dyStride: Int, rows: Int, width: Int,
                                    into gw: UnsafeMutablePointer<Float>) {
        typealias V = SIMD16<Float>
        let tail = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) .< Int32(truncatingIfNeeded: width & 15)
        for t in stride(from: 0, to: taps, by: 3) {
            let t1 = min(t &+ 1, taps &- 1), t2 = min(t &+ 2, taps &- 1), o = (offsets[t], offsets[t1], offsets[t2])
            var even = (V(), V(), V()), odd = (V(), V(), V())
            var oy = 0
            while oy < rows {
                dotsRow(x + oy &* xStride, o, dy + oy &* dyStride, width, tail, &even)
                if oy &+ 1 < rows { dotsRow(x + (oy &+ 1) &* xStride, o, dy + (oy &+ 1) &* dyStride, width, tail, &odd) }
                oy &+= 2
            }
            gw[t] += GEMMSIMD.sum(even.0 + odd.0)
            if t &+ 1 < taps { gw[t1] += GEMMSIMD.sum(even.1 + odd.1) }
            if t &+ 2 < taps { gw[t2] += GEMMSIMD.sum(even.2 + odd.2) }
        }
    }

    /// One row of `depthwiseWeightTaps`: whole vectors, then the last one with `x` masked by `tail`.
    @inline(__always)
    private static func dotsRow(_ x: UnsafePointer<Float>, _ o: (Int, Int, Int), _ dy: UnsafePointer<Float>, _ width: Int,
                                _ tail: SIMDMask<SIMD16<Int32>>, _ a: inout (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>)) {
        typealias V = SIMD16<Float>
        var ox = 0
        while ox < width {
            var x0 = VectorMath.load(x + (o.0 &+ ox), as: V.self), x1 = VectorMath.load(x + (o.1 &+ ox), as: V.self)
            var x2 = VectorMath.load(x + (o.2 &+ ox), as: V.self)
            if ox &+ 16 > width {
                x0 = V().replacing(with: x0, where: tail); x1 = V().replacing(with: x1, where: tail)
                x2 = V().replacing(with: x2, where: tail)
            }
            let d = VectorMath.load(dy + ox, as: V.self)
            a.0 = GEMMSIMD.multiplyAdd(d, x0, a.0)
            a.1 = GEMMSIMD.multiplyAdd(d, x1, a.1)
            a.2 = GEMMSIMD.multiplyAdd(d, x2, a.2)
            ox &+= 16
        }
    }

    /// Offsets of the taps `ky * KW + kx` of `pp` from the first input an output row reads.
    private static func tapOffsets(_ g: Conv2dGeometry, _ pp: PhasePlane) -> UnsafeMutablePointer<Int> {
        let offsets = UnsafeMutablePointer<Int>.allocate(capacity: g.kernelHeight * g.kernelWidth)
        for ky in 0..<g.kernelHeight {
            for kx in 0..<g.kernelWidth {
                offsets[ky * g.kernelWidth + kx] = ky * g.dilationH * pp.rowStride + pp.tapOffset(kx, dilation: g.dilationW)
            }
        }
        return offsets
    }

    static func conv2dForwardDepthwise(_ g: Conv2dGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                       bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, plan p: ConvPlan,
                                       epilogue: ConvEpilogue?) {
        let opg = g.outChannelsPerGroup, taps = g.kernelHeight * g.kernelWidth, oh = g.outHeight, ow = g.outWidth
        let pp = PhasePlane(input: g)
        let offsets = tapOffsets(g, pp)
        defer { offsets.deallocate() }
        p.forEachPlaneRange(g.batch * g.inChannels) { range in
            let buffer = ScratchPool.allocate(pp.count)
            defer { buffer.deallocate() }
            buffer.update(repeating: 0, count: pp.count)
            for plane in range {
                pp.write(input + plane * p.inPlane, h: g.height, w: g.width, into: buffer)
                let n = plane / g.inChannels, grp = plane - n * g.inChannels
                for co in (grp * opg)..<((grp + 1) * opg) {
                    let out = output + (n * g.outChannels + co) * p.outPlane, b = bias?[co] ?? 0
                    depthwiseRows(buffer, srcStride: g.strideH * pp.rowStride, planes: 1, planeStride: 0, offsets: offsets,
                                  taps: taps, weights: weight + co * taps, bias: b, out: out, outStride: ow, rows: oh, n: ow)
                    epilogue?.apply(output, at: (n * g.outChannels + co) * p.outPlane, count: p.outPlane, channel: co)
                }
            }
        }
    }

    static func conv2dBackwardInputDepthwise(_ g: Conv2dGeometry, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                             gradInput: UnsafeMutablePointer<Float>, plan p: ConvPlan) {
        let opg = g.outChannelsPerGroup, taps = g.kernelHeight * g.kernelWidth
        let d = DepthwiseGather(g)
        defer { d.deallocate() }
        let phaseWeights = ScratchPool.allocate(g.outChannels * taps)
        defer { phaseWeights.deallocate() }
        d.phaseOrder(weight, groups: g.inChannels, perGroup: opg, into: phaseWeights)
        let planeStride = ConvPlan.rounded(d.dy.count)
        p.forEachPlaneRange(g.batch * g.inChannels) { range in
            // The group's padded gradOutput planes, then the phase runs.
            let buffer = ScratchPool.allocate(opg * planeStride + d.runsCount)
            defer { buffer.deallocate() }
            buffer.update(repeating: 0, count: opg * planeStride + d.runsCount)
            for plane in range {
                let n = plane / g.inChannels, grp = plane - n * g.inChannels
                for j in 0..<opg {
                    d.dy.write(gradOutput + (n * g.outChannels + grp * opg + j) * p.outPlane, h: g.outHeight, w: g.outWidth,
                               into: buffer + j * planeStride)
                }
                d.gradInput(buffer, planes: opg, planeStride: planeStride, phaseWeights: phaseWeights + grp * opg * taps,
                            runs: buffer + opg * planeStride, into: gradInput + plane * p.inPlane)
            }
        }
    }

    static func conv2dBackwardWeightDepthwise(_ g: Conv2dGeometry, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                              gradWeight: UnsafeMutablePointer<Float>, plan p: ConvPlan) {
        let opg = g.outChannelsPerGroup, taps = g.kernelHeight * g.kernelWidth
        let oh = g.outHeight, ow = g.outWidth, owPadded = (ow + 15) / 16 * 16
        let pp = PhasePlane(input: g)
        let offsets = tapOffsets(g, pp)
        defer { offsets.deallocate() }
        gradWeight.update(repeating: 0, count: g.outChannels * taps)
        p.forEachPlaneRange(g.inChannels) { groups in
            // The padded input plane, and gradOutput rows padded with zeros to whole vectors.
            let buffer = ScratchPool.allocate(pp.count + oh * owPadded)
            defer { buffer.deallocate() }
            buffer.update(repeating: 0, count: pp.count + oh * owPadded)
            let dyRows = buffer + pp.count
            for grp in groups {
                for n in 0..<g.batch {
                    pp.write(input + (n * g.inChannels + grp) * p.inPlane, h: g.height, w: g.width, into: buffer)
                    for co in (grp * opg)..<((grp + 1) * opg) {
                        let dy = gradOutput + (n * g.outChannels + co) * p.outPlane
                        for oy in 0..<oh { PhaseRows.copy(dyRows + oy * owPadded, dy + oy * ow, ow) }
                        depthwiseWeightTaps(buffer, offsets: offsets, taps: taps, xStride: g.strideH * pp.rowStride, dyRows,
                                            dyStride: owPadded, rows: oh, width: ow, into: gradWeight + co * taps)
                    }
                }
            }
        }
    }
}

extension ConvPlan {
    /// Splits `0..<planes` into contiguous ranges, one per thread the plan may use.
    func forEachPlaneRange(_ planes: Int, _ body: (Range<Int>) -> Void) {
        let parts = max(1, min(max(workers, gemmThreads), planes))
        Kernels.parallelFor(parts, threads: parts) { t in body((t * planes / parts)..<((t + 1) * planes / parts)) }
    }
}
