// Depthwise convolutions (one input channel per group, any channel multiplier) computed directly:
// as sgemm calls they would have a single row of depth KH * KW per group.
//
// Each input plane is first copied into a zero-padded buffer whose rows are split into `sw` column
// phases (`PhasePlane`): padded column c is stored at phase c % sw, position c / sw. Output column
// ox of tap kx then reads phase (kx * dw) % sw at position ox + (kx * dw) / sw, so for every stride
// and dilation a run of outputs reads a contiguous run of inputs, with no bounds checks. Outputs
// are computed 16 at a time, accumulating all taps in registers.
//
// The input gradient is the same kernel run on gradOutput padded by (K - 1) * d - p with the
// kernel flipped (stride 1); strided convolutions scatter each tap as an axpy along the row. The
// weight gradient of each tap is a vector dot product of gradOutput with the shifted padded input.
//
// Threads split the planes (forward: output planes; input gradient: input planes; weight
// gradient: groups, each summing its samples in order), so every output element is computed in
// the same order whatever the thread count.

/// A zero-padded copy of one `h x w` plane with its columns split into `phases` (the stride).
struct PhasePlane {
    /// Padded rows, and floats per phase of a row (room for whole 16-lane loads past the end).
    let rows: Int, phaseLength: Int, phases: Int
    let top: Int, left: Int
    var rowStride: Int { phases * phaseLength }
    var count: Int { rows * rowStride }

    /// Planes of `h x w` padded by `top` and `left` (and as much as reads need on the other
    /// sides), read by `outHeight x outWidth` outputs with stride `(sh, sw)` through a kernel
    /// of `kh x kw` with dilation `(dh, dw)`.
    init(h: Int, w: Int, top: Int, left: Int, outHeight: Int, outWidth: Int,
         kernel: (Int, Int), stride: (Int, Int), dilation: (Int, Int)) {
        self.top = top; self.left = left; phases = stride.1
        rows = max(top + h, (outHeight - 1) * stride.0 + (kernel.0 - 1) * dilation.0 + 1)
        let reads = (outWidth + 15) / 16 * 16 + (kernel.1 - 1) * dilation.1 / stride.1
        phaseLength = max(reads, (left + w + stride.1 - 1) / stride.1)
    }

    /// Offset, from the start of a row, of the run read by tap column `kx`.
    @inline(__always)
    func tapOffset(_ kx: Int, dilation: Int) -> Int {
        let p = kx * dilation
        return p % phases * phaseLength + p / phases
    }

    /// Writes the plane's values; the padding must already be zero (it is never written).
    func write(_ src: UnsafePointer<Float>, h: Int, w: Int, into dst: UnsafeMutablePointer<Float>) {
        for y in 0..<h {
            let row = dst + (top + y) * rowStride, from = src + y * w
            if phases == 1 {
                ConvLoops.copy(row + left, from, w)
                continue
            }
            // Phase ph holds padded columns c = ph, ph + phases, ...; the first at or after `left`
            // is input column x0 = (ph - left) mod phases.
            for ph in 0..<phases {
                let x0 = ((ph - left) % phases + phases) % phases
                if x0 >= w { continue }
                let n = (w - x0 + phases - 1) / phases
                ConvLoops.gather(row + ph * phaseLength + (left + x0) / phases, from + x0, n, stride: phases)
            }
        }
    }
}

extension Kernels {
    /// `out[oy, ox] = bias + sum_i sum_(ky,kx) w_i[ky, kx] * in_i[oy * sh + ky * dh, ox * sw + kx * dw]`
    /// over `count` phase planes (`planeStride` apart) with weights `KH * KW` apart.
    static func depthwiseRows(_ pp: PhasePlane, planes: UnsafePointer<Float>, count: Int, planeStride: Int,
                              weights: UnsafePointer<Float>, bias: Float, out: UnsafeMutablePointer<Float>,
                              outHeight: Int, outWidth: Int, kernel: (Int, Int), strideH: Int, dilation: (Int, Int),
                              tapOffsets: UnsafePointer<Int>) {
        typealias V = SIMD16<Float>
        let taps = kernel.0 * kernel.1
        for oy in 0..<outHeight {
            let row = out + oy * outWidth
            let rowPlanes = planes + oy * strideH * pp.rowStride
            var ox = 0
            // Two blocks of 16 outputs at a time (independent FMA chains), then one.
            while ox + 16 < outWidth {
                var acc0 = V(repeating: bias), acc1 = V(repeating: bias)
                for i in 0..<count {
                    let plane = rowPlanes + i * planeStride + ox
                    let w = weights + i * taps
                    for ky in 0..<kernel.0 {
                        let line = plane + ky * dilation.0 * pp.rowStride
                        for kx in 0..<kernel.1 {
                            let wv = V(repeating: w[ky * kernel.1 + kx]), at = UnsafeRawPointer(line + tapOffsets[kx])
                            acc0 = acc0.addingProduct(wv, at.loadUnaligned(as: V.self))
                            acc1 = acc1.addingProduct(wv, at.loadUnaligned(fromByteOffset: 64, as: V.self))
                        }
                    }
                }
                UnsafeMutableRawPointer(row + ox).storeBytes(of: acc0, as: V.self)
                let n = min(16, outWidth - ox - 16)
                if n == 16 {
                    UnsafeMutableRawPointer(row + ox + 16).storeBytes(of: acc1, as: V.self)
                } else {
                    for j in 0..<n { row[ox + 16 + j] = acc1[j] }
                }
                ox += 32
            }
            if ox < outWidth {
                var acc = V(repeating: bias)
                for i in 0..<count {
                    let plane = rowPlanes + i * planeStride + ox
                    let w = weights + i * taps
                    for ky in 0..<kernel.0 {
                        let line = plane + ky * dilation.0 * pp.rowStride
                        for kx in 0..<kernel.1 {
                            let x = UnsafeRawPointer(line + tapOffsets[kx]).loadUnaligned(as: V.self)
                            acc = acc.addingProduct(V(repeating: w[ky * kernel.1 + kx]), x)
                        }
                    }
                }
                let n = outWidth - ox
                if n == 16 {
                    UnsafeMutableRawPointer(row + ox).storeBytes(of: acc, as: V.self)
                } else {
                    for j in 0..<n { row[ox + j] = acc[j] }
                }
            }
        }
    }

