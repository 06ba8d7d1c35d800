/// The shape of a 2-D pooling window over NCHW input (channels are `batch * channels` planes).
///
/// `dilation` spaces the window's elements (max pooling only, as in PyTorch), and `ceilMode`
/// counts a last, partial window where floor division would drop it, with PyTorch's rule that
/// a window must start inside the input or its left padding.
public struct Pool2dGeometry: Hashable, Sendable {
    public var planes: Int, height: Int, width: Int
    public var kernelHeight: Int, kernelWidth: Int, strideH: Int, strideW: Int, padH: Int, padW: Int
    public var dilationH: Int, dilationW: Int
    public var ceilMode: Bool

    public init(planes: Int, height: Int, width: Int, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int) = (0, 0),
                dilation: (Int, Int) = (1, 1), ceilMode: Bool = false) {
        self.planes = planes; self.height = height; self.width = width
        self.kernelHeight = kernel.0; self.kernelWidth = kernel.1
        self.strideH = stride.0; self.strideW = stride.1; self.padH = padding.0; self.padW = padding.1
        self.dilationH = dilation.0; self.dilationW = dilation.1; self.ceilMode = ceilMode
    }

    public var outHeight: Int {
        Pool2dGeometry.outputSize(height, padding: padH, kernel: kernelHeight, stride: strideH, dilation: dilationH, ceilMode: ceilMode)
    }
    public var outWidth: Int {
        Pool2dGeometry.outputSize(width, padding: padW, kernel: kernelWidth, stride: strideW, dilation: dilationW, ceilMode: ceilMode)
    }

    /// PyTorch's `pooling_output_shape`: floor (or ceil) of the window positions, and in ceil
    /// mode no window that starts past the input and its left padding. 0 when no window fits.
    static func outputSize(_ size: Int, padding: Int, kernel: Int, stride: Int, dilation: Int, ceilMode: Bool) -> Int {
        let span = size + 2 * padding - dilation * (kernel - 1) - 1
        guard span >= 0, stride > 0 else { return 0 }
        var count = (ceilMode ? (span + stride - 1) / stride : span / stride) + 1
        if ceilMode && (count - 1) * stride >= size + padding { count -= 1 }
        return count
    }

    /// Whether the window elements are adjacent (the fast paths need it).
    var isUndilated: Bool { dilationH == 1 && dilationW == 1 }

    /// Whether ceil mode added windows that floor division would not have: their windows reach
    /// past the padded input.
    var overhangs: Bool {
        let floor = Pool2dGeometry(planes: planes, height: height, width: width, kernel: (kernelHeight, kernelWidth),
                                   stride: (strideH, strideW), padding: (padH, padW), dilation: (dilationH, dilationW))
        return outHeight != floor.outHeight || outWidth != floor.outWidth
    }

    /// Rows of output row `oy`'s window inside the padded input: the divisor factor of
    /// average pooling with `countIncludePad` (less than the kernel only for ceil mode's extra windows).
    @inline(__always)
    func paddedRows(_ oy: Int) -> Int {
        let start = oy * strideH - padH
        return min(start + kernelHeight, height + padH) - start
    }

    /// Columns of output column `ox`'s window inside the padded input (see ``paddedRows(_:)``).
    @inline(__always)
    func paddedColumns(_ ox: Int) -> Int {
        let start = ox * strideW - padW
        return min(start + kernelWidth, width + padW) - start
    }
}

// Pooling kernels over independent `height x width` planes (NCHW: plane = n * C + c).
//
// Windows are clamped to the image once per output element, so the window loops run over valid
// input only (padding never wins a max and is never summed). Large calls split the planes over
// threads; every output is computed by one thread in a fixed order, so results do not depend on
// the thread count.

extension Pool2dGeometry {
    /// The input rows `lo..<hi` under output row `oy` (clamped to the image).
    @inline(__always)
    func rows(_ oy: Int) -> (lo: Int, hi: Int) {
        let start = oy * strideH - padH
        return (max(start, 0), min(start + kernelHeight, height))
    }

