import Foundation
import Testing
@testable import FineTune

@Suite("Autograd")
struct AutogradTests {
    @Test func gradientsAccumulateUntilCleared() {
        var w = Tensor([1, 2, 3])
        w.requiresGrad = true
        (w * w).sum().backward()
        #expect(w.grad?.scalars == [2, 4, 6])
        (w * w).sum().backward()
        #expect(w.grad?.scalars == [4, 8, 12])
        w.grad = nil
        (w * 3).sum().backward()
        #expect(w.grad?.scalars == [3, 3, 3])
    }

    @Test func reusedTensorSumsItsPaths() {
        var x = Tensor([2])
        x.requiresGrad = true
        let y = x * x * x + x          // dy/dx = 3x^2 + 1 = 13
        y.sum().backward()
        #expect(x.grad?.scalars == [13])
    }

    @Test func noGraphWithoutGradients() {
        var x = Tensor([1, 2])
        x.requiresGrad = true
        let y = withoutGradients { (x * 2).exp() }
        #expect(!y.requiresGrad)
        #expect((x * 2).requiresGrad)
        #expect(!(Tensor([1]) * 2).requiresGrad)
    }

    @Test func frozenBranchRunsNoBackward() {
        // y = relu(x @ Wfrozen) @ Wtrain: the frozen branch's weight needs no gradient.
        let x = randomTensor([4, 3], seed: 1)
        let frozen = randomTensor([3, 5], seed: 2)              // requiresGrad == false
        var trainable = randomTensor([5, 2], seed: 3)
        trainable.requiresGrad = true
        let features = x.matmul(frozen).relu()
        #expect(!features.requiresGrad)                          // no graph recorded at all
        let rules = features.matmul(trainable).sum().backward()
        #expect(rules == 2)                                      // matmul and sum only
        #expect(trainable.grad != nil)
    }

    @Test func matmulWithFrozenWeightComputesOnlyInputGradient() {
        var x = randomTensor([4, 3], seed: 1)
        x.requiresGrad = true
        let w = randomTensor([3, 2], seed: 2)
        var calls: [[Bool]] = []
        // Observe which inputs the engine asks a two-input rule for: the trainable one only,
        // in either position (what matmul's rule relies on to skip the weight-gradient GEMM).
        let y = x.matmul(w)
        let probe = Tensor.record(y.detached(), op: "probe", inputs: [y, w]) { g, needs in
            calls.append(needs)
            return [g, needs[1] ? Tensor.zeros(w.shape) : nil]
        }
        let swapped = Tensor.record(y.detached(), op: "probe", inputs: [w, y]) { g, needs in
            calls.append(needs)
            return [needs[0] ? Tensor.zeros(w.shape) : nil, g]
        }
        (probe.sum() + swapped.sum()).backward()
        #expect(calls.count == 2 && calls.contains([true, false]) && calls.contains([false, true]))
        #expect(x.grad?.shape == [4, 3])
        #expect(x.grad!.scalars == (Tensor.ones([4, 2]) * 2).matmul(w.transposed()).scalars)
        #expect(w.grad == nil)
    }

    @Test func gradientFlowsThroughFrozenLayerToTrainableInput() {
        var adapter = Tensor([0.5, -0.5])
        adapter.requiresGrad = true
        let frozenWeight = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
        let out = Tensor.linear(adapter.reshaped([1, 2]), weight: frozenWeight)
        out.sum().backward()
        #expect(adapter.grad?.scalars == [4, 6])   // column sums of W
    }

    @Test func backwardTwiceOnFreshGraphs() {
        var x = Tensor([3])
        x.requiresGrad = true
        for _ in 0..<3 { (x * x).sum().backward() }
        #expect(x.grad?.scalars == [18])
    }

    @Test func deepChainDoesNotOverflowTheStack() {
        var x = Tensor([1])
        x.requiresGrad = true
        var y = x
        for _ in 0..<20_000 { y = y + 0 }
        y.sum().backward()
        #expect(x.grad?.scalars == [1])
    }

    @Test func deepGraphDroppedWithoutBackwardDoesNotOverflowTheStack() {
        // A million recorded ops, never back-propagated: the graph is freed iteratively when the
        // last tensor goes (recursive releases would need a stack frame per node).
        var x = Tensor(1)
        x.requiresGrad = true
        var y = x
        for _ in 0..<1_000_000 { y = Tensor.record(y.detached(), op: "identity", inputs: [y]) { g, _ in [g] } }
        #expect(y.item() == 1 && !y.isLeaf)
        y = Tensor(0)
        #expect(!y.requiresGrad)
    }