    static func conv2dForwardDepthwise(_ g: Conv2dGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                       bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, plan p: ConvPlan) {
        let opg = g.outChannelsPerGroup, taps = g.kernelHeight * g.kernelWidth
        let pp = PhasePlane(h: g.height, w: g.width, top: g.padH, left: g.padW, outHeight: g.outHeight, outWidth: g.outWidth,
                            kernel: (g.kernelHeight, g.kernelWidth), stride: (g.strideH, g.strideW),
                            dilation: (g.dilationH, g.dilationW))
        let offsets = UnsafeMutablePointer<Int>.allocate(capacity: g.kernelWidth)
        defer { offsets.deallocate() }
        for kx in 0..<g.kernelWidth { offsets[kx] = pp.tapOffset(kx, dilation: g.dilationW) }
        let planes = g.batch * g.inChannels
        p.forEachPlaneRange(planes) { range in
            let buffer = ConvPlan.allocate(pp.count)
            defer { buffer.deallocate() }
            buffer.update(repeating: 0, count: pp.count)
            for plane in range {
                pp.write(input + plane * p.inPlane, h: g.height, w: g.width, into: buffer)
                let n = plane / g.inChannels, grp = plane - n * g.inChannels
                for co in (grp * opg)..<((grp + 1) * opg) {
                    depthwiseRows(pp, planes: buffer, count: 1, planeStride: 0, weights: weight + co * taps,
                                  bias: bias?[co] ?? 0, out: output + (n * g.outChannels + co) * p.outPlane,
                                  outHeight: g.outHeight, outWidth: g.outWidth, kernel: (g.kernelHeight, g.kernelWidth),
                                  strideH: g.strideH, dilation: (g.dilationH, g.dilationW), tapOffsets: offsets)
                }
            }
        }
    }

    static func conv2dBackwardInputDepthwise(_ g: Conv2dGeometry, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                             gradInput: UnsafeMutablePointer<Float>, plan p: ConvPlan) {
        let s = ShiftedShape(g)
        guard s.supportsBackwardInput else {
            return conv2dBackwardInputDepthwiseScatter(g, gradOutput: gradOutput, weight: weight, gradInput: gradInput, plan: p)
        }
        // Stride 1: a depthwise convolution of gradOutput, padded by (K - 1) * d - p, with the
        // kernel flipped, summed over the group's output channels.
        let opg = g.outChannelsPerGroup, kh = g.kernelHeight, kw = g.kernelWidth, taps = kh * kw
        let pp = PhasePlane(h: g.outHeight, w: g.outWidth, top: s.qh, left: s.qw, outHeight: g.height, outWidth: g.width,
                            kernel: (kh, kw), stride: (1, 1), dilation: (g.dilationH, g.dilationW))
        let offsets = UnsafeMutablePointer<Int>.allocate(capacity: kw)
        defer { offsets.deallocate() }
        for kx in 0..<kw { offsets[kx] = pp.tapOffset(kx, dilation: g.dilationW) }
        let flipped = ConvPlan.allocate(g.outChannels * taps)
        defer { flipped.deallocate() }
        for co in 0..<g.outChannels {
            for t in 0..<taps { flipped[co * taps + t] = weight[co * taps + taps - 1 - t] }
        }
        let planeStride = ConvPlan.rounded(pp.count)
        p.forEachPlaneRange(g.batch * g.inChannels) { range in
            let buffer = ConvPlan.allocate(opg * planeStride)
            defer { buffer.deallocate() }
            buffer.update(repeating: 0, count: opg * planeStride)
            for plane in range {
                let n = plane / g.inChannels, grp = plane - n * g.inChannels
                for j in 0..<opg {
                    pp.write(gradOutput + (n * g.outChannels + grp * opg + j) * p.outPlane, h: g.outHeight, w: g.outWidth,
                             into: buffer + j * planeStride)
                }
                depthwiseRows(pp, planes: buffer, count: opg, planeStride: planeStride, weights: flipped + grp * opg * taps,
                              bias: 0, out: gradInput + plane * p.inPlane, outHeight: g.height, outWidth: g.width,
                              kernel: (kh, kw), strideH: 1, dilation: (g.dilationH, g.dilationW), tapOffsets: offsets)
            }
        }
    }

