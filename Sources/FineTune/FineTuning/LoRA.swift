import Foundation

/// A pretrained layer plus a trainable low-rank update: LoRA (Hu et al. 2021), laid out as
/// Hugging Face PEFT's LoRA layers.
///
/// ```text
/// y = base(x) + scaling * B(A(dropout(x)))        scaling = alpha / r  (alpha / sqrt(r) with rsLoRA)
/// ```
///
/// Each LoRA layer is a subclass of the layer it wraps (``LoRALinear`` is a `Linear`,
/// ``LoRAConv2d`` a `Conv2d`, ``LoRAEmbedding`` an `Embedding`), so it fits any slot declared
/// with the wrapped type and every call form of that layer runs the update. It holds the
/// wrapped layer's own parameters (the same objects, frozen), so the pretrained keys `weight`
/// and `bias` are unchanged and the update lives under `lora_A.weight` and `lora_B.weight`
/// (`lora_embedding_A` / `lora_embedding_B` for embeddings). ``merge()`` folds the update into
/// `weight` for inference at no extra cost; ``unmerge()`` takes it out again.
/// ``Module/applyLoRA(_:)`` picks the right kind for each target.
public protocol LoRALayer: Module {
    /// The rank `r` of the update.
    var rank: Int { get }
    /// `lora_alpha`.
    var alpha: Float { get }
    /// Whether the scaling is `alpha / sqrt(rank)` (rank-stabilised LoRA) instead of `alpha / rank`.
    var usesRSLoRA: Bool { get }
    /// Dropout on the input of the low-rank path (PEFT's `lora_dropout`), if any.
    var loraDropout: Dropout? { get }
    /// Whether the update is currently folded into ``baseWeight``.
    var isMerged: Bool { get }
    /// The pretrained weight the update applies to (frozen by the wrapping).
    var baseWeight: Parameter { get }
    /// `scaling * B A` shaped like ``baseWeight``: the update to it.
    var delta: Tensor { get }
    /// Adds the update to ``baseWeight`` (PEFT's `merge`): the forward pass then costs the base
    /// layer only. Training the LoRA weights while merged would not change the output; unmerge first.
    func merge()
    /// Subtracts the update from ``baseWeight`` again (equal to the original up to rounding).
    func unmerge()
    /// A plain layer of the wrapped kind holding the same pretrained parameters (no update):
    /// what ``Module/removeLoRA(merge:)`` puts back.
    func baseLayer() -> Module
}

extension LoRALayer {
    /// The multiplier of the low-rank product.
    public var scaling: Float { LoRAMath.scaling(rank: rank, alpha: alpha, rsLoRA: usesRSLoRA) }
}

/// What the LoRA layer kinds share.
enum LoRAMath {
    /// PEFT's keys for the LoRA properties.
    static func key(forProperty name: String) -> String? {
        switch name {
        case "loraA": return "lora_A"
        case "loraB": return "lora_B"
        case "loraEmbeddingA": return "lora_embedding_A"
        case "loraEmbeddingB": return "lora_embedding_B"
        default: return nil
        }
    }

    static func scaling(rank: Int, alpha: Float, rsLoRA: Bool) -> Float {
        rsLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank)
    }

    static func validate(rank: Int, dropout: Float) {
        precondition(rank > 0, "LoRA: rank must be positive, got \(rank)")
        precondition(dropout >= 0 && dropout < 1, "LoRA: dropout must be in [0, 1), got \(dropout)")
    }

    /// Folds `delta` into `weight` (sign +1) or takes it out (-1) and updates `isMerged`.
    static func fold(_ delta: Tensor, into weight: Parameter, merging: Bool, isMerged: inout Bool) {
        guard merging != isMerged else { return }
        weight.value = withoutGradients { merging ? weight.value + delta : weight.value - delta }
        isMerged = merging
    }

    /// `base + scaling * path(dropout(x))` unless merged.
    static func output(base: Tensor, input x: Tensor, isMerged: Bool, dropout: Dropout?, scaling: Float,
                       path: (Tensor) -> Tensor) -> Tensor {
        isMerged ? base : base + path(dropout.map { $0(x) } ?? x) * scaling
    }
}

