import Foundation
import Testing
@testable import FineTune

/// `exportState()` / `importState(_:)`: the optimizer's state in memory, through the protocol.
@Suite struct OptimizerSnapshotTests {
    /// Linear(3, 2) trained on a fixed batch.
    private func step(_ model: Linear, _ optimizer: any Optimizer) {
        let x = randomTensor([4, 3], seed: 5)
        optimizer.zeroGrad()
        model(x).pow(2).mean().backward()
        optimizer.step()
    }

    @Test(arguments: ["AdamW", "SGD"])
    func importingAnExportRewindsTheOptimizerExactly(kind: String) throws {
        let model = RandomGenerator.withSeed(1) { Linear(3, 2) }
        let optimizer: any Optimizer = kind == "AdamW" ? AdamW(model, lr: 0.05) : SGD(model, lr: 0.05, momentum: 0.9)
        step(model, optimizer); step(model, optimizer)
        let weights = model.stateDict().mapValues { $0.contiguousCopy() }
        let saved = optimizer.exportState()
        step(model, optimizer)                     // moves state, step count, weights
        optimizer.learningRate = 1
        let afterThird = model.weight.value.scalars

        try model.loadStateDict(weights)
        try optimizer.importState(saved)
        #expect(optimizer.stepCount == 2)
        #expect(optimizer.learningRate == 0.05)
        for name in optimizer.parameterNamesWithState {
            let restored = optimizer.state(for: name)!, expected = saved.parameters[name]!
            #expect(restored.step == expected.step)
            for (key, tensor) in expected.tensors { #expect(restored.tensors[key]!.scalars == tensor.scalars) }
        }
        step(model, optimizer)                     // the same third step again
        #expect(model.weight.value.scalars == afterThird)
        // The snapshot is a copy: the steps after export did not change it.
        step(model, optimizer)
        try optimizer.importState(saved)
        #expect(optimizer.stepCount == 2)
    }

    @Test func badSnapshotsThrowAndChangeNothing() throws {
        let model = RandomGenerator.withSeed(2) { Linear(3, 2) }
        let optimizer = AdamW(model, lr: 0.01)
        step(model, optimizer)
        let good = optimizer.exportState()

        var wrongShape = good
        wrongShape.parameters["weight"]!.tensors["exp_avg"] = Tensor.zeros([3, 2])
        #expect(throws: OptimizerStateError.shapeMismatch(parameter: "weight", buffer: "exp_avg", expected: [2, 3], found: [3, 2])) {
            try optimizer.importState(wrongShape)
        }
        var unknown = good
        unknown.parameters["head.weight"] = good.parameters["weight"]
        #expect(throws: OptimizerStateError.unknownParameter("head.weight")) { try optimizer.importState(unknown) }
        var fromSGD = good
        fromSGD.parameters["bias"]!.tensors = ["momentum_buffer": Tensor.zeros([2])]
        #expect(throws: OptimizerStateError.self) { try optimizer.importState(fromSGD) }
        var negative = good
        negative.stepCount = -1
        #expect(throws: OptimizerStateError.invalidStep(parameter: nil)) { try optimizer.importState(negative) }

        #expect(optimizer.stepCount == 1)
        #expect(optimizer.state(for: "weight")!.tensors["exp_avg"]!.scalars == good.parameters["weight"]!.tensors["exp_avg"]!.scalars)
    }
}
