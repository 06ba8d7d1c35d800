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

extension Kernels {
    /// Max pooling; `indices` receives, per output element, the flat `y * width + x` of the winning input in its plane.
    public static func maxPool2dForward(_ g: Pool2dGeometry, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                        indices: UnsafeMutablePointer<Int32>) {
        let oh = g.outHeight, ow = g.outWidth
        for p in 0..<g.planes { for y in 0..<oh { for x in 0..<ow {
            var best = -Float.infinity, bi: Int32 = -1
            for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
                let iy = y * g.strideH - g.padH + ky, ix = x * g.strideW - g.padW + kx
                if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                let v = input[(p * g.height + iy) * g.width + ix]
                if v > best || bi < 0 || v.isNaN { best = v; bi = Int32(iy * g.width + ix) }
            }}
            output[(p * oh + y) * ow + x] = best; indices[(p * oh + y) * ow + x] = bi
        }}}
    }

    /// Scatters `gradOutput` to the winners recorded by ``maxPool2dForward`` (overwrites `gradInput`).
    public static func maxPool2dBackward(_ g: Pool2dGeometry, gradOutput: UnsafePointer<Float>, indices: UnsafePointer<Int32>,
                                         gradInput: UnsafeMutablePointer<Float>) {
        let oh = g.outHeight, ow = g.outWidth, plane = g.height * g.width
        gradInput.update(repeating: 0, count: g.planes * plane)
        for p in 0..<g.planes { for o in 0..<(oh * ow) {
            gradInput[p * plane + Int(indices[p * oh * ow + o])] += gradOutput[p * oh * ow + o]
        }}
    }

    /// Average pooling; padded positions count in the divisor when `countIncludePad` (PyTorch's default).
    public static func avgPool2dForward(_ g: Pool2dGeometry, countIncludePad: Bool, input: UnsafePointer<Float>,
                                        output: UnsafeMutablePointer<Float>) {
        let oh = g.outHeight, ow = g.outWidth
        for p in 0..<g.planes { for y in 0..<oh { for x in 0..<ow {
            var s: Float = 0, n = 0
            for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
                let iy = y * g.strideH - g.padH + ky, ix = x * g.strideW - g.padW + kx
                if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                s += input[(p * g.height + iy) * g.width + ix]; n += 1
            }}
            output[(p * oh + y) * ow + x] = s / Float(countIncludePad ? g.kernelHeight * g.kernelWidth : max(n, 1))
        }}}
    }

    /// Backward of ``avgPool2dForward`` (overwrites `gradInput`).
    public static func avgPool2dBackward(_ g: Pool2dGeometry, countIncludePad: Bool, gradOutput: UnsafePointer<Float>,
                                         gradInput: UnsafeMutablePointer<Float>) {
        let oh = g.outHeight, ow = g.outWidth
        gradInput.update(repeating: 0, count: g.planes * g.height * g.width)
        for p in 0..<g.planes { for y in 0..<oh { for x in 0..<ow {
            var n = 0
            for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
                let iy = y * g.strideH - g.padH + ky, ix = x * g.strideW - g.padW + kx
                if iy >= 0 && iy < g.height && ix >= 0 && ix < g.width { n += 1 }
            }}
            let go = gradOutput[(p * oh + y) * ow + x] / Float(countIncludePad ? g.kernelHeight * g.kernelWidth : max(n, 1))
            for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
                let iy = y * g.strideH - g.padH + ky, ix = x * g.strideW - g.padW + kx
                if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                gradInput[(p * g.height + iy) * g.width + ix] += go
            }}
        }}}
    }

    /// Adaptive average pooling to `outHeight x outWidth` (PyTorch's start/end window rule).
    public static func adaptiveAvgPool2dForward(planes: Int, height: Int, width: Int, outHeight: Int, outWidth: Int,
                                                input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        for p in 0..<planes { for y in 0..<outHeight { for x in 0..<outWidth {
            let y0 = y * height / outHeight, y1 = ((y + 1) * height + outHeight - 1) / outHeight
            let x0 = x * width / outWidth, x1 = ((x + 1) * width + outWidth - 1) / outWidth
            var s: Float = 0
            for iy in y0..<y1 { for ix in x0..<x1 { s += input[(p * height + iy) * width + ix] } }
            output[(p * outHeight + y) * outWidth + x] = s / Float((y1 - y0) * (x1 - x0))
        }}}
    }

    /// Backward of ``adaptiveAvgPool2dForward`` (overwrites `gradInput`).
    public static func adaptiveAvgPool2dBackward(planes: Int, height: Int, width: Int, outHeight: Int, outWidth: Int,
                                                 gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>) {
        gradInput.update(repeating: 0, count: planes * height * width)
        for p in 0..<planes { for y in 0..<outHeight { for x in 0..<outWidth {
            let y0 = y * height / outHeight, y1 = ((y + 1) * height + outHeight - 1) / outHeight
            let x0 = x * width / outWidth, x1 = ((x + 1) * width + outWidth - 1) / outWidth
            let go = gradOutput[(p * outHeight + y) * outWidth + x] / Float((y1 - y0) * (x1 - x0))
            for iy in y0..<y1 { for ix in x0..<x1 { gradInput[(p * height + iy) * width + ix] += go } }
        }}}
    }
}