/// LoRA on a `Linear` layer (PEFT's `lora.Linear`): `A` is `[r, in]` (Kaiming-uniform), `B` is
/// `[out, r]` (zeros, so training starts from the pretrained function).
///
/// ```swift
/// let layer = LoRALinear(Linear(768, 768), rank: 8, alpha: 16)
/// ```
public final class LoRALinear: Linear, LoRALayer {
    /// `A`: in -> rank, no bias (key `lora_A`).
    @Child public var loraA: Linear
    /// `B`: rank -> out, no bias, zero-initialised (key `lora_B`).
    @Child public var loraB: Linear
    public let loraDropout: Dropout?
    public let rank: Int
    public let alpha: Float
    public let usesRSLoRA: Bool
    public private(set) var isMerged = false

    /// Wraps `base`: shares its parameters, freezes them, adds a trainable rank-`rank` update.
    public init(_ base: Linear, rank: Int, alpha: Float, dropout: Float = 0, useRSLoRA: Bool = false) {
        LoRAMath.validate(rank: rank, dropout: dropout)
        let a = Linear(base.inFeatures, rank, bias: false), b = Linear(rank, base.outFeatures, bias: false)
        b.weight.value = Tensor.zeros(b.weight.shape)
        loraA = a
        loraB = b
        loraDropout = dropout > 0 ? Dropout(p: dropout) : nil
        self.rank = rank
        self.alpha = alpha
        usesRSLoRA = useRSLoRA
        super.init(weight: base.weight, bias: base.bias)
        weight.isFrozen = true
        bias?.isFrozen = true
    }

    public override func key(forProperty name: String) -> String {
        LoRAMath.key(forProperty: name) ?? super.key(forProperty: name)
    }

    public var baseWeight: Parameter { weight }

    public override func forward(_ x: Tensor) -> Tensor {
        LoRAMath.output(base: linearForward(x), input: x, isMerged: isMerged, dropout: loraDropout, scaling: scaling) {
            loraB(loraA($0))
        }
    }

    public var delta: Tensor {
        withoutGradients { loraB.weight.value.matmul(loraA.weight.value) * scaling }
    }

    public func merge() { LoRAMath.fold(delta, into: weight, merging: true, isMerged: &isMerged) }
    public func unmerge() { LoRAMath.fold(delta, into: weight, merging: false, isMerged: &isMerged) }
    public func baseLayer() -> Module { Linear(weight: weight, bias: bias) }

    /// Redraws the base layer as `Linear` would and restarts the update at zero (B = 0; A was
    /// redrawn with the children), so ``Module/reinitialize()`` gives a fresh LoRA model.
    public override func resetParameters(generator: inout RandomGenerator) {
        super.resetParameters(generator: &generator)
        loraB.weight.value = Tensor.zeros(loraB.weight.shape)
        isMerged = false
    }
}

/// LoRA on a `Conv2d` layer (PEFT's `lora.Conv2d`): `A` is a convolution with the base layer's
/// kernel, stride, padding and dilation into `rank` channels (`[r, in, kh, kw]`), `B` a 1x1
/// convolution back to the output channels (`[out, r, 1, 1]`, zeros). Grouped convolutions are
/// not supported.
public final class LoRAConv2d: Conv2d, LoRALayer {
    /// `A`: in -> rank channels with the base kernel (key `lora_A`).
    @Child public var loraA: Conv2d
    /// `B`: 1x1, rank -> out channels, zero-initialised (key `lora_B`).
    @Child public var loraB: Conv2d
    public let loraDropout: Dropout?
    public let rank: Int
    public let alpha: Float
    public let usesRSLoRA: Bool
    public private(set) var isMerged = false

