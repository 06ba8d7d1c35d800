import Foundation

/// A linear layer with a trainable low-rank update: LoRA (Hu et al. 2021), laid out as
/// Hugging Face PEFT's `lora.Linear`.
///
/// ```text
/// y = x W^T + b + scaling * dropout(x) A^T B^T        scaling = alpha / r  (alpha / sqrt(r) with rsLoRA)
/// ```
///
/// `W` and `b` are the wrapped layer's own parameters (the same objects, frozen), so the
/// pretrained keys `weight` and `bias` are unchanged and the update lives under `lora_A.weight`
/// (`[r, in]`, Kaiming-uniform) and `lora_B.weight` (`[out, r]`, zeros, so training starts
/// from the pretrained function). ``merge()`` folds the update into `W` for inference at no
/// extra cost; ``unmerge()`` takes it out again.
///
/// Usually created by ``Module/applyLoRA(_:)``:
///
/// ```swift
/// try model.applyLoRA(LoRAConfig(rank: 8, alpha: 16, targetModules: ["q_proj", "v_proj"]))
/// model.trainableParameterCount    // only the lora_A / lora_B weights
/// ```
public final class LoRALinear: Module, ParameterInitializing {
    /// The pretrained weight `[out, in]` (shared with the wrapped layer, frozen by default).
    public let weight: Parameter
    /// The pretrained bias `[out]`, if any.
    public let bias: Parameter?
    /// `A`: in -> rank, no bias (key `lora_A`).
    public let loraA: Linear
    /// `B`: rank -> out, no bias, zero-initialised (key `lora_B`).
    public let loraB: Linear
    /// Dropout on the input of the low-rank path (PEFT's `lora_dropout`).
    public let loraDropout: Dropout?
    public let rank: Int
    public let alpha: Float
    /// Whether the scaling is `alpha / sqrt(rank)` (rank-stabilised LoRA) instead of `alpha / rank`.
    public let usesRSLoRA: Bool
    /// Whether the update is currently folded into ``weight``.
    public private(set) var isMerged = false
    /// The layer this one replaced (hidden from reflection: its parameters are ours).
    private let _original: Linear

    /// The multiplier of the low-rank product.
    public var scaling: Float { usesRSLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }

    /// Wraps `base`: shares its parameters, freezes them, adds a trainable rank-`rank` update.
    public init(_ base: Linear, rank: Int, alpha: Float, dropout: Float = 0, useRSLoRA: Bool = false) {
        precondition(rank > 0, "LoRALinear: rank must be positive, got \(rank)")
        precondition(dropout >= 0 && dropout < 1, "LoRALinear: dropout must be in [0, 1), got \(dropout)")
        weight = base.weight
        bias = base.bias
        loraA = Linear(base.inFeatures, rank, bias: false)
        loraB = Linear(rank, base.outFeatures, bias: false)
        loraB.weight.value = Tensor.zeros(loraB.weight.shape)
        loraDropout = dropout > 0 ? Dropout(p: dropout) : nil
        self.rank = rank
        self.alpha = alpha
        self.usesRSLoRA = useRSLoRA
        _original = base
        super.init()
        weight.isFrozen = true
        bias?.isFrozen = true
    }

    public override func key(forProperty name: String) -> String {
        switch name {
        case "loraA": return "lora_A"
        case "loraB": return "lora_B"
        default: return super.key(forProperty: name)
        }
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let base = _original.forward(x)    // the shared W and b (the shape check lives there)
        if isMerged { return base }
        let input = loraDropout.map { $0(x) } ?? x
        return base + loraB(loraA(input)) * scaling
    }

    /// `scaling * B A`, the update to `W` (`[out, in]`).
    public var delta: Tensor {
        withoutGradients { loraB.weight.value.matmul(loraA.weight.value) * scaling }
    }

    /// Adds the update to ``weight`` (PEFT's `merge`): the forward pass then costs one matmul.
    /// Training the LoRA weights while merged would not change the output; unmerge first.
    public func merge() {
        guard !isMerged else { return }
        weight.value = withoutGradients { weight.value + delta }
        isMerged = true
    }

    /// Subtracts the update from ``weight`` again (equal to the original up to rounding).
    public func unmerge() {
        guard isMerged else { return }
        weight.value = withoutGradients { weight.value - delta }
        isMerged = false
    }

