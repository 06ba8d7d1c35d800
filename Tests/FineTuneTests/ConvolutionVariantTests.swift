import Foundation
import Testing
@testable import FineTune

// conv1d and convTranspose2d against direct loops (stride, padding, dilation, groups, output
// padding), gradient checks, and the Conv1d / ConvTranspose2d layers.

/// conv1d by its definition: y[n, o, l] = b[o] + sum_{c in group, k} x[n, c, l*s - p + k*d] w[o, c', k].
private func naiveConv1d(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: Int, padding: Int, dilation: Int, groups: Int) -> [Float] {
    let (n, l) = (x.shape[0], x.shape[2]), (o, cg, k) = (w.shape[0], w.shape[1], w.shape[2])
    let outLength = (l + 2 * padding - dilation * (k - 1) - 1) / stride + 1, og = o / groups
    var y = [Float](repeating: 0, count: n * o * outLength)
    for s in 0..<n { for oc in 0..<o { for t in 0..<outLength {
        var acc = Double(b?[oc] ?? 0)
        let group = oc / og
        for ci in 0..<cg { for tap in 0..<k {
            let i = t * stride - padding + tap * dilation
            if i >= 0 && i < l { acc += Double(x[s, group * cg + ci, i]) * Double(w[oc, ci, tap]) }
        }}
        y[(s * o + oc) * outLength + t] = Float(acc)
    }}}
    return y
}

/// convTranspose2d by scattering: every input element adds `x * w` to the outputs its kernel covers.
private func naiveConvTranspose2d(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: (Int, Int), padding: (Int, Int),
                                  outputPadding: (Int, Int), dilation: (Int, Int), groups: Int) -> (shape: [Int], values: [Float]) {
    let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]), (og, kh, kw) = (w.shape[1], w.shape[2], w.shape[3])
    let cout = og * groups, ig = cin / groups
    let oh = (h - 1) * stride.0 - 2 * padding.0 + dilation.0 * (kh - 1) + outputPadding.0 + 1
    let ow = (wd - 1) * stride.1 - 2 * padding.1 + dilation.1 * (kw - 1) + outputPadding.1 + 1
    var y = [Double](repeating: 0, count: n * cout * oh * ow)
    for s in 0..<n { for ci in 0..<cin { for iy in 0..<h { for ix in 0..<wd {
        let group = ci / ig
        for co in 0..<og { for ky in 0..<kh { for kx in 0..<kw {
            let oy = iy * stride.0 - padding.0 + ky * dilation.0, ox = ix * stride.1 - padding.1 + kx * dilation.1
            if oy < 0 || oy >= oh || ox < 0 || ox >= ow { continue }
            y[((s * cout + group * og + co) * oh + oy) * ow + ox] += Double(x[s, ci, iy, ix]) * Double(w[ci, co, ky, kx])
        }}}
    }}}}
    if let b { for i in 0..<y.count { y[i] += Double(b[(i / (oh * ow)) % cout]) } }
    return ([n, cout, oh, ow], y.map(Float.init))
}

@Suite("Conv1d and ConvTranspose2d")
struct ConvolutionVariantTests {
    static let conv1dCases: [(x: [Int], w: [Int], stride: Int, padding: Int, dilation: Int, groups: Int)] = [
        ([2, 3, 9], [4, 3, 3], 1, 1, 1, 1),
        ([1, 4, 11], [6, 2, 2], 2, 0, 1, 2),
        ([2, 2, 10], [2, 1, 3], 1, 2, 2, 2),
        ([1, 5, 7], [3, 5, 1], 1, 0, 1, 1),
    ]

