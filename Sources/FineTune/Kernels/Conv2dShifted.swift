// Stride-1 convolutions from shifted copies of the zero-padded image, one sgemm per kernel row:
// no column matrix, no im2col or col2im.
//
// Pad a group's input to planes of Hp x Wp (Hp = H + 2ph, Wp = W + 2pw) and compute the output in
// a "wide" layout Yw[co, oy * Wp + x] whose rows hold Wp entries, the first OW of them real. Then
// tap (ky, kx) reads the padded plane shifted by ky * dh * Wp + kx * dw. Keep KW copies of the
// padded planes, copy kx shifted left by kx * dw:
//
//     Xs[kx][c][i] = Xpadded[c][i + kx * dw]
//
// For one kernel row ky, the rows (kx, c) of the column matrix are then `Xs + ky * dh * Wp` with a
// uniform stride Hp * Wp, an ordinary strided matrix with K = KW * Cin/groups rows:
//
//     Yw[co, j] = sum_ky sum_(kx,c) Wr[ky][co, (kx, c)] * Xs[kx][c][j + ky * dh * Wp]
//
// for j < (OH - 1) * Wp + OW: KH sgemm calls per sample and group, reading B straight from the
// shifted copies. The Wp - OW extra entries per output row are computed and dropped (6% extra work
// for a 3x3 "same" convolution on 32x32). The copies move KW planes per input plane where im2col
// writes KH * KW.
//
// The input gradient is the same computation on gradOutput padded by (K - 1) * d - p with the
// kernel flipped and transposed; the weight gradient of kernel row ky is
// dY_wide · (Xs + ky * dh * Wp)^T, with dY_wide zero in the extra entries and the copies zeroed
// there too (the extra entries read real inputs; an infinite one times zero would be NaN).
//
// Weights (and weight gradients) are repacked row-major per kernel row: Wr[g][ky][co][kx][c].

/// Sizes of the padded, shifted and wide buffers of the shifted-copies method.
struct ShiftedShape {
    let g: Conv2dGeometry
    /// Padded input planes (forward and weight gradient): `(H + 2ph) x (W + 2pw)`.
    let hp: Int, wp: Int
    /// Padding of gradOutput for the input gradient, `(K - 1) * d - p` per side, and the padded
    /// gradOutput planes: `(OH + 2qh) x (OW + 2qw)` (= `(H + (KH-1)dh) x (W + (KW-1)dw)`).
    let qh: Int, qw: Int, hq: Int, wq: Int

    init(_ g: Conv2dGeometry) {
        self.g = g
        hp = g.height + 2 * g.padH; wp = g.width + 2 * g.padW
        qh = (g.kernelHeight - 1) * g.dilationH - g.padH; qw = (g.kernelWidth - 1) * g.dilationW - g.padW
        hq = g.outHeight + 2 * qh; wq = g.outWidth + 2 * qw
    }

    /// The forward and weight-gradient form applies to every stride-1 convolution.
    var supportsForward: Bool { g.strideH == 1 && g.strideW == 1 }
    /// The input-gradient form also needs the padding to be at most the kernel's reach.
    var supportsBackwardInput: Bool { supportsForward && qh >= 0 && qw >= 0 }

    /// Writes the `KW` shifted copies of `channels` zero-padded planes: copy `kx` of channel `c` at
    /// `dst + (kx * channels + c) * hp * wp` holds the padded plane shifted left by `kx * dw`.
    ///
    /// `src` holds `channels` dense `h x w` planes placed at row `top`, column `left` of the padded
    /// planes. Every entry that the convolution reads is written (the tails the shift leaves
    /// undefined are never read), so `dst` needs no initialization.
    static func writeShiftedCopies(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, channels: Int,
                                   h: Int, w: Int, hp: Int, wp: Int, top: Int, left: Int, copies: Int, dilation: Int) {
        let plane = hp * wp
        // Copy 0: the padded planes.
        for c in 0..<channels {
            let to = dst + c * plane
            ConvLoops.zero(to, top * wp + left)
            var row = to + top * wp + left, from = src + c * h * w
            for y in 0..<h {
                ConvLoops.copy(row, from, w)
                // Right padding of this row and left padding of the next.
                let gap = y == h - 1 ? plane - (top + h - 1) * wp - left - w : wp - w
                ConvLoops.zero(row + w, gap)
                row += wp; from += w
            }
        }
        // Copies 1..<KW: the padded planes shifted left.
        for kx in 1..<max(copies, 1) {
            let shift = kx * dilation
            ConvLoops.copy(dst + kx * channels * plane, dst + shift, channels * plane - shift)
        }
    }

