import Foundation

/// A pretrained layer plus a trainable low-rank update: LoRA (Hu et al. 2021), laid out as
/// Hugging Face PEFT's LoRA layers.
///
/// ```text
/// y = base(x) + scaling * B(A(dropout(x)))        scaling = alpha / r  (alpha / sqrt(r) with rsLoRA)
/// ```
///
/// `weight` and `bias` are the wrapped layer's own parameters (the same objects, frozen), so
/// the pretrained keys `weight` and `bias` are unchanged and the update lives under
/// `lora_A.weight` (Kaiming-uniform) and `lora_B.weight` (zeros, so training starts from the
/// pretrained function). ``merge()`` folds the update into `weight` for inference at no extra
/// cost; ``unmerge()`` takes it out again. ``LoRALinear`` and ``LoRAConv2d`` are the two kinds;
/// ``Module/applyLoRA(_:)`` picks the right one for each target.
public class LoRALayer: Module, ParameterInitializing {
    /// The pretrained weight (shared with the wrapped layer, frozen when wrapped).
    public let weight: Parameter
    /// The pretrained bias, if any.
    public let bias: Parameter?
    /// Dropout on the input of the low-rank path (PEFT's `lora_dropout`).
    public let loraDropout: Dropout?
    public let rank: Int
    public let alpha: Float
    /// Whether the scaling is `alpha / sqrt(rank)` (rank-stabilised LoRA) instead of `alpha / rank`.
    public let usesRSLoRA: Bool
    /// Whether the update is currently folded into ``weight``.
    public private(set) var isMerged = false
    /// The layer this one replaced (hidden from reflection: its parameters are ours).
    private let _original: Module

    /// The multiplier of the low-rank product.
    public var scaling: Float { usesRSLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }

    /// The wrapped layer, which holds the merged or original weights (it shares ``weight``).
    public var original: Module { _original }

    init(original: Module, weight: Parameter, bias: Parameter?, rank: Int, alpha: Float, dropout: Float, useRSLoRA: Bool) {
        precondition(rank > 0, "LoRA: rank must be positive, got \(rank)")
        precondition(dropout >= 0 && dropout < 1, "LoRA: dropout must be in [0, 1), got \(dropout)")
        self.weight = weight
        self.bias = bias
        loraDropout = dropout > 0 ? Dropout(p: dropout) : nil
        self.rank = rank
        self.alpha = alpha
        self.usesRSLoRA = useRSLoRA
        _original = original
        super.init()
        weight.isFrozen = true
        bias?.isFrozen = true
    }

    public override func key(forProperty name: String) -> String {
        switch name {
        case "loraA": return "lora_A"
        case "loraB": return "lora_B"
        case "loraEmbeddingA": return "lora_embedding_A"
        case "loraEmbeddingB": return "lora_embedding_B"
        default: return super.key(forProperty: name)
        }
    }

    /// `B(A(x))` without scaling (each kind supplies it).
    func lowRankPath(_ x: Tensor) -> Tensor { preconditionFailure("\(type(of: self)) must override lowRankPath") }

    /// `scaling * B A` shaped like ``weight``: the update to it.
    public var delta: Tensor { preconditionFailure("\(type(of: self)) must override delta") }

    /// The factor that starts at zero, so a new update is zero (`lora_B`; `lora_embedding_A`
    /// for embeddings, as PEFT initialises them).
    var zeroStartFactor: Parameter { preconditionFailure("\(type(of: self)) must override zeroStartFactor") }

    public override func forward(_ x: Tensor) -> Tensor {
        let base = _original.forward(x)    // the shared weight and bias (the shape checks live there)
        if isMerged { return base }
        return base + lowRankPath(loraDropout.map { $0(x) } ?? x) * scaling
    }

    /// Adds the update to ``weight`` (PEFT's `merge`): the forward pass then costs the base layer only.
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