    /// Whether outputs `ox ..< ox + 8` can run as vector lanes: stride 1 or 2, a window narrower
    /// than the 16-lane scalar sums, and every window column of every lane inside the image
    /// (including the extra float a stride-2 load reads).
    @inline(__always)
    func lanesFit(_ ox: Int) -> Bool {
        let first = ox * strideW - padW
        let last = first + (PoolLanes.width - 1) * strideW + kernelWidth - 1 + (strideW - 1)
        return strideW <= 2 && kernelWidth < 16 && first >= 0 && last < width && ox + PoolLanes.width <= outWidth
    }

    /// The input columns `lo..<hi` under output column `ox` (clamped to the image).
    @inline(__always)
    func columns(_ ox: Int) -> (lo: Int, hi: Int) {
        let start = ox * strideW - padW
        return (max(start, 0), min(start + kernelWidth, width))
    }
}

extension Pool2dGeometry {
    /// The common 2x2, stride 2, unpadded window (every CNN's downsampling step), every window
    /// inside the input.
    var isPlain2x2: Bool {
        kernelHeight == 2 && kernelWidth == 2 && strideH == 2 && strideW == 2 && padH == 0 && padW == 0
            && isUndilated && 2 * outHeight <= height && 2 * outWidth <= width
    }
}

/// How 2x2 stride-2 pooling reduces its windows: eight windows at once from the two input rows
/// (window k at lanes 2k and 2k+1 of `top` and `bottom`), or one window from memory. `offset`
/// is the winner's position relative to the window's top-left input (max pooling's indices;
/// 0 where there is none), and the compiler drops it when no indices are stored.
protocol Pool2x2Reducer {
    func windows(top: SIMD16<Float>, bottom: SIMD16<Float>, width w: Int) -> (values: SIMD8<Float>, offset: SIMD8<Int32>)
    func window(_ src: UnsafePointer<Float>, at i0: Int, width w: Int) -> (value: Float, at: Int)
}

/// Max over each window, candidates in window order: ties keep the first maximum and a NaN
/// wins (as PyTorch).
struct MaxPool2x2: Pool2x2Reducer {
    @inline(__always)
    func windows(top: SIMD16<Float>, bottom: SIMD16<Float>, width w: Int) -> (values: SIMD8<Float>, offset: SIMD8<Int32>) {
        var best = top.evenHalf, offset = SIMD8<Int32>(repeating: 0)
        @inline(__always) func consider(_ v: SIMD8<Float>, _ at: Int) {
            let wins = (v .> best) .| (v .!= v)
            best.replace(with: v, where: wins)
            offset.replace(with: Int32(truncatingIfNeeded: at), where: wins)
        }
        consider(top.oddHalf, 1)
        consider(bottom.evenHalf, w)
        consider(bottom.oddHalf, w &+ 1)
        return (best, offset)
    }

    @inline(__always)
    func window(_ src: UnsafePointer<Float>, at i0: Int, width w: Int) -> (value: Float, at: Int) {
        var best = src[i0], at = i0
        @inline(__always) func consider(_ i: Int) {
            let v = src[i]
            let wins = v > best || v != v
            best = wins ? v : best
            at = wins ? i : at
        }
        consider(i0 &+ 1); consider(i0 &+ w); consider(i0 &+ w &+ 1)
        return (best, at)
    }
}

/// Mean of each window, summed in row-major order from zero (the order of the general average
/// pooling loops, so both give the same bits).
struct MeanPool2x2: Pool2x2Reducer {
    @inline(__always)
    func windows(top: SIMD16<Float>, bottom: SIMD16<Float>, width w: Int) -> (values: SIMD8<Float>, offset: SIMD8<Int32>) {
        let sum = SIMD8<Float>() + top.evenHalf + top.oddHalf + bottom.evenHalf + bottom.oddHalf
        return (sum / 4, SIMD8())
    }