    /// Zeroes columns `from..<wp` of `count` rows `wp` apart. The weight gradient's wide rows of dY
    /// are zero there (discarded outputs), so it zeroes the shifted copies there too: an input that
    /// only discarded outputs read must not meet a zero (0 * Inf is NaN; the direct sum has no term).
    static func zeroColumns(_ rows: UnsafeMutablePointer<Float>, count: Int, wp: Int, from: Int) {
        for r in 0..<count { ConvLoops.zero(rows + r * wp + from, wp - from) }
    }

    /// Copies the first `w` entries of each `wp`-wide row into dense `h x w` planes, adding `bias[c]`.
    static func copyOut(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, channels: Int,
                        h: Int, w: Int, wp: Int, bias: UnsafePointer<Float>?) {
        for c in 0..<channels {
            var to = dst + c * h * w, from = src + c * h * wp
            for _ in 0..<h {
                if let bias {
                    ConvLoops.copyAdding(to, from, bias[c], w)
                } else {
                    ConvLoops.copy(to, from, w)
                }
                to += w; from += wp
            }
        }
    }

    /// Copies dense `h x w` planes into the first `w` entries of `wp`-wide rows, zeroing the rest.
    static func copyWide(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, channels: Int,
                         h: Int, w: Int, wp: Int) {
        var to = dst, from = src
        for _ in 0..<(channels * h) {
            ConvLoops.copy(to, from, w)
            ConvLoops.zero(to + w, wp - w)
            to += wp; from += w
        }
    }
}

extension Kernels {
    /// Repacks `weight[Cout, Cin/g, KH, KW]` per kernel row: `Wr[g][ky][co][kx][c]` (allocated;
    /// caller frees). With `flipped`, for the input gradient: `Wr[g][ky][kx][co][c]` holding
    /// `weight[co, c, KH-1-ky, KW-1-kx]`.
    static func rowMajorWeights(_ g: Conv2dGeometry, _ weight: UnsafePointer<Float>, flipped: Bool) -> UnsafeMutablePointer<Float> {
        let kh = g.kernelHeight, kw = g.kernelWidth, cpg = g.inChannelsPerGroup, opg = g.outChannelsPerGroup
        let wr = ScratchPool.allocate(g.outChannels * cpg * kh * kw)
        for grp in 0..<g.groups {
            for co in 0..<opg {
                for c in 0..<cpg {
                    let from = weight + ((grp * opg + co) * cpg + c) * kh * kw
                    for ky in 0..<kh {
                        for kx in 0..<kw {
                            let to = flipped
                                ? (((grp * kh + ky) * kw + kx) * opg + co) * cpg + c
                                : (((grp * kh + ky) * opg + co) * kw + kx) * cpg + c
                            wr[to] = flipped ? from[(kh - 1 - ky) * kw + (kw - 1 - kx)] : from[ky * kw + kx]
                        }
                    }
                }
            }
        }
        return wr
    }