    public init(_ base: Conv2d, rank: Int, alpha: Float, dropout: Float = 0, useRSLoRA: Bool = false) {
        precondition(base.groups == 1, "LoRAConv2d: grouped convolutions are not supported")
        LoRAMath.validate(rank: rank, dropout: dropout)
        let a = Conv2d(base.inChannels, rank, kernelSize: base.kernelSize, stride: base.stride, padding: base.padding,
                       dilation: base.dilation, bias: false)
        let b = Conv2d(rank, base.outChannels, kernelSize: (1, 1), bias: false)
        b.weight.value = Tensor.zeros(b.weight.shape)
        loraA = a
        loraB = b
        loraDropout = dropout > 0 ? Dropout(p: dropout) : nil
        self.rank = rank
        self.alpha = alpha
        usesRSLoRA = useRSLoRA
        super.init(weight: base.weight, bias: base.bias, stride: base.stride, padding: base.padding,
                   dilation: base.dilation, groups: base.groups)
        weight.isFrozen = true
        bias?.isFrozen = true
    }

    public override func key(forProperty name: String) -> String {
        LoRAMath.key(forProperty: name) ?? super.key(forProperty: name)
    }

    public var baseWeight: Parameter { weight }

    public override func forward(_ x: Tensor) -> Tensor {
        LoRAMath.output(base: convolutionForward(x), input: x, isMerged: isMerged, dropout: loraDropout, scaling: scaling) {
            loraB(loraA($0))
        }
    }

    public var delta: Tensor {
        withoutGradients {
            let a = loraA.weight.value.reshaped([rank, -1]), b = loraB.weight.value.reshaped([-1, rank])
            return (b.matmul(a) * scaling).reshaped(weight.shape)
        }
    }

    public func merge() { LoRAMath.fold(delta, into: weight, merging: true, isMerged: &isMerged) }
    public func unmerge() { LoRAMath.fold(delta, into: weight, merging: false, isMerged: &isMerged) }
    public func baseLayer() -> Module {
        Conv2d(weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }

    /// Redraws the base layer as `Conv2d` would and restarts the update at zero.
    public override func resetParameters(generator: inout RandomGenerator) {
        super.resetParameters(generator: &generator)
        loraB.weight.value = Tensor.zeros(loraB.weight.shape)
        isMerged = false
    }
}

/// LoRA on an `Embedding` (PEFT's `lora.Embedding`): the update `(B A)^T` is `[count, dim]`
/// with `A` (`lora_embedding_A`, `[r, count]`, zeros) and `B` (`lora_embedding_B`, `[dim, r]`,
/// N(0, 1)), so a lookup adds `scaling * B^T`'s rows picked through `A`. No dropout (PEFT
/// applies none to embeddings). Both call forms (index tensors and `[Int]`) run the update.
public final class LoRAEmbedding: Embedding, LoRALayer {
    /// `A`: `[r, count]` (key `lora_embedding_A`), zero-initialised.
    public let loraEmbeddingA: Parameter
    /// `B`: `[dim, r]` (key `lora_embedding_B`).
    public let loraEmbeddingB: Parameter
    public let rank: Int
    public let alpha: Float
    public let usesRSLoRA: Bool
    public private(set) var isMerged = false
    public var loraDropout: Dropout? { nil }

    public init(_ base: Embedding, rank: Int, alpha: Float, useRSLoRA: Bool = false) {
        LoRAMath.validate(rank: rank, dropout: 0)
        loraEmbeddingA = Parameter(Tensor.zeros([rank, base.count]), role: .other)
        loraEmbeddingB = RandomGenerator.withGlobal { Parameter(Tensor.randomNormal([base.dim, rank], generator: &$0), role: .other) }
        self.rank = rank
        self.alpha = alpha
        usesRSLoRA = useRSLoRA
        super.init(weight: base.weight, paddingIndex: base.paddingIndex)
        weight.isFrozen = true
    }

    public override func key(forProperty name: String) -> String {
        LoRAMath.key(forProperty: name) ?? super.key(forProperty: name)
    }

    public var baseWeight: Parameter { weight }

