import Foundation
import Testing
@testable import FineTune

/// A finite-difference check for every differentiable op, on several shapes (broadcasting, odd sizes).
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

    @Test(arguments: [[1], [7], [3, 5], [2, 3, 4]])
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
        gradCheck([randomTensor([2, 3], seed: 1, low: 0.5, high: 2), randomTensor([3], seed: 2)]) { $0[0].pow($0[1]) }
    }

    @Test(arguments: [([4], -1), ([3, 5], -1), ([3, 5], 0), ([2, 3, 7], 1), ([1, 33], -1)])
    func softmaxFamily(_ shape: [Int], _ axis: Int) {
        let x = randomTensor(shape, seed: 21) * 3
        gradCheck([x], "softmax \(shape) axis \(axis)") { $0[0].softmax(axis: axis) }
        gradCheck([x], "logSoftmax \(shape) axis \(axis)") { $0[0].logSoftmax(axis: axis) }
    }

    @Test(arguments: [([2, 3, 4], [0]), ([2, 3, 4], [1, 2]), ([2, 3, 4], [2]), ([5], [0]), ([3, 1, 7], [0, 2])])
    func reductions(_ shape: [Int], _ axes: [Int]) {
        let x = randomTensor(shape, seed: 31)
        gradCheck([x], "sum") { $0[0].sum(axes: axes) }
        gradCheck([x], "sum keepDims") { $0[0].sum(axes: axes, keepDims: true) }
        gradCheck([x], "mean") { $0[0].mean(axes: axes) }
        gradCheck([x], eps: 1e-3, "max") { $0[0].max(axes: axes, keepDims: true) }
        gradCheck([x], "sum all") { $0[0].sum() }
        gradCheck([x], "mean all") { $0[0].mean() }
    }

    @Test(arguments: [(1, 1, 1), (3, 5, 2), (7, 33, 5), (17, 3, 9)])
    func matmul2D(_ m: Int, _ k: Int, _ n: Int) {
        gradCheck([randomTensor([m, k], seed: 41), randomTensor([k, n], seed: 42)], "matmul") { $0[0].matmul($0[1]) }
        // Transposed views are read in place by the GEMM: check those paths too.
        gradCheck([randomTensor([k, m], seed: 43), randomTensor([n, k], seed: 44)], "matmul transposed") {
            $0[0].transposed().matmul($0[1].transposed())
        }
    }

    @Test func matmulBatched() {
        gradCheck([randomTensor([2, 3, 4], seed: 1), randomTensor([2, 4, 5], seed: 2)], "batched") { $0[0].matmul($0[1]) }
        gradCheck([randomTensor([2, 3, 4], seed: 3), randomTensor([4, 5], seed: 4)], "batched x 2-D") { $0[0].matmul($0[1]) }
        gradCheck([randomTensor([3, 4], seed: 5), randomTensor([2, 4, 5], seed: 6)], "2-D x batched") { $0[0].matmul($0[1]) }
        gradCheck([randomTensor([2, 1, 3, 4], seed: 7), randomTensor([3, 4, 2], seed: 8)], "broadcast batch") { $0[0].matmul($0[1]) }
        gradCheck([randomTensor([4], seed: 9), randomTensor([4, 3], seed: 10)], "vector x matrix") { $0[0].matmul($0[1]) }
    }

    @Test func linear() {
        gradCheck([randomTensor([5, 7], seed: 1), randomTensor([3, 7], seed: 2), randomTensor([3], seed: 3)], "linear") {
            Tensor.linear($0[0], weight: $0[1], bias: $0[2])
        }
        gradCheck([randomTensor([2, 3, 4], seed: 4), randomTensor([6, 4], seed: 5)], "linear 3-D, no bias") {
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
        gradCheck([randomTensor([3, 1], seed: 52)], "expand") { $0[0].expanded(to: [2, 3, 4]) }
        gradCheck([randomTensor([2, 3], seed: 53), randomTensor([2, 5], seed: 54)], "concat") { Tensor.concat($0, axis: 1) }
        gradCheck([randomTensor([2, 3], seed: 55), randomTensor([2, 3], seed: 56)], "stack") { Tensor.stack($0, axis: 1) }
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

    @Test(arguments: convCases)
    func conv2d(_ c: (x: [Int], w: [Int], stride: Int, pad: Int, dil: Int, groups: Int)) {
        gradCheck([randomTensor(c.x, seed: 81), randomTensor(c.w, seed: 82), randomTensor([c.w[0]], seed: 83)], "conv2d \(c)") {
            Tensor.conv2d($0[0], weight: $0[1], bias: $0[2], stride: (c.stride, c.stride), padding: (c.pad, c.pad),
                          dilation: (c.dil, c.dil), groups: c.groups)
        }
    }

    @Test func pooling() {
        // Distinct values so max pooling has no ties within a step.
        let x = Tensor(shape: [2, 2, 5, 6], scalars: (0..<120).map { Float(($0 * 37) % 120) / 10 })
        gradCheck([x], eps: 1e-3, "maxPool2d") { $0[0].maxPool2d(kernel: (2, 2)) }
        gradCheck([x], eps: 1e-3, "maxPool2d stride 1 pad 1") { $0[0].maxPool2d(kernel: (3, 3), stride: (1, 1), padding: (1, 1)) }
        gradCheck([x], "avgPool2d") { $0[0].avgPool2d(kernel: (2, 3), stride: (1, 2)) }
        gradCheck([x], "avgPool2d pad") { $0[0].avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1), countIncludePad: false) }
        gradCheck([x], "adaptiveAvgPool2d") { $0[0].adaptiveAvgPool2d((3, 4)) }
        gradCheck([x], "globalAvgPool2d") { $0[0].globalAvgPool2d() }
    }

    @Test func normalization() {
        let x = randomTensor([3, 2, 4, 5], seed: 91) * 2 + 0.5
        gradCheck([x, randomTensor([5], seed: 92), randomTensor([5], seed: 93)], "layerNorm") {
            Tensor.layerNorm($0[0], weight: $0[1], bias: $0[2])
        }
        gradCheck([x], "layerNorm over 2 axes") { Tensor.layerNorm($0[0], normalizedAxes: 2) }
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
