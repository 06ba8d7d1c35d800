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
    /// Mean training loss over the epoch's trained examples.
    public var trainLoss: Float
    public var validationLoss: Float?
    public var validationAccuracy: Float?
    /// The (scheduled) base learning rate of the epoch's last step.
    public var learningRate: Float
    /// Trainable scalars during the epoch (changes under gradual unfreezing).
    public var trainableParameters: Int
}

/// A batch ``Trainer/fit(_:validation:epochs:)`` could not train on and skipped (no update).
public struct DroppedBatch: Equatable, Sendable {
    public var epoch: Int
    public var step: Int
    /// Examples in the batch.
    public var size: Int
    /// Why: e.g. a batch of one reaching a BatchNorm that uses batch statistics.
    public var reason: DataIssue
}

/// What ``Trainer/fit(_:validation:epochs:)`` did.
public struct TrainingHistory: Equatable, Sendable {
    public var epochs: [EpochRecord] = []
    /// The best epoch early stopping saw (the model holds its weights with `restoreBestWeights`).
    public var bestEpoch: Int?
    /// Whether early stopping ended training before the last epoch.
    public var stoppedEarly = false
    /// Batches skipped because the model could not train on them.
    public var droppedBatches: [DroppedBatch] = []
}

/// Why training stopped with an error.
public enum TrainingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The loss was NaN or infinite: the step was skipped (no backward, no update).
    case nonFiniteLoss(epoch: Int, step: Int, value: Float)
    /// A gradient was NaN or infinite: the step was skipped (no update).
    case nonFiniteGradient(epoch: Int, step: Int)
    /// The training set has no examples.
    case emptyDataset
    /// A label outside the model's classes: `index` is the example's position in its dataset
    /// (`"training"` or `"validation"`), `classes` the model's output width.
    case labelOutOfRange(dataset: String, index: Int, label: Int, classes: Int)
    /// A layer got data it cannot use (a token id beyond an embedding table). No update was made.
    case invalidInput(epoch: Int, step: Int, issue: DataIssue)
    /// Early stopping watches validation metrics, and no validation set was given.
    case earlyStoppingWithoutValidation
    /// A layer-group or freezing callback failed.
    case selection(SelectionError)

    public var description: String {
        switch self {
        case let .nonFiniteLoss(epoch, step, value):
            return "loss is \(value) at epoch \(epoch), step \(step): the step was skipped (lower the learning rate or clip gradients)"
        case let .nonFiniteGradient(epoch, step):
            return "a gradient is not finite at epoch \(epoch), step \(step): the step was skipped"
        case .emptyDataset: return "the training set is empty"
        case let .labelOutOfRange(dataset, index, label, classes):
            return "\(dataset) example \(index) has label \(label), but the model outputs \(classes) classes (valid labels 0..<\(classes))"
        case let .invalidInput(epoch, step, issue):
            return "invalid input at epoch \(epoch), step \(step): \(issue.description)"
        case .earlyStoppingWithoutValidation:
            return "early stopping needs a validation set: pass validation: to fit"
        case let .selection(error): return error.description
        }
    }
}

/// The error ``Trainer/fit(_:validation:epochs:)`` throws: why it stopped, and the history up to
/// that point. The model holds the weights of the best epoch when early stopping with
/// `restoreBestWeights` had found one, otherwise those of the last good step (a failing step
/// never updates anything).
///
/// ```swift
/// do { try trainer.fit(train, validation: validation, epochs: 20) }
/// catch { print(error.reason, error.history.epochs.count) }
/// ```
public struct TrainingFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public var reason: TrainingError
    public var history: TrainingHistory
    public var description: String { reason.description }
}