    @inline(__always)
    func window(_ src: UnsafePointer<Float>, at i0: Int, width w: Int) -> (value: Float, at: Int) {
        let sum: Float = 0 + src[i0] + src[i0 &+ 1] + src[i0 &+ w] + src[i0 &+ w &+ 1]
        return (sum / 4, i0)
    }
}

extension Kernels {
    /// One plane of 2x2 stride-2 pooling. Rows run 8 outputs per step (16-float loads); a
    /// ragged end reruns the row's last 8 outputs (recomputing a value is harmless), rows of 4 to
    /// 7 outputs run two overlapping 4-output steps (8-float loads), and only rows narrower than
    /// 4 outputs go scalar. `idx` (max pooling) receives each winner's flat index in the plane.
    @inline(__always)
    static func pool2x2Plane<R: Pool2x2Reducer>(_ reducer: R, _ src: UnsafePointer<Float>, width w: Int, outHeight oh: Int,
                                                outWidth ow: Int, output dst: UnsafeMutablePointer<Float>,
                                                indices idx: UnsafeMutablePointer<Int32>?) {
        let pairs = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
        for oy in 0..<oh {
            let rowStart = 2 &* oy &* w, out = oy &* ow
            @inline(__always) func load16(_ i: Int) -> SIMD16<Float> {
                VectorMath.load(src + i, as: SIMD16<Float>.self)
            }
            @inline(__always) func load8Twice(_ i: Int) -> SIMD16<Float> {
                let half = VectorMath.load(src + i, as: SIMD8<Float>.self)
                return SIMD16(lowHalf: half, highHalf: half)
            }
            @inline(__always) func eight(_ ox: Int) {
                let i0 = rowStart &+ 2 &* ox
                let r = reducer.windows(top: load16(i0), bottom: load16(i0 &+ w), width: w)
                VectorMath.store(r.values, dst + (out &+ ox))
                if let idx {
                    let at = pairs &+ Int32(truncatingIfNeeded: i0) &+ r.offset
                    UnsafeMutableRawPointer(idx + (out &+ ox)).storeBytes(of: at, as: SIMD8<Int32>.self)
                }
            }
            @inline(__always) func four(_ ox: Int) {
                let i0 = rowStart &+ 2 &* ox
                let r = reducer.windows(top: load8Twice(i0), bottom: load8Twice(i0 &+ w), width: w)
                VectorMath.store(r.values.lowHalf, dst + (out &+ ox))
                if let idx {
                    let at = pairs.lowHalf &+ Int32(truncatingIfNeeded: i0) &+ r.offset.lowHalf
                    UnsafeMutableRawPointer(idx + (out &+ ox)).storeBytes(of: at, as: SIMD4<Int32>.self)
                }
            }
            if ow >= 8 {
                var ox = 0
                while ox &+ 8 <= ow { eight(ox); ox &+= 8 }
                if ox < ow { eight(ow &- 8) }
            } else if ow >= 4 {
                four(0)
                four(ow &- 4)
            } else {
                for ox in 0..<ow {
                    let r = reducer.window(src, at: rowStart &+ 2 &* ox, width: w)
                    dst[out &+ ox] = r.value
                    idx?[out &+ ox] = Int32(truncatingIfNeeded: r.at)
                }
            }
        }
    }
}

