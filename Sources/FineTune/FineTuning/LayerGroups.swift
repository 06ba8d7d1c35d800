import Foundation

/// A model that knows its layer groups: module paths per group, input first (a ResNet's stem,
/// its four stages and its head). ``Module/defaultLayerGroups()`` and everything built on it
/// (``Module/freeze(upTo:trainBatchNorm:)``, discriminative rates, gradual unfreezing) use them.
public protocol LayerGrouped: Module {
    /// Module paths per group, input first; every group holds parameters.
    var layerGroups: [[String]] { get }
}

/// Fine-tuning recipes over layer groups: BitFit, gradual unfreezing and discriminative
/// learning rates (ULMFiT, Howard & Ruder 2018). Layer groups are listed from the input
/// (bottom) to the head (top), each as a ``ParameterPattern``; by default every direct child
/// with parameters is a group, as fastai splits a `Sequential`.
extension Module {
    /// The model's layer groups, input first: those a ``LayerGrouped`` model declares (a
    /// ResNet's stem, stages and head; a transformer's embeddings, blocks and head), otherwise
    /// one group per direct child that has parameters (`["0", "1", "4", ...]`).
    public func defaultLayerGroups() -> [ParameterPattern] {
        if let grouped = self as? any LayerGrouped {
            return grouped.layerGroups.map { paths in
                paths.count == 1 ? .glob(paths[0])
                    : .regex("(?:" + paths.map { NSRegularExpression.escapedPattern(for: $0) }.joined(separator: "|") + #")(?:\..*)?"#)
            }
        }
        return namedChildren().filter { !$0.module.parameters().isEmpty }.map { .glob($0.name) }
    }

    /// BitFit (Ben Zaken et al. 2021): trains only the bias terms, every one of them (linear,
    /// convolution, attention and normalisation biases such as LayerNorm's and BatchNorm's
    /// `bias`), plus any parameters matching `also` (typically the new head). Returns the names
    /// of the trainable parameters.
    ///
    /// ```swift
    /// try model.trainOnlyBiases(also: ["fc"])
    /// ```
    @discardableResult
    public func trainOnlyBiases(also patterns: [ParameterPattern] = []) throws(SelectionError) -> [String] {
        var keep = Set<String>()
        for pattern in patterns { keep.formUnion(try parameters(matching: pattern).map(\.name)) }
        var trainable: [String] = []
        for (name, p) in namedParameters() {
            let isBias = p.role == .bias || name == "bias" || name.hasSuffix(".bias") || name.hasSuffix("_bias")
            p.isFrozen = !(isBias || keep.contains(name))
            if !p.isFrozen { trainable.append(name) }
        }
        guard !trainable.isEmpty else { throw .noMatch(pattern: "bias parameters", examples: Array(namedParameters().prefix(5).map(\.name))) }
        return trainable
    }

    /// Discriminative learning rates: the top group trains at multiplier 1 and each group below
    /// at the one above divided by `factor` (ULMFiT's 2.6), so early, general layers change
    /// least. Returns the multipliers, bottom group first.
    ///
    /// ```swift
    /// try model.setDiscriminativeLearningRates(factor: 2.6)   // e.g. [0.057, 0.148, 0.385, 1]
    /// ```
    @discardableResult
    public func setDiscriminativeLearningRates(groups: [ParameterPattern]? = nil, factor: Float = 2.6) throws(SelectionError) -> [Float] {
        precondition(factor > 0, "setDiscriminativeLearningRates: factor must be positive")
        let groups = groups ?? defaultLayerGroups()
        var multipliers: [Float] = []
        for (i, group) in groups.enumerated() {
            let multiplier = Float(Foundation.pow(Double(factor), -Double(groups.count - 1 - i)))
            try setLearningRateMultiplier(multiplier, matching: group)
            multipliers.append(multiplier)
        }
        return multipliers
    }

    /// fastai's `slice(low, high)`: multipliers spaced geometrically from `low` (bottom group)
    /// to `high` (top group). Returns them, bottom first.
    @discardableResult
    public func setLearningRateMultipliers(from low: Float, to high: Float,
                                           groups: [ParameterPattern]? = nil) throws(SelectionError) -> [Float] {
        precondition(low > 0 && high > 0, "setLearningRateMultipliers: multipliers must be positive")
        let groups = groups ?? defaultLayerGroups()
        var multipliers: [Float] = []
        for (i, group) in groups.enumerated() {
            let t = groups.count == 1 ? 1 : Double(i) / Double(groups.count - 1)
            let multiplier = Float(Double(low) * Foundation.pow(Double(high) / Double(low), t))
            try setLearningRateMultiplier(multiplier, matching: group)
            multipliers.append(multiplier)
        }
        return multipliers
    }
}

/// Gradual unfreezing (ULMFiT): training starts with only the top layer group trainable and
/// unfreezes one more group, top-down, every `epochsPerGroup` epochs, so the pretrained lower
/// layers are not disturbed by large early gradients from a random head.
///
/// Frozen flags are re-read by the optimizers at every step, so nothing has to be rebuilt;
/// with the default ``UnfreezePolicy/reset`` each group starts fresh optimizer state.
///
/// ```swift
/// let schedule = GradualUnfreezing(groups: model.defaultLayerGroups())
/// for epoch in 0..<5 {
///     try schedule.apply(to: model, epoch: epoch)     // epoch 0: head only; 1: head + one more, ...
///     trainOneEpoch()
/// }
/// ```
public struct GradualUnfreezing: Sendable {
    /// Layer groups, input first.
    public var groups: [ParameterPattern]
    /// Epochs between two unfreezing steps.
    public var epochsPerGroup: Int

    public init(groups: [ParameterPattern], epochsPerGroup: Int = 1) {
        precondition(!groups.isEmpty, "GradualUnfreezing: no layer groups")
        precondition(epochsPerGroup > 0, "GradualUnfreezing: epochsPerGroup must be positive")
        self.groups = groups
        self.epochsPerGroup = epochsPerGroup
    }

    /// How many groups (from the top) train in `epoch` (0-based).
    public func trainableGroupCount(epoch: Int) -> Int {
        min(groups.count, 1 + max(epoch, 0) / epochsPerGroup)
    }

    /// Freezes and unfreezes the groups for `epoch`; returns the names of the trainable parameters.
    @discardableResult
    public func apply(to model: Module, epoch: Int) throws(SelectionError) -> [String] {
        let trainable = trainableGroupCount(epoch: epoch)
        var names: [String] = []
        for (i, group) in groups.enumerated() {
            if i >= groups.count - trainable {
                names += try model.unfreeze(matching: group)
            } else {
                try model.freeze(matching: group)
            }
        }
        return names
    }
}
