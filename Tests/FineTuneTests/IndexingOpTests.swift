import Foundation
import Testing
@testable import FineTune

// Shape and indexing ops of the op set: split/chunk, repeat, pad (every mode), flip, tril/triu and
// the causal mask, gather/scatterAdd/indexSelect along any axis, and IndexTensor itself.

@Suite("Shape and indexing ops")
struct IndexingOpTests {
    let x = Tensor(shape: [2, 3, 4], scalars: (0..<24).map(Float.init))

    @Test func splitAndChunk() {
        let parts = x.split(sizes: [1, 3], axis: 2)
        #expect(parts.map(\.shape) == [[2, 3, 1], [2, 3, 3]])
        #expect(parts[0].scalars == [0, 4, 8, 12, 16, 20])
        #expect(x.split(size: 2, axis: 1).map(\.shape) == [[2, 2, 4], [2, 1, 4]])
        #expect(x.chunk(3, axis: -1).map(\.shape) == [[2, 3, 2], [2, 3, 2]])         // ceil(4 / 3) = 2: two pieces
        #expect(Tensor.zeros([6]).chunk(4).map(\.shape) == [[2], [2], [2]])          // PyTorch: 3 pieces, not 4
        #expect(Tensor.zeros([7]).chunk(3).map(\.shape) == [[3], [3], [1]])
        #expect(Tensor.concat(x.chunk(2, axis: 1), axis: 1).scalars == x.scalars)
        gradCheck([randomTensor([2, 5], seed: 1)], "split") { t in
            let p = t[0].split(sizes: [2, 3], axis: 1)
            return Tensor.concat([p[1] * 2, p[0].exp()], axis: 1)
        }
        gradCheck([randomTensor([4, 3], seed: 2)], "chunk") { t in
            let p = t[0].chunk(2)
            return p[0] * p[1]
        }
    }

    @Test func repeatTilesLikePyTorch() {
        let t = Tensor(shape: [2, 1], scalars: [1, 2])
        let r = t.repeated([2, 3])
        #expect(r.shape == [4, 3] && r.scalars == [1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2])
        #expect(Tensor([1, 2]).repeated([2, 1, 2]).shape == [2, 1, 4])                // leading axes added
        #expect(Tensor([1, 2]).repeated([2, 1, 2]).scalars == [1, 2, 1, 2, 1, 2, 1, 2])
        #expect(Tensor([1, 2]).repeated([0]).shape == [0])
        gradCheck([randomTensor([2, 3], seed: 3)], "repeat") { $0[0].repeated([3, 1, 2]) }
    }

    @Test func padModes() {
        let row = Tensor(shape: [1, 4], scalars: [1, 2, 3, 4])
        #expect(row.padded([2, 1]).scalars == [0, 0, 1, 2, 3, 4, 0])
        #expect(row.padded([1, 1], mode: .constant(-1)).scalars == [-1, 1, 2, 3, 4, -1])
        #expect(row.padded([2, 2], mode: .reflect).scalars == [3, 2, 1, 2, 3, 4, 3, 2])
        #expect(row.padded([2, 1], mode: .replicate).scalars == [1, 1, 1, 2, 3, 4, 4])
        #expect(row.padded([2, 3], mode: .circular).scalars == [3, 4, 1, 2, 3, 4, 1, 2, 3])
        #expect(row.padded([-1, -2]).scalars == [2])                                     // negative crops
        let image = Tensor(shape: [1, 1, 2, 3], scalars: [1, 2, 3, 4, 5, 6])
        let reflected = image.padded([1, 1, 1, 1], mode: .reflect)
        #expect(reflected.shape == [1, 1, 4, 5])
        #expect(reflected.scalars == [5, 4, 5, 6, 5, 2, 1, 2, 3, 2, 5, 4, 5, 6, 5, 2, 1, 2, 3, 2])
        #expect(image.padded([0, 0, 1, 0]).scalars == [0, 0, 0, 1, 2, 3, 4, 5, 6])   // (top, bottom) on H
        let img = randomTensor([2, 2, 4, 5], seed: 4)
        gradCheck([img], "pad constant") { $0[0].padded([1, 2, 0, 1], mode: .constant(0.5)) }
        gradCheck([img], "pad reflect") { $0[0].padded([3, 2, 2, 3], mode: .reflect) }
        gradCheck([img], "pad replicate") { $0[0].padded([2, 2, 1, 0], mode: .replicate) }
        gradCheck([img], "pad circular") { $0[0].padded([0, 5, 4, 1], mode: .circular) }
        gradCheck([img], "pad crop") { $0[0].padded([-1, 1]) }
    }

    @Test func flip() {
        #expect(x.flipped(axes: [2]).scalars[0..<4] == [3, 2, 1, 0])
        #expect(x.flipped(axes: [0, 1]).scalars[0..<4] == [20, 21, 22, 23])
        #expect(x.flipped(axes: [0, 1, 2]).scalars == x.scalars.reversed())
        gradCheck([randomTensor([3, 4], seed: 5)], "flip") { $0[0].flipped(axes: [-1]) * Tensor.arange(0, 4) }
    }