    /// Redraws the base layer as it would itself and restarts the update at zero (B = 0; A was
    /// redrawn with the children), so ``Module/reinitialize()`` gives a fresh LoRA model.
    public func resetParameters(generator: inout RandomGenerator) {
        (_original as? ParameterInitializing)?.resetParameters(generator: &generator)
        zeroStartFactor.value = Tensor.zeros(zeroStartFactor.shape)
        isMerged = false
    }
}

/// LoRA on a `Linear` layer (PEFT's `lora.Linear`): `A` is `[r, in]`, `B` is `[out, r]`.
///
/// ```swift
/// let layer = LoRALinear(Linear(768, 768), rank: 8, alpha: 16)
/// ```
public final class LoRALinear: LoRALayer {
    /// `A`: in -> rank, no bias (key `lora_A`).
    public let loraA: Linear
    /// `B`: rank -> out, no bias, zero-initialised (key `lora_B`).
    public let loraB: Linear

    /// Wraps `base`: shares its parameters, freezes them, adds a trainable rank-`rank` update.
    public init(_ base: Linear, rank: Int, alpha: Float, dropout: Float = 0, useRSLoRA: Bool = false) {
        loraA = Linear(base.inFeatures, rank, bias: false)
        loraB = Linear(rank, base.outFeatures, bias: false)
        loraB.weight.value = Tensor.zeros(loraB.weight.shape)
        super.init(original: base, weight: base.weight, bias: base.bias, rank: rank, alpha: alpha, dropout: dropout,
                   useRSLoRA: useRSLoRA)
    }

    override func lowRankPath(_ x: Tensor) -> Tensor { loraB(loraA(x)) }

    public override var delta: Tensor {
        withoutGradients { loraB.weight.value.matmul(loraA.weight.value) * scaling }
    }

    override var zeroStartFactor: Parameter { loraB.weight }
}

/// LoRA on a `Conv2d` layer (PEFT's `lora.Conv2d`): `A` is a convolution with the base layer's
/// kernel, stride, padding and dilation into `rank` channels (`[r, in, kh, kw]`), `B` a 1x1
/// convolution back to the output channels (`[out, r, 1, 1]`). Grouped convolutions are not
/// supported.
public final class LoRAConv2d: LoRALayer {
    /// `A`: in -> rank channels with the base kernel (key `lora_A`).
    public let loraA: Conv2d
    /// `B`: 1x1, rank -> out channels, zero-initialised (key `lora_B`).
    public let loraB: Conv2d

    public init(_ base: Conv2d, rank: Int, alpha: Float, dropout: Float = 0, useRSLoRA: Bool = false) {
        precondition(base.groups == 1, "LoRAConv2d: grouped convolutions are not supported")
        loraA = Conv2d(base.inChannels, rank, kernelSize: base.kernelSize, stride: base.stride, padding: base.padding,
                       dilation: base.dilation, bias: false)
        loraB = Conv2d(rank, base.outChannels, kernelSize: (1, 1), bias: false)
        loraB.weight.value = Tensor.zeros(loraB.weight.shape)
        super.init(original: base, weight: base.weight, bias: base.bias, rank: rank, alpha: alpha, dropout: dropout,
                   useRSLoRA: useRSLoRA)
    }

    override func lowRankPath(_ x: Tensor) -> Tensor { loraB(loraA(x)) }

    public override var delta: Tensor {
        withoutGradients {
            let a = loraA.weight.value.reshaped([rank, -1]), b = loraB.weight.value.reshaped([-1, rank])
            return (b.matmul(a) * scaling).reshaped(weight.shape)
        }
    }

    override var zeroStartFactor: Parameter { loraB.weight }
}

/// LoRA on an `Embedding` (PEFT's `lora.Embedding`): the update `(B A)^T` is `[count, dim]`
/// with `A` (`lora_embedding_A`, `[r, count]`, zeros) and `B` (`lora_embedding_B`, `[dim, r]`,
/// N(0, 1)), so a lookup adds `scaling * B^T`'s rows picked through `A`. No dropout (PEFT
/// applies none to embeddings). Call it with index tensors, or through the replaced
/// `Embedding`'s `[Int]` call, which forwards here.
public final class LoRAEmbedding: LoRALayer {
    /// `A`: `[r, count]` (key `lora_embedding_A`), zero-initialised.
    public let loraEmbeddingA: Parameter
    /// `B`: `[dim, r]` (key `lora_embedding_B`).
    public let loraEmbeddingB: Parameter