    /// The wrapped layer, which holds the merged or original weights (it shares ``weight``).
    public var original: Linear { _original }

    /// Redraws the base layer as `Linear` does and restarts the update at zero (B = 0; A was
    /// redrawn with the children), so ``Module/reinitialize()`` gives a fresh LoRA model.
    public func resetParameters(generator: inout RandomGenerator) {
        _original.resetParameters(generator: &generator)
        loraB.weight.value = Tensor.zeros(loraB.weight.shape)
        isMerged = false
    }
}

/// Where and how ``Module/applyLoRA(_:)`` adds LoRA (the fields of PEFT's `LoraConfig`).
public struct LoRAConfig: Sendable, Equatable {
    /// The rank `r` of the update.
    public var rank: Int
    /// `lora_alpha`: the update is scaled by `alpha / rank`.
    public var alpha: Float
    /// `lora_dropout` on the low-rank path's input.
    public var dropout: Float
    /// Module names: a module is targeted when its dotted path equals a name or ends with
    /// `"." + name` (PEFT's rule), e.g. `["q_proj", "v_proj"]` or `["fc1"]`.
    public var targetModules: [String]
    /// Rank-stabilised scaling `alpha / sqrt(rank)` (PEFT's `use_rslora`).
    public var useRSLoRA: Bool

    public init(rank: Int = 8, alpha: Float = 8, dropout: Float = 0, targetModules: [String], useRSLoRA: Bool = false) {
        self.rank = rank; self.alpha = alpha; self.dropout = dropout
        self.targetModules = targetModules; self.useRSLoRA = useRSLoRA
    }

    /// Whether the module at `path` is a target.
    public func targets(_ path: String) -> Bool {
        targetModules.contains { path == $0 || path.hasSuffix("." + $0) }
    }
}

extension Module {
    /// Wraps every targeted `Linear` in a ``LoRALinear`` and freezes all other parameters, as
    /// PEFT's `get_peft_model` does; returns the wrapped module paths.
    ///
    /// Throws when no module matches (a typo must not silently train nothing) or when a
    /// matched module is not a `Linear`.
    ///
    /// ```swift
    /// let wrapped = try model.applyLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["fc1", "fc2"]))
    /// // ["fc1", "fc2"]; model.summary() now shows only lora_A / lora_B as trainable
    /// ```
    @discardableResult
    public func applyLoRA(_ config: LoRAConfig) throws(SelectionError) -> [String] {
        let targets = namedModules().filter { !$0.name.isEmpty && config.targets($0.name) && !($0.module is LoRALinear) }
        guard !targets.isEmpty else {
            throw .noMatch(pattern: "target modules \(config.targetModules)",
                           examples: Array(namedModules().map(\.name).dropFirst().prefix(8)))
        }
        for (path, module) in targets where !(module is Linear) {
            throw .unsupportedModule(path: path, type: "\(type(of: module))", expected: "Linear")
        }
        freeze()
        for (path, module) in targets {
            try replaceModule(at: path, with: LoRALinear(module as! Linear, rank: config.rank, alpha: config.alpha,
                                                         dropout: config.dropout, useRSLoRA: config.useRSLoRA))
        }
        return targets.map(\.name)
    }

    /// The LoRA layers in the tree with their paths.
    public var loraLayers: [(name: String, layer: LoRALinear)] {
        namedModules().compactMap { name, module in (module as? LoRALinear).map { (name, $0) } }
    }

    /// Folds every LoRA update into its base weight (PEFT's `merge_adapter`).
    public func mergeLoRA() { for (_, layer) in loraLayers { layer.merge() } }

    /// Takes every LoRA update out of its base weight again (PEFT's `unmerge_adapter`).
    public func unmergeLoRA() { for (_, layer) in loraLayers { layer.unmerge() } }

    /// Removes the LoRA layers and puts the original `Linear` layers back, with the updates
    /// merged into their weights (`merge: true`, PEFT's `merge_and_unload`) or discarded
    /// (`merge: false`, PEFT's `unload`). Frozen flags are left as they are. Returns the paths.
    @discardableResult
    public func removeLoRA(merge: Bool = true) -> [String] {
        let layers = loraLayers
        for (_, layer) in layers {
            if merge { layer.merge() } else { layer.unmerge() }
            layer.original.replacement = nil
        }
        return layers.map(\.name)
    }
}
