import Foundation
import Testing
@testable import FineTune

/// A finite-difference check for every differentiable op, on several shapes (broadcasting, odd sizes),
/// each on contiguous, transposed and strided inputs (see `gradCheck`). MutationTests runs these
/// same checks against deliberately wrong rules: keep them able to fail.
@Suite("Gradient checks")
struct GradientCheckTests {
    static let broadcastPairs: [([Int], [Int])] = [
        ([3], [3]), ([2, 3], [3]), ([4, 1], [1, 5]), ([2, 3, 4], [3, 1]), ([7], []), ([1, 3, 1], [2, 1, 5]),
    ]

    @Test(arguments: broadcastPairs)
    func add(_ a: [Int], _ b: [Int]) {
        gradCheck([randomTensor(a, seed: 1), randomTensor(b, seed: 2)], "add \(a) \(b)") { $0[0] + $0[1] }
    }

    @Test(arguments: broadcastPairs)
    func sub(_ a: [Int], _ b: [Int]) {
        gradCheck([randomTensor(a, seed: 3), randomTensor(b, seed: 4)], "sub \(a) \(b)") { $0[0] - $0[1] }
    }

    @Test(arguments: broadcastPairs)
    func mul(_ a: [Int], _ b: [Int]) {
        gradCheck([randomTensor(a, seed: 5), randomTensor(b, seed: 6)], "mul \(a) \(b)") { $0[0] * $0[1] }
    }

    @Test(arguments: broadcastPairs)
    func div(_ a: [Int], _ b: [Int]) {
        gradCheck([randomTensor(a, seed: 7), randomTensor(b, seed: 8, low: 0.5, high: 2)], "div \(a) \(b)") { $0[0] / $0[1] }
    }

    @Test func scalarOperators() {
        gradCheck([randomTensor([3, 4])]) { 2 - (3 * $0[0] + 1) / 4 }
        gradCheck([randomTensor([5], low: 0.5, high: 2)]) { 1 / $0[0] }
    }

    static let pointwiseShapes: [[Int]] = [[1], [7], [3, 5], [2, 3, 4]]

    @Test(arguments: pointwiseShapes)
    func pointwise(_ shape: [Int]) {
        let x = randomTensor(shape, seed: 11)
        let positive = randomTensor(shape, seed: 12, low: 0.3, high: 2)
        gradCheck([x], "neg") { -$0[0] }
        gradCheck([x], "exp") { $0[0].exp() }
        gradCheck([positive], "log") { $0[0].log() }
        gradCheck([positive], "sqrt") { $0[0].sqrt() }
        gradCheck([positive], "pow 2.5") { $0[0].pow(2.5) }
        gradCheck([x], "pow 2") { $0[0].pow(2) }
        gradCheck([x], "pow 3") { $0[0].pow(3) }
        gradCheck([awayFromZero(shape, seed: 13)], eps: 1e-3, "abs") { $0[0].abs() }
        gradCheck([awayFromZero(shape, seed: 14, margin: 0.05)], eps: 1e-3, "clamp") { $0[0].clamped(min: -0.5, max: 0.6) }
        gradCheck([x], "sigmoid") { $0[0].sigmoid() }
        gradCheck([x], "tanh") { $0[0].tanh() }
        gradCheck([awayFromZero(shape, seed: 15)], eps: 1e-3, "relu") { $0[0].relu() }
        gradCheck([awayFromZero(shape, seed: 16)], eps: 1e-3, "leakyRelu") { $0[0].leakyRelu(slope: 0.2) }
        gradCheck([x * 3], "gelu erf") { $0[0].gelu() }
        gradCheck([x * 3], "gelu tanh") { $0[0].gelu(approximate: true) }
    }

    @Test func powTensorExponent() {
        gradCheck([randomTensor([2, 3], seed: 1, low: 0.5, high: 2), randomTensor([3], seed: 2)], "pow") { $0[0].pow($0[1]) }
        gradCheck([randomTensor([3, 1], seed: 3, low: 0.5, high: 2), randomTensor([2, 1, 4], seed: 4)], "pow, both broadcast") {
            $0[0].pow($0[1])
        }
    }

    static let softmaxCases: [([Int], Int)] = [([4], -1), ([3, 5], -1), ([3, 5], 0), ([2, 3, 7], 1), ([1, 33], -1), ([2, 3, 4], -2)]

    @Test(arguments: softmaxCases)
    func softmaxFamily(_ shape: [Int], _ axis: Int) {
        let x = randomTensor(shape, seed: 21) * 3
        gradCheck([x], "softmax \(shape) axis \(axis)") { $0[0].softmax(axis: axis) }
        gradCheck([x], "logSoftmax \(shape) axis \(axis)") { $0[0].logSoftmax(axis: axis) }
    }

