import Foundation
import Testing
@testable import FineTune

// Tensor.batchNorm's fused kernels: gradient checks for every combination of weight and bias
// (absent, frozen, trainable), a trainable or frozen input, batch and running statistics, and
// ranks 2, 3 and 4; values and gradients against the same math in primitive ops on shapes that
// take each kernel path (planes and columns, vector tails, several reduction blocks, threads);
// the same bits with 1 and 2 threads; statistics that stay accurate far from zero. PyTorch
// parity is in TorchOpFixtureTests.

@Suite("BatchNorm op")
struct BatchNormOpTests {
    /// How an affine parameter takes part in a check.
    enum Role: CaseIterable, CustomStringConvertible {
        case absent, frozen, trainable
        var description: String {
            switch self {
            case .absent: "absent"
            case .frozen: "frozen"
            case .trainable: "trainable"
            }
        }
    }

    static let gradientShapes: [[Int]] = [[5, 3], [3, 3, 4], [2, 3, 2, 3]]

    @Test(arguments: gradientShapes, [true, false])
    func gradientChecks(_ shape: [Int], batchStatistics: Bool) {
        let x = randomTensor(shape, seed: 1) * 2 + 0.5
        let weight = Tensor([0.7, -1.3, 1.1]), bias = Tensor([0.3, -0.5, 0.8])
        let runningMean = Tensor([0.2, -0.1, 0.4]), runningVar = Tensor([0.6, 1.5, 0.9])
        for weightRole in Role.allCases {
            for biasRole in Role.allCases {
                for xTrainable in [true, false] where xTrainable || weightRole == .trainable || biasRole == .trainable {
                    // The checked inputs in order: x, weight, bias (those that are trainable).
                    var inputs: [Tensor] = []
                    if xTrainable { inputs.append(x) }
                    if weightRole == .trainable { inputs.append(weight) }
                    if biasRole == .trainable { inputs.append(bias) }
                    let context = "batchNorm \(shape) \(batchStatistics ? "batch" : "running") statistics, x " +
                        "\(xTrainable ? "trainable" : "frozen"), weight \(weightRole), bias \(biasRole)"
                    gradCheck(inputs, context) { t in
                        var next = 0
                        func operand(_ role: Role, _ constant: Tensor) -> Tensor? {
                            switch role {
                            case .absent: return nil
                            case .frozen: return constant
                            case .trainable: next += 1; return t[next - 1]
                            }
                        }
                        let xv = operand(xTrainable ? .trainable : .frozen, x)!
                        let w = operand(weightRole, weight), b = operand(biasRole, bias)
                        var rm: Tensor? = batchStatistics ? nil : runningMean
                        var rv: Tensor? = batchStatistics ? nil : runningVar
                        return Tensor.batchNorm(xv, runningMean: &rm, runningVar: &rv, weight: w, bias: b, training: batchStatistics)
                    }
                }
            }
        }
    }

    /// `(x - mean) / sqrt(variance + eps) * weight + bias` in primitive ops, with the batch's
    /// statistics where `mean` and `variance` are nil.
    func referenceBatchNorm(_ x: Tensor, mean: Tensor?, variance: Tensor?, weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        let axes = [0] + Array(2..<x.rank), affine = [1, x.shape[1]] + Array(repeating: 1, count: x.rank - 2)
        let mu = mean?.reshaped(affine) ?? x.mean(axes: axes, keepDims: true)
        let v = variance?.reshaped(affine) ?? x.variance(axes: axes, correction: 0, keepDims: true)
        var y = (x - mu) * (v + eps).rsqrt()
        if let weight { y = y * weight.reshaped(affine) }
        if let bias { y = y + bias.reshaped(affine) }
        return y
    }

    /// Columns in two blocks with a vector tail; planes over several reduction blocks with a tail;
    /// planes shorter than a vector; columns and planes large enough for threads.
    static let pathShapes: [[Int]] = [[6, 300], [2, 3, 47, 50], [3, 5, 7], [130, 520], [4, 40, 20, 21]]

