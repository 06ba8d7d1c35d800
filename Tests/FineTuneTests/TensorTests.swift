import Foundation
import Testing
@testable import FineTune

@Suite("Tensor")
struct TensorTests {
    @Test func creation() {
        #expect(Tensor.zeros([2, 3]).scalars == [Float](repeating: 0, count: 6))
        #expect(Tensor.ones([2]).scalars == [1, 1])
        #expect(Tensor.full([2, 2], 7).scalars == [7, 7, 7, 7])
        #expect(Tensor.arange(0, 5).scalars == [0, 1, 2, 3, 4])
        #expect(Tensor.arange(1, 2, step: 0.25).scalars == [1, 1.25, 1.5, 1.75])
        #expect(Tensor(3).shape == [] && Tensor(3).item() == 3)
        let t = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        #expect(t[1, 2] == 6 && t[-1, 0] == 4)
        #expect(t.rank == 2 && t.count == 6 && t.isContiguous)
    }

    @Test func randomIsReproducibleAndPlausible() {
        var a = RandomGenerator(seed: 42), b = RandomGenerator(seed: 42), c = RandomGenerator(seed: 43)
        let x = Tensor.randomNormal([10_000], generator: &a)
        #expect(x.scalars == Tensor.randomNormal([10_000], generator: &b).scalars)
        #expect(x.scalars != Tensor.randomNormal([10_000], generator: &c).scalars)
        let mean = x.mean().item(), std = (x * x).mean().item().squareRoot()
        #expect(abs(mean) < 0.05 && abs(std - 1) < 0.05)
        // The stream is fixed by the algorithm: these values must never change across machines.
        var d = RandomGenerator(seed: 1)
        let first = (0..<3).map { _ in d.next() }
        var e = RandomGenerator(seed: 1)
        #expect(first == (0..<3).map { _ in e.next() })
        let u = Tensor.randomUniform([1000], low: -2, high: 3, generator: &d).scalars
        #expect(u.allSatisfy { $0 >= -2 && $0 < 3 })
    }

    @Test func scopedSeedReproducesWhateverElseRuns() {
        // Other tests draw from the global generator concurrently; a scoped seed is unaffected.
        let a = RandomGenerator.withSeed(7) { Tensor.randomUniform([5]).scalars + Tensor.randomNormal([3]).scalars }
        let b = RandomGenerator.withSeed(7) { Tensor.randomUniform([5]).scalars + Tensor.randomNormal([3]).scalars }
        #expect(a == b)
        var explicit = RandomGenerator(seed: 7)
        #expect(Array(a.prefix(5)) == Tensor.randomUniform([5], generator: &explicit).scalars)
    }

    @Test("reused buffers come back zeroed, and the cache respects its limit")
    func bufferCache() {
        let shape = [300, 301]    // 361 KB: large enough to be cached
        for round in 0..<4 {
            do { _ = Tensor.full(shape, Float(round + 1)) }    // freed into the cache
            let fresh = Tensor.zeros(shape)
            #expect(fresh.scalars.allSatisfy { $0 == 0 }, "round \(round)")
        }
        let saved = BufferCache.limit
        defer { BufferCache.limit = saved }
        BufferCache.limit = 0
        #expect(BufferCache.limit == 0)
        do { _ = Tensor.full(shape, 3) }
        #expect(BufferCache.cachedBytes == 0)    // nothing can be kept under a zero limit
        BufferCache.limit = saved
        BufferCache.releaseAll()
    }

    @Test("large element-wise ops split across threads give every element exactly")
    func largeElementwiseOps() {
        let n = 2 * Kernels.elementwiseParallelThreshold + 77
        var x = randomTensor([n], seed: 12)
        x.requiresGrad = true
        let y = x.relu(), e = x.exp()
        let xs = x.scalars
        #expect(y.scalars == xs.map { max($0, 0) })
        #expect((x * x - x).scalars == xs.map { $0 * $0 - $0 })
        #expect(zip(e.scalars, xs).allSatisfy { abs($0 - Float(Foundation.exp(Double($1)))) <= 2e-7 * $0 })
        y.sum().backward()
        #expect(x.grad!.scalars == xs.map { $0 > 0 ? 1 : 0 })
    }