    static let reductionCases: [([Int], [Int])] = [
        ([2, 3, 4], [0]), ([2, 3, 4], [1, 2]), ([2, 3, 4], [2]), ([5], [0]), ([3, 1, 7], [0, 2]), ([2, 3, 4], [-1]), ([2, 3, 4], [-3, -2]),
    ]

    @Test(arguments: reductionCases)
    func reductions(_ shape: [Int], _ axes: [Int]) {
        // Distinct values at least 2 eps apart, so no max is tied within a step.
        let x = Tensor(shape: shape, scalars: (0..<Shape.count(shape)).map { Float(($0 * 13) % Shape.count(shape)) / 8 - 1 })
        gradCheck([x], "sum") { $0[0].sum(axes: axes) }
        gradCheck([x], "sum keepDims") { $0[0].sum(axes: axes, keepDims: true) }
        gradCheck([x], "mean") { $0[0].mean(axes: axes) }
        gradCheck([x], "mean keepDims") { $0[0].mean(axes: axes, keepDims: true) }
        gradCheck([x], "max keepDims") { $0[0].max(axes: axes, keepDims: true) }
        gradCheck([x], "max") { $0[0].max(axes: axes) }
        gradCheck([x], "sum all") { $0[0].sum() }
        gradCheck([x], "mean all") { $0[0].mean() }
        gradCheck([x], "max all") { $0[0].max() }
        if axes.count == 1 {
            gradCheck([x], "max(axis:)") { $0[0].max(axis: axes[0]) }
            gradCheck([x], "max(axis:) keepDims") { $0[0].max(axis: axes[0], keepDims: true) }
        }
    }

    static let matmulSizes: [(Int, Int, Int)] = [(1, 1, 1), (3, 5, 2), (7, 33, 5), (17, 3, 9)]

    @Test(arguments: matmulSizes)
    func matmul2D(_ m: Int, _ k: Int, _ n: Int) {
        // The transposed layout also feeds the GEMM transposed views, which it reads in place.
        gradCheck([randomTensor([m, k], seed: 41), randomTensor([k, n], seed: 42)], linearInEachInput: true, "matmul") { $0[0].matmul($0[1]) }
    }

    @Test func matmulBatched() {
        let cases: [([Int], [Int], String)] = [([2, 3, 4], [2, 4, 5], "batched"), ([2, 3, 4], [4, 5], "batched x 2-D"),
                                               ([3, 4], [2, 4, 5], "2-D x batched"), ([2, 1, 3, 4], [3, 4, 2], "broadcast batch")]
        for (i, (a, b, name)) in cases.enumerated() {
            gradCheck([randomTensor(a, seed: UInt64(2 * i + 1)), randomTensor(b, seed: UInt64(2 * i + 2))], linearInEachInput: true, name) {
                $0[0].matmul($0[1])
            }
        }
    }

    /// 1-D operands as in NumPy and PyTorch: dot product, vector-matrix, matrix-vector, batched.
    static let vectorMatmulShapes: [([Int], [Int])] = [([4], [4]), ([4], [4, 3]), ([3, 4], [4]), ([2, 3, 4], [4]), ([4], [2, 4, 3]), ([1], [1])]

    @Test(arguments: vectorMatmulShapes)
    func matmulWithVectors(_ a: [Int], _ b: [Int]) {
        gradCheck([randomTensor(a, seed: 9), randomTensor(b, seed: 10)], linearInEachInput: true, "\(a) x \(b)") { $0[0].matmul($0[1]) }
    }

    @Test func linear() {
        gradCheck([randomTensor([5, 7], seed: 1), randomTensor([3, 7], seed: 2), randomTensor([3], seed: 3)], linearInEachInput: true, "linear") {
            Tensor.linear($0[0], weight: $0[1], bias: $0[2])
        }
        gradCheck([randomTensor([2, 3, 4], seed: 4), randomTensor([6, 4], seed: 5)], linearInEachInput: true, "linear 3-D, no bias") {
            Tensor.linear($0[0], weight: $0[1])
        }
    }

