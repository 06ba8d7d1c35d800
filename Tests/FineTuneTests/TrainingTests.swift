import Foundation
import Testing
@testable import FineTune

// Training: datasets (CSV, splits, batches), the Trainer (NaN guard, early stopping with
// best-weight restore, gradual unfreezing hook), and end-to-end fine-tuning of the
// PyTorch-trained digits CNN on real data against training from scratch.

func digits() throws -> TensorDataset {
    try TensorDataset(csv: fixtureURL("digits/digits.csv"), featureShape: [1, 8, 8], scale: 1.0 / 16)
}

/// The pretrained digits CNN of the torch-digits-cnn fixture (trained on rows 0..<1500).
func pretrainedCNN() throws -> Sequential {
    let model = digitsCNN()
    try model.load(from: fixtureURL("torch-digits-cnn/model.safetensors"))
    return model
}

@Suite("Training")
struct TrainingTests {
    @Test("the digits CSV loads with PyTorch's scaling; bad lines name their line number")
    func csvDataset() throws {
        let data = try digits()
        #expect(data.count == 1797 && data.featureShape == [1, 8, 8] && data.classCount == 10)
        let reference = try SafeTensors(contentsOf: fixtureURL("torch-digits-cnn/reference.safetensors"))
        #expect(data.slice(1500..<1532).inputs.scalars == (try reference.tensor("inputs")).scalars)

        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let bad = directory.appendingPathComponent("bad.csv")
        try "1,2,0\n\n3,x,1\n".write(to: bad, atomically: true, encoding: .utf8)
        #expect(throws: DataError.malformedLine(line: 3, reason: "\"x\" is not a finite number")) {
            try TensorDataset(csv: bad, featureShape: [2])
        }
        try "1,2,0\n3,4\n".write(to: bad, atomically: true, encoding: .utf8)
        #expect(throws: DataError.malformedLine(line: 2, reason: "2 fields, expected 2 features and a label")) {
            try TensorDataset(csv: bad, featureShape: [2])
        }
        #expect(throws: DataError.self) { try TensorDataset(csv: directory.appendingPathComponent("none.csv"), featureShape: [2]) }
    }

    @Test("splits are disjoint, complete and reproducible; batches cover every example once")
    func splitsAndBatches() throws {
        let data = TensorDataset(inputs: Tensor(shape: [10, 1], scalars: (0..<10).map(Float.init)), labels: Array(0..<10))
        let (train, validation) = data.split(validationFraction: 0.3, seed: 4)
        #expect(train.count == 7 && validation.count == 3)
        #expect(Set(train.labels + validation.labels) == Set(0..<10))
        #expect(train.inputs.scalars.map { Int($0) } == train.labels)
        #expect(data.split(validationFraction: 0.3, seed: 4).validation.labels == validation.labels)
        let batches = data.batches(size: 4, shuffle: true, seed: 9)
        #expect(batches.map(\.labels.count) == [4, 4, 2])
        #expect(batches.flatMap(\.labels).sorted() == Array(0..<10))
        #expect(batches.flatMap { $0.inputs.scalars.map { Int($0) } } == batches.flatMap(\.labels))
    }

    @Test("a non-finite loss stops training with a clear error before the weights change")
    func nonFiniteLoss() throws {
        let model = Sequential(Linear(2, 3))
        let data = TensorDataset(inputs: Tensor(shape: [4, 2], scalars: [1, 2, 3, 4, .nan, 1, 0, 0]), labels: [0, 1, 2, 0])
        let before = model.stateDict().mapValues(\.scalars)
        let trainer = Trainer(model: model, optimizer: SGD(model, lr: 0.1), batchSize: 4)
        #expect {
            try trainer.fit(data, epochs: 1)
        } throws: { error in
            guard case .nonFiniteLoss(0, 0, let value) = (error as? TrainingFailure)?.reason else { return false }
            return value.isNaN
        }
        #expect(model.stateDict().allSatisfy { $0.value.scalars == before[$0.key]! })
        #expect(TrainingError.nonFiniteLoss(epoch: 2, step: 5, value: .infinity).description.contains("epoch 2, step 5"))
    }

    @Test("early stopping stops `patience` epochs after the best one (Keras, fastai) and restores its weights")
    func earlyStopping() throws {
        // Validation labels contradict the training labels, so every epoch of training makes
        // the validation loss worse: the best epoch is the first.
        let x = randomTensor([32, 4], seed: 3)
        let labels = x.scalars.enumerated().filter { $0.offset % 4 == 0 }.map { $0.element > 0 ? 1 : 0 }
        let train = TensorDataset(inputs: x, labels: labels)
        let validation = TensorDataset(inputs: x, labels: labels.map { 1 - $0 })
        let model = Sequential(Linear(4, 8), ReLU(), Linear(8, 2))
        let trainer = Trainer(model: model, optimizer: Adam(model, lr: 0.05), batchSize: 8,
                              earlyStopping: EarlyStopping(patience: 2))
        var seen: [Int] = []
        trainer.onEpochEnd = { seen.append($0.epoch) }
        let history = try trainer.fit(train, validation: validation, epochs: 20)
        // Stops when epochs.count == bestIndex + 1 + patience.
        #expect(history.stoppedEarly && history.bestEpoch == 0 && history.epochs.count == 0 + 1 + 2 && seen == [0, 1, 2])
        let losses = history.epochs.map { $0.validationLoss! }
        #expect(losses[1] > losses[0] && losses[2] > losses[0])
        #expect(trainer.evaluate(validation).loss == losses[0])    // the restored weights, bit for bit
    }

    @Test("a frozen pretrained feature extractor with a new head beats training from scratch on few examples")
    func transferLearningOnDigits() throws {
        // A new labelling of the classes (a new head has to learn it) with only 60 labelled
        // examples the pretrained model never saw; tested on 197 others.
        let all = try digits()
        let relabel = { (d: TensorDataset) in TensorDataset(inputs: d.inputs, labels: d.labels.map { ($0 * 7 + 3) % 10 }) }
        let (fitSet, validation) = relabel(all.slice(1500..<1560)).split(validationFraction: 0.2, seed: 1)
        let test = relabel(all.slice(1600..<1797))

        func run(_ model: Sequential) throws -> Float {
            let trainer = Trainer(model: model, optimizer: AdamW(model, lr: 0.01), batchSize: 16,
                                  earlyStopping: EarlyStopping(metric: .validationAccuracy, patience: 5), seed: 5)
            try trainer.fit(fitSet, validation: validation, epochs: 30)
            return trainer.evaluate(test).accuracy
        }
        // Frozen feature extractor + new head (the classic transfer recipe).
        let transfer = try pretrainedCNN()
        transfer.freeze()
        _ = try RandomGenerator.withSeed(21) { try transfer.replaceModule(at: "10", with: Linear(64, 10)) }
        #expect(transfer.trainableParameterCount == 64 * 10 + 10)
        let frozenBefore = transfer.parameter(named: "4.weight")!.value.scalars
        let transferAccuracy = try run(transfer)
        #expect(transfer.parameter(named: "4.weight")!.value.scalars == frozenBefore)

        // Retrained from scratch for comparison: the same architecture, data and budget.
        let scratch = RandomGenerator.withSeed(21) { digitsCNN() }
        let scratchAccuracy = try run(scratch)
        // Frozen BatchNorm keeps its pretrained statistics (Keras' behaviour). Over shuffling seeds
        // 5...8 the transfer accuracy ranges 0.81-0.91 (0.82-0.92 with drifting batch statistics).
        #expect(transferAccuracy >= 0.8, "transfer accuracy \(transferAccuracy)")
        #expect(transferAccuracy > scratchAccuracy + 0.1, "transfer \(transferAccuracy) vs scratch \(scratchAccuracy)")
    }

    @Test("precomputed backbone features train a head that works on the full model")
    func featureExtraction() throws {
        let all = try digits()
        let model = try pretrainedCNN()
        let backbone = Sequential(Array(model.layers[0..<10]))
        backbone.freeze()
        let train = all.slice(1500..<1600), test = all.slice(1600..<1700)
        let features = try train.features(through: backbone)
        #expect(features.featureShape == [64] && features.labels == train.labels && model.isTraining)
        let head = RandomGenerator.withSeed(3) { Linear(64, 10) }
        let trainer = Trainer(model: head, optimizer: AdamW(head, lr: 0.01), batchSize: 20)
        try trainer.fit(features, epochs: 15)
        try model.replaceModule(at: "10", with: head)
        let direct = Trainer.evaluate(model, on: test), viaFeatures = Trainer.evaluate(head, on: try test.features(through: backbone))
        #expect(abs(direct.accuracy - viaFeatures.accuracy) < 1e-6 && direct.accuracy > 0.85)
    }

    @Test("features(through:) refuses a backbone that trains, naming its trainable parameters or batch-statistics BatchNorms")
    func featureExtractionNeedsAFrozenBackbone() throws {
        let data = try digits().slice(1500..<1520)
        let backbone = Sequential(Array(try pretrainedCNN().layers[0..<10]))
        #expect(throws: FeatureExtractionError.trainableParameters(
            names: ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "8.weight", "8.bias"])) {
            try data.features(through: backbone)
        }
        let error = FeatureExtractionError.trainableParameters(names: ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"])
        #expect(error.description.contains("6 trainable parameters (0.weight, 0.bias, 1.weight, 1.bias, 4.weight and 1 more)"))
        #expect(error.description.contains("backbone.freeze()"))

        // Partly frozen: only what still trains is named.
        try backbone.freeze(matching: .regex(#"[018]\..*"#))
        #expect(throws: FeatureExtractionError.trainableParameters(names: ["4.weight", "4.bias"])) {
            try data.features(through: backbone)
        }
        // Every parameter frozen, but a BatchNorm told to use batch statistics in training mode.
        backbone.freeze()
        let bn = try #require(backbone.layers[1] as? BatchNorm)
        bn.statistics = .batch
        #expect(throws: FeatureExtractionError.batchStatistics(layers: ["1"])) { try data.features(through: backbone) }
        #expect(FeatureExtractionError.batchStatistics(layers: ["1"]).description.contains("backbone.freeze()"))
        bn.statistics = nil
        #expect(try data.features(through: backbone).featureShape == [64])
    }

    @Test("features through a frozen backbone: BatchNorm's running statistics, the eval-mode output in either mode, modes kept")
    func frozenBackboneFeatures() throws {
        let data = try digits().slice(1500..<1540)
        let backbone = Sequential(Array(try pretrainedCNN().layers[0..<10]))
        backbone.freeze()
        let bn = try #require(backbone.layers[1] as? BatchNorm)
        let statistics = [bn.runningMean!.value.scalars, bn.runningVar!.value.scalars]
        #expect(backbone.isTraining)
        let features = try data.features(through: backbone, batchSize: 16)

        #expect(backbone.isTraining && bn.isTraining)
        #expect([bn.runningMean!.value.scalars, bn.runningVar!.value.scalars] == statistics)
        // Batches of 16, 16 and 8 give the same bits as one eval-mode pass over all 40.
        let evaluated = backbone.inferring { backbone(data.inputs) }
        #expect(features.inputs.scalars.map(\.bitPattern) == evaluated.scalars.map(\.bitPattern))
        // A training-mode pass (what fit computes) gives them too: the frozen BatchNorm keeps
        // its running statistics, where batch statistics would give other values.
        let trainingMode = withoutGradients { backbone(data.inputs) }
        #expect(features.inputs.scalars.map(\.bitPattern) == trainingMode.scalars.map(\.bitPattern))
        bn.statistics = .batch
        let batchStatistics = withoutGradients { backbone(data.inputs) }
        #expect(batchStatistics.scalars != features.inputs.scalars)
    }

    @Test("the learning-rate range test sweeps geometrically, suggests a rate, and leaves no trace")
    func learningRateFinder() throws {
        let data = try digits().slice(1500..<1700)
        let model = try pretrainedCNN()
        model.freeze()
        _ = try RandomGenerator.withSeed(2) { try model.replaceModule(at: "10", with: Linear(64, 10)) }
        let optimizer = AdamW(model, lr: 3e-3, schedule: OneCycleLR(maxLR: 3e-3, totalSteps: 50))
        let trainer = Trainer(model: model, optimizer: optimizer, batchSize: 20)
        try trainer.fit(data.slice(0..<40), epochs: 1)    // some optimizer state to preserve
        let weights = model.stateDict().mapValues(\.scalars)
        let state = optimizer.state(for: "10.weight")!
        let (steps, rate) = (optimizer.stepCount, optimizer.learningRate)

        let search = try trainer.findLearningRate(data, from: 1e-5, to: 1e5, steps: 60)
        #expect(search.rates.first == 1e-5 && search.rates.count == search.losses.count && search.rates.count > 10)
        #expect(zip(search.rates, search.rates.dropFirst()).allSatisfy { abs($1 / $0 - search.rates[1] / search.rates[0]) < 1e-3 })
        #expect(search.diverged && search.rates.count < 60)    // stops once the loss blows up
        let suggestion = try #require(search.steepest)
        #expect(suggestion > 1e-5 && suggestion < 10)
        #expect(search.minimumDividedByTen! > 1e-6)

        #expect(model.stateDict().allSatisfy { $0.value.scalars == weights[$0.key]! })
        #expect(optimizer.stepCount == steps && optimizer.learningRate == rate && optimizer.schedule != nil)
        let restored = optimizer.state(for: "10.weight")!
        #expect(restored.step == state.step && restored.tensors["exp_avg"]!.scalars == state.tensors["exp_avg"]!.scalars)
        #expect(model.parameters().allSatisfy { $0.grad == nil } && model.parameter(named: "4.weight")!.isFrozen)
    }

    @Test("gradual unfreezing through the trainer's epoch hook")
    func gradualUnfreezingHook() throws {
        let all = try digits()
        let (train, validation) = all.slice(1500..<1700).split(validationFraction: 0.25, seed: 2)
        let model = try pretrainedCNN()
        let unfreezing = GradualUnfreezing(groups: model.defaultLayerGroups())
        let trainer = Trainer(model: model, optimizer: AdamW(model, lr: 1e-3), batchSize: 50)
        trainer.onEpochStart = { epoch throws(SelectionError) in try unfreezing.apply(to: model, epoch: epoch) }
        let history = try trainer.fit(train, validation: validation, epochs: 3)
        let counts = history.epochs.map(\.trainableParameters)
        #expect(counts == [64 * 10 + 10, 64 * 10 + 10 + 128 * 64 + 64, 64 * 10 + 10 + 128 * 64 + 64 + 32 * 16 * 9 + 32])
        #expect(history.epochs.last!.validationAccuracy! > 0.9)
    }
}