extension Kernels {
    /// Max pooling; `indices` (when given) receives, per output element, the flat `y * width + x`
    /// of the winning input in its plane. Inference and frozen layers pass nil and skip them.
    ///
    /// NaN wins (PyTorch's rule): a window containing NaN outputs NaN with the index of its last NaN.
    /// Among equal maxima the first in row-major order wins.
    public static func maxPool2dForward(_ g: Pool2dGeometry, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                        indices: UnsafeMutablePointer<Int32>?, threads: Int = Kernels.maxThreads) {
        let oh = g.outHeight, ow = g.outWidth, w = g.width, plane = g.height * w
        forEachPlaneRange(g.planes, work: g.planes * oh * ow * g.kernelHeight * g.kernelWidth, threads: threads) { planes in
            for p in planes {
                let src = input + p * plane
                let dst = output + p * oh * ow, idx = indices.map { $0 + p * oh * ow }
                if g.isPlain2x2 {
                    pool2x2Plane(MaxPool2x2(), src, width: w, outHeight: oh, outWidth: ow, output: dst, indices: idx)
                    continue
                }
                if !g.isUndilated {
                    maxPoolDilatedPlane(g, src, output: dst, indices: idx)
                    continue
                }
                for oy in 0..<oh {
                    let ys = g.rows(oy)
                    var ox = 0
                    while ox < ow {
                        let o = oy * ow + ox
                        if ys.lo < ys.hi && g.lanesFit(ox) {
                            // Eight interior outputs at once.
                            let c0 = ox * g.strideW - g.padW
                            var best = PoolLanes.load(src + ys.lo * w + c0, stride: g.strideW)
                            var at = PoolLanes.indices(ys.lo * w + c0, stride: g.strideW)
                            for iy in ys.lo..<ys.hi {
                                for kx in (iy == ys.lo ? 1 : 0)..<g.kernelWidth {
                                    let i = iy * w + c0 + kx
                                    let v = PoolLanes.load(src + i, stride: g.strideW)
                                    let wins = v .> best .| v .!= v
                                    best.replace(with: v, where: wins)
                                    at.replace(with: PoolLanes.indices(i, stride: g.strideW), where: wins)
                                }
                            }
                            VectorMath.store(best, dst + o)
                            if let idx { UnsafeMutableRawPointer(idx + o).storeBytes(of: at, as: PoolLanes.VI.self) }
                            ox += PoolLanes.width
                            continue
                        }
                        let xs = g.columns(ox)
                        var best = -Float.infinity, at = -1
                        if ys.lo < ys.hi && xs.lo < xs.hi {
                            at = ys.lo * w + xs.lo
                            best = src[at]
                            for iy in ys.lo..<ys.hi {
                                let row = iy * w
                                for ix in xs.lo..<xs.hi {
                                    // Branch-free select: on real activations the winner is
                                    // unpredictable, and mispredicted branches cost more than the compare.
                                    let v = src[row &+ ix]
                                    let wins = v > best || v != v
                                    best = wins ? v : best
                                    at = wins ? row &+ ix : at
                                }
                            }
                        }
                        dst[o] = best; idx?[o] = Int32(truncatingIfNeeded: at)
                        ox += 1
                    }
                }
            }
        }
    }

    /// One plane of max pooling with spaced window elements (dilation), window by window.
    private static func maxPoolDilatedPlane(_ g: Pool2dGeometry, _ src: UnsafePointer<Float>, output dst: UnsafeMutablePointer<Float>,
                                            indices idx: UnsafeMutablePointer<Int32>?) {
        let w = g.width
        for oy in 0..<g.outHeight {
            for ox in 0..<g.outWidth {
                var best = -Float.infinity, at = -1
                for ky in 0..<g.kernelHeight {
                    let iy = oy * g.strideH - g.padH + ky * g.dilationH
                    if iy < 0 || iy >= g.height { continue }
                    for kx in 0..<g.kernelWidth {
                        let ix = ox * g.strideW - g.padW + kx * g.dilationW
                        if ix < 0 || ix >= w { continue }
                        let v = src[iy * w + ix]
                        if at < 0 || v > best || v != v { best = v; at = iy * w + ix }
                    }
                }
                let o = oy * g.outWidth + ox
                dst[o] = best; idx?[o] = Int32(truncatingIfNeeded: at)
            }
        }
    }

    /// Scatters `gradOutput` to the winners recorded by ``maxPool2dForward`` (overwrites `gradInput`).
    public static func maxPool2dBackward(_ g: Pool2dGeometry, gradOutput: UnsafePointer<Float>, indices: UnsafePointer<Int32>,
                                         gradInput: UnsafeMutablePointer<Float>, threads: Int = Kernels.maxThreads) {
        let outPlane = g.outHeight * g.outWidth, plane = g.height * g.width
        forEachPlaneRange(g.planes, work: g.planes * (outPlane + plane), threads: threads) { planes in
            for p in planes {
                let dx = gradInput + p * plane, dy = gradOutput + p * outPlane, idx = indices + p * outPlane
                dx.update(repeating: 0, count: plane)
                for o in 0..<outPlane {
                    let i = Int(idx[o])
                    if i >= 0 { dx[i] += dy[o] }
                }
            }
        }
    }