    @Test func shapeOps() {
        let x = randomTensor([2, 3, 4], seed: 51)
        gradCheck([x], "reshape") { $0[0].reshaped([4, -1]) * Tensor.arange(0, 6) }
        gradCheck([x], "permute") { $0[0].permuted([2, 0, 1]) * Tensor.arange(0, 3) }
        gradCheck([x], "transpose + contiguous") { $0[0].transposed(0, 2).contiguous() }
        gradCheck([x], "flatten") { $0[0].flattened(startAxis: 1) }
        gradCheck([x], "slice") { $0[0].slice(axis: 2, 1..<3) }
        gradCheck([x], "select") { $0[0].select(axis: 1, -1) }
        gradCheck([x], "unsqueeze/squeeze") { $0[0].unsqueezed(axis: 1).squeezed(axis: 1) * 2 }
        gradCheck([x], "negative axes") {
            $0[0].transposed(-1, -3).flattened(startAxis: -2).unsqueezed(axis: -1).slice(axis: -2, 1..<5).squeezed(axis: -1)
        }
        gradCheck([x], "squeeze all") { $0[0].slice(axis: 1, 2..<3).squeezed() }
        gradCheck([randomTensor([3, 1], seed: 52)], "expand") { $0[0].expanded(to: [2, 3, 4]) }
        gradCheck([randomTensor([2, 3], seed: 53), randomTensor([2, 5], seed: 54)], "concat") { Tensor.concat($0, axis: 1) }
        gradCheck([randomTensor([2, 3], seed: 55), randomTensor([2, 3], seed: 56)], "stack") { Tensor.stack($0, axis: 1) }
        gradCheck([randomTensor([2, 3], seed: 57), randomTensor([2, 1], seed: 58)], "concat axis -1") { Tensor.concat($0, axis: -1) }
        gradCheck([randomTensor([2, 3], seed: 59), randomTensor([2, 3], seed: 60)], "stack axis -1") { Tensor.stack($0, axis: -1) }
    }

    /// Writing through the subscript of an op's result records the write: no gradient to the
    /// overwritten elements.
    @Test func subscriptWrite() {
        gradCheck([randomTensor([3, 4], seed: 61)], "setElement") { x in
            var y = x[0] * x[0]
            y[1, 2] = 5
            y[-1, 0] = -1
            return y
        }
    }

    @Test func indexing() {
        gradCheck([randomTensor([5, 3], seed: 61)], "embedding") { Tensor.embedding([4, 0, 4, 2], shape: [2, 2], weight: $0[0]) }
        gradCheck([randomTensor([5, 2, 3], seed: 62)], "gatherRows") { $0[0].gatherRows([1, 1, 3]) }
        let cond = Tensor(shape: [2, 3], scalars: [1, 0, 1, 0, 0, 1])
        gradCheck([randomTensor([2, 3], seed: 63), randomTensor([3], seed: 64)], "where") { Tensor.where(cond, $0[0], $0[1]) }
        gradCheck([randomTensor([2, 3], seed: 65)], "maskedFill") { $0[0].maskedFill(cond, -5) }
    }

    @Test func dropoutUsesItsMask() {
        var rng = RandomGenerator(seed: 3)
        let mask = Tensor.dropoutMask([4, 5], p: 0.3, generator: &rng)
        gradCheck([randomTensor([4, 5], seed: 71)], "dropout") { x in
            var r = RandomGenerator(seed: 3)
            return x[0].dropout(p: 0.3, generator: &r)
        }
        #expect(Set(mask.scalars).isSubset(of: [0, 1 / 0.7]))
    }

    static let convCases: [(x: [Int], w: [Int], stride: Int, pad: Int, dil: Int, groups: Int)] = [
        ([1, 1, 5, 5], [2, 1, 3, 3], 1, 0, 1, 1),
        ([2, 3, 7, 6], [4, 3, 3, 3], 1, 1, 1, 1),
        ([1, 2, 7, 7], [3, 2, 3, 2], 2, 1, 1, 1),
        ([1, 2, 9, 9], [2, 2, 3, 3], 1, 2, 2, 1),
        ([2, 4, 5, 5], [4, 2, 3, 3], 1, 1, 1, 2),
        ([1, 3, 5, 5], [3, 1, 3, 3], 2, 1, 1, 3),
        ([2, 3, 4, 4], [5, 3, 1, 1], 1, 0, 1, 1),
    ]

    /// The shifted-copies method (stride 1, >= 16 channels, little wasted width), through the op.
    @Test func conv2dShiftedCopies() {
        let x = randomTensor([1, 16, 3, 10], seed: 84), w = randomTensor([16, 16, 2, 2], seed: 85) * 0.5
        let g = Conv2dGeometry(batch: 1, inChannels: 16, height: 3, width: 10, outChannels: 16, kernelHeight: 2, kernelWidth: 2,
                               padding: (0, 1))
        for threads in [1, Kernels.maxThreads] {
            let plan = ConvPlan(g, threads: threads)
            #expect(plan.forwardMethod == .shifted && plan.backwardInputMethod == .shifted && plan.backwardWeightMethod == .shifted)
        }
        gradCheck([x, w, randomTensor([16], seed: 86)], linearInEachInput: true, sampled: 40, "conv2d shifted") {
            Tensor.conv2d($0[0], weight: $0[1], bias: $0[2], padding: (0, 1))
        }
    }

