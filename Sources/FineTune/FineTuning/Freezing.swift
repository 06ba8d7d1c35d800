/// Freezing, unfreezing and per-parameter rates, built on `Parameter` flags.
extension Module {
    /// Parameters whose names match `pattern`; throws when none does.
    ///
    /// Use it as a dry run: it lists what `freeze(matching:)` would change, changing nothing.
    public func parameters(matching pattern: ParameterPattern) throws(SelectionError) -> [(name: String, parameter: Parameter)] {
        let all = namedParameters()
        var selected: [(name: String, parameter: Parameter)] = []
        for entry in all where try pattern.matches(entry.name) { selected.append(entry) }
        if selected.isEmpty {
            throw .noMatch(pattern: pattern.description, examples: Array(all.prefix(5).map(\.name)))
        }
        return selected
    }

    /// Freezes every parameter of this module and its descendants, and the statistics of every
    /// BatchNorm among them (they use and keep their running statistics in training mode; see
    /// ``BatchNorm``). With `trainBatchNorm` (fastai's `train_bn`) the BatchNorm layers stay
    /// trainable, parameters and statistics.
    ///
    /// ```swift
    /// backbone.freeze()                        // a fixed feature extractor, BatchNorm included
    /// backbone.freeze(trainBatchNorm: true)    // everything but BatchNorm
    /// ```
    public func freeze(trainBatchNorm: Bool = false) {
        for (_, module) in namedModules() {
            if let bn = module as? BatchNorm {
                guard !trainBatchNorm else { continue }
                bn.isFrozenAsModule = true
            }
            for (_, p) in module.namedDirectParameters() { p.isFrozen = true }
        }
    }

    /// Unfreezes every parameter of this module and its descendants (BatchNorm statistics included).
    public func unfreeze() {
        for (_, module) in namedModules() {
            (module as? BatchNorm)?.isFrozenAsModule = false
            for (_, p) in module.namedDirectParameters() { p.isFrozen = false }
        }
    }

    /// Freezes the parameters matching `pattern` and returns their names.
    /// With `dryRun`, only returns the names. Throws if nothing matches.
    ///
    /// ```swift
    /// try model.freeze(matching: "backbone.**")     // whole backbone
    /// try model.freeze(matching: .regex(#".*\.bias"#), dryRun: true)
    /// ```
    /// A non-affine BatchNorm whose path the pattern selects has its statistics frozen too;
    /// with `trainBatchNorm`, BatchNorm parameters and statistics are left trainable.
    @discardableResult
    public func freeze(matching pattern: ParameterPattern, trainBatchNorm: Bool = false,
                       dryRun: Bool = false) throws(SelectionError) -> [String] {
        try setFrozen(true, matching: pattern, sparingBatchNorm: trainBatchNorm, dryRun: dryRun)
    }

    /// Unfreezes the parameters matching `pattern` and returns their names.
    @discardableResult
    public func unfreeze(matching pattern: ParameterPattern, dryRun: Bool = false) throws(SelectionError) -> [String] {
        try setFrozen(false, matching: pattern, sparingBatchNorm: false, dryRun: dryRun)
    }

    private func setFrozen(_ frozen: Bool, matching pattern: ParameterPattern, sparingBatchNorm: Bool,
                           dryRun: Bool) throws(SelectionError) -> [String] {
        var selected = try parameters(matching: pattern)
        if sparingBatchNorm {
            let spared = Set(namedModules().filter { $0.module is BatchNorm }.flatMap {
                $0.module.namedDirectParameters().map { ObjectIdentifier($0.parameter) }
            })
            selected.removeAll { spared.contains(ObjectIdentifier($0.parameter)) }
        }
        guard !dryRun else { return selected.map(\.name) }
        for (_, p) in selected { p.isFrozen = frozen }
        if !sparingBatchNorm {
            for (path, module) in namedModules() {
                guard let bn = module as? BatchNorm, bn.weight == nil, !path.isEmpty, try pattern.matches(path) else { continue }
                bn.isFrozenAsModule = frozen
            }
        }
        return selected.map(\.name)
    }

    /// fastai's `freeze_to(n)`: freezes the first `n` layer groups and unfreezes the rest. The
    /// groups are ``defaultLayerGroups()``: those a ``LayerGrouped`` model declares, otherwise the
    /// direct children that have parameters, so parameter-free layers (ReLU, pooling, Flatten) do
    /// not count. A negative `n` counts from the end: `freeze(upTo: -1)` trains only the last group
    /// (the head). Throws when `n` is out of range or would leave nothing trainable.
    ///
    /// ```swift
    /// try cnn.freeze(upTo: -2)     // Conv, Conv, Linear, Linear: only the two Linear layers train
    /// ```
    public func freeze(upTo n: Int, trainBatchNorm: Bool = false) throws(SelectionError) {
        let groups = defaultLayerGroups()
        let cut = n < 0 ? groups.count + n : n
        guard cut >= 0 && cut < groups.count else {
            throw .outOfRange("freeze(upTo: \(n)): the module has \(groups.count) layer groups"
                              + (cut == groups.count ? "; freezing all of them would leave nothing to train" : ""))
        }
        for (i, group) in groups.enumerated() {
            if i < cut {
                try freeze(matching: group, trainBatchNorm: trainBatchNorm)
            } else {
                try unfreeze(matching: group)
            }
        }
    }

    /// Sets the learning-rate multiplier of the parameters matching `pattern`; returns their names.
    @discardableResult
    public func setLearningRateMultiplier(_ multiplier: Float, matching pattern: ParameterPattern) throws(SelectionError) -> [String] {
        let selected = try parameters(matching: pattern)
        for (_, p) in selected { p.lrMultiplier = multiplier }
        return selected.map(\.name)
    }

    /// Sets the weight-decay multiplier of the parameters matching `pattern`; returns their names.
    @discardableResult
    public func setWeightDecayMultiplier(_ multiplier: Float, matching pattern: ParameterPattern) throws(SelectionError) -> [String] {
        let selected = try parameters(matching: pattern)
        for (_, p) in selected { p.weightDecayMultiplier = multiplier }
        return selected.map(\.name)
    }

    /// Scalars in parameters that train.
    public var trainableParameterCount: Int { parameters().filter { !$0.isFrozen }.reduce(0) { $0 + $1.count } }

    /// Scalars in frozen parameters.
    public var frozenParameterCount: Int { parameters().filter(\.isFrozen).reduce(0) { $0 + $1.count } }

    /// Scalars in all parameters.
    public var parameterCount: Int { parameters().reduce(0) { $0 + $1.count } }
}