    /// Average pooling; padded positions count in the divisor when `countIncludePad` (PyTorch's default).
    public static func avgPool2dForward(_ g: Pool2dGeometry, countIncludePad: Bool, input: UnsafePointer<Float>,
                                        output: UnsafeMutablePointer<Float>, threads: Int = Kernels.maxThreads) {
        precondition(g.isUndilated, "avgPool2dForward: average pooling has no dilation")
        let oh = g.outHeight, ow = g.outWidth, w = g.width, plane = g.height * w
        forEachPlaneRange(g.planes, work: g.planes * oh * ow * g.kernelHeight * g.kernelWidth, threads: threads) { planes in
            for p in planes {
                let src = input + p * plane
                var dst = output + p * oh * ow
                if g.isPlain2x2 {    // no padding: the divisor is 4 either way
                    pool2x2Plane(MeanPool2x2(), src, width: w, outHeight: oh, outWidth: ow, output: dst, indices: nil)
                    continue
                }
                for oy in 0..<oh {
                    let ys = g.rows(oy)
                    var ox = 0
                    while ox < ow {
                        if ys.lo < ys.hi && g.lanesFit(ox) {
                            // Eight interior outputs at once, summed in the same order as one.
                            let c0 = ox * g.strideW - g.padW
                            var sum = PoolLanes.V()
                            for iy in ys.lo..<ys.hi {
                                for kx in 0..<g.kernelWidth { sum += PoolLanes.load(src + iy * w + c0 + kx, stride: g.strideW) }
                            }
                            let count = (countIncludePad ? g.paddedRows(oy) : ys.hi - ys.lo) * g.kernelWidth
                            let mean = sum / PoolLanes.V(repeating: Float(count))
                            VectorMath.store(mean, dst)
                            dst += PoolLanes.width; ox += PoolLanes.width
                            continue
                        }
                        let xs = g.columns(ox)
                        let sum = windowSum(src, width: w, rows: ys.lo..<max(ys.hi, ys.lo), columns: xs.lo..<max(xs.hi, xs.lo))
                        let count = countIncludePad ? g.paddedRows(oy) * g.paddedColumns(ox) : max(ys.hi - ys.lo, 0) * max(xs.hi - xs.lo, 0)
                        dst.pointee = sum / Float(max(count, 1))
                        dst += 1; ox += 1
                    }
                }
            }
        }
    }