    @Test(arguments: conv1dCases)
    func conv1d(_ c: (x: [Int], w: [Int], stride: Int, padding: Int, dilation: Int, groups: Int)) {
        let x = randomTensor(c.x, seed: 1), w = randomTensor(c.w, seed: 2), b = randomTensor([c.w[0]], seed: 3)
        let y = Tensor.conv1d(x, weight: w, bias: b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
        expectClose(y.scalars, naiveConv1d(x, w, b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups),
                    "conv1d \(c)")
        gradCheck([x, w, b], "conv1d \(c)") {
            Tensor.conv1d($0[0], weight: $0[1], bias: $0[2], stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
        }
    }

    static let transposedCases: [(x: [Int], w: [Int], stride: (Int, Int), padding: (Int, Int), outputPadding: (Int, Int),
                                  dilation: (Int, Int), groups: Int)] = [
        ([1, 2, 3, 3], [2, 3, 3, 3], (1, 1), (0, 0), (0, 0), (1, 1), 1),
        ([2, 3, 3, 4], [3, 2, 4, 4], (2, 2), (1, 1), (0, 0), (1, 1), 1),      // the usual 2x upsampling
        ([1, 4, 3, 3], [4, 1, 3, 3], (2, 3), (1, 0), (1, 2), (1, 1), 2),      // output padding, groups
        ([1, 2, 4, 3], [2, 2, 2, 3], (1, 2), (1, 1), (0, 1), (2, 1), 1),      // dilation
    ]

    @Test(arguments: transposedCases)
    func convTranspose2d(_ c: (x: [Int], w: [Int], stride: (Int, Int), padding: (Int, Int), outputPadding: (Int, Int),
                               dilation: (Int, Int), groups: Int)) {
        let x = randomTensor(c.x, seed: 4), w = randomTensor(c.w, seed: 5), b = randomTensor([c.w[1] * c.groups], seed: 6)
        let y = Tensor.convTranspose2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding, outputPadding: c.outputPadding,
                                       dilation: c.dilation, groups: c.groups)
        let expected = naiveConvTranspose2d(x, w, b, stride: c.stride, padding: c.padding, outputPadding: c.outputPadding,
                                            dilation: c.dilation, groups: c.groups)
        #expect(y.shape == expected.shape)
        expectClose(y.scalars, expected.values, "convTranspose2d \(c)")
        gradCheck([x, w, b], "convTranspose2d \(c)") {
            Tensor.convTranspose2d($0[0], weight: $0[1], bias: $0[2], stride: c.stride, padding: c.padding,
                                   outputPadding: c.outputPadding, dilation: c.dilation, groups: c.groups)
        }
    }

    @Test func layers() {
        let conv = RandomGenerator.withSeed(1) { Conv1d(4, 6, kernelSize: 3, padding: 1, groups: 2) }
        #expect(conv.weight.shape == [6, 2, 3] && conv.namedParameters().map(\.name) == ["weight", "bias"])
        let bound = 1 / Float(6).squareRoot()          // fanIn = 2 * 3
        #expect(conv.weight.value.scalars.allSatisfy { abs($0) <= bound } && conv.bias!.value.scalars.allSatisfy { abs($0) <= bound })
        #expect(conv(randomTensor([2, 4, 10], seed: 7)).shape == [2, 6, 10])
        #expect(conv(randomTensor([4, 10], seed: 8)).shape == [6, 10])       // unbatched
        let up = RandomGenerator.withSeed(2) { ConvTranspose2d(8, 4, kernelSize: 4, stride: 2, padding: 1) }
        #expect(up.weight.shape == [8, 4, 4, 4] && up.bias!.shape == [4])
        let upBound = 1 / Float(4 * 16).squareRoot()   // PyTorch's fanIn for transposed weights: out * kh * kw
        #expect(up.weight.value.scalars.allSatisfy { abs($0) <= upBound } && up.bias!.value.scalars.allSatisfy { abs($0) <= upBound })
        #expect(up(randomTensor([1, 8, 5, 6], seed: 9)).shape == [1, 4, 10, 12])
        #expect(ConvTranspose2d(2, 2, kernelSize: 3, stride: 2, padding: 1, outputPadding: 1)(randomTensor([1, 2, 4, 4], seed: 10)).shape
                == [1, 2, 8, 8])
    }
}
