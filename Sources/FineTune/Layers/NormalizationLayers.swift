/// Batch normalisation per channel C of `[N, C, ...]` input: the state and behaviour that
/// ``BatchNorm1d`` and ``BatchNorm2d`` share.
///
/// Training mode normalises with the batch statistics and updates the running statistics
/// (`running = (1 - momentum) * running + momentum * batch`, unbiased variance; with
/// `momentum: nil` a cumulative average); evaluation mode uses the running statistics.
/// State: parameters `weight` (ones), `bias` (zeros); buffers `running_mean` (zeros),
/// `running_var` (ones), `num_batches_tracked` (a 0-D count).
///
/// **Frozen statistics.** A normalisation layer has a third freeze axis besides gradients and
/// optimizer updates: its statistics. As in Keras, a frozen BatchNorm stays frozen in training
/// mode; ``effectiveStatistics`` decides what a training-mode call does:
///
/// | BatchNorm | in `train()` mode |
/// |---|---|
/// | affine with `weight` and `bias` frozen, or non-affine and frozen by `freeze()` on it or an ancestor | running statistics, never updated |
/// | trainable (any of its parameters), or non-affine and not frozen | batch statistics, running statistics updated (PyTorch) |
/// | frozen with `freeze(trainBatchNorm: true)` (fastai's `train_bn`) | parameters stay trainable: batch statistics, updated |
/// | ``statistics`` set to `.running` or `.batch` | that, whatever the above |
///
/// Evaluation mode always uses the running statistics.
///
/// ```swift
/// backbone.freeze()                       // its BatchNorms now use (and keep) their running statistics
/// head.bn.statistics = .batch             // explicit override for one layer
/// ```
public class BatchNorm: Module, ParameterInitializing {
    /// Which statistics a training-mode call normalises with.
    public enum Statistics: String, Sendable, Equatable {
        /// The batch's statistics; the running statistics are updated (PyTorch's training mode).
        case batch
        /// The running statistics, left unchanged (inference behaviour, e.g. for a frozen layer).
        case running
    }

    /// An explicit choice of statistics in training mode; nil (the default) decides from the
    /// frozen state (see the table above).
    public var statistics: Statistics?

    /// Whether `freeze()` on this layer or an ancestor froze it (and no `unfreeze()` since):
    /// what decides a non-affine layer's statistics.
    public internal(set) var isFrozenAsModule = false

    /// The statistics a call normalises with in the current mode: ``statistics`` if set, the
    /// running statistics in evaluation mode or when the layer is frozen, the batch's otherwise.
    /// Without running statistics (`trackRunningStats: false`) always the batch's.
    public var effectiveStatistics: Statistics {
        guard runningMean != nil else { return .batch }
        guard isTraining else { return .running }
        if let statistics { return statistics }
        if let weight, let bias { return weight.isFrozen && bias.isFrozen ? .running : .batch }
        if let parameter = weight ?? bias { return parameter.isFrozen ? .running : .batch }
        return isFrozenAsModule ? .running : .batch
    }

    /// Scale `[C]` (nil without `affine`).
    public let weight: Parameter?
    /// Shift `[C]` (nil without `affine`).
    public let bias: Parameter?
    /// `[C]` (nil without `trackRunningStats`).
    public let runningMean: Buffer?
    /// `[C]` (nil without `trackRunningStats`).
    public let runningVar: Buffer?
    /// Number of training batches seen, a 0-D tensor (nil without `trackRunningStats`).
    public let numBatchesTracked: Buffer?

    /// Channels C.
    public let features: Int
    /// Added to the variance for numerical stability.
    public let eps: Float
    /// Weight of the batch statistics in the running average; nil for a cumulative average.
    public let momentum: Float?

    private let layerName: String
    private let acceptedRanks: Set<Int>
    private let layout: String

    init(_ features: Int, eps: Float, momentum: Float?, affine: Bool, trackRunningStats: Bool,
         layerName: String, acceptedRanks: Set<Int>, layout: String) {
        precondition(features > 0, "\(layerName): features must be positive, got \(features)")
        self.features = features
        self.eps = eps
        self.momentum = momentum
        self.layerName = layerName
        self.acceptedRanks = acceptedRanks
        self.layout = layout
        (weight, bias) = BatchNormCore.affine(features, affine)
        (runningMean, runningVar, numBatchesTracked) = BatchNormCore.stats(features, trackRunningStats)
        super.init()
    }

