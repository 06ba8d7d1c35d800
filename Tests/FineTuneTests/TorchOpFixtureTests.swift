import Foundation
import Testing
@testable import FineTune

// The op set against PyTorch: Fixtures/torch-ops/ops.safetensors holds inputs, outputs and
// gradients computed by PyTorch 2.15 (scripts/generate-op-fixtures.py). Gradient checks cannot
// show conventions; these can: var's correction, reflect/replicate/circular padding, ceil-mode
// pooling sizes and divisors, the grouped-query head mapping, ignore_index averaging with class
// weights and smoothing, kl_div's reductions, and the rest of the set.

private let fixture = Result { try SafeTensors(contentsOf: fixtureURL("torch-ops/ops.safetensors")) }

private func load(_ key: String) throws -> Tensor { try fixture.get().tensor(key) }

private func ints(_ key: String) throws -> [Int] { try load(key).scalars.map { Int($0) } }

/// Runs each output of `case` on the fixture's inputs and compares it with PyTorch's; then
/// compares the gradients of `sum(output * seed)` over the outputs in `gradients` (all by
/// default) for every input.
private func expectMatchesTorch(_ name: String, inputs: [String], atol: Float = 1e-5, rtol: Float = 1e-4,
                                gradients: [String]? = nil, sourceLocation: SourceLocation = #_sourceLocation,
                                _ outputs: [(String, ([Tensor]) -> Tensor)]) throws {
    let leaves = try inputs.map { key -> Tensor in var t = try load("\(name).\(key)"); t.requiresGrad = true; return t }
    var total: Tensor?
    for (output, f) in outputs {
        let y = f(leaves), expected = try load("\(name).\(output)")
        #expect(y.shape == expected.shape, "\(name).\(output): shape \(y.shape) vs PyTorch \(expected.shape)",
                sourceLocation: sourceLocation)
        expectClose(y.scalars, expected.scalars, atol: atol, rtol: rtol, "\(name).\(output)", sourceLocation: sourceLocation)
        if gradients?.contains(output) ?? true {
            let term = (y * (try load("\(name).\(output)_seed"))).sum()
            total = total.map { $0 + term } ?? term
        }
    }
    guard let total, total.requiresGrad else { return }
    total.backward()
    for (key, leaf) in zip(inputs, leaves) {
        let expected = try load("\(name).d_\(key)")
        expectClose(leaf.grad?.scalars ?? [Float](repeating: 0, count: leaf.count), expected.scalars, atol: atol, rtol: rtol,
                    "\(name).d_\(key)", sourceLocation: sourceLocation)
    }
}

@Suite("PyTorch parity of the op set")
struct TorchOpFixtureTests {
    @Test func varianceCorrection() throws {
        try expectMatchesTorch("variance", inputs: ["x"], gradients: ["var1", "std0_dim0"], [
            ("var1", { $0[0].variance(axis: 1) }),
            ("var0", { $0[0].variance(axis: 1, correction: 0) }),
            ("var2", { $0[0].variance(axis: 1, correction: 2) }),
            ("std1", { $0[0].standardDeviation(axis: 1) }),
            ("var_all", { $0[0].variance() }),
            ("std0_dim0", { $0[0].standardDeviation(axis: 0, correction: 0) }),
        ])
    }

    @Test func reductionsAndTopk() throws {
        try expectMatchesTorch("reductions", inputs: ["x"], [
            ("logsumexp", { $0[0].logsumexp(axes: [0, 2]) }),
            ("cumsum", { $0[0].cumsum(axis: 1) }),
        ])
        try expectMatchesTorch("topk", inputs: ["x"], gradients: ["values"], [
            ("values", { $0[0].topk(3, axis: 0).values }),
            ("low_values", { $0[0].topk(2, axis: 1, largest: false).values }),
        ])
        let x = try load("topk.x")
        let (indices, lowIndices) = (try ints("topk.indices"), try ints("topk.low_indices"))
        let (argmax, argmin) = (try ints("topk.argmax"), try ints("topk.argmin"))
        #expect(x.topk(3, axis: 0).indices.values == indices)
        #expect(x.topk(2, axis: 1, largest: false).indices.values == lowIndices)
        #expect(x.argmax(axis: 1).values == argmax && x.argmin(axis: 0).values == argmin)
    }