/// A classification training loop: shuffled mini-batches, optional gradient clipping, a
/// validation pass per epoch, early stopping with best-weight restore, and guards that turn
/// bad data into errors before any update: labels outside the model's classes, token ids
/// outside an embedding table, NaN/Inf losses and gradients. A batch the model cannot train on
/// (a last batch of one reaching a BatchNorm with batch statistics) is skipped and listed in
/// ``TrainingHistory/droppedBatches``; `dropLast` skips incomplete last batches altogether.
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
    /// Whether an incomplete last batch is skipped (PyTorch's `DataLoader(drop_last=True)`).
    public var dropLast: Bool
    /// Clip the global gradient norm to this value before each step.
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

    public init(model: Module, optimizer: any Optimizer, batchSize: Int = 32, dropLast: Bool = false,
                clipGradientNorm: Float? = nil, earlyStopping: EarlyStopping? = nil, labelSmoothing: Float = 0,
                seed: UInt64 = 0) {
        precondition(batchSize > 0, "Trainer: batchSize must be positive")
        self.model = model; self.optimizer = optimizer; self.batchSize = batchSize; self.dropLast = dropLast
        self.clipGradientNorm = clipGradientNorm; self.earlyStopping = earlyStopping
        self.labelSmoothing = labelSmoothing; self.seed = seed
    }

    /// Trains for up to `epochs` epochs; with early stopping, `validation` is required.
    ///
    /// Each epoch puts the model in training mode (pinned modules excepted) and then runs
    /// ``onEpochStart``, whose mode choices stand for the epoch; afterwards every module's mode
    /// is what it was before `fit`. Early stopping ends training `patience` epochs after the
    /// best one (Keras, fastai, Lightning). Errors are thrown as ``TrainingFailure``, carrying
    /// the history so far.
    @discardableResult
    public func fit(_ train: TensorDataset, validation: TensorDataset? = nil,
                    epochs: Int) throws(TrainingFailure) -> TrainingHistory {
        var run = Run()
        do throws(TrainingError) {
            guard train.count > 0 else { throw TrainingError.emptyDataset }
            guard earlyStopping == nil || validation != nil else { throw TrainingError.earlyStoppingWithoutValidation }
            try model.preservingModes { () throws(TrainingError) in
                try fitEpochs(train, validation: validation, epochs: epochs, run: &run)
            }
        } catch {
            restoreBest(run)
            throw TrainingFailure(reason: error, history: run.history)
        }
        restoreBest(run)
        return run.history
    }

    /// What a run has done so far.
    private struct Run {
        var history = TrainingHistory()
        var best: (value: Float, epoch: Int, state: [String: Tensor])?
        var labelsChecked = false
    }

    private func fitEpochs(_ train: TensorDataset, validation: TensorDataset?, epochs: Int,
                           run: inout Run) throws(TrainingError) {
        var epochsWithoutImprovement = 0
        for epoch in 0..<epochs {
            model.train()    // before the hook, so a hook's mode choices (backbone.eval()) stand
            if let onEpochStart {
                do { try onEpochStart(epoch) } catch { throw .selection(error) }
            }
            var total: Double = 0, trained = 0
            let batches = train.batches(size: batchSize, shuffle: true, seed: seed &+ UInt64(epoch))
            for (step, batch) in batches.enumerated() {
                if dropLast && batch.labels.count < batchSize { continue }
                optimizer.zeroGrad()
                let (logits, issues) = DataIssueRecorder.collecting { model(batch.inputs) }
                if let issue = issues.first {
                    if case .singleValuePerChannel = issue {
                        run.history.droppedBatches.append(DroppedBatch(epoch: epoch, step: step, size: batch.labels.count,
                                                                       reason: issue))
                        continue
                    }
                    throw .invalidInput(epoch: epoch, step: step, issue: issue)
                }
                if !run.labelsChecked {
                    try checkLabels(train, "training", classes: logits.shape[logits.rank - 1])
                    if let validation { try checkLabels(validation, "validation", classes: logits.shape[logits.rank - 1]) }
                    run.labelsChecked = true
                }
                let loss = Tensor.crossEntropy(logits, targets: batch.labels, labelSmoothing: labelSmoothing)
                let value = loss.scalars[0]
                guard value.isFinite else { throw .nonFiniteLoss(epoch: epoch, step: step, value: value) }
                loss.backward()
                // Every gradient is checked before every update, clipped or not.
                let (_, refused) = GradientClipping.clipNorm(model.parameters(), maxNorm: clipGradientNorm ?? .infinity,
                                                             normType: 2, errorIfNonfinite: true)
                if refused {
                    optimizer.zeroGrad()
                    throw .nonFiniteGradient(epoch: epoch, step: step)
                }
                optimizer.step()
                total += Double(value) * Double(batch.labels.count)
                trained += batch.labels.count
            }
            var record = EpochRecord(epoch: epoch, trainLoss: trained == 0 ? .nan : Float(total / Double(trained)),
                                     validationLoss: nil, validationAccuracy: nil, learningRate: optimizer.learningRate(at: max(optimizer.stepCount - 1, 0)),
                                     trainableParameters: model.trainableParameterCount)
            if let validation {
                let metrics = evaluate(validation)
                record.validationLoss = metrics.loss
                record.validationAccuracy = metrics.accuracy
            }
            run.history.epochs.append(record)
            onEpochEnd?(record)

            guard let stopping = earlyStopping, let loss = record.validationLoss, let accuracy = record.validationAccuracy else { continue }
            let value = stopping.metric == .validationLoss ? loss : accuracy
            if stopping.improves(value, on: run.best?.value) {
                run.best = (value, epoch, stopping.restoreBestWeights ? snapshot() : [:])
                run.history.bestEpoch = epoch
                epochsWithoutImprovement = 0
            } else {
                epochsWithoutImprovement += 1
                if epochsWithoutImprovement >= stopping.patience {
                    run.history.stoppedEarly = epoch < epochs - 1
                    break
                }
            }
        }
    }

    /// Throws for the first label outside `0..<classes`.
    private func checkLabels(_ data: TensorDataset, _ name: String, classes: Int) throws(TrainingError) {
        if let index = data.labels.firstIndex(where: { $0 < 0 || $0 >= classes }) {
            throw .labelOutOfRange(dataset: name, index: index, label: data.labels[index], classes: classes)
        }
    }

    /// Puts the best epoch's weights back (early stopping with `restoreBestWeights`).
    private func restoreBest(_ run: Run) {
        guard let best = run.best else { return }
        if earlyStopping?.restoreBestWeights == true {
            try! model.loadStateDict(best.state)    // same model, same keys and shapes
        }
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
