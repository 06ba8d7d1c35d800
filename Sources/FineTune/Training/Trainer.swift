import Foundation

/// Stops training when a validation metric stops improving (Keras' `EarlyStopping`).
public struct EarlyStopping: Sendable {
    public enum Metric: Sendable { case validationLoss, validationAccuracy }
    /// What is watched (lower loss or higher accuracy is better).
    public var metric: Metric
    /// Epochs without improvement before stopping.
    public var patience: Int
    /// The smallest change that counts as an improvement.
    public var minDelta: Float
    /// Whether the model gets the weights of its best epoch back when training ends.
    public var restoreBestWeights: Bool

    public init(metric: Metric = .validationLoss, patience: Int = 3, minDelta: Float = 0, restoreBestWeights: Bool = true) {
        precondition(patience >= 0 && minDelta >= 0, "EarlyStopping: patience and minDelta must be non-negative")
        self.metric = metric; self.patience = patience; self.minDelta = minDelta; self.restoreBestWeights = restoreBestWeights
    }

    /// Whether `value` beats `best` by at least ``minDelta``.
    func improves(_ value: Float, on best: Float?) -> Bool {
        guard let best else { return true }
        switch metric {
        case .validationLoss: return value < best - minDelta
        case .validationAccuracy: return value > best + minDelta
        }
    }
}

/// One epoch of ``Trainer/fit(_:validation:epochs:)``.
public struct EpochRecord: Equatable, Sendable {
    public var epoch: Int
    /// Mean training loss over the epoch's batches.
    public var trainLoss: Float
    public var validationLoss: Float?
    public var validationAccuracy: Float?
    /// The optimizer's base learning rate at the end of the epoch.
    public var learningRate: Float
    /// Trainable scalars during the epoch (changes under gradual unfreezing).
    public var trainableParameters: Int
}

/// What ``Trainer/fit(_:validation:epochs:)`` did.
public struct TrainingHistory: Equatable, Sendable {
    public var epochs: [EpochRecord] = []
    /// The epoch whose weights the model holds after early stopping restored them.
    public var bestEpoch: Int?
    /// Whether early stopping ended training before the last epoch.
    public var stoppedEarly = false
}

/// Why training stopped with an error. The model holds the weights of the last good step.
public enum TrainingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The loss was NaN or infinite: the step was skipped (no backward, no update).
    case nonFiniteLoss(epoch: Int, step: Int, value: Float)
    /// The gradient norm was NaN or infinite: the step was skipped (no update).
    case nonFiniteGradient(epoch: Int, step: Int)
    /// The training set has no examples.
    case emptyDataset
    /// A layer-group or freezing callback failed.
    case selection(SelectionError)

    public var description: String {
        switch self {
        case let .nonFiniteLoss(epoch, step, value):
            return "loss is \(value) at epoch \(epoch), step \(step): the step was skipped (lower the learning rate or clip gradients)"
        case let .nonFiniteGradient(epoch, step):
            return "gradient norm is not finite at epoch \(epoch), step \(step): the step was skipped"
        case .emptyDataset: return "the training set is empty"
        case let .selection(error): return error.description
        }
    }
}

/// A classification training loop: shuffled mini-batches, optional gradient clipping, a
/// validation pass per epoch, early stopping with best-weight restore, and NaN/Inf guards.
///
/// ```swift
/// let trainer = Trainer(model: model, optimizer: AdamW(model, lr: 1e-3), batchSize: 64,
///                       earlyStopping: EarlyStopping(patience: 3))
/// trainer.onEpochStart = { epoch in try unfreezing.apply(to: model, epoch: epoch) }
/// let history = try trainer.fit(train, validation: validation, epochs: 20)
/// ```
public final class Trainer {
    public let model: Module
    public let optimizer: any Optimizer
    public var batchSize: Int
    /// Clip the global gradient norm to this value before each step (and refuse non-finite norms).
    public var clipGradientNorm: Float?
    public var earlyStopping: EarlyStopping?
    /// Label smoothing of the cross-entropy loss.
    public var labelSmoothing: Float
    /// Seed of the batch shuffling (epoch `e` shuffles with `seed + e`).
    public var seed: UInt64
    /// Runs before each epoch, e.g. ``GradualUnfreezing/apply(to:epoch:)``.
    public var onEpochStart: ((Int) throws(SelectionError) -> Void)?
    /// Runs after each epoch with its record (logging).
    public var onEpochEnd: ((EpochRecord) -> Void)?

    public init(model: Module, optimizer: any Optimizer, batchSize: Int = 32, clipGradientNorm: Float? = nil,
                earlyStopping: EarlyStopping? = nil, labelSmoothing: Float = 0, seed: UInt64 = 0) {
        precondition(batchSize > 0, "Trainer: batchSize must be positive")
        self.model = model; self.optimizer = optimizer; self.batchSize = batchSize
        self.clipGradientNorm = clipGradientNorm; self.earlyStopping = earlyStopping
        self.labelSmoothing = labelSmoothing; self.seed = seed
    }