    public override func lookup(_ indices: [Int], shape: [Int]) -> Tensor {
        let base = super.lookup(indices, shape: shape)
        guard !isMerged else { return base }
        // As PEFT: the padding row's update gets no gradient, so padding tokens keep their vector.
        let rows = Tensor.embedding(indices, shape: shape, weight: loraEmbeddingA.value.transposed(), paddingIndex: paddingIndex)
        return base + rows.matmul(loraEmbeddingB.value.transposed()) * scaling
    }

    public var delta: Tensor {
        withoutGradients { loraEmbeddingB.value.matmul(loraEmbeddingA.value).transposed().contiguous() * scaling }
    }

    public func merge() { LoRAMath.fold(delta, into: weight, merging: true, isMerged: &isMerged) }
    public func unmerge() { LoRAMath.fold(delta, into: weight, merging: false, isMerged: &isMerged) }
    public func baseLayer() -> Module { Embedding(weight: weight, paddingIndex: paddingIndex) }

    /// Redraws the base table as `Embedding` would and restarts the update at zero (A = 0).
    public override func resetParameters(generator: inout RandomGenerator) {
        super.resetParameters(generator: &generator)
        loraEmbeddingA.value = Tensor.zeros(loraEmbeddingA.shape)
        isMerged = false
    }
}

/// Which modules ``Module/applyLoRA(_:)`` wraps, read as PEFT reads `target_modules`.
///
/// ```swift
/// LoRAConfig(targetModules: ["q_proj", "v_proj"])     // names: the path or its "."-suffix
/// LoRAConfig(targetModules: #".*\.(q|v)_proj"#)       // a string: a regex matching the whole path
/// LoRAConfig(targetModules: "all-linear")             // every Linear except the output head
/// ```
public enum LoRATargets: Sendable, Equatable, ExpressibleByArrayLiteral, ExpressibleByStringLiteral, CustomStringConvertible {
    /// A module is targeted when its dotted path equals a name or ends with `"." + name`.
    case names([String])
    /// A module is targeted when the regular expression matches its whole dotted path
    /// (PEFT's `re.fullmatch`).
    case regex(String)
    /// Every `Linear` layer except the output head, which is the last `Linear` in the tree
    /// (PEFT's `"all-linear"` excludes the model's output layer; FineTune takes the last one,
    /// which is the head of the models it builds). Layers inside LoRA layers and adapters are
    /// not targeted.
    case allLinear

    public init(arrayLiteral names: String...) { self = .names(names) }

    /// `"all-linear"`, or a regular expression, as PEFT reads a string `target_modules`.
    public init(stringLiteral value: String) { self = value == "all-linear" ? .allLinear : .regex(value) }

    public var description: String {
        switch self {
        case .names(let names): return "target modules \(names)"
        case .regex(let r): return "target regex /\(r)/"
        case .allLinear: return "all-linear"
        }
    }

    /// The targeted modules of `model`, in tree order. LoRA layers themselves and their factors
    /// are never targets; `allLinear` also leaves the layers inside adapters alone.
    public func select(in model: Module) throws(SelectionError) -> [(name: String, module: Module)] {
        var excludedPrefixes: [String] = []
        var candidates: [(name: String, module: Module)] = []
        for (path, module) in model.namedModules() where !path.isEmpty {
            if excludedPrefixes.contains(where: { path.hasPrefix($0) }) { continue }
            let isAdapter = path == "adapter" || path.hasSuffix(".adapter")
            if module is any LoRALayer || (isAdapter && self == .allLinear) {
                excludedPrefixes.append(path + ".")
                continue
            }
            candidates.append((path, module))
        }
        switch self {
        case .names(let names):
            return candidates.filter { c in names.contains { c.name == $0 || c.name.hasSuffix("." + $0) } }
        case .regex(let source):
            let regex: NSRegularExpression
            do { regex = try NSRegularExpression(pattern: "^(?:\(source))$") } catch { throw .invalidPattern(description) }
            return candidates.filter { regex.firstMatch(in: $0.name, range: NSRange($0.name.startIndex..., in: $0.name)) != nil }
        case .allLinear:
            let linear = candidates.filter { $0.module is Linear }
            return Array(linear.dropLast())
        }
    }

