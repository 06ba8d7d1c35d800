import Testing
@testable import FineTune

/// The README's op-set snippet, kept compiling and true.
@Suite("README op set")
struct OpSetReadmeTests {
    @Test func attentionAndSequenceLossSnippet() {
        let (b, t) = (2, 3)
        let x = randomTensor([b, t, 512], seed: 1)
        let wq = randomTensor([512, 512], seed: 2) * 0.05, wk = randomTensor([512, 128], seed: 3) * 0.05
        let wv = randomTensor([512, 128], seed: 4) * 0.05
        let lmHead = RandomGenerator.withSeed(5) { Linear(512, 11) }
        let nextTokens = [3, 10, -100, 0, 7, 7]

        let q = x.matmul(wq).reshaped([b, t, 8, 64]).transposed(1, 2)
        let k = x.matmul(wk).reshaped([b, t, 2, 64]).transposed(1, 2)
        let v = x.matmul(wv).reshaped([b, t, 2, 64]).transposed(1, 2)
        let heads = Tensor.scaledDotProductAttention(query: q, key: k, value: v, isCausal: true)
        let y = heads.transposed(1, 2).reshaped([b, t, 512])
        let loss = Tensor.crossEntropy(lmHead(y), targets: nextTokens)

        #expect(heads.shape == [b, 8, t, 64] && heads.transposed(1, 2).isContiguous)   // the merge is a view
        // Query head 5 reads KV head 5 / 4 = 1; position 0 sees only key 0, so its output is that value row.
        expectClose(heads.select(axis: 1, 5).select(axis: 1, 0).scalars, v.select(axis: 1, 1).select(axis: 1, 0).scalars)
        let perToken = Tensor.crossEntropy(lmHead(y), targets: nextTokens, reduction: .none)
        expectClose([loss.item()], [perToken.sum().item() / 5])    // the -100 target does not count
    }
}