    /// Trains for up to `epochs` epochs; with early stopping, `validation` is required.
    ///
    /// Each epoch puts the model in training mode (pinned modules excepted) and then runs
    /// ``onEpochStart``, whose mode choices stand for the epoch; afterwards every module's mode
    /// is what it was before `fit`.
    @discardableResult
    public func fit(_ train: TensorDataset, validation: TensorDataset? = nil, epochs: Int) throws(TrainingError) -> TrainingHistory {
        guard train.count > 0 else { throw .emptyDataset }
        precondition(earlyStopping == nil || validation != nil, "Trainer: early stopping needs a validation set")
        return try model.preservingModes { () throws(TrainingError) -> TrainingHistory in
            try fitEpochs(train, validation: validation, epochs: epochs)
        }
    }

    private func fitEpochs(_ train: TensorDataset, validation: TensorDataset?, epochs: Int) throws(TrainingError) -> TrainingHistory {
        var history = TrainingHistory()
        var best: (value: Float, epoch: Int, state: [String: Tensor])?
        var epochsWithoutImprovement = 0
        for epoch in 0..<epochs {
            model.train()    // before the hook, so a hook's mode choices (backbone.eval()) stand
            if let onEpochStart {
                do { try onEpochStart(epoch) } catch { throw .selection(error) }
            }
            var total: Double = 0
            let batches = train.batches(size: batchSize, shuffle: true, seed: seed &+ UInt64(epoch))
            for (step, batch) in batches.enumerated() {
                optimizer.zeroGrad()
                let loss = Tensor.crossEntropy(model(batch.inputs), targets: batch.labels, labelSmoothing: labelSmoothing)
                let value = loss.scalars[0]
                guard value.isFinite else { throw .nonFiniteLoss(epoch: epoch, step: step, value: value) }
                loss.backward()
                if let clipGradientNorm {
                    do { try clipGradNorm(model.parameters(), maxNorm: clipGradientNorm, errorIfNonfinite: true) } catch {
                        optimizer.zeroGrad()
                        throw .nonFiniteGradient(epoch: epoch, step: step)
                    }
                }
                optimizer.step()
                total += Double(value) * Double(batch.labels.count)
            }
            var record = EpochRecord(epoch: epoch, trainLoss: Float(total / Double(train.count)), validationLoss: nil,
                                     validationAccuracy: nil, learningRate: optimizer.learningRate,
                                     trainableParameters: model.trainableParameterCount)
            if let validation {
                let metrics = evaluate(validation)
                record.validationLoss = metrics.loss
                record.validationAccuracy = metrics.accuracy
            }
            history.epochs.append(record)
            onEpochEnd?(record)

            guard let stopping = earlyStopping, let loss = record.validationLoss, let accuracy = record.validationAccuracy else { continue }
            let value = stopping.metric == .validationLoss ? loss : accuracy
            if stopping.improves(value, on: best?.value) {
                best = (value, epoch, stopping.restoreBestWeights ? snapshot() : [:])
                epochsWithoutImprovement = 0
            } else {
                epochsWithoutImprovement += 1
                if epochsWithoutImprovement > stopping.patience {
                    history.stoppedEarly = epoch < epochs - 1
                    break
                }
            }
        }
        if let best {
            if earlyStopping?.restoreBestWeights == true {
                try! model.loadStateDict(best.state)    // same model, same keys and shapes
            }
            history.bestEpoch = best.epoch
        }
        return history
    }

    /// Mean cross-entropy and accuracy on `data` in evaluation mode, without gradients.
    public func evaluate(_ data: TensorDataset) -> (loss: Float, accuracy: Float) {
        Trainer.evaluate(model, on: data, batchSize: batchSize)
    }

    /// Mean cross-entropy and accuracy of `model` on `data` (eval mode, no gradients; the
    /// model's training mode is restored afterwards).
    public static func evaluate(_ model: Module, on data: TensorDataset, batchSize: Int = 256) -> (loss: Float, accuracy: Float) {
        guard data.count > 0 else { return (.nan, .nan) }
        var loss: Double = 0, correct = 0
        model.inferring {
            for batch in data.batches(size: batchSize) {
                let logits = model(batch.inputs)
                loss += Double(Tensor.crossEntropy(logits, targets: batch.labels).scalars[0]) * Double(batch.labels.count)
                let classes = logits.shape[logits.rank - 1]
                let values = logits.scalars
                for (row, label) in batch.labels.enumerated() {
                    let scores = values[row * classes..<(row + 1) * classes]
                    if scores.indices.max(by: { scores[$0] < scores[$1] }).map({ $0 - row * classes }) == label { correct += 1 }
                }
            }
        }
        return (Float(loss / Double(data.count)), Float(correct) / Float(data.count))
    }

    /// A copy of the state dict that later in-place updates cannot change.
    private func snapshot() -> [String: Tensor] {
        model.stateDict().mapValues { $0.contiguousCopy() }
    }
}