    @Test(arguments: pathShapes)
    func matchesPrimitiveOps(_ shape: [Int]) {
        let c = shape[1]
        let x = randomTensor(shape, seed: 11) * 3 + 1, w = randomTensor([c], seed: 12), b = randomTensor([c], seed: 13)
        let mean = randomTensor([c], seed: 14), variance = randomTensor([c], seed: 15, low: 0.5, high: 2)
        expectSameValuesAndGradients([x, w, b], atol: 1e-4, "batchNorm \(shape) batch statistics") {
            var rm: Tensor? = nil, rv: Tensor? = nil
            return Tensor.batchNorm($0[0], runningMean: &rm, runningVar: &rv, weight: $0[1], bias: $0[2], training: true)
        } _: { referenceBatchNorm($0[0], mean: nil, variance: nil, weight: $0[1], bias: $0[2], eps: 1e-5) }
        expectSameValuesAndGradients([x, w, b], atol: 1e-4, "batchNorm \(shape) running statistics") {
            var rm: Tensor? = mean, rv: Tensor? = variance
            return Tensor.batchNorm($0[0], runningMean: &rm, runningVar: &rv, weight: $0[1], bias: $0[2], training: false, eps: 1e-3)
        } _: { referenceBatchNorm($0[0], mean: mean, variance: variance, weight: $0[1], bias: $0[2], eps: 1e-3) }
        expectSameValuesAndGradients([x], atol: 1e-4, "batchNorm \(shape) without affine") {
            var rm: Tensor? = nil, rv: Tensor? = nil
            return Tensor.batchNorm($0[0], runningMean: &rm, runningVar: &rv, training: true)
        } _: { referenceBatchNorm($0[0], mean: nil, variance: nil, weight: nil, bias: nil, eps: 1e-5) }
    }

    @Test("the kernels give the same bits with 1 and 2 threads", arguments: [[4, 40, 420], [140, 500]])
    func threadCountDoesNotChangeBits(_ shape: [Int]) {
        let batch = shape[0], channels = shape[1], spatial = shape.count > 2 ? shape[2] : 1
        #expect(batch * channels * spatial >= VectorMath.rowParallelThreshold, "\(shape) is too small to be split")
        let x = randomTensor(shape, seed: 21) * 3 + 1, g = randomTensor(shape, seed: 22)
        let weight = randomTensor([channels], seed: 23), bias = randomTensor([channels], seed: 24)
        let runningMean = randomTensor([channels], seed: 25), runningVar = randomTensor([channels], seed: 26, low: 0.5, high: 2)
        /// The outputs of forward and backward with both kinds of statistics; unwritten outputs stay NaN.
        func outputs(threads: Int) -> [[Float]] {
            var all: [[Float]] = []
            for batchStatistics in [true, false] {
                let y = Tensor.full(shape, .nan), dx = Tensor.full(shape, .nan)
                let mean = batchStatistics ? Tensor.full([channels], .nan) : runningMean.contiguousCopy()
                let variance = batchStatistics ? Tensor.full([channels], .nan) : runningVar.contiguousCopy()
                let rstd = Tensor.full([channels], .nan), dw = Tensor.full([channels], .nan), db = Tensor.full([channels], .nan)
                x.withDataPointer { px in g.withDataPointer { pg in weight.withDataPointer { pw in bias.withDataPointer { pb in
                y.withDataPointer { py in dx.withDataPointer { pdx in mean.withDataPointer { pm in variance.withDataPointer { pv in
                rstd.withDataPointer { pr in dw.withDataPointer { pdw in db.withDataPointer { pdb in
                    Kernels.batchNormForward(x: px, weight: pw, bias: pb, y: py, mean: pm, variance: pv, rstd: pr, batch: batch,
                                             channels: channels, spatial: spatial, eps: 1e-5, batchStatistics: batchStatistics,
                                             threads: threads)
                    Kernels.batchNormBackward(x: px, weight: pw, mean: pm, rstd: pr, gradOutput: pg, gradInput: pdx, gradWeight: pdw,
                                              gradBias: pdb, batch: batch, channels: channels, spatial: spatial,
                                              batchStatistics: batchStatistics, threads: threads)
                }}}}}}}}}}}
                all += [y, dx, mean, variance, rstd, dw, db].map(\.scalars)
            }
            return all
        }
        let one = outputs(threads: 1), two = outputs(threads: 2)
        for (i, (a, b)) in zip(one, two).enumerated() {
            #expect(!a.contains { $0.isNaN }, "\(shape) output \(i) not written with 1 thread")
            #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "\(shape) output \(i) differs between 1 and 2 threads")
        }
    }