    /// Input gradient of a strided depthwise convolution: each tap adds `w * dY` along the row into
    /// the input columns it read (every `sw`-th).
    static func conv2dBackwardInputDepthwiseScatter(_ g: Conv2dGeometry, gradOutput: UnsafePointer<Float>,
                                                    weight: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
                                                    plan p: ConvPlan) {
        let s = p.shape, opg = g.outChannelsPerGroup, kw = g.kernelWidth, taps = g.kernelHeight * kw, ow = g.outWidth
        // Valid output columns of each tap column.
        let ranges = UnsafeMutablePointer<Int>.allocate(capacity: 2 * kw)
        defer { ranges.deallocate() }
        for kx in 0..<kw {
            let xs = Im2colShape.validRange(offset: kx * s.dilationW - s.padW, stride: s.strideW, size: s.width, count: ow)
            ranges[2 * kx] = xs.lo; ranges[2 * kx + 1] = xs.hi
        }
        p.forEachPlaneRange(g.batch * g.inChannels) { range in
            for plane in range {
                let n = plane / g.inChannels, grp = plane - n * g.inChannels
                let dx = gradInput + plane * p.inPlane
                dx.update(repeating: 0, count: p.inPlane)
                for co in (grp * opg)..<((grp + 1) * opg) {
                    let w = weight + co * taps
                    var dyRow = gradOutput + (n * g.outChannels + co) * p.outPlane
                    for oy in 0..<g.outHeight {
                        for ky in 0..<g.kernelHeight {
                            let iy = oy * s.strideH - s.padH + ky * s.dilationH
                            if iy < 0 || iy >= s.height { continue }
                            for kx in 0..<kw {
                                let lo = ranges[2 * kx], hi = ranges[2 * kx + 1]
                                let to = dx + iy * s.width + lo * s.strideW + kx * s.dilationW - s.padW
                                ConvLoops.axpy(w[ky * kw + kx], dyRow + lo, to, stride: s.strideW, hi - lo)
                            }
                        }
                        dyRow += ow
                    }
                }
            }
        }
    }

    static func conv2dBackwardWeightDepthwise(_ g: Conv2dGeometry, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                              gradWeight: UnsafeMutablePointer<Float>, plan p: ConvPlan) {
        typealias V = SIMD16<Float>
        let opg = g.outChannelsPerGroup, kh = g.kernelHeight, kw = g.kernelWidth, taps = kh * kw
        let oh = g.outHeight, ow = g.outWidth, owPadded = (ow + 15) / 16 * 16
        let pp = PhasePlane(h: g.height, w: g.width, top: g.padH, left: g.padW, outHeight: oh, outWidth: ow,
                            kernel: (kh, kw), stride: (g.strideH, g.strideW), dilation: (g.dilationH, g.dilationW))
        let offsets = UnsafeMutablePointer<Int>.allocate(capacity: kw)
        defer { offsets.deallocate() }
        for kx in 0..<kw { offsets[kx] = pp.tapOffset(kx, dilation: g.dilationW) }
        gradWeight.update(repeating: 0, count: g.outChannels * taps)
        p.forEachPlaneRange(g.inChannels) { groups in
            // The padded input plane, and gradOutput rows padded with zeros to whole vectors.
            let buffer = ConvPlan.allocate(pp.count + oh * owPadded)
            defer { buffer.deallocate() }
            buffer.update(repeating: 0, count: pp.count + oh * owPadded)
            let dyRows = buffer + pp.count
            for grp in groups {
                for n in 0..<g.batch {
                    pp.write(input + (n * g.inChannels + grp) * p.inPlane, h: g.height, w: g.width, into: buffer)
                    for co in (grp * opg)..<((grp + 1) * opg) {
                        let dy = gradOutput + (n * g.outChannels + co) * p.outPlane
                        for oy in 0..<oh { ConvLoops.copy(dyRows + oy * owPadded, dy + oy * ow, ow) }
                        for ky in 0..<kh {
                            for kx in 0..<kw {
                                var acc = V()
                                for oy in 0..<oh {
                                    let x = buffer + (oy * g.strideH + ky * g.dilationH) * pp.rowStride + offsets[kx]
                                    let d = dyRows + oy * owPadded
                                    var ox = 0
                                    while ox < owPadded {
                                        let dv = UnsafeRawPointer(d + ox).loadUnaligned(as: V.self)
                                        let xv = UnsafeRawPointer(x + ox).loadUnaligned(as: V.self)
                                        acc = acc.addingProduct(dv, xv)
                                        ox += 16
                                    }
                                }
                                gradWeight[co * taps + ky * kw + kx] += acc.sum()
                            }
                        }
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
