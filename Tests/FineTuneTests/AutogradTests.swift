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
        // Observe which inputs the engine asks for.
        let y = x.matmul(w)
        let probe = Tensor.record(y.detached(), op: "probe", inputs: [y]) { g, needs in calls.append(needs); return [g] }
        probe.sum().backward()
        #expect(calls == [[true]])
        #expect(x.grad?.shape == [4, 3])
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

    @Test func gradCheckCatchesAWrongRule() {
        withKnownIssue {
            gradCheck([randomTensor([3], seed: 1)], "deliberately wrong sign") { inputs in
                let x = inputs[0]
                return Tensor.record(x.detached() * x.detached(), op: "wrongSquare", inputs: [x]) { g, _ in [g * x.detached() * -2] }
            }
        }
    }
}