    @Test("two-pass statistics stay accurate far from zero (where E[x²] - E[x]² loses every digit)", arguments: [[8, 2, 64, 64], [8192, 4]])
    func statisticsAccuracy(_ shape: [Int]) {
        let x = randomTensor(shape, seed: 31) + 1000, c = shape[1], spatial = x.count / (shape[0] * c)
        var rm: Tensor? = Tensor.zeros([c]), rv: Tensor? = Tensor.zeros([c])
        let y = Tensor.batchNorm(x, runningMean: &rm, runningVar: &rv, training: true, momentum: 1)
        let v = x.scalars.map(Double.init), m = Double(shape[0] * spatial)
        let channel = { (i: Int) in i / spatial % c }
        var sums = [Double](repeating: 0, count: c), squares = [Double](repeating: 0, count: c)
        for (i, value) in v.enumerated() { sums[channel(i)] += value }
        let mean = sums.map { $0 / m }
        for (i, value) in v.enumerated() { squares[channel(i)] += (value - mean[channel(i)]) * (value - mean[channel(i)]) }
        expectClose(rm!.scalars, mean.map(Float.init), atol: 0, rtol: 1e-7, "\(shape) mean")
        expectClose(rv!.scalars, squares.map { Float($0 / (m - 1)) }, atol: 0, rtol: 2e-6, "\(shape) unbiased variance")
        let expected = v.enumerated().map { i, value in Float((value - mean[channel(i)]) / (squares[channel(i)] / m + 1e-5).squareRoot()) }
        expectClose(y.scalars, expected, atol: 2e-4, rtol: 0, "\(shape) output")
    }
}

// `Tensor.batchNorm(..., adding:relu:)`: a ResNet block's last batch norm, residual add and ReLU
// in one op each way; it must give the separate ops' values and gradients bit for bit.
@Suite("BatchNorm op with a residual and ReLU")
struct BatchNormResidualReLUTests {
    private static func identical(_ a: Tensor?, _ b: Tensor?) -> Bool {
        guard let a, let b else { return a == nil && b == nil }
        return a.shape == b.shape && zip(a.scalars, b.scalars).allSatisfy { $0.bitPattern == $1.bitPattern }
    }

    /// (shape, residual wanted and trainable, relu, affine, batch statistics); [2, 3, 40, 40] has
    /// planes longer than one reduction block, [3, 4, 17] vector tails.
    static let cases: [([Int], Bool, Bool, Bool, Bool)] = [
        ([2, 3, 5, 5], true, true, true, true), ([2, 3, 5, 5], false, true, true, true),
        ([2, 3, 5, 5], true, false, false, true), ([3, 4, 17], true, true, false, true),
        ([2, 3, 40, 40], true, true, true, true), ([2, 3, 40, 40], false, true, false, false),
        ([2, 3, 5, 5], true, true, true, false), ([2, 3, 6, 7], false, false, true, true),
    ]

