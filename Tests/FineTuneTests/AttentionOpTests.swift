import Foundation
import Testing
@testable import FineTune

// Tensor.scaledDotProductAttention against attention written with matmul and softmax (values and
// every gradient): masks of each kind and broadcast, causal (several row blocks, L != S),
// grouped-query heads, strided inputs, dropout; and against MultiHeadAttention on the same
// projected queries, keys and values, so MultiHeadAttention can switch to the op.

/// Attention from the primitive ops: key/value head `h / (Hq / Hkv)` for query head `h`.
private func referenceAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, additive: Tensor? = nil, causal: Bool = false,
                                dropoutMask: Tensor? = nil, scale: Float? = nil) -> Tensor {
    let r = q.rank, hq = q.shape[r - 3], hkv = k.shape[r - 3]
    let heads = (0..<hq).map { $0 / (hq / hkv) }
    let kk = k.indexSelect(axis: r - 3, heads), vv = v.indexSelect(axis: r - 3, heads)
    var scores = q.matmul(kk.transposed()) * (scale ?? 1 / Float(q.shape[r - 1]).squareRoot())
    if let additive { scores = scores + additive }
    if causal { scores = scores + Tensor.causalMask(queries: q.shape[r - 2], keys: k.shape[r - 2]) }
    var weights = scores.softmax(axis: -1)
    if let dropoutMask { weights = weights * dropoutMask }
    return weights.matmul(vv)
}