    @Test func elementwise() throws {
        try expectMatchesTorch("elementwise", inputs: ["x"], atol: 2e-6, [
            ("silu", { $0[0].silu() }),
            ("softplus", { $0[0].softplus() }),
            ("softplus_b2_t3", { $0[0].softplus(beta: 2, threshold: 3) }),
            ("erf", { $0[0].erf() }),
            ("sin", { $0[0].sin() }),
            ("cos", { $0[0].cos() }),
            ("rsqrt", { ($0[0].abs() + 0.5).rsqrt() }),
        ])
        try expectMatchesTorch("extrema", inputs: ["a", "b"], [
            ("maximum", { $0[0].maximum($0[1]) }),
            ("minimum", { $0[0].minimum($0[1]) }),
        ])
    }

    @Test func paddingModes() throws {
        try expectMatchesTorch("pad", inputs: ["x"], [
            ("reflect", { $0[0].padded([2, 1, 3, 1], mode: .reflect) }),
            ("replicate", { $0[0].padded([1, 2, 0, 3], mode: .replicate) }),
            ("circular", { $0[0].padded([3, 1, 2, 4], mode: .circular) }),
            ("constant", { $0[0].padded([1, -1, 2, 0], mode: .constant(0.5)) }),
        ])
    }

    @Test func indexingOps() throws {
        let index = IndexTensor(try load("indexing.index"))
        try expectMatchesTorch("indexing", inputs: ["x", "source"], [
            ("gather", { $0[0].gather(axis: 1, indices: index) }),
            ("scatter_add", { $0[0].scatterAdd(axis: 1, indices: index, source: $0[1]) }),
            ("index_select", { $0[0].indexSelect(axis: 2, [4, 0, 4]) }),
            ("repeat", { $0[0].slice(axis: 1, 0..<2).slice(axis: 2, 0..<3).repeated([2, 1, 3]) }),
            ("flip", { $0[0].flipped(axes: [0, 2]) }),
            ("tril", { $0[0].tril(diagonal: 1) }),
            ("triu", { $0[0].triu(diagonal: -1) }),
        ])
    }

    @Test func crossEntropyWeightsIgnoreIndexAndSmoothing() throws {
        let target = try ints("cross_entropy.target"), weight = try load("cross_entropy.weight")
        try expectMatchesTorch("cross_entropy", inputs: ["logits"], gradients: ["mean", "none", "smooth", "ignore2", "nll"], [
            ("mean", { Tensor.crossEntropy($0[0], targets: target, weight: weight) }),
            ("sum", { Tensor.crossEntropy($0[0], targets: target, weight: weight, reduction: .sum) }),
            ("none", { Tensor.crossEntropy($0[0], targets: target, weight: weight, reduction: .none) }),
            ("smooth", { Tensor.crossEntropy($0[0], targets: target, weight: weight, labelSmoothing: 0.2) }),
            ("smooth_unweighted", { Tensor.crossEntropy($0[0], targets: target, labelSmoothing: 0.3) }),
            ("ignore2", { Tensor.crossEntropy($0[0], targets: [0, 4, 1, 2, 2, 1], ignoreIndex: 2) }),
            ("nll", { Tensor.nllLoss($0[0].logSoftmax(axis: 1), targets: target, weight: weight) }),
        ])
        // [B, T, V] here, [B, V, T] in PyTorch: the same numbers.
        let sequenceTarget = try ints("sequence_cross_entropy.target")
        try expectMatchesTorch("sequence_cross_entropy", inputs: ["logits"], [
            ("mean", { Tensor.crossEntropy($0[0], targets: sequenceTarget) }),
            ("none", { Tensor.crossEntropy($0[0], targets: sequenceTarget, reduction: .none) }),
        ])
    }

    @Test func klDivReductions() throws {
        try expectMatchesTorch("kl_div", inputs: ["input", "target", "log_target_input"], [
            ("mean", { Tensor.klDiv($0[0], $0[1]) }),
            ("batchmean", { Tensor.klDiv($0[0], $0[1], reduction: .batchMean) }),
            ("sum", { Tensor.klDiv($0[0], $0[1], reduction: .sum) }),
            ("none", { Tensor.klDiv($0[0], $0[1], reduction: .none) }),
            ("log_target", { Tensor.klDiv($0[0], $0[2], reduction: .batchMean, logTarget: true) }),
        ])
    }

    @Test func huberAndSmoothL1() throws {
        try expectMatchesTorch("robust", inputs: ["prediction", "target"], [
            ("huber", { Tensor.huber($0[0], $0[1], delta: 0.7) }),
            ("smooth_l1", { Tensor.smoothL1($0[0], $0[1], beta: 1.5, reduction: .sum) }),
            ("huber_none", { Tensor.huber($0[0], $0[1], reduction: .none) }),
        ])
    }

