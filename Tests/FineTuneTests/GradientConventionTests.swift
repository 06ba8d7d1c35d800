import Foundation
import Testing
@testable import FineTune

/// Gradients where finite differences say nothing (ties, kinks) or would read NaN (pow at 0):
/// each convention pinned exactly to PyTorch's.
@Suite("Gradient conventions")
struct GradientConventionTests {
    /// The gradient of `f(x)` for the seed `seed` (ones by default).
    private func gradient(of x: Tensor, seed: Tensor? = nil, _ f: (Tensor) -> Tensor) -> [Float] {
        var leaf = x
        leaf.requiresGrad = true
        let y = f(leaf)
        y.backward(seed ?? Tensor.ones(y.shape))
        return leaf.grad?.scalars ?? []
    }

    // MARK: Ties

    @Test func maxAlongAnAxisSendsTheGradientToTheFirstMaximum() {
        // torch.max(x, dim) returns the index of the first maximal value; the gradient goes there.
        let x = Tensor(shape: [2, 4], scalars: [3, 1, 3, 3,
                                                2, 5, 0, 5])
        #expect(gradient(of: x) { $0.max(axis: 1) } == [1, 0, 0, 0, 0, 1, 0, 0])
        #expect(gradient(of: x, seed: Tensor([2, 7])) { $0.max(axis: -1) } == [2, 0, 0, 0, 0, 7, 0, 0])
        // Along axis 0, keepDims: ties in columns 0 and 3 go to row 0.
        let y = Tensor(shape: [2, 3], scalars: [4, 1, 6, 4, 2, 6])
        #expect(gradient(of: y) { $0.max(axis: 0, keepDims: true) } == [1, 0, 1, 0, 1, 0])
        #expect(y.max(axis: 0, keepDims: true).shape == [1, 3] && y.max(axis: 0).scalars == [4, 2, 6])
        // A NaN is the maximum (the first one), as in PyTorch.
        let withNaN = Tensor([1, .nan, 3, .nan])
        #expect(withNaN.max(axis: 0).item().isNaN)
        #expect(gradient(of: withNaN) { $0.max(axis: 0) } == [0, 1, 0, 0])
    }

    @Test func maxOverAllElementsSplitsTheGradientAmongTies() {
        // torch.max(x) without a dimension (and amax) distribute the gradient evenly.
        let x = Tensor(shape: [2, 3], scalars: [5, 1, 5, 0, 5, 2])
        let third: Float = 1 / 3
        #expect(gradient(of: x) { $0.max() } == [third, 0, third, 0, third, 0])
        #expect(gradient(of: x, seed: Tensor(6)) { $0.max() } == [2, 0, 2, 0, 2, 0])
        // amax over several axes: even split per output element.
        let y = Tensor(shape: [2, 2, 2], scalars: [1, 4, 4, 0, 7, 7, 7, 7])
        #expect(gradient(of: y) { $0.max(axes: [1, 2]) } == [0, 0.5, 0.5, 0, 0.25, 0.25, 0.25, 0.25])
        #expect(gradient(of: y) { $0.max(axes: [-1]) } == [0, 1, 1, 0, 0.5, 0.5, 0.5, 0.5])
    }

    @Test(arguments: [4, 40])   // 40: wide enough for the vector kernel
    func maxPoolSendsTheGradientToTheFirstMaximumOfEachWindow(width: Int) {
        // All equal: every 2x2 window's gradient goes to its top-left element (PyTorch's scan order).
        let x = Tensor.full([1, 1, 4, width], 3)
        let g = gradient(of: x) { $0.maxPool2d(kernelSize: (2, 2)) }
        let expected = (0..<(4 * width)).map { i -> Float in (i / width) % 2 == 0 && (i % width) % 2 == 0 ? 1 : 0 }
        #expect(g == expected)
    }

    // MARK: Kinks

    @Test func reluAndAbsHaveGradientZeroAtZero() {
        let x = Tensor([-1, 0, 2, -0.0])
        #expect(gradient(of: x) { $0.relu() } == [0, 0, 1, 0])
        #expect(gradient(of: x) { $0.abs() } == [-1, 0, 1, 0])
        // leaky_relu takes the negative slope at 0 (PyTorch: x > 0 ? 1 : slope).
        #expect(gradient(of: x) { $0.leakyRelu(slope: 0.25) } == [0.25, 0.25, 1, 0.25])
        // A wide tensor takes the vector kernel: same convention in every lane and the tail.
        let wide = Tensor((0..<37).map { Float($0 % 3) - 1 })
        #expect(gradient(of: wide) { $0.relu() } == wide.scalars.map { $0 > 0 ? 1 : 0 })
    }

    @Test func clampPassesTheGradientAtItsBounds() {
        let x = Tensor([-2, -1, 0, 1, 3])
        #expect(gradient(of: x) { $0.clamped(min: -1, max: 1) } == [0, 1, 1, 1, 0])
        #expect(gradient(of: x) { $0.clamped(min: 0) } == [0, 0, 1, 1, 1])
        #expect(gradient(of: x) { $0.clamped(max: -1) } == [1, 1, 0, 0, 0])
    }

    // MARK: pow at base 0

    @Test func powWithExponentZeroHasGradientZero() {
        // p x^(p-1) would be 0 * inf = NaN at x = 0; PyTorch masks it to 0 everywhere.
        let x = Tensor([0, 0, 1.5, -2])
        #expect(gradient(of: x) { $0.pow(0) } == [0, 0, 0, 0])
        #expect(gradient(of: x) { $0.pow(1) } == [1, 1, 1, 1])
        #expect(gradient(of: x) { $0.pow(3) } == [0, 0, 6.75, 12])
    }

    @Test func powWithATensorExponentMasksBaseZero() {
        var base = Tensor([0, 0, 0, 2, 2])
        var exponent = Tensor([0, 2, 0.5, 0, 3])
        base.requiresGrad = true
        exponent.requiresGrad = true
        let y = base.pow(exponent)
        #expect(y.scalars == [1, 0, 0, 1, 8])
        y.sum().backward()
        // d/dbase = p x^(p-1), 0 where p == 0; p = 0.5 at 0 is +inf, as in PyTorch.
        #expect(base.grad?.scalars == [0, 0, .infinity, 0, 12])
        // d/dp = x^p log x, 0 where x == 0 and p >= 0 (log 0 = -inf would give NaN or -inf).
        let log2 = Float(Foundation.log(2.0))
        let dp = exponent.grad?.scalars ?? []
        #expect(dp.count == 5 && Array(dp[0..<3]) == [0, 0, 0])
        expectClose(Array(dp[3...]), [log2, 8 * log2], atol: 0, rtol: 1e-6)
        // Broadcast exponent: the masked gradient is reduced like any other.
        var p = Tensor([0])
        p.requiresGrad = true
        Tensor([0, 0, 3]).pow(p).sum().backward()
        expectClose(p.grad?.scalars ?? [], [Float(Foundation.log(3.0))], atol: 0, rtol: 1e-6)
    }
}
