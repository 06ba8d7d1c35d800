import Foundation
import Testing
@testable import FineTune

// Pooling with ceil mode and dilation: the kernels (every path: 2x2, vector lanes, tiled and
// gathered average backward, the window-by-window fallbacks) against window loops written from
// PyTorch's definitions, gradient checks of the ops, and the layers' output sizes.

/// PyTorch's pooling output size.
private func pooledSize(_ size: Int, _ k: Int, _ s: Int, _ p: Int, _ d: Int, ceil: Bool) -> Int {
    let span = size + 2 * p - d * (k - 1) - 1
    var out = (ceil ? (span + s - 1) / s : span / s) + 1
    if ceil && (out - 1) * s >= size + p { out -= 1 }
    return out
}

private struct ModeCase: CustomStringConvertible, Sendable {
    var planes: Int, height: Int, width: Int, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)
    var dilation = (1, 1), ceil = true
    var geometry: Pool2dGeometry {
        Pool2dGeometry(planes: planes, height: height, width: width, kernel: kernel, stride: stride, padding: padding,
                       dilation: dilation, ceilMode: ceil)
    }
    var description: String { "\(planes)x\(height)x\(width) k\(kernel) s\(stride) p\(padding) d\(dilation) ceil \(ceil)" }
}

private let modeCases: [ModeCase] = [
    ModeCase(planes: 2, height: 5, width: 7, kernel: (2, 2), stride: (2, 2), padding: (0, 0)),          // 2x2 with a partial last window
    ModeCase(planes: 2, height: 9, width: 27, kernel: (3, 3), stride: (2, 2), padding: (0, 0)),         // lanes + overhang
    ModeCase(planes: 1, height: 8, width: 8, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),
    ModeCase(planes: 3, height: 7, width: 6, kernel: (3, 2), stride: (3, 2), padding: (1, 0)),          // kernel == stride, overhang
    ModeCase(planes: 2, height: 6, width: 8, kernel: (3, 3), stride: (3, 3), padding: (0, 0)),          // ceil adds nothing
    ModeCase(planes: 2, height: 9, width: 10, kernel: (3, 3), stride: (2, 2), padding: (1, 1), dilation: (2, 2), ceil: false),
    ModeCase(planes: 1, height: 11, width: 9, kernel: (2, 3), stride: (3, 1), padding: (1, 1), dilation: (3, 2)),
]

/// The window cells inside the input, and the divisors (padded window with countIncludePad, else the cells).
private func window(_ g: Pool2dGeometry, _ oy: Int, _ ox: Int) -> (cells: [Int], padded: Int) {
    var cells: [Int] = []
    for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
        let iy = oy * g.strideH - g.padH + ky * g.dilationH, ix = ox * g.strideW - g.padW + kx * g.dilationW
        if iy >= 0 && iy < g.height && ix >= 0 && ix < g.width { cells.append(iy * g.width + ix) }
    }}
    let y0 = oy * g.strideH - g.padH, x0 = ox * g.strideW - g.padW
    let padded = (min(y0 + g.kernelHeight, g.height + g.padH) - y0) * (min(x0 + g.kernelWidth, g.width + g.padW) - x0)
    return (cells, padded)
}