@Suite("Scaled dot-product attention")
struct AttentionOpTests {
    @Test func matchesReferenceWithMasksAndGroupedHeads() {
        let q = randomTensor([2, 4, 5, 8], seed: 1), k = randomTensor([2, 2, 7, 8], seed: 2), v = randomTensor([2, 2, 7, 6], seed: 3)
        expectSameValuesAndGradients([q, k, v], atol: 2e-5, "GQA 4:2, Ev != E") {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2])
        } _: { referenceAttention($0[0], $0[1], $0[2]) }
        let bias = randomTensor([2, 1, 5, 7], seed: 4)                                    // learned bias: gets a gradient
        expectSameValuesAndGradients([q, k, v, bias], "additive mask broadcast over heads") {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: .additive($0[3]))
        } _: { referenceAttention($0[0], $0[1], $0[2], additive: $0[3]) }
        let padding = Tensor(shape: [2, 1, 1, 7], scalars: [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0])   // 1 = hidden
        let asAdditive = Tensor.where(padding, Tensor(-Float.infinity), Tensor(0))
        expectSameValuesAndGradients([q, k, v], "hidden (key padding)") {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: .hidden(padding), scale: 0.3)
        } _: { referenceAttention($0[0], $0[1], $0[2], additive: asAdditive, scale: 0.3) }
        expectSameValuesAndGradients([q, k, v], "allowed (1 = attend)") {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: .allowed(1 - padding), scale: 0.3)
        } _: { referenceAttention($0[0], $0[1], $0[2], additive: asAdditive, scale: 0.3) }
    }

    @Test(arguments: [(70, 70), (70, 90), (66, 40)])
    func causalAcrossRowBlocks(_ l: Int, _ s: Int) {
        let q = randomTensor([1, 2, l, 4], seed: 5), k = randomTensor([1, 1, s, 4], seed: 6), v = randomTensor([1, 1, s, 3], seed: 7)
        expectSameValuesAndGradients([q, k, v], "causal L \(l) S \(s)") {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], isCausal: true)
        } _: { referenceAttention($0[0], $0[1], $0[2], causal: true) }
        let bias = randomTensor([l, s], seed: 8)
        expectSameValuesAndGradients([q, k, v, bias], "causal with an additive mask") {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: .additive($0[3]), isCausal: true)
        } _: { referenceAttention($0[0], $0[1], $0[2], additive: $0[3], causal: true) }
    }

    @Test func anyRankAndStridedInputs() {
        // [L, E] without heads, and two leading batch axes.
        let q2 = randomTensor([3, 4], seed: 9), k2 = randomTensor([5, 4], seed: 10), v2 = randomTensor([5, 2], seed: 11)
        expectSameValuesAndGradients([q2, k2, v2], "rank 2") {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2])
        } _: { referenceAttention($0[0].unsqueezed(axis: 0), $0[1].unsqueezed(axis: 0), $0[2].unsqueezed(axis: 0)).squeezed(axis: 0) }
        let q5 = randomTensor([2, 3, 2, 4, 4], seed: 12), k5 = randomTensor([2, 3, 1, 6, 4], seed: 13)
        let v5 = randomTensor([2, 3, 1, 6, 4], seed: 14)
        expectSameValuesAndGradients([q5, k5, v5], "rank 5") {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: .additive(randomTensor([3, 1, 4, 6], seed: 15)))
        } _: { referenceAttention($0[0], $0[1], $0[2], additive: randomTensor([3, 1, 4, 6], seed: 15)) }
        // Projected activations [B, T, H*D] viewed as [B, H, T, D]: read in place, results as views.
        let x = randomTensor([2, 5, 12], seed: 16)
        expectSameValuesAndGradients([x], "[B, T, H, D] views") { t in
            let heads = t[0].reshaped([2, 5, 3, 4]).transposed(1, 2)
            let y = Tensor.scaledDotProductAttention(query: heads, key: heads * 0.5, value: heads.exp(), isCausal: true)
            return y.transposed(1, 2).reshaped([2, 5, 12])
        } _: { t in
            let heads = t[0].reshaped([2, 5, 3, 4]).transposed(1, 2).contiguous()
            return referenceAttention(heads, heads * 0.5, heads.exp(), causal: true).transposed(1, 2).reshaped([2, 5, 12])
        }
        let y = Tensor.scaledDotProductAttention(query: x.reshaped([2, 5, 3, 4]).transposed(1, 2),
                                                 key: x.reshaped([2, 5, 3, 4]).transposed(1, 2),
                                                 value: x.reshaped([2, 5, 3, 4]).transposed(1, 2))
        #expect(y.shape == [2, 3, 5, 4] && y.transposed(1, 2).isContiguous)
    }

    @Test func fullyMaskedQueriesGetZerosNotNaN() {
        let q = randomTensor([1, 1, 3, 4], seed: 17), k = randomTensor([1, 1, 4, 4], seed: 18), v = randomTensor([1, 1, 4, 2], seed: 19)
        let allowed = Tensor(shape: [3, 4], scalars: [1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1])
        let leaves = [q, k, v].map { t -> Tensor in var l = t.detached(); l.requiresGrad = true; return l }
        let y = Tensor.scaledDotProductAttention(query: leaves[0], key: leaves[1], value: leaves[2], mask: .allowed(allowed))
        #expect(y.scalars[2..<4] == [0, 0])
        #expect(y.scalars.allSatisfy { $0.isFinite })
        y.sum().backward()
        #expect(leaves[0].grad!.scalars[4..<8] == [0, 0, 0, 0])
        #expect(leaves.allSatisfy { $0.grad!.scalars.allSatisfy { $0.isFinite } })
    }

    @Test func gradientCheck() {
        let q = randomTensor([1, 2, 3, 4], seed: 20), k = randomTensor([1, 1, 5, 4], seed: 21), v = randomTensor([1, 1, 5, 3], seed: 22)
        let bias = randomTensor([3, 5], seed: 23)
        gradCheck([q, k, v, bias], "sdpa") {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: .additive($0[3]))
        }
        gradCheck([q, k, v], "sdpa causal") {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], isCausal: true, scale: 0.7)
        }
    }

    @Test func dropoutDropsWeightsWithItsGenerator() {
        let q = randomTensor([2, 2, 4, 4], seed: 24), k = randomTensor([2, 2, 6, 4], seed: 25), v = randomTensor([2, 2, 6, 3], seed: 26)
        var rng = RandomGenerator(seed: 7)
        let mask = Tensor.dropoutMask([2, 2, 4, 6], p: 0.25, generator: &rng)
        expectSameValuesAndGradients([q, k, v], "dropout") {
            var r = RandomGenerator(seed: 7)
            return Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], dropout: 0.25, generator: &r)
        } _: { referenceAttention($0[0], $0[1], $0[2], dropoutMask: mask) }
        gradCheck([q, k, v], "sdpa dropout") {
            var r = RandomGenerator(seed: 8)
            return Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], dropout: 0.3, generator: &r)
        }
        // The default generator (task-scoped here): two seeded runs agree, and differ from no dropout.
        let a = RandomGenerator.withSeed(3) { Tensor.scaledDotProductAttention(query: q, key: k, value: v, dropout: 0.5) }
        let b = RandomGenerator.withSeed(3) { Tensor.scaledDotProductAttention(query: q, key: k, value: v, dropout: 0.5) }
        #expect(a.scalars == b.scalars && a.scalars != Tensor.scaledDotProductAttention(query: q, key: k, value: v).scalars)
    }

    /// MultiHeadAttention's masks as one additive mask: `mask` and `keyPaddingMask` are boolean
    /// (non-zero = hidden), `additiveMask` is added. This is what MultiHeadAttention passes to the op.
    private func combinedMask(mask: Tensor?, additive: Tensor?, keyPadding: Tensor?, b: Int, s: Int) -> AttentionMask? {
        var total: Tensor?
        func add(_ m: Tensor) { total = total.map { $0 + m } ?? m }
        if let mask { add(Tensor.where(mask, Tensor(-Float.infinity), Tensor(0))) }
        if let additive { add(additive) }
        if let keyPadding { add(Tensor.where(keyPadding.reshaped([b, 1, 1, s]), Tensor(-Float.infinity), Tensor(0))) }
        return total.map { .additive($0) }
    }

    @Test(arguments: [false, true])
    func reproducesMultiHeadAttention(_ masked: Bool) {
        let attention = RandomGenerator.withSeed(30) { MultiHeadAttention(embedDim: 12, numHeads: 3) }
        RandomGenerator.withSeed(31) { attention.inProjBias!.value = Tensor.randomNormal([36], std: 0.1) }
        let (b, t, s, e, h, d) = (2, 4, 5, 12, 3, 4)
        let query = randomTensor([b, t, e], seed: 32), memory = randomTensor([b, s, e], seed: 33)
        let mask = masked ? Tensor.causalMask(queries: t, keys: s).maximum(Tensor(-1)).abs() : nil     // 1 above the diagonal
        let additive = masked ? randomTensor([b, 1, t, s], seed: 34) : nil
        let keyPadding = masked ? Tensor(shape: [b, s], scalars: [0, 0, 0, 0, 1, 0, 1, 0, 0, 0]) : nil
        expectSameValuesAndGradients([query, memory], "MultiHeadAttention masked: \(masked)") { x in
            attention(x[0], x[1], x[1], mask: mask, additiveMask: additive, keyPaddingMask: keyPadding)
        } _: { x in
            // The same projections as MultiHeadAttention.attend, then the op.
            func project(_ input: Tensor, _ part: Int) -> Tensor {
                let rows = (part * e)..<((part + 1) * e)
                return Tensor.linear(input, weight: attention.inProjWeight.value.slice(axis: 0, rows),
                                     bias: attention.inProjBias!.value.slice(axis: 0, rows))
                    .reshaped([b, input.shape[1], h, d]).transposed(1, 2)
            }
            let y = Tensor.scaledDotProductAttention(
                query: project(x[0], 0), key: project(x[1], 1), value: project(x[1], 2),
                mask: combinedMask(mask: mask, additive: additive, keyPadding: keyPadding, b: b, s: s))
            return attention.outProj(y.transposed(1, 2).reshaped([b, t, e]))
        }
        // And the parameters' gradients agree.
        func parameterGradients(_ body: () -> Tensor) -> [[Float]] {
            for p in attention.parameters() { p.grad = nil }
            body().sum().backward()
            return attention.parameters().map { $0.grad!.scalars }
        }
        let viaModule = parameterGradients { attention(query, memory, memory, mask: mask, additiveMask: additive, keyPaddingMask: keyPadding) }
        let viaOp = parameterGradients {
            let w = attention.inProjWeight.value, bias = attention.inProjBias!.value
            let qkv = (0..<3).map { part -> Tensor in
                let rows = (part * e)..<((part + 1) * e)
                let input = part == 0 ? query : memory
                return Tensor.linear(input, weight: w.slice(axis: 0, rows), bias: bias.slice(axis: 0, rows))
                    .reshaped([b, input.shape[1], h, d]).transposed(1, 2)
            }
            let y = Tensor.scaledDotProductAttention(query: qkv[0], key: qkv[1], value: qkv[2],
                                                     mask: combinedMask(mask: mask, additive: additive, keyPadding: keyPadding, b: b, s: s))
            return attention.outProj(y.transposed(1, 2).reshaped([b, t, e]))
        }
        for (x, y) in zip(viaModule, viaOp) { expectClose(x, y, atol: 2e-5, "parameter gradient") }
    }
}
