import Foundation
import Testing
@testable import FineTune

// Element-wise ops of the op set: minimum/maximum, sin/cos, rsqrt, softplus, silu (vector
// kernel), erf. Values against Foundation's scalar functions, and gradient checks.

@Suite("Element-wise ops")
struct ElementwiseOpTests {
    @Test func minimumAndMaximumBroadcastAndSplitTies() {
        let a = Tensor(shape: [2, 3], scalars: [1, 5, -2, 4, 0, 3]), b = Tensor([2, 0, 3])
        #expect(a.minimum(b).scalars == [1, 0, -2, 2, 0, 3])
        #expect(a.maximum(b).scalars == [2, 5, 3, 4, 0, 3])
        #expect(Tensor([1, .nan]).maximum(Tensor([.nan, 2])).scalars.allSatisfy { $0.isNaN })
        #expect(Tensor([1, .nan]).minimum(Tensor([.nan, 2])).scalars.allSatisfy { $0.isNaN })
        var x = Tensor([2, 2, 1]), y = Tensor([2, 1, 3])
        x.requiresGrad = true; y.requiresGrad = true
        x.maximum(y).sum().backward()
        #expect(x.grad!.scalars == [0.5, 1, 0] && y.grad!.scalars == [0.5, 0, 1])
        gradCheck([awayFromZero([2, 3], seed: 1), awayFromZero([3], seed: 2)], eps: 1e-3, "maximum") { $0[0].maximum($0[1]) }
        gradCheck([awayFromZero([4, 1], seed: 3), awayFromZero([1, 5], seed: 4)], eps: 1e-3, "minimum") { $0[0].minimum($0[1]) }
    }

    @Test func unaryMathMatchesFoundation() {
        let x = randomTensor([37], seed: 5, low: -6, high: 6)
        let positive = randomTensor([37], seed: 6, low: 0.1, high: 9)
        expectClose(x.sin().scalars, x.scalars.map { Foundation.sin($0) }, atol: 1e-6, rtol: 0)
        expectClose(x.cos().scalars, x.scalars.map { Foundation.cos($0) }, atol: 1e-6, rtol: 0)
        expectClose(positive.rsqrt().scalars, positive.scalars.map { 1 / $0.squareRoot() }, atol: 0, rtol: 1e-6)
        expectClose(x.erf().scalars, x.scalars.map { Foundation.erf($0) }, atol: 1e-6, rtol: 0)
        let big = Tensor([-200, -30, -1, 0, 1, 19, 21, 200])
        expectClose(big.softplus().scalars, big.scalars.map { $0 > 20 ? $0 : Float(Foundation.log1p(Foundation.exp(Double($0)))) },
                    atol: 0, rtol: 1e-6)
        expectClose(big.softplus(beta: 2, threshold: 5).scalars,
                    big.scalars.map { 2 * $0 > 5 ? $0 : Float(Foundation.log1p(Foundation.exp(2 * Double($0))) / 2) }, atol: 0, rtol: 1e-6)
    }

    @Test func unaryMathGradients() {
        let x = randomTensor([3, 5], seed: 7, low: -3, high: 3)
        gradCheck([x], "sin") { $0[0].sin() }
        gradCheck([x], "cos") { $0[0].cos() }
        gradCheck([randomTensor([3, 5], seed: 8, low: 0.5, high: 3)], "rsqrt") { $0[0].rsqrt() }
        gradCheck([x], "erf") { $0[0].erf() }
        gradCheck([x], "softplus") { $0[0].softplus() }
        gradCheck([x], "softplus beta 3 threshold 2") { $0[0].softplus(beta: 3, threshold: 2) }
        gradCheck([x], "silu") { $0[0].silu() }
    }

    /// The SiLU kernel on every tail length against the scalar formula, then its gradient kernel.
    @Test func siluKernelAgainstScalarReference() {
        for n in [1, 15, 16, 17, 33, 100] {
            let x = randomTensor([n], seed: UInt64(n), low: -12, high: 12)
            let reference = x.scalars.map { Double($0) / (1 + Foundation.exp(-Double($0))) }
            expectClose(x.silu().scalars, reference.map(Float.init), atol: 1e-6, rtol: 1e-5, "silu n=\(n)")
            let g = randomTensor([n], seed: 99)
            var leaf = x.detached()
            leaf.requiresGrad = true
            leaf.silu().backward(g)
            let derivative = x.scalars.map { v -> Double in
                let s = 1 / (1 + Foundation.exp(-Double(v)))
                return s * (1 + Double(v) * (1 - s))
            }
            expectClose(leaf.grad!.scalars, zip(derivative, g.scalars).map { Float($0 * Double($1)) }, atol: 1e-6, rtol: 1e-5,
                        "silu grad n=\(n)")
        }
        let extremes = Tensor([-.infinity, -1000, 1000, .infinity])
        var leaf = extremes.detached()
        leaf.requiresGrad = true
        leaf.silu().sum().backward()
        #expect(leaf.grad!.scalars == [0, 0, 1, 1])
        #expect(Array(extremes.silu().scalars[1...3]) == [0, 1000, .infinity])
    }
}