    // MARK: Retained and freed graphs

    @Test func retainedSubgraphAccumulatesThroughASecondGraph() {
        var x = Tensor([1, 2])
        x.requiresGrad = true
        let h = x * 2
        h.sum().backward(retainGraph: true)
        #expect(x.grad?.scalars == [2, 2])
        (h * 3).sum().backward()                 // through h's retained node: + 2 * 3
        #expect(x.grad?.scalars == [8, 8])
    }

    @Test func retainedGraphRunsBackwardAgain() {
        var x = Tensor([1, -2])
        x.requiresGrad = true
        let loss = (x * x).sum()
        loss.backward(retainGraph: true)
        loss.backward()
        #expect(x.grad?.scalars == [4, -8])
    }

    @Test func backwardThroughAFreedSharedSubgraphIsRefused() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var x = Tensor([1, 2])
            x.requiresGrad = true
            let h = x * 2
            h.sum().backward()                   // frees h's node
            (h * 3).sum().backward()             // would silently drop the path through h
        }
        expectStandardError(result, contains: ["backward through the graph a second time", "'mul'", "retainGraph: true"])
    }

    @Test func backwardTwiceOnAFreedGraphIsRefused() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var x = Tensor([1, 2])
            x.requiresGrad = true
            let loss = (x * x).sum()
            loss.backward()
            loss.backward()
        }
        expectStandardError(result, contains: ["backward through the graph a second time", "'sum'", "retainGraph: true"])
    }

    // MARK: Seeds

    @Test func backwardWithASeedGradient() {
        var x = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
        x.requiresGrad = true
        let y = x * x
        y.backward(Tensor(shape: [2, 2], scalars: [1, 0.5, -1, 0]))
        #expect(x.grad?.scalars == [2, 2, -6, 0])     // 2x * seed
    }

    // MARK: Writes through the subscript

    @Test func writeIntoANonLeafIsRecorded() {
        var x = Tensor([1, 2])
        x.requiresGrad = true
        var y = x * 2
        y[0] = 5
        #expect(y.scalars == [5, 4] && !y.isLeaf)
        y.sum().backward()
        #expect(x.grad?.scalars == [0, 2])          // the overwritten element no longer depends on x
    }

    @Test func writeIntoAView() {
        var x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        x.requiresGrad = true
        var y = (x * x).transposed()                // [3, 2], non-contiguous
        y[2, 0] = 0                                 // element (0, 2) of x * x
        y[-1, -1] = 1                               // element (1, 2)
        #expect(y.scalars == [1, 16, 4, 25, 0, 1])
        (y * Tensor([1, 10])).sum().backward()
        #expect(x.grad?.scalars == [2, 4, 0, 80, 100, 0])
        // The value y had before the write, still held elsewhere, is unchanged.
        let before = (x * 2)
        var written = before
        written[0, 0] = 7
        #expect(before.scalars == [2, 4, 6, 8, 10, 12] && written.scalars.first == 7)
    }

    @Test func writeIntoALeafIsAllowedWithoutGradients() {
        var w = Tensor([1, 2])
        w.requiresGrad = true
        withoutGradients { w[1] = 7 }
        #expect(w.scalars == [1, 7] && w.requiresGrad && w.isLeaf)
        var plain = Tensor([1, 2])                  // no gradient: a plain write
        plain[0] = 3
        #expect(plain.scalars == [3, 2] && !plain.requiresGrad)
    }

    @Test func writeIntoALeafThatRequiresGradIsRefused() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var w = Tensor([1, 2])
            w.requiresGrad = true
            w[0] = 5
        }
        expectStandardError(result, contains: ["subscript", "leaf that requires grad", "[2]", "withoutGradients"])
    }

    @Test func gradCheckCatchesAWrongRule() {
        withKnownIssue {
            gradCheck([randomTensor([3], seed: 1)], "deliberately wrong sign") { inputs in
                let x = inputs[0]
                return Tensor.record(x.detached() * x.detached(), op: "wrongSquare", inputs: [x]) { g, _ in [g * x.detached() * -2] }
            }
        }
    }
}