    @Test(arguments: convCases)
    func conv2d(_ c: (x: [Int], w: [Int], stride: Int, pad: Int, dil: Int, groups: Int)) {
        gradCheck([randomTensor(c.x, seed: 81), randomTensor(c.w, seed: 82), randomTensor([c.w[0]], seed: 83)], linearInEachInput: true,
                  "conv2d \(c)") {
            Tensor.conv2d($0[0], weight: $0[1], bias: $0[2], stride: (c.stride, c.stride), padding: (c.pad, c.pad),
                          dilation: (c.dil, c.dil), groups: c.groups)
        }
    }

    @Test func pooling() {
        // Distinct values so max pooling has no ties within a step.
        let x = Tensor(shape: [2, 2, 5, 6], scalars: (0..<120).map { Float(($0 * 37) % 120) / 10 })
        gradCheck([x], eps: 1e-3, "maxPool2d") { $0[0].maxPool2d(kernelSize: (2, 2)) }
        gradCheck([x], eps: 1e-3, "maxPool2d stride 1 pad 1") { $0[0].maxPool2d(kernelSize: (3, 3), stride: (1, 1), padding: (1, 1)) }
        gradCheck([x], linearInEachInput: true, "avgPool2d") { $0[0].avgPool2d(kernelSize: (2, 3), stride: (1, 2)) }
        gradCheck([x], linearInEachInput: true, "avgPool2d pad") { $0[0].avgPool2d(kernelSize: (3, 3), stride: (2, 2), padding: (1, 1), countIncludePad: false) }
        gradCheck([x], linearInEachInput: true, "adaptiveAvgPool2d") { $0[0].adaptiveAvgPool2d((3, 4)) }
        gradCheck([x], linearInEachInput: true, "globalAvgPool2d") { $0[0].globalAvgPool2d() }
    }

    @Test func normalization() {
        let x = randomTensor([3, 2, 4, 5], seed: 91) * 2 + 0.5
        gradCheck([x, randomTensor([5], seed: 92), randomTensor([5], seed: 93)], "layerNorm") {
            Tensor.layerNorm($0[0], weight: $0[1], bias: $0[2])
        }
        gradCheck([x], "layerNorm over 2 axes") { Tensor.layerNorm($0[0], normalizedAxes: 2) }
        gradCheck([x, randomTensor([4, 5], seed: 98), randomTensor([4, 5], seed: 99)], "layerNorm over 2 axes, affine") {
            Tensor.layerNorm($0[0], normalizedAxes: 2, weight: $0[1], bias: $0[2])
        }
        gradCheck([x, randomTensor([2], seed: 94), randomTensor([2], seed: 95)], "batchNorm train") {
            var rm: Tensor? = nil, rv: Tensor? = nil
            return Tensor.batchNorm($0[0], runningMean: &rm, runningVar: &rv, weight: $0[1], bias: $0[2], training: true)
        }
        gradCheck([randomTensor([6, 3], seed: 96)], "batchNorm1d train") {
            var rm: Tensor? = nil, rv: Tensor? = nil
            return Tensor.batchNorm($0[0], runningMean: &rm, runningVar: &rv, training: true)
        }
        gradCheck([x, randomTensor([2], seed: 97)], "batchNorm eval") {
            var rm: Tensor? = Tensor([0.1, -0.2]), rv: Tensor? = Tensor([0.5, 2])
            return Tensor.batchNorm($0[0], runningMean: &rm, runningVar: &rv, weight: $0[1], training: false)
        }
    }

    @Test func losses() {
        let logits = randomTensor([4, 5], seed: 101) * 2
        gradCheck([logits], "crossEntropy") { Tensor.crossEntropy($0[0], targets: [0, 4, 2, 2]) }
        gradCheck([logits], "crossEntropy smoothing") { Tensor.crossEntropy($0[0], targets: [1, 3, 0, 4], labelSmoothing: 0.1) }
        gradCheck([randomTensor([3, 4], seed: 102), randomTensor([3, 4], seed: 103)], "mse") { Tensor.mse($0[0], $0[1]) }
        let targets = randomTensor([3, 4], seed: 104, low: 0, high: 1)
        gradCheck([randomTensor([3, 4], seed: 105) * 3, targets], "bceWithLogits") {
            Tensor.binaryCrossEntropyWithLogits($0[0], $0[1])
        }
    }
}