    /// Sets `weight` to ones, `bias` to zeros and the running statistics to their initial values.
    public func resetParameters(generator: inout RandomGenerator) {
        BatchNormCore.reset(weight, bias)
        resetRunningStats()
    }

    /// Running mean to zeros, running variance to ones, batch count to 0.
    public func resetRunningStats() {
        BatchNormCore.resetStats(runningMean, runningVar, numBatchesTracked)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        normalize(x, adding: nil, relu: false)
    }

    /// `relu?(forward(x) + residual?)` in one op each way (``Tensor/batchNorm(_:runningMean:runningVar:weight:bias:training:momentum:eps:adding:relu:)``),
    /// without this module's output adapter or shape recording (callers check for those).
    func normalize(_ x: Tensor, adding residual: Tensor?, relu: Bool) -> Tensor {
        let name = "\(layerName)(\(features))"
        Shape.check(acceptedRanks.contains(x.rank) && x.shape[1] == features, op: name,
                    shapes: [x.shape, [features]], "expected input \(layout.replacingOccurrences(of: "C", with: String(features)))")
        let batchStatistics = effectiveStatistics == .batch
        if batchStatistics && x.count / x.shape[1] <= 1 {
            // A data error (a last batch of one): a training loop records it and drops the batch,
            // so the input passes through unchanged and no statistic moves.
            DataIssueRecorder.report(.singleValuePerChannel(layer: name, shape: x.shape))
            let y = residual.map { x + $0 } ?? x
            return relu ? y.relu() : y
        }
        return BatchNormCore.forward(x, name: name, weight: weight, bias: bias, runningMean: runningMean,
                                     runningVar: runningVar, numBatchesTracked: numBatchesTracked,
                                     training: batchStatistics, momentum: momentum, eps: eps, residual: residual, relu: relu)
    }
}

/// Batch normalisation over `[N, C]` or `[N, C, L]` input, per channel C (PyTorch's `nn.BatchNorm1d`).
/// See ``BatchNorm`` for the state and the training/evaluation behaviour.
///
/// ```swift
/// let bn = BatchNorm1d(64)
/// ```
public final class BatchNorm1d: BatchNorm {
    /// Batch normalisation of `features` channels.
    public init(_ features: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true,
                trackRunningStats: Bool = true) {
        super.init(features, eps: eps, momentum: momentum, affine: affine, trackRunningStats: trackRunningStats,
                   layerName: "BatchNorm1d", acceptedRanks: [2, 3], layout: "[N, C] or [N, C, L]")
    }
}

/// Batch normalisation over `[N, C, H, W]` input, per channel C (PyTorch's `nn.BatchNorm2d`).
/// See ``BatchNorm`` for the state and the training/evaluation behaviour.
///
/// ```swift
/// let bn = BatchNorm2d(16)
/// bn.eval()            // use the running statistics
/// ```
public final class BatchNorm2d: BatchNorm {
    /// Batch normalisation of `features` channels.
    public init(_ features: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true,
                trackRunningStats: Bool = true) {
        super.init(features, eps: eps, momentum: momentum, affine: affine, trackRunningStats: trackRunningStats,
                   layerName: "BatchNorm2d", acceptedRanks: [4], layout: "[N, C, H, W]")
    }
}

/// What BatchNorm1d and BatchNorm2d share.
enum BatchNormCore {
    static func affine(_ c: Int, _ on: Bool) -> (Parameter?, Parameter?) {
        guard on else { return (nil, nil) }
        return (Parameter(Tensor.ones([c]), role: .normalization), Parameter(Tensor.zeros([c]), role: .normalization))
    }

    static func stats(_ c: Int, _ on: Bool) -> (Buffer?, Buffer?, Buffer?) {
        guard on else { return (nil, nil, nil) }
        return (Buffer(Tensor.zeros([c])), Buffer(Tensor.ones([c])), Buffer(Tensor(0), checkpointDType: .i64))
    }