    @Test func triangles() {
        let ones = Tensor.ones([3, 4])
        #expect(ones.tril().scalars == [1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0])
        #expect(ones.triu(diagonal: 1).scalars == [0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1])
        #expect(ones.tril(diagonal: -1).scalars == [0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0])
        #expect(Tensor.full([2, 2], .infinity).tril().scalars == [.infinity, 0, .infinity, .infinity])   // no inf * 0
        let batched = Tensor.ones([2, 2, 2]).triu()
        #expect(batched.scalars == [1, 1, 0, 1, 1, 1, 0, 1])
        gradCheck([randomTensor([2, 3, 3], seed: 6)], "tril") { $0[0].tril(diagonal: 1) }
        gradCheck([randomTensor([3, 4], seed: 7)], "triu") { $0[0].triu() }
        let causal = Tensor.causalMask(queries: 2, keys: 3)
        #expect(causal.scalars == [0, -.infinity, -.infinity, 0, 0, -.infinity])
        #expect(Tensor.causalMask(queries: 3).shape == [3, 3])
    }

    @Test func gatherAndScatterAddAlongEveryAxis() {
        // axis 1 of [2, 3]: out[i][j] = x[i][idx[i][j]]
        let m = Tensor(shape: [2, 3], scalars: [10, 11, 12, 20, 21, 22])
        #expect(m.gather(axis: 1, indices: IndexTensor(shape: [2, 2], values: [2, 0, 1, 1])).scalars == [12, 10, 21, 21])
        // axis 0: out[i][j] = x[idx[i][j]][j], index smaller than the tensor on axis 1.
        #expect(m.gather(axis: 0, indices: IndexTensor(shape: [1, 2], values: [1, 0])).scalars == [20, 11])
        // Every axis of a 3-D tensor against a direct loop.
        let t = randomTensor([3, 4, 5], seed: 8)
        for axis in 0..<3 {
            var shape = [3, 4, 5]
            shape[axis] = 2
            let values = (0..<Shape.count(shape)).map { ($0 * 7 + axis) % [3, 4, 5][axis] }
            let idx = IndexTensor(shape: shape, values: values)
            let got = t.gather(axis: axis, indices: idx).scalars
            var expected: [Float] = []
            for i in 0..<shape[0] { for j in 0..<shape[1] { for k in 0..<shape[2] {
                var c = [i, j, k]
                c[axis] = values[(i * shape[1] + j) * shape[2] + k]
                expected.append(t[c[0], c[1], c[2]])
            }}}
            #expect(got == expected, "gather axis \(axis)")
            gradCheck([t], "gather axis \(axis)") { $0[0].gather(axis: axis, indices: idx) }
            let source = randomTensor(shape, seed: 9)
            gradCheck([t, source], "scatterAdd axis \(axis)") { $0[0].scatterAdd(axis: axis, indices: idx, source: $0[1]) }
        }
        // Repeated indices accumulate.
        let counts = Tensor.zeros([4]).scatterAdd(axis: 0, indices: IndexTensor([1, 3, 1, 1]), source: Tensor([1, 2, 3, 4]))
        #expect(counts.scalars == [0, 8, 0, 2])
    }

    @Test func indexSelect() {
        #expect(x.indexSelect(axis: 2, [3, 0, 3]).scalars[0..<6] == [3, 0, 3, 7, 4, 7])
        #expect(x.indexSelect(axis: 0, [1]).shape == [1, 3, 4])
        #expect(x.indexSelect(axis: 1, []).shape == [2, 0, 4])
        gradCheck([randomTensor([3, 4], seed: 10)], "indexSelect axis 1, repeated") { $0[0].indexSelect(axis: 1, [1, 1, 3]) }
        gradCheck([randomTensor([3, 4, 2], seed: 11)], "indexSelect axis 0") { $0[0].indexSelect(axis: 0, [2, 0]) }
    }

    @Test func indexTensor() {
        let i = IndexTensor(shape: [2, 2], values: [0, 3, 1, 1])
        #expect(i.reshaped([-1]) == IndexTensor([0, 3, 1, 1]))
        #expect(i.unsqueezed(axis: -1).shape == [2, 2, 1])
        #expect(IndexTensor(Tensor(shape: [2], scalars: [4, 2])) == IndexTensor([4, 2]))
        #expect(i.tensor.scalars == [0, 3, 1, 1])
        let logits = Tensor(shape: [2, 3], scalars: [0, 5, 1, 7, 2, 3])
        #expect(logits.gather(axis: 1, indices: logits.argmax(axis: 1).unsqueezed(axis: 1)).scalars == [5, 7])
    }

    @Test func embeddingPaddingRowGetsNoGradient() {
        let table = RandomGenerator.withSeed(4) { Embedding(5, 3, paddingIndex: -1) }
        #expect(table.paddingIndex == 4)
        #expect(table.weight.value.scalars[12..<15] == [0, 0, 0])                   // zeroed at initialisation
        // Same draws as without padding, apart from the zeroed row (PyTorch's order).
        let plain = RandomGenerator.withSeed(4) { Embedding(5, 3) }
        #expect(table.weight.value.scalars[0..<12] == plain.weight.value.scalars[0..<12])
        table([4, 1, 4, 2], shape: [2, 2]).sum().backward()
        let grad = table.weight.grad!.scalars
        #expect(grad[12..<15] == [0, 0, 0] && grad[3..<6] == [1, 1, 1] && grad[6..<9] == [1, 1, 1])
        gradCheck([randomTensor([4, 2], seed: 12)], "embedding with padding") { t in
            // The padding row's numeric gradient is not 0, so check the other rows through a mask.
            Tensor.embedding([0, 2, 3, 2], weight: t[0] * Tensor(shape: [4, 1], scalars: [1, 1, 1, 0]).expanded(to: [4, 2]),
                             paddingIndex: 3)
        }
    }
}
