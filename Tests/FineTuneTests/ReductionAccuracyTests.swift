import Foundation
import Testing
@testable import FineTune

/// Sums over any axes, bias gradients and broadcast-gradient reductions share one accuracy scheme
/// (Float blocks of at most 32 terms, Double across blocks), checked against Double references.
@Suite("Reduction accuracy")
struct ReductionAccuracyTests {
    /// Relative error of `value` against `exact`.
    private func relativeError(_ value: Float, _ exact: Double) -> Double { abs(Double(value) - exact) / abs(exact) }

    @Test(arguments: [1, 31, 32, 33, 70], [1, 15, 16, 17, 64, 65, 130])
    func columnSumsMatchADoubleReference(rows: Int, columns: Int) {
        for rowStride in [columns, columns + 3] {
            // Gaps between rows hold NaN: a kernel that reads them poisons its sums.
            var data = [Float](repeating: .nan, count: rows * rowStride)
            var rng = RandomGenerator(seed: UInt64(rows * 1000 + columns))
            for r in 0..<rows { for c in 0..<columns { data[r * rowStride + c] = rng.nextUniform() * 2 - 1 } }
            var sums = (0..<columns).map { Double($0) }     // the kernel adds to what is there
            data.withUnsafeBufferPointer { x in sums.withUnsafeMutableBufferPointer { s in
                Kernels.addColumnSums(x.baseAddress!, rows: rows, columns: columns, rowStride: rowStride, into: s.baseAddress!)
            }}
            for c in 0..<columns {
                let exact = Double(c) + (0..<rows).reduce(0.0) { $0 + Double(data[$1 * rowStride + c]) }
                #expect(abs(sums[c] - exact) <= 1e-5, "rows \(rows) columns \(columns) stride \(rowStride) column \(c)")
            }
        }
    }

    @Test(arguments: [[5, 7, 3], [4, 1, 6], [2, 3, 2, 5]])
    func sumOverEveryAxisSetMatchesADoubleReference(shape: [Int]) {
        let x = randomTensor(shape, seed: 3)
        for mask in 0..<(1 << shape.count) {
            let axes = shape.indices.filter { mask & (1 << $0) != 0 }
            for (name, input) in [("contiguous", x), ("transposed", x.transposed(0, -1).contiguous().transposed(0, -1))] {
                let kept = shape.indices.map { axes.contains($0) ? 1 : shape[$0] }
                let reference = doubleSum(x, keeping: kept)
                let got = input.sum(axes: axes, keepDims: true)
                #expect(got.shape == kept)
                expectClose(got.scalars, reference.map { Float($0) }, atol: 1e-6, rtol: 1e-6, "\(name) \(shape) axes \(axes)")
            }
        }
    }

    @Test func sumOfABroadcastViewMatchesADoubleReference() {
        // Stride 0 on axes 0 and 2: those are summed once and scaled by their length.
        let view = randomTensor([3, 1, 4], seed: 5).expanded(to: [2, 3, 5, 4])
        let copy = view.contiguous()
        for mask in 0..<(1 << 4) {
            let axes = (0..<4).filter { mask & (1 << $0) != 0 }
            let kept = (0..<4).map { axes.contains($0) ? 1 : view.shape[$0] }
            expectClose(view.sum(axes: axes, keepDims: true).scalars, doubleSum(copy, keeping: kept).map { Float($0) },
                        atol: 1e-6, rtol: 1e-6, "broadcast view, axes \(axes)")
        }
        let repeated = Tensor([0.1]).expanded(to: [Self.rows]).sum()
        #expect(relativeError(repeated.item(), Self.exactSum) < 1e-6)
    }

    /// Sum of `x` into `kept` (1 on reduced axes), in Double.
    private func doubleSum(_ x: Tensor, keeping kept: [Int]) -> [Double] {
        var out = [Double](repeating: 0, count: Shape.count(kept))
        let values = x.scalars, keptStrides = Shape.contiguousStrides(kept)
        for (flat, v) in values.enumerated() {
            var rest = flat, target = 0
            for axis in stride(from: x.rank - 1, through: 0, by: -1) {
                let i = rest % x.shape[axis]
                rest /= x.shape[axis]
                if kept[axis] != 1 { target += i * keptStrides[axis] }
            }
            out[target] += Double(v)
        }
        return out
    }

    // 4096 rows of 0.1: a running Float sum down the rows is off by ~4e-5 relative; the blocked
    // sum by less than 1e-6.
    static let rows = 4096
    static let exactSum = Double(rows) * Double(Float(0.1))

    @Test func biasGradientsSumTheirRowsInBlocks() {
        var bias = Tensor.zeros([3])
        bias.requiresGrad = true
        let x = Tensor.ones([Self.rows, 1]), weight = Tensor.ones([3, 1])
        Tensor.linear(x, weight: weight, bias: bias).backward(Tensor.full([Self.rows, 3], 0.1))
        for g in bias.grad?.scalars ?? [0] { #expect(relativeError(g, Self.exactSum) < 1e-6, "linear bias gradient \(g)") }

        var convBias = Tensor.zeros([2])
        convBias.requiresGrad = true
        let y = Tensor.conv2d(Tensor.ones([Self.rows, 1, 1, 1]), weight: Tensor.ones([2, 1, 1, 1]), bias: convBias)
        y.backward(Tensor.full(y.shape, 0.1))
        for g in convBias.grad?.scalars ?? [0] { #expect(relativeError(g, Self.exactSum) < 1e-6, "conv2d bias gradient \(g)") }
    }

    @Test func broadcastGradientsSumTheirRowsInBlocks() {
        var b = Tensor.zeros([3])
        b.requiresGrad = true
        (Tensor.zeros([Self.rows, 3]) + b).backward(Tensor.full([Self.rows, 3], 0.1))
        for g in b.grad?.scalars ?? [0] { #expect(relativeError(g, Self.exactSum) < 1e-6, "broadcast gradient \(g)") }

        var column = Tensor.zeros([2, 1])              // broadcast over a leading and a trailing axis
        column.requiresGrad = true
        (Tensor.zeros([Self.rows / 4, 2, 4]) + column).backward(Tensor.full([Self.rows / 4, 2, 4], 0.1))
        for g in column.grad?.scalars ?? [0] { #expect(relativeError(g, Self.exactSum) < 1e-6, "broadcast gradient \(g)") }
    }

    @Test func sumAndMeanOverTheLeadingAxis() {
        let x = Tensor.full([Self.rows, 5], 0.1)
        for s in x.sum(axes: [0]).scalars { #expect(relativeError(s, Self.exactSum) < 1e-6, "sum \(s)") }
        for m in x.mean(axes: [0]).scalars { #expect(relativeError(m, Double(Float(0.1))) < 1e-6, "mean \(m)") }
    }
}
