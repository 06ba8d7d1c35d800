import Foundation
import Testing
@testable import FineTune

// The reductions of the op set: min, argmax/argmin, topk, variance/standardDeviation, logsumexp,
// cumsum. Values against hand-computed results and direct loops; every differentiable one has a
// gradient check. (PyTorch parity of the conventions is in TorchOpFixtureTests.)

@Suite("Reduction ops")
struct ReductionOpTests {
    @Test func minReducesLikeNegatedMax() {
        let x = Tensor(shape: [2, 3], scalars: [3, -1, 2, 0, 5, 0])
        #expect(x.min(axis: 1).scalars == [-1, 0])
        #expect(x.min(axis: 0, keepDims: true).shape == [1, 3])
        #expect(x.min(axis: 0).scalars == [0, -1, 0])
        #expect(x.min().item() == -1)
        #expect(Tensor([1, .nan, -3]).min().item().isNaN)
        // Tied minima share the gradient equally (amin).
        var leaf = x.detached()
        leaf.requiresGrad = true
        leaf.min(axes: [1]).sum().backward()
        #expect(leaf.grad!.scalars == [0, 1, 0, 0.5, 0, 0.5])
    }

    @Test(arguments: [([2, 3, 4], [0]), ([2, 3, 4], [1, 2]), ([5], [0])])
    func minGradient(_ shape: [Int], _ axes: [Int]) {
        gradCheck([randomTensor(shape, seed: 3)], eps: 1e-3, "min \(shape) \(axes)") { $0[0].min(axes: axes) }
    }

    @Test func argmaxAndArgmin() {
        let x = Tensor(shape: [2, 4], scalars: [1, 7, 7, 0, -2, -5, 3, -5])
        #expect(x.argmax(axis: 1) == IndexTensor([1, 2]))              // first of tied maxima
        #expect(x.argmin(axis: 1) == IndexTensor([3, 1]))              // first of tied minima
        #expect(x.argmax(axis: 0) == IndexTensor([0, 0, 0, 0]))
        #expect(x.argmin(axis: 0) == IndexTensor([1, 1, 1, 1]))
        #expect(x.argmax(axis: 0, keepDims: true).shape == [1, 4])
        #expect(x.argmax() == IndexTensor(shape: [], values: [1]))     // flattened
        #expect(x.argmin(keepDims: true) == IndexTensor(shape: [1, 1], values: [5]))
        let withNaN = Tensor([1, .nan, 9, .nan])
        #expect(withNaN.argmax() == IndexTensor(shape: [], values: [1]))   // NaN counts as the extremum
        #expect(withNaN.argmin() == IndexTensor(shape: [], values: [1]))
        // A strided view gives the same answer as its contiguous copy.
        let t = randomTensor([3, 5], seed: 4).transposed()
        #expect(t.argmax(axis: 1) == t.contiguous().argmax(axis: 1))
    }

    @Test func topkValuesIndicesAndGradient() {
        let x = Tensor(shape: [2, 5], scalars: [0.5, 3, -1, 3, 2, 4, .nan, 0, 1, -2])
        let (values, indices) = x.topk(3)
        #expect(indices == IndexTensor(shape: [2, 3], values: [1, 3, 4, 1, 0, 3]))
        #expect(values.scalars[0...2] == [3, 3, 2] && values.scalars[3].isNaN && values.scalars[4...5] == [4, 1])
        let smallest = x.topk(2, largest: false)
        #expect(smallest.indices == IndexTensor(shape: [2, 2], values: [2, 0, 4, 2]))
        // Along axis 0: the k axis replaces axis 0.
        let y = Tensor(shape: [3, 2], scalars: [1, 6, 5, 2, 3, 4])
        let top = y.topk(2, axis: 0)
        #expect(top.indices == IndexTensor(shape: [2, 2], values: [1, 0, 2, 2]))
        #expect(top.values.scalars == [5, 6, 3, 4])
        // Distinct values 0.1 apart: a finite-difference step never changes the selection or its order.
        func distinct(_ shape: [Int]) -> Tensor {
            let n = Shape.count(shape)
            return Tensor(shape: shape, scalars: (0..<n).map { Float(($0 * 7) % n) * 0.1 - 1 })
        }
        gradCheck([distinct([3, 6])], eps: 1e-3, "topk") { $0[0].topk(4).values }
        gradCheck([distinct([4, 3, 2])], eps: 1e-3, "topk axis 0 smallest") { $0[0].topk(2, axis: 0, largest: false).values }
    }

