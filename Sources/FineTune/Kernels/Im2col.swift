// im2col and col2im: the data movement between one convolution group of one NCHW sample and
// its column matrix, which turns a convolution into a matrix product (see Conv2d.swift).
//
// The column matrix of a group has one row per (input channel, ky, kx) and one column per
// output position (oy, ox):
//
//     col[(c * KH + ky) * KW + kx, oy * OW + ox] = x[c, oy * sh - ph + ky * dh, ox * sw - pw + kx * dw]
//
// with zero where the input coordinate falls in the padding. Both directions work on a band
// of output rows `oy0..<oy1` (the column matrix then has `(oy1 - oy0) * OW` columns), so the
// convolution can keep its column buffer cache-sized.
//
// Padding is handled by computing, per matrix row, the ranges of oy and ox whose input lies
// inside the image; only the zero ranges are filled and only the valid ranges are copied, so
// the inner loops have no per-element bounds checks.

/// The geometry im2col and col2im need for one group of one sample.
struct Im2colShape {
    /// Input channels in the group (`Cin / groups`).
    let channels: Int
    let height: Int, width: Int
    let kernelHeight: Int, kernelWidth: Int
    let strideH: Int, strideW: Int, padH: Int, padW: Int
    let dilationH: Int, dilationW: Int
    let outHeight: Int, outWidth: Int

    init(_ g: Conv2dGeometry) {
        channels = g.inChannelsPerGroup
        height = g.height; width = g.width
        kernelHeight = g.kernelHeight; kernelWidth = g.kernelWidth
        strideH = g.strideH; strideW = g.strideW; padH = g.padH; padW = g.padW
        dilationH = g.dilationH; dilationW = g.dilationW
        outHeight = g.outHeight; outWidth = g.outWidth
    }

    /// Rows of the column matrix: `channels * kernelHeight * kernelWidth`.
    var rows: Int { channels * kernelHeight * kernelWidth }

    /// Output rows map to consecutive input rows and an output row is as wide as an input row,
    /// so a run of output rows is one contiguous run of input (up to the padded borders).
    var rowsAreContiguous: Bool { strideH == 1 && strideW == 1 && outWidth == width }

    /// The outputs `o` in `0..<count` whose input coordinate `o * stride + offset` lies in `0..<size`
    /// (always a contiguous range; empty ranges have `lo == hi`).
    @inline(__always)
    static func validRange(offset: Int, stride: Int, size: Int, count: Int) -> (lo: Int, hi: Int) {
        let lo = offset >= 0 ? 0 : (stride - 1 - offset) / stride
        let hi = size - 1 - offset < 0 ? 0 : (size - 1 - offset) / stride + 1
        let clampedLo = min(lo, count)
        return (clampedLo, min(max(hi, clampedLo), count))
    }
}