    @Test func initializers() {
        var rng = RandomGenerator(seed: 5)
        let w = Initializer.kaimingUniform([64, 32, 3, 3], a: Float(5).squareRoot(), generator: &rng)
        let bound = Initializer.leakyReLUGain(Float(5).squareRoot()) * (3 / Float(32 * 9)).squareRoot()
        #expect(w.scalars.allSatisfy { abs($0) <= bound })
        #expect(w.scalars.map { abs($0) }.max()! > 0.9 * bound)
        #expect(Initializer.fans([64, 32, 3, 3]) == (288, 576))
        let x = Initializer.xavierNormal([200, 300], generator: &rng)
        let std = (x * x).mean().item().squareRoot()
        #expect(abs(std - (2.0 / 500).squareRoot()) < 0.005)
        let k = Initializer.kaimingNormal([300, 200], generator: &rng)
        #expect(abs((k * k).mean().item().squareRoot() - (2.0 / 200).squareRoot()) < 0.005)
        let xu = Initializer.xavierUniform([20, 30], generator: &rng)
        #expect(xu.scalars.allSatisfy { abs($0) <= (6.0 / 50).squareRoot() })
    }

    @Test func viewsShareStorageUntilWritten() {
        let t = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        let tt = t.transposed()
        #expect(tt.shape == [3, 2] && !tt.isContiguous)
        #expect(tt.scalars == [1, 4, 2, 5, 3, 6])
        #expect(tt.storage === t.storage)
        var copy = t
        copy[0, 0] = 100
        #expect(t[0, 0] == 1 && copy[0, 0] == 100)    // copy-on-write
        #expect(tt[0, 0] == 1)
        var r = t.reshaped([3, 2])
        #expect(r.storage === t.storage)
        r.withUnsafeMutableBufferPointer { $0[5] = -1 }
        #expect(t.scalars.last == 6 && r.scalars.last == -1)
    }

    @Test func slicingAndContiguous() {
        let t = Tensor.arange(0, 24).reshaped([2, 3, 4])
        let s = t.slice(axis: 2, 1..<3)
        #expect(s.shape == [2, 3, 2])
        #expect(s.scalars == [1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22])
        #expect(t.select(axis: 1, 2).scalars == [8, 9, 10, 11, 20, 21, 22, 23])
        let p = t.permuted([2, 0, 1]).contiguous()
        #expect(p.isContiguous && p.shape == [4, 2, 3] && p[1, 1, 2] == t[1, 2, 1])
        #expect(t.reshaped([-1, 6]).shape == [4, 6])
        #expect(t.flattened().shape == [24] && t.flattened(startAxis: 1).shape == [2, 12])
        let c = Tensor.concat([Tensor.ones([1, 2]), Tensor.zeros([2, 2])], axis: 0)
        #expect(c.scalars == [1, 1, 0, 0, 0, 0])
        #expect(Tensor.stack([Tensor([1, 2]), Tensor([3, 4])], axis: 1).scalars == [1, 3, 2, 4])
        // A non-contiguous view used as an op input (reshape must copy, not reinterpret).
        #expect(t.transposed(0, 2).reshaped([-1]).scalars.prefix(4) == [0, 12, 4, 16])
    }

    @Test func broadcastingArithmetic() {
        let a = Tensor(shape: [2, 1], scalars: [1, 2]), b = Tensor([10, 20, 30])
        #expect((a + b).shape == [2, 3])
        #expect((a + b).scalars == [11, 21, 31, 12, 22, 32])
        #expect((b - a).scalars == [9, 19, 29, 8, 18, 28])
        #expect((a * 2).scalars == [2, 4] && (1 / a).scalars == [1, 0.5])
        // Strided operands on both sides.
        let m = Tensor.arange(0, 6).reshaped([2, 3])
        #expect((m.transposed() + m.transposed()).scalars == [0, 6, 2, 8, 4, 10])
    }

    @Test func reductionsAndActivations() {
        let t = Tensor(shape: [2, 3], scalars: [1, 5, 3, 4, 2, 6])
        #expect(t.sum().item() == 21)
        #expect(t.sum(axis: 0).scalars == [5, 7, 9])
        #expect(t.sum(axis: 1, keepDims: true).shape == [2, 1])
        #expect(t.mean(axis: 1).scalars == [3, 4])
        #expect(t.max(axis: 1).scalars == [5, 6])
        #expect(t.max().item() == 6)
        let sm = t.softmax(axis: 1).sum(axis: 1).scalars
        expectClose(sm, [1, 1], atol: 1e-6)
        expectClose(Tensor([-1, 0, 2]).relu().scalars, [0, 0, 2])
        expectClose(Tensor([0, 1]).sigmoid().scalars, [0.5, 0.7310586])
        expectClose(Tensor([1]).gelu().scalars, [0.8413447])
        expectClose(Tensor([1]).gelu(approximate: true).scalars, [0.8411920])
        expectClose(Tensor([1000, 0]).logSoftmax().scalars, [0, -1000])
    }