    static func conv2dForwardShifted(_ g: Conv2dGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                     bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, plan p: ConvPlan,
                                     epilogue: ConvEpilogue?) {
        let s = ShiftedShape(g), kh = g.kernelHeight, kw = g.kernelWidth
        let cpg = g.inChannelsPerGroup, opg = g.outChannelsPerGroup, oh = g.outHeight, ow = g.outWidth
        let wr = rowMajorWeights(g, weight, flipped: false)
        defer { wr.deallocate() }
        let shiftedCount = ConvPlan.rounded(kw * cpg * s.hp * s.wp), wideCount = ConvPlan.rounded(opg * oh * s.wp)
        let buffers = ScratchPool.allocate(p.workers * (shiftedCount + wideCount))
        defer { buffers.deallocate() }
        let k = kw * cpg, n = (oh - 1) * s.wp + ow
        p.forEachWorker { worker, samples in
            let xs = buffers + worker * (shiftedCount + wideCount), yw = xs + shiftedCount
            for sample in samples {
                for grp in 0..<g.groups {
                    ShiftedShape.writeShiftedCopies(xs, input + (sample * g.inChannels + grp * cpg) * p.inPlane,
                                                    channels: cpg, h: g.height, w: g.width, hp: s.hp, wp: s.wp,
                                                    top: g.padH, left: g.padW, copies: kw, dilation: g.dilationW)
                    p.forEachColumnPart(n) { j in
                        for ky in 0..<kh {
                            columnPartSGEMM(transA: false, transB: false, m: opg, n: j.count, k: k, alpha: 1,
                                            a: wr + (grp * kh + ky) * opg * k, lda: k, b: xs + ky * g.dilationH * s.wp + j.lowerBound,
                                            ldb: s.hp * s.wp, beta: ky == 0 ? 0 : 1, c: yw + j.lowerBound, ldc: oh * s.wp)
                        }
                    }
                    ShiftedShape.copyOut(output + (sample * g.outChannels + grp * opg) * p.outPlane, yw, channels: opg,
                                         h: oh, w: ow, wp: s.wp, bias: bias.map { $0 + grp * opg })
                    epilogue?.apply(output, samples: sample..<(sample + 1), channels: (grp * opg)..<((grp + 1) * opg),
                                    of: g.outChannels, plane: p.outPlane)
                }
            }
        }
    }

    static func conv2dBackwardInputShifted(_ g: Conv2dGeometry, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                           gradInput: UnsafeMutablePointer<Float>, plan p: ConvPlan) {
        let s = ShiftedShape(g), kh = g.kernelHeight, kw = g.kernelWidth
        let cpg = g.inChannelsPerGroup, opg = g.outChannelsPerGroup
        let wr = rowMajorWeights(g, weight, flipped: true)
        defer { wr.deallocate() }
        let shiftedCount = ConvPlan.rounded(kw * opg * s.hq * s.wq), wideCount = ConvPlan.rounded(cpg * g.height * s.wq)
        let buffers = ScratchPool.allocate(p.workers * (shiftedCount + wideCount))
        defer { buffers.deallocate() }
        let k = kw * opg, n = (g.height - 1) * s.wq + g.width
        p.forEachWorker { worker, samples in
            let dys = buffers + worker * (shiftedCount + wideCount), dxw = dys + shiftedCount
            for sample in samples {
                for grp in 0..<g.groups {
                    ShiftedShape.writeShiftedCopies(dys, gradOutput + (sample * g.outChannels + grp * opg) * p.outPlane,
                                                    channels: opg, h: g.outHeight, w: g.outWidth, hp: s.hq, wp: s.wq,
                                                    top: s.qh, left: s.qw, copies: kw, dilation: g.dilationW)
                    p.forEachColumnPart(n) { j in
                        for ky in 0..<kh {
                            columnPartSGEMM(transA: true, transB: false, m: cpg, n: j.count, k: k, alpha: 1,
                                            a: wr + (grp * kh + ky) * k * cpg, lda: cpg, b: dys + ky * g.dilationH * s.wq + j.lowerBound,
                                            ldb: s.hq * s.wq, beta: ky == 0 ? 0 : 1, c: dxw + j.lowerBound, ldc: g.height * s.wq)
                        }
                    }
                    ShiftedShape.copyOut(gradInput + (sample * g.inChannels + grp * cpg) * p.inPlane, dxw, channels: cpg,
                                         h: g.height, w: g.width, wp: s.wq, bias: nil)
                }
            }
        }
    }

