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

/// An optimizer of the caller's own that is no `BuiltInOptimizer` (it delegates to SGD): the
/// Checkpoint file I/O and `TrainingState` reach its state through `exportState`/`importState`.
private final class DelegatingOptimizer: Optimizer {
    let inner: SGD
    init(_ module: Module) { inner = SGD(module, lr: 0.05, momentum: 0.9) }
    var learningRate: Float { get { inner.learningRate } set { inner.learningRate = newValue } }
    var schedule: (any LearningRateSchedule)? { get { inner.schedule } set { inner.schedule = newValue } }
    var stepCount: Int { inner.stepCount }
    var unfreezePolicy: UnfreezePolicy { get { inner.unfreezePolicy } set { inner.unfreezePolicy = newValue } }
    func step() { inner.step() }
    func zeroGrad() { inner.zeroGrad() }
    var parameterNamesWithState: [String] { inner.parameterNamesWithState }
    func state(for name: String) -> OptimizerState? { inner.state(for: name) }
    func resetState() { inner.resetState() }
    func exportState() -> OptimizerStateSnapshot { inner.exportState() }
    func importState(_ snapshot: OptimizerStateSnapshot) throws(OptimizerStateError) { try inner.importState(snapshot) }
}

/// A module with a single parameter named `weight`.
private final class WeightOnly: Module {
    let weight: Parameter
    init(_ value: Tensor) { weight = Parameter(value) }
}

@Suite struct OptimizerStateFileTests {
    private func train(_ model: Linear, _ optimizer: any Optimizer, steps: Int) {
        for _ in 0..<steps {
            optimizer.zeroGrad()
            model(randomTensor([4, 3], seed: 5)).pow(2).mean().backward()
            optimizer.step()
        }
    }

    @Test func anyOptimizerSavesAndLoadsItsStateThroughTheProtocol() throws {
        let model = RandomGenerator.withSeed(1) { Linear(3, 2) }
        let optimizer = DelegatingOptimizer(model)
        train(model, optimizer, steps: 2)
        optimizer.learningRate = 0.02
        let file = try SafeTensors(data: try optimizer.stateData())
        #expect(file.metadata["optimizer"] == "DelegatingOptimizer" && file.metadata["step_count"] == "2")

        let resumedModel = RandomGenerator.withSeed(1) { Linear(3, 2) }
        try resumedModel.loadStateDict(model.stateDict())
        let resumed = DelegatingOptimizer(resumedModel)
        let report = try resumed.loadState(from: file)
        #expect(report.loadedKeys == ["bias", "weight"] && report.unexpectedKeys.isEmpty)
        #expect(resumed.stepCount == 2 && resumed.learningRate == 0.02)
        train(model, optimizer, steps: 1); train(resumedModel, resumed, steps: 1)
        #expect(resumedModel.weight.value.scalars == model.weight.value.scalars)

        // The same through a training state, and a plain SGD's file is refused (another type).
        let state = try TrainingState(model: model, optimizer: optimizer)
        let fresh = DelegatingOptimizer(resumedModel)
        try state.restore(into: resumedModel, optimizer: fresh)
        #expect(fresh.stepCount == 3 && fresh.state(for: "weight")!.tensors["momentum_buffer"]!.scalars
                == optimizer.state(for: "weight")!.tensors["momentum_buffer"]!.scalars)
        #expect(throws: CheckpointError.self) { try fresh.loadState(from: SafeTensors(data: try optimizer.inner.stateData())) }
        #expect(fresh.stepCount == 3)
    }

    @Test func wrongShapesAreAllListedAndUnknownParametersSkippedOrRefusedWithoutChanges() throws {
        let model = RandomGenerator.withSeed(1) { Linear(3, 2) }
        let optimizer = AdamW(model, lr: 0.05)
        train(model, optimizer, steps: 1)
        let data = try optimizer.stateData()

        let wider = AdamW(RandomGenerator.withSeed(2) { Linear(3, 4) })
        #expect(throws: CheckpointError.shapeMismatch([
            .init(key: "bias.exp_avg", expected: [4], found: [2]), .init(key: "bias.exp_avg_sq", expected: [4], found: [2]),
            .init(key: "weight.exp_avg", expected: [4, 3], found: [2, 3]),
            .init(key: "weight.exp_avg_sq", expected: [4, 3], found: [2, 3]),
        ])) { try wider.loadState(from: SafeTensors(data: data)) }
        #expect(wider.stepCount == 0 && wider.parameterNamesWithState.isEmpty)

        // A model with only `weight` of the same shape: `bias` is unknown.
        let partial = WeightOnly(model.weight.value.contiguousCopy())
        let strict = AdamW(partial, lr: 0.05)
        #expect(throws: CheckpointError.self) { try strict.loadState(from: SafeTensors(data: data)) }
        #expect(strict.stepCount == 0 && strict.parameterNamesWithState.isEmpty)
        let report = try strict.loadState(from: SafeTensors(data: data), strict: false)
        #expect(report.loadedKeys == ["weight"] && report.unexpectedKeys == ["bias.exp_avg", "bias.exp_avg_sq", "bias.step"])
        #expect(strict.stepCount == 1 && strict.parameterNamesWithState == ["weight"])
    }
}