    @Test func matmulMatchesNaive() {
        for (m, k, n) in [(1, 1, 1), (7, 33, 5), (17, 3, 65)] {
            let a = randomTensor([m, k], seed: 1), b = randomTensor([k, n], seed: 2)
            let av = a.scalars, bv = b.scalars
            var expected = [Float](repeating: 0, count: m * n)
            for i in 0..<m { for j in 0..<n { for p in 0..<k { expected[i * n + j] += av[i * k + p] * bv[p * n + j] } } }
            expectClose(a.matmul(b).scalars, expected, atol: 1e-5)
            expectClose(a.transposed().contiguous().transposed().matmul(b).scalars, expected, atol: 1e-5)
        }
    }

    @Test("matmul with 1-D operands follows NumPy and PyTorch")
    func matmulWithVectors() {
        let v = Tensor([1, 2, 3]), m = Tensor(shape: [3, 2], scalars: [1, 0, 0, 1, 2, -1])
        let dot = v.matmul(Tensor([4, 5, 6]))                        // [k] x [k]: 0-D
        #expect(dot.shape == [] && dot.item() == 32)
        let vm = v.matmul(m)                                         // [k] x [k, n]: [n]
        #expect(vm.shape == [2] && vm.scalars == [7, -1])
        let mv = m.transposed().matmul(v)                            // [n, k] x [k]: [n]
        #expect(mv.shape == [2] && mv.scalars == [7, -1])
        let batch = Tensor.stack([m, m * 2]).transposed()            // [2, 2, 3] x [3]: [2, 2]
        #expect(batch.matmul(v).shape == [2, 2] && batch.matmul(v).scalars == [7, -1, 14, -2])
        let batchB = Tensor.stack([m, m * 2])                        // [3] x [2, 3, 2]: [2, 2]
        #expect(v.matmul(batchB).shape == [2, 2] && v.matmul(batchB).scalars == [7, -1, 14, -2])
        #expect(Tensor([2]).matmul(Tensor([3])).item() == 6)
    }

    @Test func lossValues() {
        let logits = Tensor(shape: [2, 3], scalars: [1, 2, 3, 1, 1, 1])
        let ce = Tensor.crossEntropy(logits, targets: [2, 0]).item()
        let expected = ((-log(exp(3.0) / (exp(1.0) + exp(2.0) + exp(3.0)))) + log(3.0)) / 2
        #expect(abs(Double(ce) - expected) < 1e-5)
        // Label smoothing as PyTorch: (1 - e) * -log p[target] + e * mean_k(-log p[k]), on logits where it matters.
        let z: [Double] = [1, 2, 4], lse = log(z.map { exp($0) }.reduce(0, +)), logp = z.map { $0 - lse }
        let expectedSmooth = 0.8 * -logp[0] + 0.2 * -logp.reduce(0, +) / 3
        let smooth = Tensor.crossEntropy(Tensor(shape: [1, 3], scalars: [1, 2, 4]), targets: [0], labelSmoothing: 0.2).item()
        #expect(abs(Double(smooth) - expectedSmooth) < 1e-5 && abs(Double(smooth) + logp[0]) > 0.1)
        #expect(Tensor.mse(Tensor([1, 2]), Tensor([0, 0])).item() == 2.5)
        let bce = Tensor.binaryCrossEntropyWithLogits(Tensor([0, 100, -100]), Tensor([1, 1, 0])).item()
        #expect(abs(bce - Float(log(2.0)) / 3) < 1e-6)
    }

    @Test func shapeErrorsNameOpAndShapes() throws {
        #expect(throws: ShapeError.self) { try Shape.broadcast([2, 3], [4, 3], op: "add") }
        do {
            _ = try Shape.broadcast([2, 3], [4, 3], op: "add")
        } catch {
            #expect(error.description.contains("add"))
            #expect(error.description.contains("[2, 3]") && error.description.contains("[4, 3]"))
        }
    }

    @Test func shapeMismatchStopsWithAClearMessage() async {
        await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.zeros([2, 3]).matmul(Tensor.zeros([4, 5]))
        }
    }
}