    static func conv2dBackwardWeightShifted(_ g: Conv2dGeometry, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                            gradWeight: UnsafeMutablePointer<Float>, plan p: ConvPlan) {
        let s = ShiftedShape(g), kh = g.kernelHeight, kw = g.kernelWidth
        let cpg = g.inChannelsPerGroup, opg = g.outChannelsPerGroup, oh = g.outHeight, ow = g.outWidth
        let weightCount = g.outChannels * cpg * kh * kw
        // Accumulators in the Wr layout, one per slot.
        let accumulators = ScratchPool.allocate(p.weightSlots * weightCount)
        defer { accumulators.deallocate() }
        let shiftedCount = ConvPlan.rounded(kw * cpg * s.hp * s.wp), wideCount = ConvPlan.rounded(opg * oh * s.wp)
        let buffers = ScratchPool.allocate(p.weightWorkers * (shiftedCount + wideCount))
        defer { buffers.deallocate() }
        let n = kw * cpg, k = (oh - 1) * s.wp + ow
        p.forEachWeightSlot { worker, slot, samples in
            let xs = buffers + worker * (shiftedCount + wideCount), dyw = xs + shiftedCount
            let acc = accumulators + slot * weightCount
            for sample in samples {
                for grp in 0..<g.groups {
                    ShiftedShape.writeShiftedCopies(xs, input + (sample * g.inChannels + grp * cpg) * p.inPlane,
                                                    channels: cpg, h: g.height, w: g.width, hp: s.hp, wp: s.wp,
                                                    top: g.padH, left: g.padW, copies: kw, dilation: g.dilationW)
                    ShiftedShape.zeroColumns(xs, count: kw * cpg * s.hp, wp: s.wp, from: ow)
                    ShiftedShape.copyWide(dyw, gradOutput + (sample * g.outChannels + grp * opg) * p.outPlane,
                                          channels: opg, h: oh, w: ow, wp: s.wp)
                    p.forEachColumnPart(n) { j in
                        for ky in 0..<kh {
                            columnPartSGEMM(transA: false, transB: true, m: opg, n: j.count, k: k, alpha: 1,
                                            a: dyw, lda: oh * s.wp, b: xs + ky * g.dilationH * s.wp + j.lowerBound * s.hp * s.wp,
                                            ldb: s.hp * s.wp, beta: sample == samples.lowerBound ? 0 : 1,
                                            c: acc + (grp * kh + ky) * opg * n + j.lowerBound, ldc: n)
                        }
                    }
                }
            }
        }
        p.sumWeightSlots(into: accumulators, others: accumulators + weightCount, count: weightCount)
        // Back to [Cout, Cin/g, KH, KW].
        for grp in 0..<g.groups {
            for co in 0..<opg {
                for c in 0..<cpg {
                    let to = gradWeight + ((grp * opg + co) * cpg + c) * kh * kw
                    for ky in 0..<kh {
                        for kx in 0..<kw {
                            to[ky * kw + kx] = accumulators[(((grp * kh + ky) * opg + co) * kw + kx) * cpg + c]
                        }
                    }
                }
            }
        }
    }
}

extension Kernels {
    /// One part of a product whose columns `forEachColumnPart` split across threads, on one thread
    /// and always on the packed path: the parts' widths change with the thread count, and the
    /// direct path that a narrow part of a small product would take rounds differently.
    fileprivate static func columnPartSGEMM(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let problem = GEMMProblem(m: m, n: n, k: k, alpha: alpha, beta: beta,
                                  a: a, lda: lda, transA: transA, b: b, ldb: ldb, transB: transB, c: c, ldc: ldc)
        GEMM.run(problem, kernel: .active, threads: 1, direct: false)
    }
}