    @Test func attentionHeadMappingAndMasks() throws {
        let allowed = try load("attention.allowed")
        try expectMatchesTorch("attention", inputs: ["q", "k", "v", "bias"], [
            ("gqa", { Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2]) }),
            ("gqa_bias", { Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: .additive($0[3])) }),
            ("gqa_causal", { Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], isCausal: true, scale: 0.4) }),
            ("gqa_bool", { Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: .allowed(allowed)) }),
        ])
    }

    @Test func normalization() throws {
        try expectMatchesTorch("rms_norm", inputs: ["x", "weight"], [
            ("rms", { Tensor.rmsNorm($0[0], weight: $0[1], eps: 1e-6) }),
            ("rms_default_eps", { Tensor.rmsNorm($0[0] * 1e-3, normalizedAxes: 2) }),
        ])
        try expectMatchesTorch("group_norm", inputs: ["x", "weight", "bias"], [
            ("group", { Tensor.groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2]) }),
        ])
    }

    @Test(arguments: ["batch_norm", "batch_norm_1d"])
    func batchNorm(_ name: String) throws {
        let runningMean = try load("\(name).running_mean"), runningVar = try load("\(name).running_var")
        var movedMean: Tensor?, movedVar: Tensor?
        try expectMatchesTorch(name, inputs: ["x", "weight", "bias"], [
            ("train", {
                var rm: Tensor? = runningMean, rv: Tensor? = runningVar
                defer { (movedMean, movedVar) = (rm, rv) }
                return Tensor.batchNorm($0[0], runningMean: &rm, runningVar: &rv, weight: $0[1], bias: $0[2], training: true,
                                        momentum: 0.2)
            }),
            ("eval", {
                var rm: Tensor? = runningMean, rv: Tensor? = runningVar
                return Tensor.batchNorm($0[0], runningMean: &rm, runningVar: &rv, weight: $0[1], bias: $0[2], training: false, eps: 1e-3)
            }),
            ("train_plain", {
                var rm: Tensor? = nil, rv: Tensor? = nil
                return Tensor.batchNorm($0[0], runningMean: &rm, runningVar: &rv, training: true)
            }),
        ])
        expectClose(movedMean?.scalars ?? [], try load("\(name).moved_mean").scalars, "\(name) running mean")
        expectClose(movedVar?.scalars ?? [], try load("\(name).moved_var").scalars, "\(name) running variance")
    }

    @Test func convolutions() throws {
        try expectMatchesTorch("conv1d", inputs: ["x", "weight", "bias"], [
            ("y", { Tensor.conv1d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1, dilation: 2, groups: 2) }),
        ])
        try expectMatchesTorch("conv_transpose2d", inputs: ["x", "weight", "bias"], [
            ("y", { Tensor.convTranspose2d($0[0], weight: $0[1], bias: $0[2], stride: (2, 3), padding: (1, 0),
                                           outputPadding: (1, 2), dilation: (1, 2), groups: 2) }),
        ])
    }

    @Test func poolingCeilModeAndDilation() throws {
        try expectMatchesTorch("pool", inputs: ["x"], [
            ("max_ceil", { $0[0].maxPool2d(kernelSize: (3, 3), stride: (2, 2), ceilMode: true) }),
            ("max_ceil_pad", { $0[0].maxPool2d(kernelSize: (3, 3), stride: (2, 2), padding: (1, 1), ceilMode: true) }),
            ("max_dilated", { $0[0].maxPool2d(kernelSize: (2, 2), stride: (1, 2), padding: (1, 1), dilation: (2, 3)) }),
            ("avg_ceil", { $0[0].avgPool2d(kernelSize: (2, 2), ceilMode: true, countIncludePad: false) }),
            ("avg_ceil_pad", { $0[0].avgPool2d(kernelSize: (3, 3), stride: (2, 2), padding: (1, 1), ceilMode: true) }),
            ("avg_ceil_pad_exclude", { $0[0].avgPool2d(kernelSize: (3, 3), stride: (2, 2), padding: (1, 1), ceilMode: true,
                                                       countIncludePad: false) }),
        ])
    }

    @Test func embeddingPaddingIndex() throws {
        let ids = try ints("embedding.ids")
        try expectMatchesTorch("embedding", inputs: ["weight"], [
            ("y", { Tensor.embedding(ids, shape: [2, 3], weight: $0[0], paddingIndex: 1) }),
        ])
    }
}