    /// The names PEFT's `target_modules` holds: a list, a regex string, or `"all-linear"`.
    var peftValue: Any {
        switch self {
        case .names(let names): return names
        case .regex(let r): return r
        case .allLinear: return "all-linear"
        }
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
    /// Which modules to wrap (PEFT's `target_modules`): names, a regex, or `"all-linear"`.
    public var targetModules: LoRATargets
    /// Rank-stabilised scaling `alpha / sqrt(rank)` (PEFT's `use_rslora`).
    public var useRSLoRA: Bool

    public init(rank: Int = 8, alpha: Float = 8, dropout: Float = 0, targetModules: LoRATargets, useRSLoRA: Bool = false) {
        self.rank = rank; self.alpha = alpha; self.dropout = dropout
        self.targetModules = targetModules; self.useRSLoRA = useRSLoRA
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
        let targets = try config.targetModules.select(in: self)
        guard !targets.isEmpty else {
            throw .noMatch(pattern: config.targetModules.description,
                           examples: Array(namedModules().map(\.name).dropFirst().prefix(8)))
        }
        for (path, module) in targets where !(module is Linear) && !(module is Embedding) && !((module as? Conv2d)?.groups == 1) {
            throw .unsupportedModule(path: path, type: "\(type(of: module))", expected: "Linear, Conv2d (groups 1) or Embedding")
        }
        let frozen = parameters().map { ($0, $0.isFrozen) }
        freeze()
        var wrapped: [String] = []
        for (path, module) in targets {
            let layer: any LoRALayer
            if let linear = module as? Linear {
                layer = LoRALinear(linear, rank: config.rank, alpha: config.alpha, dropout: config.dropout, useRSLoRA: config.useRSLoRA)
            } else if let embedding = module as? Embedding {
                layer = LoRAEmbedding(embedding, rank: config.rank, alpha: config.alpha, useRSLoRA: config.useRSLoRA)
            } else {
                layer = LoRAConv2d(module as! Conv2d, rank: config.rank, alpha: config.alpha, dropout: config.dropout,
                                   useRSLoRA: config.useRSLoRA)
            }
            do {
                try replaceModule(at: path, with: layer)
            } catch {
                // Nothing changes when a target cannot hold its LoRA layer.
                for done in wrapped.reversed() { try? unwrapLoRA(at: done, merge: false) }
                for (p, wasFrozen) in frozen { p.isFrozen = wasFrozen }
                throw error
            }
            wrapped.append(path)
        }
        return wrapped
    }

    /// The LoRA layers in the tree with their paths.
    public var loraLayers: [(name: String, layer: any LoRALayer)] {
        namedModules().compactMap { name, module in (module as? any LoRALayer).map { (name, $0) } }
    }

    /// Folds every LoRA update into its base weight (PEFT's `merge_adapter`).
    public func mergeLoRA() { for (_, layer) in loraLayers { layer.merge() } }

    /// Takes every LoRA update out of its base weight again (PEFT's `unmerge_adapter`).
    public func unmergeLoRA() { for (_, layer) in loraLayers { layer.unmerge() } }

    /// Removes the LoRA layers and puts plain layers of the wrapped kinds back, holding the
    /// same parameter objects, with the updates merged into their weights (`merge: true`,
    /// PEFT's `merge_and_unload`) or discarded (`merge: false`, PEFT's `unload`). Frozen flags
    /// are left as they are; modes and output adapters move to the plain layers. Returns the paths.
    @discardableResult
    public func removeLoRA(merge: Bool = true) -> [String] {
        let paths = loraLayers.map(\.name)
        for path in paths { try? unwrapLoRA(at: path, merge: merge) }
        return paths
    }

    private func unwrapLoRA(at path: String, merge: Bool) throws(SelectionError) {
        guard let layer = module(named: path) as? any LoRALayer else { return }
        if merge { layer.merge() } else { layer.unmerge() }
        // The plain layer is the LoRA layer's superclass, so it fits wherever the LoRA layer did.
        try replaceModule(at: path, with: layer.baseLayer())
    }
}