    public init(_ base: Embedding, rank: Int, alpha: Float, useRSLoRA: Bool = false) {
        loraEmbeddingA = Parameter(Tensor.zeros([rank, base.count]), role: .other)
        loraEmbeddingB = RandomGenerator.withGlobal { Parameter(Tensor.randomNormal([base.dim, rank], generator: &$0), role: .other) }
        super.init(original: base, weight: base.weight, bias: nil, rank: rank, alpha: alpha, dropout: 0, useRSLoRA: useRSLoRA)
    }

    override func lowRankPath(_ x: Tensor) -> Tensor {
        let indices = (original as! Embedding).indices(x)
        let rows = Tensor.embedding(indices, shape: x.shape, weight: loraEmbeddingA.value.transposed())
        return rows.matmul(loraEmbeddingB.value.transposed())
    }

    public override var delta: Tensor {
        withoutGradients { loraEmbeddingB.value.matmul(loraEmbeddingA.value).transposed().contiguous() * scaling }
    }

    override var zeroStartFactor: Parameter { loraEmbeddingA }
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
    /// Wraps every targeted `Linear` in a ``LoRALinear``, `Conv2d` in a ``LoRAConv2d`` and
    /// `Embedding` in a ``LoRAEmbedding``, and freezes all other parameters, as
    /// PEFT's `get_peft_model` does; returns the wrapped module paths.
    ///
    /// Throws when no module matches (a typo must not silently train nothing) or when a
    /// matched module is neither.
    ///
    /// ```swift
    /// let wrapped = try model.applyLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["fc1", "fc2"]))
    /// // ["fc1", "fc2"]; model.summary() now shows only lora_A / lora_B as trainable
    /// ```
    @discardableResult
    public func applyLoRA(_ config: LoRAConfig) throws(SelectionError) -> [String] {
        let targets = namedModules().filter { !$0.name.isEmpty && config.targets($0.name) && !($0.module is LoRALayer) }
        guard !targets.isEmpty else {
            throw .noMatch(pattern: "target modules \(config.targetModules)",
                           examples: Array(namedModules().map(\.name).dropFirst().prefix(8)))
        }
        for (path, module) in targets where !(module is Linear) && !(module is Embedding) && !((module as? Conv2d)?.groups == 1) {
            throw .unsupportedModule(path: path, type: "\(type(of: module))", expected: "Linear, Conv2d (groups 1) or Embedding")
        }
        freeze()
        for (path, module) in targets {
            let layer: LoRALayer
            if let linear = module as? Linear {
                layer = LoRALinear(linear, rank: config.rank, alpha: config.alpha, dropout: config.dropout, useRSLoRA: config.useRSLoRA)
            } else if let embedding = module as? Embedding {
                layer = LoRAEmbedding(embedding, rank: config.rank, alpha: config.alpha, useRSLoRA: config.useRSLoRA)
            } else {
                layer = LoRAConv2d(module as! Conv2d, rank: config.rank, alpha: config.alpha, dropout: config.dropout,
                                   useRSLoRA: config.useRSLoRA)
            }
            try replaceModule(at: path, with: layer)
        }
        return targets.map(\.name)
    }

    /// The LoRA layers in the tree with their paths.
    public var loraLayers: [(name: String, layer: LoRALayer)] {
        namedModules().compactMap { name, module in (module as? LoRALayer).map { (name, $0) } }
    }

    /// Folds every LoRA update into its base weight (PEFT's `merge_adapter`).
    public func mergeLoRA() { for (_, layer) in loraLayers { layer.merge() } }

    /// Takes every LoRA update out of its base weight again (PEFT's `unmerge_adapter`).
    public func unmergeLoRA() { for (_, layer) in loraLayers { layer.unmerge() } }

    /// Removes the LoRA layers and puts the original layers back, with the updates
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