    @Test("the separate ops' values and gradients bit for bit, on 1 and 2 threads", arguments: cases)
    func matchesSeparateOps(_ c: ([Int], Bool, Bool, Bool, Bool)) {
        let (shape, withResidual, relu, affine, batchStatistics) = c
        let channels = shape[1]
        var x = randomTensor(shape, seed: 61) * 2 + 0.3
        x.requiresGrad = true
        var weight = randomTensor([channels], seed: 62), bias = randomTensor([channels], seed: 63)
        weight.requiresGrad = true; bias.requiresGrad = true
        var residual = randomTensor(shape, seed: 64)
        residual.requiresGrad = true
        let upstream = randomTensor(shape, seed: 65)
        for threads in [1, 2] {
            func run(fused: Bool) -> [Tensor?] {
                x.grad = nil; weight.grad = nil; bias.grad = nil; residual.grad = nil
                var mean: Tensor? = Tensor.zeros([channels]) + 0.1, variance: Tensor? = Tensor.ones([channels]) * 1.5
                let y = Kernels.withMaxThreads(threads, parallelThresholdsDividedBy: 1 << 20) { () -> Tensor in
                    if fused {
                        return Tensor.batchNorm(x, runningMean: &mean, runningVar: &variance, weight: affine ? weight : nil,
                                                bias: affine ? bias : nil, training: batchStatistics,
                                                adding: withResidual ? residual : nil, relu: relu)
                    }
                    var z = Tensor.batchNorm(x, runningMean: &mean, runningVar: &variance, weight: affine ? weight : nil,
                                             bias: affine ? bias : nil, training: batchStatistics)
                    if withResidual { z = z + residual }
                    return relu ? z.relu() : z
                }
                Kernels.withMaxThreads(threads, parallelThresholdsDividedBy: 1 << 20) { (y * upstream).sum().backward() }
                return [y.detached(), x.grad, affine ? weight.grad : nil, affine ? bias.grad : nil,
                        withResidual ? residual.grad : nil, mean, variance]
            }
            let fused = run(fused: true), separate = run(fused: false)
            let names = ["output", "input gradient", "weight gradient", "bias gradient", "residual gradient", "running mean",
                         "running variance"]
            for (name, (a, b)) in zip(names, zip(fused, separate)) {
                #expect(Self.identical(a, b), "\(c) threads \(threads): \(name) differs")
            }
            #expect(separate[1] != nil)
        }
    }

    @Test("only the residual or only the statistics' constants need a gradient")
    func partialGradients() {
        let x = randomTensor([2, 3, 4, 4], seed: 71)
        var residual = randomTensor([2, 3, 4, 4], seed: 72)
        residual.requiresGrad = true
        let upstream = randomTensor([2, 3, 4, 4], seed: 73)
        var mean: Tensor? = nil, variance: Tensor? = nil
        let y = Tensor.batchNorm(x, runningMean: &mean, runningVar: &variance, training: true, adding: residual, relu: true)
        (y * upstream).sum().backward()
        let expected = zip(y.scalars, upstream.scalars).map { $0 > 0 ? $1 : 0 }
        #expect(residual.grad!.scalars == expected)
    }

    @Test("gradient check: batch statistics, affine, residual and ReLU")
    func gradientCheck() {
        // A residual that keeps every pre-activation at least 0.2 from the ReLU kink.
        let x = randomTensor([2, 3, 3, 4], seed: 81) * 2, weight = randomTensor([3], seed: 82), bias = randomTensor([3], seed: 83)
        var none: Tensor? = nil, none2: Tensor? = nil
        let normalized = Tensor.batchNorm(x, runningMean: &none, runningVar: &none2, weight: weight, bias: bias, training: true)
        let residual = Tensor(shape: x.shape, scalars: normalized.scalars.map { $0 < 0 ? -0.3 : 0.3 })
            + randomTensor(x.shape, seed: 84) * 0.1
        gradCheck([x, weight, bias, residual], eps: 1e-3, atol: 2e-3, rtol: 2e-2, "batchNorm+relu") { t in
            var m: Tensor? = nil, v: Tensor? = nil
            return Tensor.batchNorm(t[0], runningMean: &m, runningVar: &v, weight: t[1], bias: t[2], training: true,
                                    adding: t[3], relu: true)
        }
    }
}