    static func reset(_ weight: Parameter?, _ bias: Parameter?) {
        if let weight { weight.value = Tensor.ones(weight.shape) }
        if let bias { bias.value = Tensor.zeros(bias.shape) }
    }

    static func resetStats(_ mean: Buffer?, _ variance: Buffer?, _ count: Buffer?) {
        if let mean { mean.value = Tensor.zeros(mean.value.shape) }
        if let variance { variance.value = Tensor.ones(variance.value.shape) }
        count?.value = Tensor(0)
    }

    static func forward(_ x: Tensor, name: String, weight: Parameter?, bias: Parameter?, runningMean: Buffer?,
                        runningVar: Buffer?, numBatchesTracked: Buffer?, training: Bool, momentum: Float?,
                        eps: Float, residual: Tensor? = nil, relu: Bool = false) -> Tensor {
        if training {
            Shape.check(x.count / x.shape[1] > 1, op: name, shapes: [x.shape],
                        "expected more than 1 value per channel when training")
        }
        var factor = momentum ?? 0
        if training, let count = numBatchesTracked {
            let n = count.value.item() + 1
            count.value = Tensor(n)
            if momentum == nil { factor = 1 / n }
        }
        var mean = runningMean?.value, variance = runningVar?.value
        let y = Tensor.batchNorm(x, runningMean: &mean, runningVar: &variance, weight: weight?.value, bias: bias?.value,
                                 training: training, momentum: factor, eps: eps, adding: residual, relu: relu)
        if training, let mean, let variance {
            runningMean?.value = mean
            runningVar?.value = variance
        }
        return y
    }
}

/// Layer normalisation over the trailing `normalizedShape` axes (PyTorch's `nn.LayerNorm`):
/// `(x - mean) / sqrt(var + eps) * weight + bias`, biased variance; `weight` ones, `bias` zeros.
///
/// ```swift
/// let norm = LayerNorm(256)      // [B, T, 256] -> [B, T, 256]
/// ```
public final class LayerNorm: Module, ParameterInitializing {
    /// Scale of shape `normalizedShape` (nil without `elementwiseAffine`).
    public let weight: Parameter?
    /// Shift of shape `normalizedShape` (nil without `elementwiseAffine` or `bias`).
    public let bias: Parameter?

    /// The trailing axes normalised over.
    public let normalizedShape: [Int]
    /// Added to the variance for numerical stability.
    public let eps: Float

    /// Normalises over the trailing axes `normalizedShape`.
    public init(_ normalizedShape: [Int], eps: Float = 1e-5, elementwiseAffine: Bool = true, bias: Bool = true) {
        precondition(!normalizedShape.isEmpty && normalizedShape.allSatisfy { $0 > 0 },
                     "LayerNorm: normalizedShape must be non-empty and positive, got \(normalizedShape)")
        self.normalizedShape = normalizedShape
        self.eps = eps
        weight = elementwiseAffine ? Parameter(Tensor.ones(normalizedShape), role: .normalization) : nil
        self.bias = elementwiseAffine && bias ? Parameter(Tensor.zeros(normalizedShape), role: .normalization) : nil
        super.init()
    }

    /// Normalises over the last axis, of size `normalizedShape`.
    public convenience init(_ normalizedShape: Int, eps: Float = 1e-5, elementwiseAffine: Bool = true, bias: Bool = true) {
        self.init([normalizedShape], eps: eps, elementwiseAffine: elementwiseAffine, bias: bias)
    }

    /// Sets `weight` to ones and `bias` to zeros.
    public func resetParameters(generator: inout RandomGenerator) {
        BatchNormCore.reset(weight, bias)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let n = normalizedShape.count
        Shape.check(x.rank >= n && Array(x.shape.suffix(n)) == normalizedShape, op: "LayerNorm(\(normalizedShape))",
                    shapes: [x.shape, normalizedShape], "expected input [..., \(normalizedShape.map(String.init).joined(separator: ", "))]")
        return Tensor.layerNorm(x, normalizedAxes: n, weight: weight?.value, bias: bias?.value, eps: eps)
    }
}
