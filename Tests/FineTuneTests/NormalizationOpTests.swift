import Foundation
import Testing
@testable import FineTune

// RMSNorm and GroupNorm: the fused kernels against the same math written with primitive ops
// (values and the gradients of input, weight and bias), on shapes that take the threaded row
// split and several weight-gradient tiles; gradient checks; the layers.

@Suite("RMSNorm and GroupNorm")
struct NormalizationOpTests {
    func referenceRMSNorm(_ x: Tensor, axes: Int, weight: Tensor?, eps: Float) -> Tensor {
        let reduced = Array((x.rank - axes)..<x.rank)
        let y = x * ((x * x).mean(axes: reduced, keepDims: true) + eps).rsqrt()
        return weight.map { y * $0 } ?? y
    }

    @Test(arguments: [([4, 7], 1), ([2, 3, 33], 1), ([3, 4, 5], 2), ([300, 301], 1)])
    func rmsNormMatchesPrimitiveOps(_ shape: [Int], _ axes: Int) {
        let x = randomTensor(shape, seed: 1) * 2, w = randomTensor(Array(shape.suffix(axes)), seed: 2)
        expectSameValuesAndGradients([x, w], "rmsNorm \(shape)") {
            Tensor.rmsNorm($0[0], normalizedAxes: axes, weight: $0[1], eps: 1e-6)
        } _: { referenceRMSNorm($0[0], axes: axes, weight: $0[1], eps: 1e-6) }
        expectSameValuesAndGradients([x], "rmsNorm without weight, default eps") {
            Tensor.rmsNorm($0[0], normalizedAxes: axes)
        } _: { referenceRMSNorm($0[0], axes: axes, weight: nil, eps: Float.ulpOfOne) }
    }

    @Test func rmsNormGradientCheckAndLayer() {
        gradCheck([randomTensor([3, 5], seed: 3), randomTensor([5], seed: 4)], "rmsNorm") {
            Tensor.rmsNorm($0[0], weight: $0[1], eps: 1e-5)
        }
        let norm = RMSNorm(6, eps: 1e-5)
        #expect(norm.namedParameters().map(\.name) == ["weight"] && norm.weight!.value.scalars == Array(repeating: 1, count: 6))
        let x = randomTensor([2, 3, 6], seed: 5)
        expectClose(norm(x).scalars, referenceRMSNorm(x, axes: 1, weight: nil, eps: 1e-5).scalars)
        #expect(RMSNorm([3, 6], elementwiseAffine: false).namedParameters().isEmpty)
        #expect(RMSNorm([3, 6])(x).shape == [2, 3, 6])
    }

    func referenceGroupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        let n = x.shape[0], c = x.shape[1]
        let grouped = x.reshaped([n, groups, -1])
        let y = ((grouped - grouped.mean(axis: 2, keepDims: true))
            * (grouped.variance(axis: 2, correction: 0, keepDims: true) + eps).rsqrt()).reshaped(x.shape)
        let affine = [c] + Array(repeating: 1, count: x.rank - 2)
        var out = y
        if let weight { out = out * weight.reshaped(affine) }
        if let bias { out = out + bias.reshaped(affine) }
        return out
    }

    @Test(arguments: [([2, 6, 3, 4], 3), ([3, 4, 5], 1), ([2, 4, 5], 4), ([5, 6], 2), ([4, 32, 24, 24], 8)])
    func groupNormMatchesPrimitiveOps(_ shape: [Int], _ groups: Int) {
        let x = randomTensor(shape, seed: 6) * 3 + 1, c = shape[1]
        let w = randomTensor([c], seed: 7), b = randomTensor([c], seed: 8)
        expectSameValuesAndGradients([x, w, b], "groupNorm \(shape) groups \(groups)") {
            Tensor.groupNorm($0[0], groups: groups, weight: $0[1], bias: $0[2])
        } _: { referenceGroupNorm($0[0], groups: groups, weight: $0[1], bias: $0[2], eps: 1e-5) }
        expectSameValuesAndGradients([x, b], "groupNorm bias only") {
            Tensor.groupNorm($0[0], groups: groups, bias: $0[1], eps: 1e-3)
        } _: { referenceGroupNorm($0[0], groups: groups, weight: nil, bias: $0[1], eps: 1e-3) }
    }

    @Test func groupNormGradientCheckAndLayer() {
        gradCheck([randomTensor([2, 4, 3], seed: 9), randomTensor([4], seed: 10), randomTensor([4], seed: 11)], "groupNorm") {
            Tensor.groupNorm($0[0], groups: 2, weight: $0[1], bias: $0[2])
        }
        let norm = GroupNorm(2, 4)
        #expect(norm.namedParameters().map(\.name) == ["weight", "bias"])
        let x = randomTensor([3, 4, 2, 2], seed: 12)
        expectClose(norm(x).scalars, referenceGroupNorm(x, groups: 2, weight: nil, bias: nil, eps: 1e-5).scalars)
        #expect(GroupNorm(1, 4, affine: false).namedParameters().isEmpty)
        // One sample normalises on its own: no dependence on the batch.
        expectClose(norm(x.slice(axis: 0, 1..<2)).scalars, norm(x).slice(axis: 0, 1..<2).scalars)
    }
}
