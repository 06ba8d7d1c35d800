import Foundation
import Testing
@testable import FineTune

/// Invalid arguments stop at the call with a message naming the op, the argument and the shapes,
/// not deep inside a kernel (each case runs in a child process: an exit test).
@Suite("Invalid arguments")
struct ArgumentValidationTests {
    @Test func conv2dDilationZero() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.conv2d(Tensor.zeros([1, 2, 5, 5]), weight: Tensor.zeros([3, 2, 3, 3]), dilation: (1, 0))
        }
        expectStandardError(result, contains: ["conv2d", "dilation must be at least 1", "(1, 0)", "[1, 2, 5, 5]", "[3, 2, 3, 3]"])
    }

    @Test func conv2dNegativePadding() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.conv2d(Tensor.zeros([1, 2, 5, 5]), weight: Tensor.zeros([3, 2, 3, 3]), padding: (-1, 0))
        }
        expectStandardError(result, contains: ["conv2d", "padding must not be negative", "(-1, 0)", "[1, 2, 5, 5]"])
    }

    @Test func conv2dStrideZero() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.conv2d(Tensor.zeros([1, 2, 5, 5]), weight: Tensor.zeros([3, 2, 3, 3]), stride: (0, 1))
        }
        expectStandardError(result, contains: ["conv2d", "stride must be at least 1", "(0, 1)", "[3, 2, 3, 3]"])
    }

    @Test func poolingNegativePadding() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.zeros([1, 1, 4, 4]).maxPool2d(kernelSize: (2, 2), padding: (0, -1))
        }
        expectStandardError(result, contains: ["maxPool2d", "padding must not be negative", "(0, -1)", "[1, 1, 4, 4]"])
    }

    @Test func poolingKernelZero() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.zeros([1, 1, 4, 4]).avgPool2d(kernelSize: (0, 2), stride: (1, 1))
        }
        expectStandardError(result, contains: ["avgPool2d", "kernel must be at least 1", "(0, 2)", "[1, 1, 4, 4]"])
    }

    @Test func unsqueezeAxisOutOfRange() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.zeros([2, 3]).unsqueezed(axis: 3)
        }
        expectStandardError(result, contains: ["unsqueeze", "axis 3 is out of range for rank 2", "[2, 3]"])
    }

    @Test func unsqueezeNegativeAxisOutOfRange() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.zeros([2, 3]).unsqueezed(axis: -4)
        }
        expectStandardError(result, contains: ["unsqueeze", "axis -4 is out of range for rank 2", "[2, 3]"])
    }

    @Test func flattenAxisOutOfRange() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.zeros([2, 3, 4]).flattened(startAxis: 1, endAxis: 3)
        }
        expectStandardError(result, contains: ["flatten", "endAxis 3 is out of range for rank 3", "[2, 3, 4]"])
    }

    @Test func flattenAxesInTheWrongOrder() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.zeros([2, 3, 4]).flattened(startAxis: -1, endAxis: 0)
        }
        expectStandardError(result, contains: ["flatten", "startAxis -1 comes after endAxis 0", "[2, 3, 4]"])
    }

    @Test func dropoutProbabilityOne() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.ones([2, 3]).dropout(p: 1)
        }
        expectStandardError(result, contains: ["dropout", "p must be in [0, 1), got 1.0", "[2, 3]"])
    }

    @Test func dropoutProbabilityIsCheckedOutsideTraining() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var rng = RandomGenerator(seed: 1)
            _ = Tensor.ones([4]).dropout(p: -0.5, training: false, generator: &rng)
        }
        expectStandardError(result, contains: ["dropout", "p must be in [0, 1), got -0.5", "[4]"])
    }

    @Test func matmulOfVectorsWithDifferentLengths() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor([1, 2, 3]).matmul(Tensor([1, 2]))
        }
        expectStandardError(result, contains: ["matmul", "inner dimensions 3 and 2 differ", "[3] and [2]"])
    }

    @Test func layerNormAffineShape() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.layerNorm(Tensor.zeros([2, 3, 4]), normalizedAxes: 2, weight: Tensor.ones([4]))
        }
        expectStandardError(result, contains: ["layerNorm", "weight must have the normalized shape [3, 4]", "[2, 3, 4] and [4]"])
    }

    @Test func validArgumentsAtTheLimitsPass() {
        // The checks reject only what PyTorch rejects.
        let x = Tensor.ones([2, 3])
        #expect(x.unsqueezed(axis: 2).shape == [2, 3, 1] && x.unsqueezed(axis: -3).shape == [1, 2, 3])
        #expect(x.flattened(startAxis: -1, endAxis: -1).shape == [2, 3] && Tensor(5).flattened().shape == [1])
        #expect(x.dropout(p: 0).scalars == x.scalars && x.dropout(p: 0.999, training: false).scalars == x.scalars)
        let y = Tensor.conv2d(Tensor.ones([1, 1, 3, 3]), weight: Tensor.ones([1, 1, 1, 1]), padding: (0, 0), dilation: (5, 5))
        #expect(y.shape == [1, 1, 3, 3])
    }
}
