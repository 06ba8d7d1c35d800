import Foundation
import Testing
@testable import FineTune

// MARK: - Helpers

/// Keys in PyTorch's `state_dict()` order: module by module, parameters then buffers.

private func shapes(_ m: Module) -> [String: [Int]] {
    var result: [String: [Int]] = [:]
    for (name, p) in m.namedParameters() { result[name] = p.shape }
    for (name, b) in m.namedBuffers() { result[name] = b.value.shape }
    return result
}

/// Every parameter and buffer value, by name.
private func state(_ m: Module) -> [String: [Float]] {
    var result: [String: [Float]] = [:]
    for (name, p) in m.namedParameters() { result[name] = p.value.scalars }
    for (name, b) in m.namedBuffers() { result[name] = b.value.scalars }
    return result
}

/// Direct convolution by loops (cross-correlation, zero padding), as PyTorch defines it.
private func naiveConv2d(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: (Int, Int), padding: (Int, Int),
                         dilation: (Int, Int), groups: Int) -> (shape: [Int], values: [Float]) {
    let (n, h, wd) = (x.shape[0], x.shape[2], x.shape[3])
    let (o, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
    let oh = (h + 2 * padding.0 - dilation.0 * (kh - 1) - 1) / stride.0 + 1
    let ow = (wd + 2 * padding.1 - dilation.1 * (kw - 1) - 1) / stride.1 + 1
    let xs = x.scalars, ws = w.scalars, bs = b?.scalars
    var out: [Float] = []
    for ni in 0..<n { for oc in 0..<o {
        let g = oc / (o / groups)
        for oy in 0..<oh { for ox in 0..<ow {
            var s = Double(bs?[oc] ?? 0)
            for ci in 0..<cg { for ky in 0..<kh { for kx in 0..<kw {
                let iy = oy * stride.0 - padding.0 + ky * dilation.0, ix = ox * stride.1 - padding.1 + kx * dilation.1
                guard iy >= 0 && iy < h && ix >= 0 && ix < wd else { continue }
                let c = g * cg + ci
                s += Double(xs[((ni * x.shape[1] + c) * h + iy) * wd + ix]) * Double(ws[((oc * cg + ci) * kh + ky) * kw + kx])
            }}}
            out.append(Float(s))
        }}
    }}
    return ([n, o, oh, ow], out)
}

/// Multi-head attention by loops, in Double: per batch and head, softmax(q k / sqrt(d) + additive) v.
private func naiveAttention(query: Tensor, key: Tensor, value: Tensor, heads: Int, inWeight: Tensor, inBias: Tensor,
                            outWeight: Tensor, outBias: Tensor,
                            hidden: (_ b: Int, _ h: Int, _ t: Int, _ s: Int) -> Bool = { _, _, _, _ in false },
                            additive: (_ b: Int, _ h: Int, _ t: Int, _ s: Int) -> Double = { _, _, _, _ in 0 })
    -> (output: [Float], weights: [Float]) {
    let bsz = query.shape[0], tq = query.shape[1], e = query.shape[2], sk = key.shape[1], d = e / heads
    let w = inWeight.scalars.map(Double.init), bias = inBias.scalars.map(Double.init)
    func project(_ x: Tensor, _ part: Int) -> [[[Double]]] {
        let xs = x.scalars.map(Double.init), len = x.shape[1]
        return (0..<bsz).map { b in (0..<len).map { l in (0..<e).map { j in
            var s = bias[part * e + j]
            for i in 0..<e { s += xs[(b * len + l) * e + i] * w[(part * e + j) * e + i] }
            return s
        }}}
    }
    let q = project(query, 0), k = project(key, 1), v = project(value, 2)
    var context = [[[Double]]](repeating: [[Double]](repeating: [Double](repeating: 0, count: e), count: tq), count: bsz)
    var weights: [Float] = []
    for b in 0..<bsz { for h in 0..<heads { for t in 0..<tq {
        var scores = (0..<sk).map { s -> Double in
            var dot = 0.0
            for j in 0..<d { dot += q[b][t][h * d + j] * k[b][s][h * d + j] }
            return dot / Double(d).squareRoot() + additive(b, h, t, s)
        }
        for s in 0..<sk where hidden(b, h, t, s) { scores[s] = -.infinity }
        let m = scores.max()!
        let ex = scores.map { Foundation.exp($0 - m) }, total = ex.reduce(0, +)
        let p = ex.map { $0 / total }
        weights += p.map(Float.init)
        for j in 0..<d { context[b][t][h * d + j] = (0..<sk).reduce(0.0) { $0 + p[$1] * v[b][$1][h * d + j] } }
    }}}
    let ow = outWeight.scalars.map(Double.init), ob = outBias.scalars.map(Double.init)
    var out: [Float] = []
    for b in 0..<bsz { for t in 0..<tq { for o in 0..<e {
        var s = ob[o]
        for j in 0..<e { s += context[b][t][j] * ow[o * e + j] }
        out.append(Float(s))
    }}}
    return (out, weights)
}

@Suite("Layers")
struct LayerTests {
    // MARK: Names and shapes (PyTorch state_dict keys)

    @Test func sequentialNamesMatchPyTorch() {
        let model = Sequential(Conv2d(3, 8, kernelSize: 3), BatchNorm2d(8), ReLU(), Linear(8, 4))
        #expect(model.namedParameters().map(\.name) == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"])
        #expect(model.namedBuffers().map(\.name) == ["1.running_mean", "1.running_var", "1.num_batches_tracked"])
        #expect(model.stateDictKeys == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                         "1.num_batches_tracked", "3.weight", "3.bias"])
        let s = shapes(model)
        #expect(s["0.weight"] == [8, 3, 3, 3] && s["0.bias"] == [8])
        #expect(s["1.weight"] == [8] && s["1.running_var"] == [8] && s["1.num_batches_tracked"] == [])
        #expect(s["3.weight"] == [4, 8] && s["3.bias"] == [4])
        #expect(model.parameter(named: "1.weight")?.role == .normalization)
        #expect(model.parameter(named: "1.bias")?.role == .normalization)
        #expect(model.parameter(named: "3.bias")?.role == .bias)
        #expect(model.parameter(named: "0.weight")?.role == .weight)

        // The exported PyTorch model's keys (Tests/FineTuneTests/Fixtures/torch-digits-cnn/model.json).
        let cnn = digitsCNN()
        #expect(cnn.stateDictKeys == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                       "1.num_batches_tracked", "4.weight", "4.bias", "8.weight", "8.bias",
                                       "10.weight", "10.bias"])
        cnn.eval()
        #expect(cnn(randomTensor([2, 1, 8, 8])).shape == [2, 10])
    }

    @Test func optionalParametersAndBuffers() {
        #expect(Linear(3, 2, bias: false).namedParameters().map(\.name) == ["weight"])
        #expect(Conv2d(2, 4, kernelSize: 1, bias: false).namedParameters().map(\.name) == ["weight"])
        let bn = BatchNorm1d(4, affine: false, trackRunningStats: false)
        #expect(bn.namedParameters().isEmpty && bn.namedBuffers().isEmpty)
        #expect(LayerNorm(4, elementwiseAffine: false).namedParameters().isEmpty)
        #expect(LayerNorm(4, bias: false).namedParameters().map(\.name) == ["weight"])
        let embed = Embedding(10, 3)
        #expect(embed.namedParameters().map(\.name) == ["weight"] && embed.weight.role == .embedding)
    }

    @Test func attentionNamesMatchPyTorch() {
        let mha = MultiHeadAttention(embedDim: 8, numHeads: 2)
        #expect(mha.namedParameters().map(\.name) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"])
        let s = shapes(mha)
        #expect(s["in_proj_weight"] == [24, 8] && s["in_proj_bias"] == [24] && s["out_proj.weight"] == [8, 8] && s["out_proj.bias"] == [8])
        #expect(MultiHeadAttention(embedDim: 8, numHeads: 2, bias: false).namedParameters().map(\.name)
                == ["in_proj_weight", "out_proj.weight"])

        let block = TransformerEncoderBlock(dModel: 8, numHeads: 2, ffnDim: 16)
        #expect(block.namedParameters().map(\.name) == [
            "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
            "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
            "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
        ])
        let bs = shapes(block)
        #expect(bs["linear1.weight"] == [16, 8] && bs["linear2.weight"] == [8, 16] && bs["norm2.bias"] == [8])
    }

    @Test func residualBlockNamesMatchTorchvision() {
        let block = ResidualBlock(4, 8, stride: 2)
        #expect(block.stateDictKeys == [
            "conv1.weight",
            "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
            "conv2.weight",
            "bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var", "bn2.num_batches_tracked",
            "downsample.0.weight",
            "downsample.1.weight", "downsample.1.bias", "downsample.1.running_mean", "downsample.1.running_var",
            "downsample.1.num_batches_tracked",
        ])
        let s = shapes(block)
        #expect(s["conv1.weight"] == [8, 4, 3, 3] && s["conv2.weight"] == [8, 8, 3, 3] && s["downsample.0.weight"] == [8, 4, 1, 1])
        #expect(ResidualBlock(4, 4).downsample == nil)
        #expect(!ResidualBlock(4, 4).stateDictKeys.contains { $0.hasPrefix("downsample") })
        #expect(block(randomTensor([2, 4, 6, 6])).shape == [2, 8, 3, 3])
        #expect(ResidualBlock(4, 4)(randomTensor([1, 4, 5, 5])).shape == [1, 4, 5, 5])
    }

    // MARK: Forward values

    @Test func linearForward() {
        let fc = Linear(3, 2)
        fc.weight.value = Tensor(shape: [2, 3], scalars: [1, 2, 3, -1, 0, 0.5])
        fc.bias!.value = Tensor([0.5, -2])
        let x = Tensor(shape: [2, 3], scalars: [1, 0, -1, 2, 3, 4])
        expectClose(fc(x).scalars, [1 - 3 + 0.5, -1 - 0.5 - 2, 2 + 6 + 12 + 0.5, -2 + 2 - 2])
        // [B, T, in] input, no bias.
        let noBias = Linear(3, 2, bias: false)
        noBias.weight.value = fc.weight.value
        let y = noBias(Tensor(shape: [1, 2, 3], scalars: x.scalars))
        #expect(y.shape == [1, 2, 2])
        expectClose(y.scalars, [-2, -1.5, 20, 0])
    }

    @Test func conv2dMatchesNaiveLoops() {
        let configs: [(kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int), groups: Int, bias: Bool)] = [
            ((3, 3), (1, 1), (1, 1), (1, 1), 1, true),
            ((3, 2), (2, 1), (1, 2), (1, 2), 2, true),
            ((1, 1), (2, 2), (0, 0), (1, 1), 1, false),
        ]
        for (i, c) in configs.enumerated() {
            let conv = Conv2d(4, 6, kernelSize: c.kernel, stride: c.stride, padding: c.padding, dilation: c.dilation,
                              groups: c.groups, bias: c.bias)
            let x = randomTensor([2, 4, 5, 6], seed: UInt64(10 + i))
            let reference = naiveConv2d(x, conv.weight.value, conv.bias?.value, stride: c.stride, padding: c.padding,
                                        dilation: c.dilation, groups: c.groups)
            let y = conv(x)
            #expect(y.shape == reference.shape, "config \(i)")
            expectClose(y.scalars, reference.values, atol: 1e-5, "config \(i)")
        }
    }

    @Test func batchNormTrainEvalAndRunningStats() {
        let bn = BatchNorm1d(3, momentum: 0.1)
        bn.weight!.value = Tensor([1, 2, 0.5])
        bn.bias!.value = Tensor([0, -1, 3])
        let x1 = randomTensor([4, 3], seed: 21), x2 = randomTensor([4, 3], seed: 22, low: 0, high: 3)

        // Per-channel batch statistics in Double: mean, biased and unbiased variance.
        func stats(_ x: Tensor) -> (mean: [Double], biased: [Double], unbiased: [Double]) {
            let v = x.scalars.map(Double.init), n = x.shape[0], c = x.shape[1]
            let mean = (0..<c).map { ch in (0..<n).reduce(0.0) { $0 + v[$1 * c + ch] } / Double(n) }
            let ss = (0..<c).map { ch in (0..<n).reduce(0.0) { $0 + pow(v[$1 * c + ch] - mean[ch], 2) } }
            return (mean, ss.map { $0 / Double(n) }, ss.map { $0 / Double(n - 1) })
        }
        func normalized(_ x: Tensor, mean: [Double], variance: [Double]) -> [Float] {
            let w: [Double] = [1, 2, 0.5], b: [Double] = [0, -1, 3]
            return x.scalars.enumerated().map { i, v in
                let ch = i % 3
                return Float((Double(v) - mean[ch]) / (variance[ch] + 1e-5).squareRoot() * w[ch] + b[ch])
            }
        }
        let s1 = stats(x1), s2 = stats(x2)
        expectClose(bn(x1).scalars, normalized(x1, mean: s1.mean, variance: s1.biased), atol: 1e-4, "train step 1")
        expectClose(bn(x2).scalars, normalized(x2, mean: s2.mean, variance: s2.biased), atol: 1e-4, "train step 2")
        let runningMean = (0..<3).map { (c: Int) -> Double in 0.9 * (0.1 * s1.mean[c]) + 0.1 * s2.mean[c] }
        let runningVar = (0..<3).map { (c: Int) -> Double in 0.9 * (0.9 + 0.1 * s1.unbiased[c]) + 0.1 * s2.unbiased[c] }
        expectClose(bn.runningMean!.value.scalars, runningMean.map(Float.init), atol: 1e-5, "running mean")
        expectClose(bn.runningVar!.value.scalars, runningVar.map(Float.init), atol: 1e-5, "running var")
        #expect(bn.numBatchesTracked!.value.shape == [] && bn.numBatchesTracked!.value.item() == 2)

        // Evaluation uses (and does not change) the running statistics.
        bn.eval()
        let x3 = randomTensor([5, 3], seed: 23)
        expectClose(bn(x3).scalars, normalized(x3, mean: runningMean, variance: runningVar), atol: 1e-4, "eval")
        expectClose(bn.runningMean!.value.scalars, runningMean.map(Float.init), atol: 1e-5)
        #expect(bn.numBatchesTracked!.value.item() == 2)

        // momentum nil: cumulative average.
        let cumulative = BatchNorm1d(3, momentum: nil)
        _ = cumulative(x1); _ = cumulative(x2)
        expectClose(cumulative.runningMean!.value.scalars, (0..<3).map { Float((s1.mean[$0] + s2.mean[$0]) / 2) }, atol: 1e-5)

        // resetRunningStats.
        bn.resetRunningStats()
        #expect(bn.runningMean!.value.scalars == [0, 0, 0] && bn.runningVar!.value.scalars == [1, 1, 1])
        #expect(bn.numBatchesTracked!.value.item() == 0)
    }

    @Test func batchNormOverSpatialAxes() {
        // BatchNorm2d on [N, C, H, W] and BatchNorm1d on [N, C, L]: statistics per channel over N and space.
        let x = randomTensor([3, 2, 2, 3], seed: 31)
        let v = x.scalars.map(Double.init)
        var expected = [Float](repeating: 0, count: v.count)
        for ch in 0..<2 {
            let idx = (0..<3).flatMap { n in (0..<6).map { (n * 2 + ch) * 6 + $0 } }
            let mean = idx.reduce(0.0) { $0 + v[$1] } / Double(idx.count)
            let variance = idx.reduce(0.0) { $0 + pow(v[$1] - mean, 2) } / Double(idx.count)
            for i in idx { expected[i] = Float((v[i] - mean) / (variance + 1e-5).squareRoot()) }
        }
        expectClose(BatchNorm2d(2)(x).scalars, expected, atol: 1e-4, "BatchNorm2d")
        expectClose(BatchNorm1d(2)(x.reshaped([3, 2, 6])).scalars, expected, atol: 1e-4, "BatchNorm1d [N, C, L]")
        // Without running statistics, evaluation still normalises with the batch.
        let untracked = BatchNorm2d(2, trackRunningStats: false)
        untracked.eval()
        expectClose(untracked(x).scalars, expected, atol: 1e-4, "untracked eval")
    }

    @Test func batchNormCustomEpsInTraining() {
        let x = Tensor(shape: [2, 1], scalars: [-1, 1])    // batch mean 0, biased variance 1
        let bn = BatchNorm1d(1, eps: 3)                    // expected (x - 0) / sqrt(1 + 3) = x / 2
        expectClose(bn(x).scalars, [-0.5, 0.5])
        bn.eval()
        expectClose(bn(x).scalars, [-1 / Float(0.1 * 2 + 0.9 + 3).squareRoot(), 1 / Float(0.1 * 2 + 0.9 + 3).squareRoot()])
    }

    @Test func layerNormForward() {
        let x = randomTensor([2, 3, 4], seed: 41, low: -2, high: 2)
        let v = x.scalars.map(Double.init)
        func reference(groups: Int, size: Int, weight: [Float], bias: [Float]) -> [Float] {
            (0..<groups).flatMap { g -> [Float] in
                let row = Array(v[(g * size)..<((g + 1) * size)])
                let mean = row.reduce(0, +) / Double(size)
                let variance = row.reduce(0.0) { $0 + pow($1 - mean, 2) } / Double(size)
                return row.enumerated().map { i, r in Float((r - mean) / (variance + 1e-5).squareRoot()) * weight[i] + bias[i] }
            }
        }
        let last = LayerNorm(4)
        last.weight!.value = Tensor([1, 2, 3, 4])
        last.bias!.value = Tensor([0, 1, 0, -1])
        expectClose(last(x).scalars, reference(groups: 6, size: 4, weight: [1, 2, 3, 4], bias: [0, 1, 0, -1]), atol: 1e-4)
        let two = LayerNorm([3, 4])
        #expect(two.weight!.shape == [3, 4])
        expectClose(two(x).scalars, reference(groups: 2, size: 12, weight: .init(repeating: 1, count: 12),
                                               bias: .init(repeating: 0, count: 12)), atol: 1e-4)
    }

    @Test func attentionMatchesNaivePerHeadLoops() {
        let mha = MultiHeadAttention(embedDim: 6, numHeads: 3)
        // Non-zero biases so every term is exercised.
        mha.inProjBias!.value = randomTensor([18], seed: 51)
        mha.outProj.bias!.value = randomTensor([6], seed: 52)
        let x = randomTensor([2, 4, 6], seed: 53), memory = randomTensor([2, 5, 6], seed: 54)
        func reference(_ q: Tensor, _ kv: Tensor, hidden: @escaping (Int, Int, Int, Int) -> Bool = { _, _, _, _ in false },
                       additive: @escaping (Int, Int, Int, Int) -> Double = { _, _, _, _ in 0 }) -> (output: [Float], weights: [Float]) {
            naiveAttention(query: q, key: kv, value: kv, heads: 3, inWeight: mha.inProjWeight.value, inBias: mha.inProjBias!.value,
                           outWeight: mha.outProj.weight.value, outBias: mha.outProj.bias!.value, hidden: hidden, additive: additive)
        }

        // Self-attention without mask.
        let selfRef = reference(x, x)
        let y = mha(x)
        #expect(y.shape == [2, 4, 6])
        expectClose(y.scalars, selfRef.output, atol: 1e-5, "self-attention")
        let attended = mha.attend(x, x, x)
        #expect(attended.weights.shape == [2, 3, 4, 4])
        expectClose(attended.weights.scalars, selfRef.weights, atol: 1e-5, "weights")

        // Causal boolean mask [T, T].
        let causal = MultiHeadAttention.causalMask(4)
        #expect(causal.scalars == [0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
        let causalRef = reference(x, x, hidden: { _, _, t, s in s > t })
        expectClose(mha(x, x, x, mask: causal).scalars, causalRef.output, atol: 1e-5, "causal mask")

        // Cross-attention (S != T) with a per-batch-and-head mask [B * H, T, S], a key padding mask and an additive mask.
        var maskValues = [Float](repeating: 0, count: 2 * 3 * 4 * 5)
        for b in 0..<2 { for h in 0..<3 { for t in 0..<4 { maskValues[((b * 3 + h) * 4 + t) * 5 + (t + h + b) % 5] = 1 } } }
        let perHead = Tensor(shape: [6, 4, 5], scalars: maskValues)
        let padding = Tensor(shape: [2, 5], scalars: [0, 0, 0, 0, 1, 0, 0, 0, 1, 1])
        let additive = randomTensor([4, 5], seed: 55)
        let crossRef = reference(x, memory, hidden: { b, h, t, s in
            maskValues[((b * 3 + h) * 4 + t) * 5 + s] != 0 || (s == 4) || (b == 1 && s == 3)
        }, additive: { _, _, t, s in Double(additive[t, s]) })
        let cross = mha.attend(x, memory, memory, mask: perHead, additiveMask: additive, keyPaddingMask: padding)
        #expect(cross.output.shape == [2, 4, 6] && cross.weights.shape == [2, 3, 4, 5])
        expectClose(cross.output.scalars, crossRef.output, atol: 1e-5, "cross-attention with masks")
        expectClose(cross.weights.scalars, crossRef.weights, atol: 1e-5, "masked weights")

        // A -inf additive mask is the same as the boolean one; unbatched input is the batch of one.
        let minusInf = Tensor(shape: [4, 4], scalars: causal.scalars.map { $0 != 0 ? -.infinity : 0 })
        expectClose(mha(x, x, x, additiveMask: minusInf).scalars, causalRef.output, atol: 1e-5, "additive -inf")
        let single = x.select(axis: 0, 1)
        expectClose(mha(single).scalars, Array(selfRef.output[24...]), atol: 1e-5, "unbatched")
    }

    @Test func dropoutTrainVersusEval() {
        let drop = Dropout(p: 0.5)
        let x = Tensor.ones([2000])
        let y = drop(x).scalars
        #expect(y.allSatisfy { $0 == 0 || $0 == 2 })
        let zeros = y.filter { $0 == 0 }.count
        #expect(zeros > 850 && zeros < 1150)
        drop.eval()
        #expect(drop(x).scalars == x.scalars)
        #expect(Dropout(p: 0)(x).scalars == x.scalars)
        #expect(Dropout(p: 1)(x).scalars.allSatisfy { $0 == 0 })

        // Attention dropout only in training mode.
        let mha = MultiHeadAttention(embedDim: 4, numHeads: 2, dropout: 0.5)
        let input = randomTensor([1, 3, 4], seed: 61)
        let trained = mha(input).scalars
        #expect(mha(input).scalars != trained)
        mha.eval()
        let a = mha(input).scalars
        #expect(mha(input).scalars == a)
    }

    @Test func embeddingLookup() {
        let embed = Embedding(4, 3)
        embed.weight.value = Tensor(shape: [4, 3], scalars: (0..<12).map(Float.init))
        let e = embed([2, 0, 3, 2], shape: [2, 2])
        #expect(e.shape == [2, 2, 3])
        #expect(e.scalars == [6, 7, 8, 0, 1, 2, 9, 10, 11, 6, 7, 8])
        let f = embed(Tensor(shape: [1, 2], scalars: [1, 3]))
        #expect(f.shape == [1, 2, 3] && f.scalars == [3, 4, 5, 9, 10, 11])
        // The gradient accumulates into the selected rows.
        embed([1, 1, 2]).sum().backward()
        #expect(embed.weight.grad?.scalars == [0, 0, 0, 2, 2, 2, 1, 1, 1, 0, 0, 0])
    }

    @Test func activationsPoolingAndFlatten() {
        let x = Tensor([-2, -0.5, 0.5, 2])
        #expect(ReLU()(x).scalars == [0, 0, 0.5, 2])
        expectClose(LeakyReLU(slope: 0.1)(x).scalars, [-0.2, -0.05, 0.5, 2])
        expectClose(Tanh()(x).scalars, x.scalars.map { Foundation.tanh($0) })
        expectClose(Sigmoid()(x).scalars, x.scalars.map { (v: Float) -> Float in 1 / (1 + Foundation.exp(-v)) })
        expectClose(SiLU()(x).scalars, x.scalars.map { (v: Float) -> Float in v / (1 + Foundation.exp(-v)) })
        let root2 = Float(2).squareRoot()
        expectClose(GELU()(x).scalars, x.scalars.map { (v: Float) -> Float in 0.5 * v * (1 + erf(v / root2)) }, atol: 1e-5)
        expectClose(GELU(approximate: true)(x).scalars,
                    x.scalars.map { (v: Float) -> Float in
                        let u: Float = 0.7978845608 * (v + 0.044715 * v * v * v)
                        return 0.5 * v * (1 + Foundation.tanh(u))
                    }, atol: 1e-5)
        let logits = Tensor(shape: [2, 2], scalars: [0, Foundation.log(3), 1, 1])
        expectClose(Softmax(axis: -1)(logits).scalars, [0.25, 0.75, 0.5, 0.5])
        let e1 = Float(M_E)
        expectClose(Softmax(axis: 0)(logits).scalars, [1 / (1 + e1), 3 / (3 + e1), e1 / (1 + e1), e1 / (3 + e1)])
        expectClose(LogSoftmax()(logits).scalars, [Float(0.25), 0.75, 0.5, 0.5].map { Foundation.log($0) })
        #expect(Identity()(x).scalars == x.scalars)

        let image = Tensor.arange(0, 16).reshaped([1, 1, 4, 4])
        #expect(MaxPool2d(kernelSize: 2)(image).scalars == [5, 7, 13, 15])
        #expect(MaxPool2d(kernelSize: 3, stride: 1, padding: 1)(image).shape == [1, 1, 4, 4])
        #expect(AvgPool2d(kernelSize: 2)(image).scalars == [2.5, 4.5, 10.5, 12.5])
        #expect(AvgPool2d(kernelSize: (1, 4))(image).scalars == [1.5, 5.5, 9.5, 13.5])
        #expect(AdaptiveAvgPool2d(1)(image).scalars == [7.5])
        #expect(AdaptiveAvgPool2d((2, 1))(image).scalars == [3.5, 11.5])
        let pooled = GlobalAvgPool2d()(image)
        #expect(pooled.shape == [1, 1] && pooled.scalars == [7.5])
        #expect(Flatten()(image).shape == [1, 16])
        #expect(Flatten(startAxis: 2)(image).shape == [1, 1, 16])
        #expect(Flatten(startAxis: 0, endAxis: 1)(image).shape == [1, 4, 4])
    }

    // MARK: Initialisation

    @Test func defaultInitialisationMatchesPyTorch() {
        // Linear: weight and bias U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5)).
        let fc = Linear(256, 128)
        let bound: Float = 1 / 16
        let w = fc.weight.value.scalars
        #expect(w.allSatisfy { abs($0) <= bound })
        #expect(w.map(abs).max()! > 0.99 * bound)
        let mean = w.reduce(0, +) / Float(w.count), variance = w.reduce(0) { $0 + $1 * $1 } / Float(w.count)
        #expect(abs(mean) < 0.1 * bound)
        #expect(abs(variance / (bound * bound / 3) - 1) < 0.05)
        #expect(fc.bias!.value.scalars.allSatisfy { abs($0) <= bound })
        #expect(fc.bias!.value.scalars.map(abs).max()! > 0.9 * bound)

        // Conv2d: fanIn = in / groups * kh * kw.
        let conv = Conv2d(8, 32, kernelSize: (3, 3), groups: 2)
        let convBound = 1 / Float(4 * 9).squareRoot()
        let cw = conv.weight.value.scalars
        #expect(conv.weight.shape == [32, 4, 3, 3])
        #expect(cw.allSatisfy { abs($0) <= convBound } && cw.map(abs).max()! > 0.98 * convBound)
        #expect(conv.bias!.value.scalars.allSatisfy { abs($0) <= convBound })
        let cvar = cw.reduce(0) { $0 + $1 * $1 } / Float(cw.count)
        #expect(abs(cvar / (convBound * convBound / 3) - 1) < 0.15)

        // MultiHeadAttention: xavier-uniform in_proj_weight, zero biases, Linear-initialised out_proj.weight.
        let mha = MultiHeadAttention(embedDim: 32, numHeads: 4)
        let xavier = (6 / Float(32 + 96)).squareRoot()
        let iw = mha.inProjWeight.value.scalars
        #expect(iw.allSatisfy { abs($0) <= xavier } && iw.map(abs).max()! > 0.98 * xavier)
        #expect(mha.inProjBias!.value.scalars.allSatisfy { $0 == 0 })
        #expect(mha.outProj.bias!.value.scalars.allSatisfy { $0 == 0 })
        let ow = mha.outProj.weight.value.scalars
        #expect(ow.allSatisfy { abs($0) <= 1 / Float(32).squareRoot() } && ow.contains { $0 != 0 })

        // Norms: ones and zeros; running statistics zeros and ones. Embedding: N(0, 1).
        let bn = BatchNorm2d(5)
        #expect(bn.weight!.value.scalars == [1, 1, 1, 1, 1] && bn.bias!.value.scalars == [0, 0, 0, 0, 0])
        #expect(bn.runningMean!.value.scalars == [0, 0, 0, 0, 0] && bn.runningVar!.value.scalars == [1, 1, 1, 1, 1])
        #expect(bn.numBatchesTracked!.value.item() == 0)
        let ln = LayerNorm(3)
        #expect(ln.weight!.value.scalars == [1, 1, 1] && ln.bias!.value.scalars == [0, 0, 0])
        let e = Embedding(200, 50).weight.value.scalars
        let em = e.reduce(0, +) / Float(e.count), ev = e.reduce(0) { $0 + ($1 - em) * ($1 - em) } / Float(e.count)
        #expect(abs(em) < 0.05 && abs(ev - 1) < 0.07)
    }

    @Test func seedingMakesModelsReproducible() {
        func model() -> Sequential {
            Sequential(Conv2d(1, 4, kernelSize: 3), BatchNorm2d(4), ResidualBlock(4, 8, stride: 2), GlobalAvgPool2d(),
                       Linear(8, 8), TransformerEncoderBlock(dModel: 8, numHeads: 2, ffnDim: 16),
                       Embedding(5, 8), MultiHeadAttention(embedDim: 8, numHeads: 4))
        }
        // An explicit generator: independent of anything else drawing from the global one.
        var r1 = RandomGenerator(seed: 11), r2 = RandomGenerator(seed: 11), r3 = RandomGenerator(seed: 12)
        let a = model(), b = model(), c = model()
        a.reinitialize(generator: &r1); b.reinitialize(generator: &r2); c.reinitialize(generator: &r3)
        #expect(state(a) == state(b))
        #expect(state(a)["0.weight"] != state(c)["0.weight"])
        #expect(state(a)["7.in_proj_weight"] != state(c)["7.in_proj_weight"])
        #expect(a.parameter(named: "7.out_proj.bias")!.value.scalars.allSatisfy { $0 == 0 })

        // A task-scoped seed: other suites drawing from the global generator in parallel
        // cannot interleave with it.
        let first = RandomGenerator.withSeed(11) { state(model()) }
        let second = RandomGenerator.withSeed(11) { state(model()) }
        #expect(first == second)
        // Construction draws in the same order as `reinitialize`.
        #expect(first == state(a))
    }

    // MARK: Gradients

    @Test func gradCheckMultiHeadAttention() {
        let mha = MultiHeadAttention(embedDim: 4, numHeads: 2)
        var rng = RandomGenerator(seed: 70)
        mha.reinitialize(generator: &rng)
        let bias = randomTensor([12], seed: 71, low: -0.5, high: 0.5)
        let x = randomTensor([2, 3, 4], seed: 72), memory = randomTensor([2, 2, 4], seed: 73)
        // Self-attention through every parameter.
        gradCheck([x, mha.inProjWeight.value, bias, mha.outProj.weight.value], layouts: [.contiguous], "self-attention") { t in
            mha.inProjWeight.value = t[1]; mha.inProjBias!.value = t[2]; mha.outProj.weight.value = t[3]
            return mha(t[0])
        }
        // Cross-attention with a boolean mask: query, key and value all receive gradients.
        let mask = Tensor(shape: [3, 2], scalars: [0, 1, 0, 0, 1, 0])
        gradCheck([x, memory, memory * 0.5], "cross-attention") { t in mha(t[0], t[1], t[2], mask: mask) }
    }

    @Test func gradCheckTransformerEncoderBlock() {
        let block = TransformerEncoderBlock(dModel: 4, numHeads: 2, ffnDim: 6, dropout: 0, activation: .gelu)
        var rng = RandomGenerator(seed: 80)
        block.reinitialize(generator: &rng)
        let x = randomTensor([2, 3, 4], seed: 81, low: -2, high: 2)
        let w1 = block.linear1.weight.value, gamma = randomTensor([4], seed: 82, low: 0.5, high: 1.5)
        gradCheck([x, block.selfAttn.inProjWeight.value, w1, gamma], layouts: [.contiguous], "pre-norm") { t in
            block.selfAttn.inProjWeight.value = t[1]; block.linear1.weight.value = t[2]; block.norm2.weight!.value = t[3]
            return block(t[0])
        }
        let postNorm = TransformerEncoderBlock(dModel: 4, numHeads: 2, ffnDim: 6, dropout: 0, activation: .gelu, normFirst: false)
        postNorm.reinitialize(generator: &rng)
        gradCheck([x], "post-norm with causal mask") { t in postNorm(t[0], mask: MultiHeadAttention.causalMask(3)) }
    }

    @Test func gradCheckResidualBlock() {
        // Fixed weights (not the global generator) so the margins below are the same on every run.
        var rng = RandomGenerator(seed: 11)
        let block = ResidualBlock(2, 4, stride: 2), same = ResidualBlock(2, 2)
        block.reinitialize(generator: &rng)
        same.reinitialize(generator: &rng)
        same.eval()
        let x = randomTensor([2, 2, 4, 4], seed: 91)
        // Finite differences are only valid away from the ReLU kinks: steps of up to 2e-3 (eps 1e-3)
        // move no pre-activation by more than about 5e-3, so check they are at least 1e-2 from zero.
        // A whole block in Float: its ops are checked one by one at the tight default tolerances.
        func margin(_ b: ResidualBlock) -> Float {
            withoutGradients {
                let inner = b.bn1(b.conv1(x))
                let outer = b.bn2(b.conv2(inner.relu())) + (b.downsample.map { $0(x) } ?? x)
                return (inner.scalars + outer.scalars).map(abs).min()!
            }
        }
        #expect(margin(block) > 0.01 && margin(same) > 0.01)
        let shortcut = block.downsample![0] as! Conv2d
        gradCheck([x, block.conv1.weight.value, shortcut.weight.value, block.bn2.weight!.value], eps: 1e-3, atol: 2e-3,
                  rtol: 2e-2, layouts: [.contiguous], "projection shortcut, training") { t in
            block.conv1.weight.value = t[1]; shortcut.weight.value = t[2]; block.bn2.weight!.value = t[3]
            return block(t[0])
        }
        gradCheck([x, same.conv2.weight.value], eps: 1e-3, atol: 2e-3, rtol: 2e-2, layouts: [.contiguous],
                  "identity shortcut, eval") { t in
            same.conv2.weight.value = t[1]
            return same(t[0])
        }
    }

    // MARK: Modes and containers

    @Test func trainAndEvalReachEveryDescendant() {
        let model = Sequential(ResidualBlock(2, 4, stride: 2), Sequential(Dropout(p: 0.1), Linear(4, 4)),
                               TransformerEncoderBlock(dModel: 4, numHeads: 2, ffnDim: 8))
        #expect(model.namedModules().allSatisfy { $0.module.isTraining })
        model.eval()
        let modules = model.namedModules()
        #expect(modules.count == 1 + 9 + 3 + 10)
        #expect(modules.allSatisfy { !$0.module.isTraining })
        #expect(model.module(named: "2.self_attn.out_proj") != nil)
        #expect(model.module(named: "0.downsample.1") is BatchNorm2d)
        model.train()
        #expect(model.namedModules().allSatisfy { $0.module.isTraining })
    }

    @Test func sequentialEditing() {
        let model = Sequential([Linear(4, 8), ReLU(), Linear(8, 3)])
        #expect(model.count == 3)
        #expect(model(randomTensor([2, 4])).shape == [2, 3])
        // Head replacement keeps the key.
        let old = model.replaceModule(at: -1, with: Linear(8, 5))
        #expect((old as? Linear)?.outFeatures == 3)
        #expect(model.parameter(named: "2.weight")?.shape == [5, 8])
        #expect(model(randomTensor([2, 4])).shape == [2, 5])
        model[2] = Linear(8, 2)
        #expect((model[2] as? Linear)?.outFeatures == 2)
        model.append(Softmax())
        model.insert(Dropout(p: 0.2), at: 2)
        #expect(model.namedChildren().map(\.name) == ["0", "1", "2", "3", "4"])
        #expect(model.namedParameters().map(\.name) == ["0.weight", "0.bias", "3.weight", "3.bias"])
        model.remove(at: 2)
        #expect(model.layers.count == 4 && model[3] is Softmax)
        model.eval()
        let p = model(randomTensor([3, 4]))
        expectClose(p.sum(axis: 1).scalars, [1, 1, 1])
    }

    // MARK: Shape errors

    @Test func shapeErrorsNameTheLayerAndShapes() async {
        if let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent], performing: {
            _ = Linear(4, 3)(Tensor.zeros([2, 5]))
        }) {
            let message = String(decoding: result.standardErrorContent, as: UTF8.self)
            #expect(message.contains("Linear(4, 3)") && message.contains("[2, 5]") && message.contains("[3, 4]"), "\(message)")
        }
        if let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent], performing: {
            _ = Conv2d(3, 8, kernelSize: 3)(Tensor.zeros([1, 4, 8, 8]))
        }) {
            let message = String(decoding: result.standardErrorContent, as: UTF8.self)
            #expect(message.contains("Conv2d(3, 8, kernelSize: 3)") && message.contains("[1, 4, 8, 8]")
                    && message.contains("[8, 3, 3, 3]"), "\(message)")
        }
    }
}