@Suite("Pooling with ceil mode and dilation")
struct PoolingModeTests {
    @Test(arguments: modeCases)
    fileprivate func kernelsMatchWindowLoops(_ c: ModeCase) {
        let g = c.geometry
        #expect(g.outHeight == pooledSize(c.height, c.kernel.0, c.stride.0, c.padding.0, c.dilation.0, ceil: c.ceil))
        #expect(g.outWidth == pooledSize(c.width, c.kernel.1, c.stride.1, c.padding.1, c.dilation.1, ceil: c.ceil))
        let plane = g.height * g.width, outPlane = g.outHeight * g.outWidth
        // Distinct values: no ties, so the winner is unambiguous.
        let x = (0..<(g.planes * plane)).map { Float(($0 * 37) % (g.planes * plane)) - 20 }
        let dy = (0..<(g.planes * outPlane)).map { Float($0 % 7) - 3 }
        var expectedMax: [Float] = [], expectedIndices: [Int32] = []
        var expectedMean: [[Float]] = [[], []], expectedGrad = [[Float]](repeating: [Float](repeating: 0, count: x.count), count: 2)
        for p in 0..<g.planes { for oy in 0..<g.outHeight { for ox in 0..<g.outWidth {
            let (cells, padded) = window(g, oy, ox)
            let best = cells.max { x[p * plane + $0] < x[p * plane + $1] }!
            expectedMax.append(x[p * plane + best]); expectedIndices.append(Int32(best))
            let sum = cells.reduce(0.0) { $0 + Double(x[p * plane + $1]) }
            for (k, divisor) in [padded, cells.count].enumerated() {
                expectedMean[k].append(Float(sum / Double(divisor)))
                for cell in cells { expectedGrad[k][p * plane + cell] += dy[(p * g.outHeight + oy) * g.outWidth + ox] / Float(divisor) }
            }
        }}}
        var values = [Float](repeating: .nan, count: expectedMax.count), indices = [Int32](repeating: -7, count: expectedMax.count)
        x.withUnsafeBufferPointer { px in values.withUnsafeMutableBufferPointer { pv in indices.withUnsafeMutableBufferPointer { pi in
            Kernels.maxPool2dForward(g, input: px.baseAddress!, output: pv.baseAddress!, indices: pi.baseAddress!)
        }}}
        #expect(values == expectedMax && indices == expectedIndices, "max \(c)")
        guard c.dilation == (1, 1) else { return }      // average pooling has no dilation
        for (k, include) in [true, false].enumerated() {
            var mean = [Float](repeating: .nan, count: expectedMax.count), grad = [Float](repeating: .nan, count: x.count)
            x.withUnsafeBufferPointer { px in mean.withUnsafeMutableBufferPointer { pm in
                Kernels.avgPool2dForward(g, countIncludePad: include, input: px.baseAddress!, output: pm.baseAddress!)
            }}
            dy.withUnsafeBufferPointer { pg in grad.withUnsafeMutableBufferPointer { pd in
                Kernels.avgPool2dBackward(g, countIncludePad: include, gradOutput: pg.baseAddress!, gradInput: pd.baseAddress!)
            }}
            expectClose(mean, expectedMean[k], atol: 1e-5, rtol: 1e-5, "avg forward \(c) countIncludePad \(include)")
            expectClose(grad, expectedGrad[k], atol: 1e-5, rtol: 1e-5, "avg backward \(c) countIncludePad \(include)")
        }
    }

    @Test func opsGradientsAndLayers() {
        let x = Tensor(shape: [1, 2, 7, 6], scalars: (0..<84).map { Float(($0 * 37) % 84) / 10 })
        gradCheck([x], eps: 1e-3, "maxPool2d ceil") { $0[0].maxPool2d(kernelSize: (3, 3), stride: (2, 2), ceilMode: true) }
        gradCheck([x], eps: 1e-3, "maxPool2d dilation") { $0[0].maxPool2d(kernelSize: (2, 2), stride: (1, 2), padding: (1, 1), dilation: (2, 3)) }
        gradCheck([x], "avgPool2d ceil") { $0[0].avgPool2d(kernelSize: (2, 2), ceilMode: true, countIncludePad: false) }
        gradCheck([x], "avgPool2d ceil pad") { $0[0].avgPool2d(kernelSize: (3, 3), stride: (2, 2), padding: (1, 1), ceilMode: true) }
        let image = Tensor.zeros([1, 1, 8, 8])
        #expect(MaxPool2d(kernelSize: 3, stride: 2)(image).shape == [1, 1, 3, 3])
        #expect(MaxPool2d(kernelSize: 3, stride: 2, ceilMode: true)(image).shape == [1, 1, 4, 4])
        #expect(MaxPool2d(kernelSize: 2, stride: 1, dilation: 3)(image).shape == [1, 1, 5, 5])
        #expect(AvgPool2d(kernelSize: 2, ceilMode: true, countIncludePad: false)(Tensor.ones([1, 1, 5, 5])).scalars.allSatisfy { $0 == 1 })
    }
}
