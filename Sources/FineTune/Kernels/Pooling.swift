/// The shape of a 2-D pooling window over NCHW input (channels are `batch * channels` planes).
public struct Pool2dGeometry: Hashable, Sendable {
    public var planes: Int, height: Int, width: Int
    public var kernelHeight: Int, kernelWidth: Int, strideH: Int, strideW: Int, padH: Int, padW: Int

    public init(planes: Int, height: Int, width: Int, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int) = (0, 0)) {
        self.planes = planes; self.height = height; self.width = width
        self.kernelHeight = kernel.0; self.kernelWidth = kernel.1
        self.strideH = stride.0; self.strideW = stride.1; self.padH = padding.0; self.padW = padding.1
    }

    public var outHeight: Int { (height + 2 * padH - kernelHeight) / strideH + 1 }
    public var outWidth: Int { (width + 2 * padW - kernelWidth) / strideW + 1 }
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

    /// The input columns `lo..<hi` under output column `ox` (clamped to the image).
    @inline(__always)
    func columns(_ ox: Int) -> (lo: Int, hi: Int) {
        let start = ox * strideW - padW
        return (max(start, 0), min(start + kernelWidth, width))
    }
}

extension Kernels {
    /// Max pooling; `indices` receives, per output element, the flat `y * width + x` of the winning input in its plane.
    ///
    /// NaN wins (PyTorch's rule): a window containing NaN outputs NaN with the index of its last NaN.
    /// Among equal maxima the first in row-major order wins.
    public static func maxPool2dForward(_ g: Pool2dGeometry, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                        indices: UnsafeMutablePointer<Int32>, threads: Int = Kernels.maxThreads) {
        let oh = g.outHeight, ow = g.outWidth, w = g.width, plane = g.height * w
        forEachPlaneRange(g.planes, work: g.planes * oh * ow * g.kernelHeight * g.kernelWidth, threads: threads) { planes in
            for p in planes {
                let src = input + p * plane
                var dst = output + p * oh * ow, idx = indices + p * oh * ow
                for oy in 0..<oh {
                    let ys = g.rows(oy)
                    for ox in 0..<ow {
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
                        dst.pointee = best; idx.pointee = Int32(truncatingIfNeeded: at)
                        dst += 1; idx += 1
                    }
                }
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
        let oh = g.outHeight, ow = g.outWidth, w = g.width, plane = g.height * w
        let fullWindow = Float(g.kernelHeight * g.kernelWidth)
        forEachPlaneRange(g.planes, work: g.planes * oh * ow * g.kernelHeight * g.kernelWidth, threads: threads) { planes in
            for p in planes {
                let src = input + p * plane
                var dst = output + p * oh * ow
                for oy in 0..<oh {
                    let ys = g.rows(oy)
                    for ox in 0..<ow {
                        let xs = g.columns(ox)
                        var sum: Float = 0
                        for iy in ys.lo..<max(ys.hi, ys.lo) {
                            let row = src + iy * w
                            for ix in xs.lo..<max(xs.hi, xs.lo) { sum += row[ix] }
                        }
                        let count = max(ys.hi - ys.lo, 0) * max(xs.hi - xs.lo, 0)
                        dst.pointee = sum / (countIncludePad ? fullWindow : Float(max(count, 1)))
                        dst += 1
                    }
                }
            }
        }
    }

    /// Backward of ``avgPool2dForward`` (overwrites `gradInput`).
    public static func avgPool2dBackward(_ g: Pool2dGeometry, countIncludePad: Bool, gradOutput: UnsafePointer<Float>,
                                         gradInput: UnsafeMutablePointer<Float>, threads: Int = Kernels.maxThreads) {
        let oh = g.outHeight, ow = g.outWidth, w = g.width, plane = g.height * w
        let fullWindow = Float(g.kernelHeight * g.kernelWidth)
        forEachPlaneRange(g.planes, work: g.planes * (oh * ow * g.kernelHeight * g.kernelWidth + plane), threads: threads) { planes in
            for p in planes {
                let dx = gradInput + p * plane
                var dy = gradOutput + p * oh * ow
                dx.update(repeating: 0, count: plane)
                for oy in 0..<oh {
                    let ys = g.rows(oy)
                    for ox in 0..<ow {
                        let xs = g.columns(ox)
                        let count = max(ys.hi - ys.lo, 0) * max(xs.hi - xs.lo, 0)
                        let share = dy.pointee / (countIncludePad ? fullWindow : Float(max(count, 1)))
                        dy += 1
                        for iy in ys.lo..<max(ys.hi, ys.lo) {
                            let row = dx + iy * w
                            for ix in xs.lo..<max(xs.hi, xs.lo) { row[ix] += share }
                        }
                    }
                }
            }
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
                        var sum: Float = 0
                        for iy in y0..<y1 {
                            let row = src + iy * width
                            for ix in x0..<x1 { sum += row[ix] }
                        }
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

    /// Splits `0..<planes` into contiguous ranges over up to `threads` threads when `work`
    /// (roughly, elements touched) is large enough to pay for the dispatch.
    private static func forEachPlaneRange(_ planes: Int, work: Int, threads: Int, _ body: (Range<Int>) -> Void) {
        let parts = work >= 1 << 16 ? max(1, min(threads, planes)) : 1
        parallelFor(parts, threads: parts) { t in body((t * planes / parts)..<((t + 1) * planes / parts)) }
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