    /// Backward of ``avgPool2dForward`` (overwrites `gradInput`): each input gets the sum of
    /// `gradOutput / divisor` over the windows that cover it.
    public static func avgPool2dBackward(_ g: Pool2dGeometry, countIncludePad: Bool, gradOutput: UnsafePointer<Float>,
                                         gradInput: UnsafeMutablePointer<Float>, threads: Int = Kernels.maxThreads) {
        // Each output's share, gradOutput / divisor, is computed once (in vectors); each input then
        // gathers the shares of its windows. Windows that tile the image (kernel == stride, e.g. 2x2
        // stride 2) copy each row of shares over their window: every column phase of
        // `PhaseRows.merge` reads the same row. Overlapping (or gapped) windows are the input
        // gradient of a depthwise convolution with a kernel of ones over the shares
        // (`DepthwiseGather`). Inputs no window covers get zero.
        precondition(g.isUndilated, "avgPool2dBackward: average pooling has no dilation")
        if g.overhangs {
            avgPool2dBackwardWindows(g, countIncludePad: countIncludePad, gradOutput: gradOutput, gradInput: gradInput, threads: threads)
            return
        }
        let oh = g.outHeight, ow = g.outWidth, w = g.width, plane = g.height * w
        // divisor(oy, ox) = max(rowFactor(oy) * columnFactors[ox], 1): the window's rows times its
        // columns, inside the padded input (countIncludePad) or inside the input.
        let columnFactors = UnsafeMutablePointer<Float>.allocate(capacity: max(ow, 1))
        defer { columnFactors.deallocate() }
        for ox in 0..<ow {
            let xs = g.columns(ox)
            columnFactors[ox] = Float(countIncludePad ? g.paddedColumns(ox) : max(xs.hi - xs.lo, 0))
        }
        @inline(__always) func rowFactor(_ oy: Int) -> Float {
            let ys = g.rows(oy)
            return Float(countIncludePad ? g.paddedRows(oy) : max(ys.hi - ys.lo, 0))
        }
        let work = g.planes * (oh * ow + plane)
        if g.kernelHeight == g.strideH && g.kernelWidth == g.strideW {
            // Input row iy = oy * kh + j - ph takes the shares of output row oy: one merge call per j.
            let kh = g.kernelHeight, ph = g.padH, rowLength = ow + (w + g.padW) / g.strideW + 1
            forEachPlaneRange(g.planes, work: work, threads: threads) { planes in
                // The plane's rows of shares, zero past `ow` (the columns no window covers read zeros).
                let shares = UnsafeMutablePointer<Float>.allocate(capacity: max(oh * rowLength, 1))
                defer { shares.deallocate() }
                shares.initialize(repeating: 0, count: oh * rowLength)
                for p in planes {
                    let dx = gradInput + p * plane, dy = gradOutput + p * oh * ow
                    for oy in 0..<oh { avgPoolShares(dy + oy * ow, rowFactor(oy), columnFactors, ow, into: shares + oy * rowLength) }
                    for j in 0..<kh {
                        let first = (ph - j + kh - 1) / kh, end = min(oh, (g.height - j + ph + kh - 1) / kh)
                        if first >= end { continue }
                        PhaseRows.merge(shares + first * rowLength, srcStride: rowLength, into: dx + (first * kh + j - ph) * w,
                                        dstStride: kh * w, rows: end - first, width: w, left: g.padW, phases: g.strideW,
                                        phaseLength: 0)
                    }
                    // The rows below the last window.
                    let covered = oh == 0 ? 0 : max(g.rows(oh - 1).hi, 0)
                    (dx + covered * w).update(repeating: 0, count: plane - covered * w)
                }
            }
            return
        }
        let d = DepthwiseGather(Conv2dGeometry(batch: 1, inChannels: 1, height: g.height, width: w, outChannels: 1,
                                               kernelHeight: g.kernelHeight, kernelWidth: g.kernelWidth,
                                               stride: (g.strideH, g.strideW), padding: (g.padH, g.padW)))
        defer { d.deallocate() }
        let ones = UnsafeMutablePointer<Float>.allocate(capacity: g.kernelHeight * g.kernelWidth)
        defer { ones.deallocate() }
        ones.initialize(repeating: 1, count: g.kernelHeight * g.kernelWidth)
        forEachPlaneRange(g.planes, work: work, threads: threads) { planes in
            // The zero-padded plane of shares, then the phase runs.
            let count = d.dy.count + d.runsCount
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            defer { buffer.deallocate() }
            buffer.initialize(repeating: 0, count: count)
            for p in planes {
                let dy = gradOutput + p * oh * ow
                for oy in 0..<oh {
                    avgPoolShares(dy + oy * ow, rowFactor(oy), columnFactors, ow,
                                  into: buffer + (oy + d.dy.top) * d.dy.rowStride + d.dy.left)
                }
                d.gradInput(buffer, planes: 1, planeStride: 0, phaseWeights: ones, runs: buffer + d.dy.count,
                            into: gradInput + p * plane)
            }
        }
    }

