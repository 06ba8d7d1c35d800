import Foundation
import Testing
@testable import FineTune

// The Trainer's guards: ordinary data mistakes become typed errors (or skipped batches)
// before any update, never a crash and never a silent wrong result.

/// A bias added through `sqrt(w)` with `w` starting at 0: a finite loss with an infinite gradient.
private final class SqrtBias: Module {
    @Child var fc = Linear(2, 3)
    let w = Parameter(Tensor.zeros([3]))
    override func forward(_ x: Tensor) -> Tensor { fc(x) + w.value.sqrt() }
}

private func weights(_ model: Module) -> [String: [Float]] { model.stateDict().mapValues(\.scalars) }

@Suite("Trainer guards")
struct TrainerGuardTests {
    @Test("an infinite gradient stops training before the update, with clipping off (Adam)")
    func nonFiniteGradientWithoutClipping() throws {
        let model = SqrtBias()
        let data = TensorDataset(inputs: randomTensor([4, 2], seed: 1), labels: [0, 1, 2, 0])
        let before = weights(model)
        let trainer = Trainer(model: model, optimizer: Adam(model, lr: 0.1), batchSize: 4)
        #expect(throws: TrainingFailure(reason: .nonFiniteGradient(epoch: 0, step: 0), history: TrainingHistory())) {
            try trainer.fit(data, epochs: 2)
        }
        #expect(weights(model) == before)
    }

    @Test("labels outside the model's classes throw before any update, naming the first bad example")
    func labelsBeyondTheHead() throws {
        let data = try digits().slice(0..<40)
        let model = RandomGenerator.withSeed(1) { Sequential(Flatten(), Linear(64, 3)) }
        let before = weights(model)
        let trainer = Trainer(model: model, optimizer: SGD(model, lr: 0.1), batchSize: 8)
        let firstBad = data.labels.firstIndex { $0 >= 3 }!
        #expect(throws: TrainingFailure(reason: .labelOutOfRange(dataset: "training", index: firstBad,
                                                                  label: data.labels[firstBad], classes: 3),
                                        history: TrainingHistory())) {
            try trainer.fit(data, epochs: 1)
        }
        #expect(weights(model) == before)
        // Validation labels are checked too.
        let good = TensorDataset(inputs: data.inputs, labels: data.labels.map { $0 % 3 })
        let badValidation = TensorDataset(inputs: data.slice(0..<4).inputs, labels: [0, 1, 2, 5])
        #expect(throws: TrainingFailure(reason: .labelOutOfRange(dataset: "validation", index: 3, label: 5, classes: 3),
                                        history: TrainingHistory())) {
            try trainer.fit(good, validation: badValidation, epochs: 1)
        }
        #expect(weights(model) == before)
        #expect(TrainingError.labelOutOfRange(dataset: "training", index: 4, label: 7, classes: 3).description
                == "training example 4 has label 7, but the model outputs 3 classes (valid labels 0..<3)")
    }

    @Test("token ids beyond an embedding table throw from fit instead of stopping the process")
    func tokenIdsBeyondTheVocabulary() throws {
        let model = RandomGenerator.withSeed(2) { Sequential(Embedding(5, 4), Flatten(), Linear(12, 2)) }
        let data = TensorDataset(inputs: Tensor(shape: [2, 3], scalars: [0, 1, 2, 3, 7, 4]), labels: [0, 1])
        let before = weights(model)
        let trainer = Trainer(model: model, optimizer: SGD(model, lr: 0.1), batchSize: 2)
        #expect(throws: TrainingFailure(reason: .invalidInput(epoch: 0, step: 0,
                                                              issue: .indexOutOfRange(layer: "Embedding(5, 4)", index: 7, count: 5)),
                                        history: TrainingHistory())) {
            try trainer.fit(data, epochs: 1)
        }
        #expect(weights(model) == before)
    }

    @Test("a last batch of one reaching BatchNorm is dropped and reported; dropLast skips it up front")
    func batchOfOne() throws {
        let data = TensorDataset(inputs: randomTensor([9, 3], seed: 4), labels: [0, 1, 0, 1, 0, 1, 0, 1, 0])
        let model = RandomGenerator.withSeed(3) { Sequential(Linear(3, 4), BatchNorm1d(4), ReLU(), Linear(4, 2)) }
        let trainer = Trainer(model: model, optimizer: SGD(model, lr: 0.1), batchSize: 4)
        let history = try trainer.fit(data, epochs: 2)
        #expect(history.droppedBatches.map(\.epoch) == [0, 1] && history.droppedBatches.allSatisfy { $0.size == 1 && $0.step == 2 })
        #expect(history.droppedBatches[0].reason == .singleValuePerChannel(layer: "BatchNorm1d(4)", shape: [1, 4]))
        #expect((model[1] as! BatchNorm).numBatchesTracked!.value.item() == 4)    // only the full batches counted
        trainer.dropLast = true
        let skipping = try trainer.fit(data, epochs: 1)
        #expect(skipping.droppedBatches.isEmpty && (model[1] as! BatchNorm).numBatchesTracked!.value.item() == 6)
    }

    @Test("early stopping without validation data throws; a failure carries the history and leaves the best weights")
    func failuresCarryHistory() throws {
        let x = randomTensor([16, 4], seed: 5)
        let data = TensorDataset(inputs: x, labels: (0..<16).map { $0 % 2 })
        let model = RandomGenerator.withSeed(4) { Sequential(Linear(4, 8), ReLU(), Linear(8, 2)) }
        let trainer = Trainer(model: model, optimizer: Adam(model, lr: 0.01), batchSize: 8,
                              earlyStopping: EarlyStopping(patience: 5))
        #expect(throws: TrainingFailure(reason: .earlyStoppingWithoutValidation, history: TrainingHistory())) {
            try trainer.fit(data, epochs: 3)
        }
        // Epoch 2 goes bad (a weight turns NaN in the hook): the error carries two epochs of
        // history and the model holds the best epoch's weights.
        var perEpoch: [[String: [Float]]] = []
        trainer.onEpochEnd = { _ in perEpoch.append(weights(model)) }
        trainer.onEpochStart = { epoch in
            if epoch == 2 { model.parameter(named: "2.bias")!.value = Tensor([Float.nan, 0]) }
        }
        do {
            try trainer.fit(data, validation: data, epochs: 5)
            Issue.record("expected a failure")
        } catch {
            #expect(error.history.epochs.count == 2)
            guard case .nonFiniteLoss(epoch: 2, step: 0, _) = error.reason, let best = error.history.bestEpoch else {
                Issue.record("unexpected \(error.reason)")
                return
            }
            #expect(weights(model) == perEpoch[best] && perEpoch[0] != perEpoch[1])
        }
    }
}