    @Test func varianceCorrectionAndStandardDeviation() {
        let x = Tensor(shape: [2, 4], scalars: [1, 2, 3, 4, 2, 2, 2, 2])
        expectClose(x.variance(axis: 1).scalars, [5.0 / 3, 0])
        expectClose(x.variance(axis: 1, correction: 0).scalars, [1.25, 0])
        expectClose(x.variance(axis: 1, correction: 2).scalars, [2.5, 0])
        expectClose(x.standardDeviation(axis: 1, keepDims: true).scalars, [(5.0 / 3).squareRoot(), 0])
        #expect(x.standardDeviation(axis: 1, keepDims: true).shape == [2, 1])
        #expect(Tensor([3]).variance().item().isNaN)                 // N - correction = 0: 0 / 0, as PyTorch
        // A constant row's std has gradient 0, not NaN (PyTorch's rule).
        var leaf = x.detached()
        leaf.requiresGrad = true
        leaf.standardDeviation(axis: 1).sum().backward()
        #expect(leaf.grad!.scalars[4...].allSatisfy { $0 == 0 })
        let y = randomTensor([3, 4, 5], seed: 7)
        gradCheck([y], "variance") { $0[0].variance(axes: [0, 2]) }
        gradCheck([y], "variance correction 0") { $0[0].variance(axis: 1, correction: 0, keepDims: true) }
        gradCheck([y], "standardDeviation") { $0[0].standardDeviation(axis: -1) }
        gradCheck([y], "standardDeviation all") { $0[0].standardDeviation() }
    }

    @Test func logsumexpIsStable() {
        let x = Tensor(shape: [2, 3], scalars: [1000, 1000, 1000, -1, 0, 1])
        expectClose(x.logsumexp(axis: 1).scalars, [1000 + Float(Foundation.log(3.0)), Float(Foundation.log(exp(-1.0) + 1 + exp(1.0)))])
        #expect(Tensor([-.infinity, -.infinity]).logsumexp(axis: 0).item() == -.infinity)
        #expect(x.logsumexp(axes: [0, 1], keepDims: true).shape == [1, 1])
        let y = randomTensor([3, 4, 2], seed: 8) * 3
        gradCheck([y], "logsumexp") { $0[0].logsumexp(axis: 1) }
        gradCheck([y], "logsumexp 2 axes") { $0[0].logsumexp(axes: [0, 2], keepDims: true) }
        // The gradient is the softmax.
        var leaf = y.detached()
        leaf.requiresGrad = true
        leaf.logsumexp(axis: -1).sum().backward()
        expectClose(leaf.grad!.scalars, y.softmax(axis: -1).scalars)
    }

    @Test func cumsumAlongEachAxis() {
        let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        #expect(x.cumsum(axis: 1).scalars == [1, 3, 6, 4, 9, 15])
        #expect(x.cumsum(axis: 0).scalars == [1, 2, 3, 5, 7, 9])
        #expect(x.transposed().cumsum(axis: 0).scalars == [1, 4, 3, 9, 6, 15])
        gradCheck([randomTensor([3, 4, 2], seed: 9)], "cumsum axis 1") { $0[0].cumsum(axis: 1) }
        gradCheck([randomTensor([5], seed: 10)], "cumsum 1-D") { $0[0].cumsum(axis: -1) }
    }
}