    /// Average pooling backward window by window, for ceil mode's windows that reach past the
    /// padded input (the gather paths above assume the floor-mode window count).
    private static func avgPool2dBackwardWindows(_ g: Pool2dGeometry, countIncludePad: Bool, gradOutput: UnsafePointer<Float>,
                                                 gradInput: UnsafeMutablePointer<Float>, threads: Int) {
        let oh = g.outHeight, ow = g.outWidth, w = g.width, plane = g.height * w
        forEachPlaneRange(g.planes, work: g.planes * (oh * ow * g.kernelHeight * g.kernelWidth + plane), threads: threads) { planes in
            for p in planes {
                let dx = gradInput + p * plane, dy = gradOutput + p * oh * ow
                dx.update(repeating: 0, count: plane)
                for oy in 0..<oh {
                    let ys = g.rows(oy)
                    for ox in 0..<ow {
                        let xs = g.columns(ox)
                        let count = countIncludePad ? g.paddedRows(oy) * g.paddedColumns(ox) : max(ys.hi - ys.lo, 0) * max(xs.hi - xs.lo, 0)
                        let share = dy[oy * ow + ox] / Float(max(count, 1))
                        for iy in ys.lo..<max(ys.hi, ys.lo) {
                            for ix in xs.lo..<max(xs.hi, xs.lo) { dx[iy * w + ix] += share }
                        }
                    }
                }
            }
        }
    }

    /// `shares[ox] = dy[ox] / max(rowFactor * columnFactors[ox], 1)` for `ox < n`, 8 at a time.
    @inline(__always)
    private static func avgPoolShares(_ dy: UnsafePointer<Float>, _ rowFactor: Float, _ columnFactors: UnsafePointer<Float>,
                                      _ n: Int, into shares: UnsafeMutablePointer<Float>) {
        typealias V = SIMD8<Float>
        let r = V(repeating: rowFactor), one = V(repeating: 1)
        var x = 0
        while x &+ 8 <= n {
            let product = r * VectorMath.load(columnFactors + x, as: V.self)
            VectorMath.store(VectorMath.load(dy + x, as: V.self) / product.replacing(with: one, where: product .< one), shares + x)
            x &+= 8
        }
        while x < n {
            shares[x] = dy[x] / max(rowFactor * columnFactors[x], 1)
            x &+= 1
        }
    }

    /// Adaptive average pooling to `outHeight x outWidth` (PyTorch's start/end window rule).
    public static func adaptiveAvgPool2dForward(planes: Int, height: Int, width: Int, outHeight: Int, outWidth: Int,
                                                input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                                threads: Int = Kernels.maxThreads) {
        let windows = AdaptiveWindows(height: height, width: width, outHeight: outHeight, outWidth: outWidth)
        defer { windows.deallocate() }
        forEachPlaneRange(planes, work: planes * max(height * width, outHeight * outWidth), threads: threads) { range in
            for p in range {
                let src = input + p * height * width
                var dst = output + p * outHeight * outWidth
                for oy in 0..<outHeight {
                    let y0 = windows.y[2 * oy], y1 = windows.y[2 * oy + 1]
                    for ox in 0..<outWidth {
                        let x0 = windows.x[2 * ox], x1 = windows.x[2 * ox + 1]
                        let sum = windowSum(src, width: width, rows: y0..<y1, columns: x0..<x1)
                        dst.pointee = sum / Float((y1 - y0) * (x1 - x0))
                        dst += 1
                    }
                }
            }
        }
    }

    /// Backward of ``adaptiveAvgPool2dForward`` (overwrites `gradInput`).
    public static func adaptiveAvgPool2dBackward(planes: Int, height: Int, width: Int, outHeight: Int, outWidth: Int,
                                                 gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
                                                 threads: Int = Kernels.maxThreads) {
        let windows = AdaptiveWindows(height: height, width: width, outHeight: outHeight, outWidth: outWidth)
        defer { windows.deallocate() }
        forEachPlaneRange(planes, work: planes * max(height * width, outHeight * outWidth), threads: threads) { range in
            for p in range {
                let dx = gradInput + p * height * width
                var dy = gradOutput + p * outHeight * outWidth
                dx.update(repeating: 0, count: height * width)
                for oy in 0..<outHeight {
                    let y0 = windows.y[2 * oy], y1 = windows.y[2 * oy + 1]
                    for ox in 0..<outWidth {
                        let x0 = windows.x[2 * ox], x1 = windows.x[2 * ox + 1]
                        let share = dy.pointee / Float((y1 - y0) * (x1 - x0))
                        dy += 1
                        for iy in y0..<y1 {
                            let row = dx + iy * width
                            for ix in x0..<x1 { row[ix] += share }
                        }
                    }
                }
            }
        }
    }