extension Kernels {
    /// Writes the column matrix rows of input channels `channels` (rows `c * KH * KW ..< (c + 1) * KH * KW`
    /// for each `c`), for output rows `oy0..<oy1`, into `col` (row `r` at `col + r * ldcol`,
    /// `ldcol >= (oy1 - oy0) * outWidth`).
    ///
    /// `image` points at the group's first input channel (planes of `height * width`).
    static func im2col(_ s: Im2colShape, image: UnsafePointer<Float>, channels: Range<Int>,
                       oy0: Int, oy1: Int, col: UnsafeMutablePointer<Float>, ldcol: Int) {
        let region = KernelProfile.begin()
        defer { KernelProfile.end(region, .convolutionData) }
        let ow = s.outWidth, plane = s.height * s.width, kh = s.kernelHeight, kw = s.kernelWidth
        let bandCount = (oy1 - oy0) * ow
        for ky in 0..<kh {
            let offY = ky * s.dilationH - s.padH
            let ys = Im2colShape.validRange(offset: offY, stride: s.strideH, size: s.height, count: s.outHeight)
            let yLo = min(max(ys.lo, oy0), oy1), yHi = min(max(ys.hi, yLo), oy1)
            let top = (yLo - oy0) * ow, bottom = (yHi - oy0) * ow
            for kx in 0..<kw {
                let offX = kx * s.dilationW - s.padW
                let xs = Im2colShape.validRange(offset: offX, stride: s.strideW, size: s.width, count: ow)
                let n = xs.hi - xs.lo
                let firstRow = ky * kw + kx
                for c in channels {
                    let src = image + c * plane
                    let dst = col + (c * kh * kw + firstRow) * ldcol
                    // Whole output rows that read padding.
                    ConvLoops.zero(dst, top)
                    ConvLoops.zero(dst + bottom, bandCount - bottom)
                    if yLo == yHi { continue }
                    if n == 0 {
                        ConvLoops.zero(dst + top, bottom - top)
                    } else if s.rowsAreContiguous {
                        // One copy spanning all valid rows; the positions it fills across row ends
                        // (left and right padding) are zeroed afterwards.
                        let first = top + xs.lo, last = bottom - ow + xs.hi
                        ConvLoops.copy(dst + first, src + (yLo + offY) * s.width + xs.lo + offX, last - first)
                        if n < ow {
                            var row = dst + top
                            for _ in yLo..<yHi {
                                ConvLoops.zero(row, xs.lo)
                                ConvLoops.zero(row + xs.hi, ow - xs.hi)
                                row += ow
                            }
                        }
                    } else {
                        var row = dst + top
                        var from = src + (yLo * s.strideH + offY) * s.width + xs.lo * s.strideW + offX
                        let step = s.strideH * s.width
                        for _ in yLo..<yHi {
                            ConvLoops.zero(row, xs.lo)
                            if s.strideW == 1 {
                                ConvLoops.copy(row + xs.lo, from, n)
                            } else {
                                ConvLoops.gather(row + xs.lo, from, n, stride: s.strideW)
                            }
                            ConvLoops.zero(row + xs.hi, ow - xs.hi)
                            row += ow
                            from += step
                        }
                    }
                }
            }
        }
    }

    /// Adds the column matrix rows of input channels `channels`, for output rows `oy0..<oy1`
    /// (row `r` at `col + r * ldcol`), into the image positions they were gathered from; padding
    /// entries are dropped. The inverse data movement of
    /// ``im2col(_:image:channels:oy0:oy1:col:ldcol:)``.
    ///
    /// Different channels write disjoint planes, so callers may split `channels` across threads.
    /// Each image element receives its terms in a fixed order (by ky, kx, then oy).
    static func col2im(_ s: Im2colShape, col: UnsafePointer<Float>, ldcol: Int, channels: Range<Int>,
                       oy0: Int, oy1: Int, image: UnsafeMutablePointer<Float>) {
        let region = KernelProfile.begin()
        defer { KernelProfile.end(region, .convolutionData) }
        let ow = s.outWidth, plane = s.height * s.width, kh = s.kernelHeight, kw = s.kernelWidth
        for c in channels {
            let dst = image + c * plane
            for ky in 0..<kh {
                let offY = ky * s.dilationH - s.padH
                let ys = Im2colShape.validRange(offset: offY, stride: s.strideH, size: s.height, count: s.outHeight)
                let yLo = min(max(ys.lo, oy0), oy1), yHi = min(max(ys.hi, yLo), oy1)
                if yLo == yHi { continue }
                for kx in 0..<kw {
                    let offX = kx * s.dilationW - s.padW
                    let xs = Im2colShape.validRange(offset: offX, stride: s.strideW, size: s.width, count: ow)
                    let n = xs.hi - xs.lo
                    if n == 0 { continue }
                    var from = col + ((c * kh + ky) * kw + kx) * ldcol + (yLo - oy0) * ow + xs.lo
                    var to = dst + (yLo * s.strideH + offY) * s.width + xs.lo * s.strideW + offX
                    let step = s.strideH * s.width
                    for _ in yLo..<yHi {
                        if s.strideW == 1 {
                            ConvLoops.accumulate(to, from, n)
                        } else {
                            ConvLoops.scatterAdd(to, from, n, stride: s.strideW)
                        }
                        from += ow
                        to += step
                    }
                }
            }
        }
    }
}