    /// The sum of a window of a plane (row stride `width`), in an order fixed by the window: rows
    /// of 16 or more run in 8 lanes (one chain of scalar adds would be latency-bound).
    @inline(__always)
    private static func windowSum(_ src: UnsafePointer<Float>, width: Int, rows: Range<Int>, columns: Range<Int>) -> Float {
        let n = columns.count
        if n < 16 {
            var sum: Float = 0
            for iy in rows {
                let row = src + iy * width + columns.lowerBound
                for i in 0..<n { sum += row[i] }
            }
            return sum
        }
        typealias V = SIMD8<Float>
        var acc = V(), tail: Float = 0
        let vectorCount = n & ~7
        for iy in rows {
            let row = src + iy * width + columns.lowerBound
            var i = 0
            while i < vectorCount {
                acc += VectorMath.load(row + i, as: V.self)
                i &+= 8
            }
            while i < n { tail += row[i]; i &+= 1 }
        }
        return acc.sum() + tail
    }

    /// Splits `0..<planes` into contiguous ranges over up to `threads` threads when `work`
    /// (roughly, elements touched) is large enough to pay for the dispatch.
    private static func forEachPlaneRange(_ planes: Int, work: Int, threads: Int, _ body: (Range<Int>) -> Void) {
        let parts = work >= parallelThreshold(1 << 16) ? max(1, min(threads, planes)) : 1
        parallelFor(parts, threads: parts) { t in
            KernelProfile.measure(.elementwise) { body((t * planes / parts)..<((t + 1) * planes / parts)) }
        }
    }
}

/// Eight adjacent outputs of a pooling row as vector lanes (strides 1 and 2).
enum PoolLanes {
    typealias V = SIMD8<Float>
    typealias VI = SIMD8<Int32>
    static let width = 8

    /// `p[l * stride]` for the 8 lanes `l` (stride 2 reads 16 floats and keeps the even ones).
    @inline(__always)
    static func load(_ p: UnsafePointer<Float>, stride: Int) -> V {
        if stride == 1 { return VectorMath.load(p, as: V.self) }
        return VectorMath.load(p, as: SIMD16<Float>.self).evenHalf
    }

    /// `first + l * stride` for the 8 lanes `l`.
    @inline(__always)
    static func indices(_ first: Int, stride: Int) -> VI {
        VI(repeating: Int32(truncatingIfNeeded: first)) &+ VI(0, 1, 2, 3, 4, 5, 6, 7) &* Int32(truncatingIfNeeded: stride)
    }
}

/// The input windows of adaptive pooling: output `o` of `n` over `size` inputs averages
/// `floor(o * size / n) ..< ceil((o + 1) * size / n)`. Stored as (start, end) pairs.
private struct AdaptiveWindows {
    let y: UnsafeMutablePointer<Int>, x: UnsafeMutablePointer<Int>

    init(height: Int, width: Int, outHeight: Int, outWidth: Int) {
        y = .allocate(capacity: 2 * max(outHeight, 1))
        x = .allocate(capacity: 2 * max(outWidth, 1))
        AdaptiveWindows.fill(y, size: height, count: outHeight)
        AdaptiveWindows.fill(x, size: width, count: outWidth)
    }

    private static func fill(_ p: UnsafeMutablePointer<Int>, size: Int, count: Int) {
        for o in 0..<count {
            p[2 * o] = o * size / count
            p[2 * o + 1] = ((o + 1) * size + count - 1) / count
        }
    }

    func deallocate() { y.deallocate(); x.deallocate() }
}
