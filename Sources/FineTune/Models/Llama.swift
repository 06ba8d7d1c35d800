import Foundation

/// The architecture of a LLaMA-family decoder, read from a Hugging Face `config.json`:
/// `model_type` `llama` (LLaMA 1-3, TinyLlama, SmolLM, ...), `mistral` and `qwen2` (Qwen2,
/// Qwen2.5). All three are the same pre-norm decoder (RMSNorm, rotary positions, grouped-query
/// attention, a SwiGLU feed-forward); they differ in biases and attention windows.
///
/// Supported keys: `vocab_size`, `hidden_size`, `intermediate_size`, `num_hidden_layers`,
/// `num_attention_heads`, `num_key_value_heads`, `head_dim`, `max_position_embeddings`,
/// `rms_norm_eps`, `rope_theta` and `rope_scaling` (older files) or `rope_parameters` (newer),
/// with `rope_type` `default`, `linear` or `llama3`; `partial_rotary_factor`, `attention_bias`
/// and `mlp_bias` (llama), `sliding_window` (mistral), `tie_word_embeddings`, `pad_token_id`,
/// `eos_token_id`, `attention_dropout`, `initializer_range`, `hidden_act` (`silu`), `num_labels` / `id2label`.
/// Qwen2 has biased query, key and value projections. Values that would change the
/// architecture in ways not implemented throw ``ModelError/unsupportedConfig(key:value:supported:)``:
/// another `model_type` or `hidden_act`, the `dynamic`, `yarn` and `longrope` RoPE types,
/// Qwen2's `use_sliding_window: true` or `layer_types` other than `full_attention`.
public struct LlamaConfiguration: Sendable, Equatable {
    /// The `model_type`s this configuration reads.
    public enum Family: String, Sendable, CaseIterable {
        case llama, mistral, qwen2
    }

    public var family: Family
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    /// Key and value heads (fewer than `headCount` for grouped-query attention).
    public var keyValueHeadCount: Int
    public var headDim: Int
    public var maxPositions: Int
    public var rmsNormEps: Float
    /// The rotary frequencies (`rope_theta`, the scaling and `partial_rotary_factor`).
    public var rotary: RotaryEmbedding
    /// Biases on the query, key and value projections.
    public var attentionBias: Bool
    /// A bias on the output projection (`o_proj`).
    public var outputProjectionBias: Bool
    public var mlpBias: Bool
    /// Each query sees only the last `slidingWindow` positions (itself included), or all before it.
    public var slidingWindow: Int?
    /// `lm_head` shares the token embeddings' weight.
    public var tieWordEmbeddings: Bool
    public var padTokenId: Int?
    /// The tokens that end a generated sequence (`eos_token_id`, one id or a list).
    public var eosTokenIds: [Int]
    public var attentionDropout: Float
    public var initializerRange: Float
    public var labelCount: Int

    /// A LLaMA-family decoder; the defaults are TinyLlama-1.1B's sizes.
    public init(family: Family = .llama, vocabSize: Int = 32000, hiddenSize: Int = 2048, intermediateSize: Int = 5632,
                layerCount: Int = 22, headCount: Int = 32, keyValueHeadCount: Int = 4, headDim: Int? = nil,
                maxPositions: Int = 2048, rmsNormEps: Float = 1e-5, rotary: RotaryEmbedding? = nil,
                attentionBias: Bool = false, outputProjectionBias: Bool = false, mlpBias: Bool = false,
                slidingWindow: Int? = nil, tieWordEmbeddings: Bool = false, padTokenId: Int? = nil,
                eosTokenIds: [Int] = [], attentionDropout: Float = 0, initializerRange: Float = 0.02, labelCount: Int = 2) {
        let headDim = headDim ?? hiddenSize / headCount
        self.family = family; self.vocabSize = vocabSize; self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize; self.layerCount = layerCount; self.headCount = headCount
        self.keyValueHeadCount = keyValueHeadCount; self.headDim = headDim; self.maxPositions = maxPositions
        self.rmsNormEps = rmsNormEps; self.rotary = rotary ?? RotaryEmbedding(dimension: headDim)
        self.attentionBias = attentionBias; self.outputProjectionBias = outputProjectionBias; self.mlpBias = mlpBias
        self.slidingWindow = slidingWindow; self.tieWordEmbeddings = tieWordEmbeddings; self.padTokenId = padTokenId
        self.eosTokenIds = eosTokenIds; self.attentionDropout = attentionDropout; self.initializerRange = initializerRange; self.labelCount = labelCount
    }

    /// Reads `config.json` (see the type's documentation for the keys).
    public init(_ config: PretrainedConfig) throws(ModelError) {
        let c = FamilyConfig(config: config)
        let family = Family(rawValue: try c.choice("model_type", default: "llama", supported: Family.allCases.map(\.rawValue)))!
        _ = try c.choice("hidden_act", default: "silu", supported: ["silu", "swish"])
        let hidden: Int = try c.value("hidden_size"), heads: Int = try c.value("num_attention_heads")
        guard hidden > 0 else { throw .invalidConfig(key: "hidden_size", reason: "\(hidden) is not positive") }
        guard heads > 0 else { throw .invalidConfig(key: "num_attention_heads", reason: "\(heads) is not positive") }
        let kvHeads: Int = try c.value("num_key_value_heads", default: heads)
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw .invalidConfig(key: "num_key_value_heads", reason: "\(kvHeads) does not divide num_attention_heads \(heads)")
        }
        let headDim: Int = try c.value("head_dim", default: hidden / heads)
        guard headDim > 0, headDim % 2 == 0 else { throw .invalidConfig(key: "head_dim", reason: "\(headDim) is not even and positive") }
        let rotary = try Self.readRotary(c, headDim: headDim)
        var qkvBias = false, outBias = false, mlpBias = false, window: Int?
        switch family {
        case .llama:
            qkvBias = try c.value("attention_bias", default: false)
            outBias = qkvBias
            mlpBias = try c.value("mlp_bias", default: false)
        case .mistral:
            window = try c.value("sliding_window", default: Int?.none)
            if let w = window, w <= 0 { throw .invalidConfig(key: "sliding_window", reason: "\(w) is not positive") }
        case .qwen2:
            try c.requireFlag("use_sliding_window", false)
            let layerTypes: [String] = try c.value("layer_types", default: [])
            if let other = layerTypes.first(where: { $0 != "full_attention" }) {
                throw .unsupportedConfig(key: "layer_types", value: other, supported: "full_attention")
            }
            qkvBias = true
        }
        self.init(family: family, vocabSize: try c.value("vocab_size"), hiddenSize: hidden,
                  intermediateSize: try c.value("intermediate_size"), layerCount: try c.value("num_hidden_layers"),
                  headCount: heads, keyValueHeadCount: kvHeads, headDim: headDim,
                  maxPositions: try c.value("max_position_embeddings", default: 2048),
                  rmsNormEps: try c.value("rms_norm_eps", default: 1e-6), rotary: rotary,
                  attentionBias: qkvBias, outputProjectionBias: outBias, mlpBias: mlpBias, slidingWindow: window,
                  tieWordEmbeddings: try c.value("tie_word_embeddings", default: false),
                  padTokenId: try c.value("pad_token_id", default: Int?.none), eosTokenIds: try Self.readTokenIds(c, "eos_token_id"),
                  attentionDropout: try c.value("attention_dropout", default: 0),
                  initializerRange: try c.value("initializer_range", default: 0.02), labelCount: try c.labelCount())
        try checkSizes()
    }

    /// Sizes a file may hold that no model can be built with (zero or negative counts, a pad
    /// id outside the vocabulary, ...) throw ``ModelError/invalidConfig(key:reason:)`` here
    /// rather than stopping the layers' constructors.
    private func checkSizes() throws(ModelError) {
        func require(_ condition: Bool, _ key: String, _ reason: @autoclosure () -> String) throws(ModelError) {
            if !condition { throw .invalidConfig(key: key, reason: reason()) }
        }
        try ConfigCheck.positive(["vocab_size": vocabSize, "intermediate_size": intermediateSize, "num_labels": labelCount])
        try ConfigCheck.nonNegative(["num_hidden_layers": layerCount])
        try ConfigCheck.paddingId(padTokenId, vocabulary: vocabSize)
        try ConfigCheck.probabilities(["attention_dropout": attentionDropout])
        try require(rmsNormEps >= 0 && rmsNormEps.isFinite, "rms_norm_eps", "\(rmsNormEps) is not a finite non-negative number")
        try require(rotary.base > 0 && rotary.base.isFinite, "rope_theta", "\(rotary.base) is not positive")
        switch rotary.scaling {
        case .none: break
        case .linear(let factor):
            try require(factor > 0 && factor.isFinite, "rope_scaling.factor", "\(factor) is not positive")
        case .llama3(let factor, let low, let high, let context):
            try require(factor > 0 && factor.isFinite, "rope_scaling.factor", "\(factor) is not positive")
            try require(low > 0 && high > low, "rope_scaling.high_freq_factor",
                        "llama3 scaling needs 0 < low_freq_factor < high_freq_factor, got \(low) and \(high)")
            try require(context > 0, "rope_scaling.original_max_position_embeddings", "\(context) is not positive")
        }
    }

    /// One token id or a list of them (missing or null: none).
    private static func readTokenIds(_ c: FamilyConfig, _ key: String) throws(ModelError) -> [Int] {
        if case .array? = c.config[key] { return try c.value(key, as: [Int].self) }
        return try c.value(key, default: Int?.none).map { [$0] } ?? []
    }

    /// The rotary frequencies from `rope_parameters` (transformers 5) or `rope_theta` and
    /// `rope_scaling` (earlier files), and `partial_rotary_factor`.
    private static func readRotary(_ c: FamilyConfig, headDim: Int) throws(ModelError) -> RotaryEmbedding {
        var section = FamilyConfig(config: PretrainedConfig())
        var sectionName = "rope_scaling"
        var theta: Float = try c.value("rope_theta", default: 10_000)
        for name in ["rope_parameters", "rope_scaling"] {
            guard let raw = c.config[name], raw != .null else { continue }
            do { section = FamilyConfig(config: try c.config.section(name)) } catch {
                throw .invalidConfig(key: name, reason: error.description)
            }
            sectionName = name
            break
        }
        theta = try section.value("rope_theta", default: theta)
        let type: String = try section.value("rope_type", default: try section.value("type", default: "default"))
        let scaling: RotaryEmbedding.Scaling
        switch type {
        case "default": scaling = .none
        case "linear": scaling = .linear(factor: try section.value("factor"))
        case "llama3":
            scaling = .llama3(factor: try section.value("factor"), lowFrequencyFactor: try section.value("low_freq_factor"),
                              highFrequencyFactor: try section.value("high_freq_factor"),
                              originalContext: try section.value("original_max_position_embeddings"))
        default:
            throw .unsupportedConfig(key: sectionName + ".rope_type", value: type, supported: "default, linear, llama3")
        }
        let partial: Float = try section.value("partial_rotary_factor", default: try c.value("partial_rotary_factor", default: 1))
        let dimension = Int(Float(headDim) * partial)
        guard dimension > 0, dimension % 2 == 0 else {
            throw .invalidConfig(key: "partial_rotary_factor", reason: "\(partial) of head_dim \(headDim) is not an even size")
        }
        return RotaryEmbedding(dimension: dimension, base: theta, scaling: scaling)
    }
}

/// `self_attn`: `q_proj`, `k_proj`, `v_proj` (`keyValueHeadCount` heads), rotary positions on
/// queries and keys, causal attention (optionally within a sliding window) and `o_proj`.
public final class LlamaAttention: Module {
    @Child public var qProj: Linear
    @Child public var kProj: Linear
    @Child public var vProj: Linear
    @Child public var oProj: Linear
    public let headCount: Int
    public let keyValueHeadCount: Int
    public let headDim: Int
    public let rotary: RotaryEmbedding
    public let slidingWindow: Int?
    /// Dropout on the attention weights (training mode).
    public let dropout: Float

    public init(_ c: LlamaConfiguration) {
        qProj = Linear(c.hiddenSize, c.headCount * c.headDim, bias: c.attentionBias)
        kProj = Linear(c.hiddenSize, c.keyValueHeadCount * c.headDim, bias: c.attentionBias)
        vProj = Linear(c.hiddenSize, c.keyValueHeadCount * c.headDim, bias: c.attentionBias)
        oProj = Linear(c.headCount * c.headDim, c.hiddenSize, bias: c.outputProjectionBias)
        headCount = c.headCount; keyValueHeadCount = c.keyValueHeadCount; headDim = c.headDim
        rotary = c.rotary; slidingWindow = c.slidingWindow; dropout = c.attentionDropout
        super.init()
    }

    /// Causal self-attention of `x` `[B, T, hidden]` with positions turned by `rotaryTables`
    /// (``RotaryEmbedding/tables(length:)``) and padded keys hidden (`attentionMask` `[B, T]`, 0 = padding).
    public func compute(_ x: Tensor, rotaryTables: (cos: Tensor, sin: Tensor), attentionMask: Tensor?) -> Tensor {
        let (q, k, v) = headsOf(x, rotaryTables: rotaryTables)
        let b = x.shape[0], t = x.shape[1]
        var allowed: Tensor?
        if let attentionMask {
            Shape.check(attentionMask.shape == [b, t], op: "LlamaAttention", shapes: [attentionMask.shape, [b, t]],
                        "attention mask must be [B, T]")
            allowed = attentionMask.reshaped([b, 1, 1, t])
        }
        if let window = slidingWindow, window < t {
            let band = Tensor(shape: [t, t], scalars: (0..<(t * t)).map { Self.sees(query: $0 / t, key: $0 % t, window: window) ? 1 : 0 })
            allowed = allowed.map { $0 * band } ?? band
        }
        return attend(q, k, v, allowed: allowed, isCausal: true)
    }

    /// Attention of `x`'s `L` new positions to every position `cache` holds and to themselves
    /// (generation): their keys and values are appended to `cache`. `allowed` `[B, 1, L, S]`
    /// (S = positions cached before plus `L`) is 1 where a query may see a key: causality,
    /// padding and any window already applied (``LlamaForCausalLM/generate(_:attentionMask:maxNewTokens:endTokenIds:sampling:)``
    /// builds it).
    public func callAsFunction(_ x: Tensor, rotaryTables: (cos: Tensor, sin: Tensor), allowed: Tensor,
                               cache: KeyValueCache.Layer) -> Tensor {
        let (q, k, v) = headsOf(x, rotaryTables: rotaryTables)
        cache.append(keys: k, values: v)
        return completeCall(attend(q, cache.keys!, cache.values!, allowed: allowed, isCausal: false))
    }

    /// Query `[B, H, T, D]`, key and value `[B, Hkv, T, D]` (views), queries and keys turned.
    private func headsOf(_ x: Tensor, rotaryTables: (cos: Tensor, sin: Tensor)) -> (Tensor, Tensor, Tensor) {
        Shape.check(x.rank == 3, op: "LlamaAttention", shapes: [x.shape], "expected [B, T, hidden]")
        let b = x.shape[0], t = x.shape[1]
        func heads(_ y: Tensor, _ count: Int, rotate: Bool) -> Tensor {
            let split = y.reshaped([b, t, count, headDim])
            return (rotate ? Tensor.rotaryEmbedding(split, cos: rotaryTables.cos, sin: rotaryTables.sin) : split).permuted([0, 2, 1, 3])
        }
        return (heads(qProj(x), headCount, rotate: true), heads(kProj(x), keyValueHeadCount, rotate: true),
                heads(vProj(x), keyValueHeadCount, rotate: false))
    }

    /// Attention over the heads, merged back to `[B, L, hidden]` through `o_proj`.
    private func attend(_ q: Tensor, _ k: Tensor, _ v: Tensor, allowed: Tensor?, isCausal: Bool) -> Tensor {
        let y = Tensor.scaledDotProductAttention(query: q, key: k, value: v, mask: allowed.map { .allowed($0) },
                                                 isCausal: isCausal, dropout: isTraining ? dropout : 0)
        return oProj(y.permuted([0, 2, 1, 3]).reshaped([q.shape[0], q.shape[2], headCount * headDim]))
    }

    /// Whether the query at position `query` sees the key at `key` under causality and a
    /// sliding window (Mistral: `query - window < key <= query`).
    static func sees(query: Int, key: Int, window: Int?) -> Bool {
        key <= query && (window.map { query - key < $0 } ?? true)
    }

    public func callAsFunction(_ x: Tensor, rotaryTables: (cos: Tensor, sin: Tensor), attentionMask: Tensor? = nil) -> Tensor {
        completeCall(compute(x, rotaryTables: rotaryTables, attentionMask: attentionMask))
    }

    /// Positions `0..<T`, no padding.
    public override func forward(_ x: Tensor) -> Tensor {
        compute(x, rotaryTables: rotary.tables(length: x.shape[1]), attentionMask: nil)
    }
}

/// `mlp`: `down_proj(silu(gate_proj(x)) * up_proj(x))` (SwiGLU).
public final class LlamaMLP: Module {
    @Child public var gateProj: Linear
    @Child public var upProj: Linear
    @Child public var downProj: Linear

    public init(_ c: LlamaConfiguration) {
        gateProj = Linear(c.hiddenSize, c.intermediateSize, bias: c.mlpBias)
        upProj = Linear(c.hiddenSize, c.intermediateSize, bias: c.mlpBias)
        downProj = Linear(c.intermediateSize, c.hiddenSize, bias: c.mlpBias)
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor { downProj(gateProj(x).silu() * upProj(x)) }
}

/// One decoder layer (`layers.N`): `x + self_attn(input_layernorm(x))`, then
/// `h + mlp(post_attention_layernorm(h))` (pre-norm).
public final class LlamaDecoderLayer: Module {
    @Child public var selfAttn: LlamaAttention
    @Child public var mlp: LlamaMLP
    @Child public var inputLayernorm: RMSNorm
    @Child public var postAttentionLayernorm: RMSNorm

    public init(_ c: LlamaConfiguration) {
        selfAttn = LlamaAttention(c)
        mlp = LlamaMLP(c)
        inputLayernorm = RMSNorm(c.hiddenSize, eps: c.rmsNormEps)
        postAttentionLayernorm = RMSNorm(c.hiddenSize, eps: c.rmsNormEps)
        super.init()
    }

    public func compute(_ x: Tensor, rotaryTables: (cos: Tensor, sin: Tensor), attentionMask: Tensor?) -> Tensor {
        residuals(x) { selfAttn($0, rotaryTables: rotaryTables, attentionMask: attentionMask) }
    }

    /// The two pre-norm residual branches around `attention` (either call form of `self_attn`).
    private func residuals(_ x: Tensor, attention: (Tensor) -> Tensor) -> Tensor {
        let h = x + attention(inputLayernorm(x))
        return h + mlp(postAttentionLayernorm(h))
    }

    public func callAsFunction(_ x: Tensor, rotaryTables: (cos: Tensor, sin: Tensor), attentionMask: Tensor? = nil) -> Tensor {
        completeCall(compute(x, rotaryTables: rotaryTables, attentionMask: attentionMask))
    }

    /// The layer for new positions attending to a cache (generation; see ``LlamaAttention``).
    public func callAsFunction(_ x: Tensor, rotaryTables: (cos: Tensor, sin: Tensor), allowed: Tensor,
                               cache: KeyValueCache.Layer) -> Tensor {
        completeCall(residuals(x) { selfAttn($0, rotaryTables: rotaryTables, allowed: allowed, cache: cache) })
    }

    /// Positions `0..<T`, no padding.
    public override func forward(_ x: Tensor) -> Tensor {
        compute(x, rotaryTables: selfAttn.rotary.tables(length: x.shape[1]), attentionMask: nil)
    }
}

/// Hugging Face's `LlamaModel` (and `MistralModel`, `Qwen2Model`) with its names
/// (`embed_tokens.weight`, `layers.0.self_attn.q_proj.weight`, `norm.weight`): the final
/// normalised hidden states.
public final class LlamaModel: Module {
    @Child public var embedTokens: Embedding
    @Child public var layers: [LlamaDecoderLayer]
    @Child public var norm: RMSNorm
    public let configuration: LlamaConfiguration

    public init(_ configuration: LlamaConfiguration) {
        self.configuration = configuration
        embedTokens = Embedding(configuration.vocabSize, configuration.hiddenSize, paddingIndex: configuration.padTokenId)
        layers = (0..<configuration.layerCount).map { _ in LlamaDecoderLayer(configuration) }
        norm = RMSNorm(configuration.hiddenSize, eps: configuration.rmsNormEps)
        super.init()
        initializeAsHuggingFace(self, std: configuration.initializerRange)
    }

    public convenience init(config: PretrainedConfig) throws(ModelError) {
        self.init(try LlamaConfiguration(config))
    }

    /// The hidden states `[B, T, hidden]` for token ids `[B, T]`, with `attentionMask` `[B, T]`
    /// (1 = token, 0 = padding) and `positionIds` `[B, T]` (default `0..<T` in every row, as
    /// transformers' forward without a cache).
    /// The computation behind every call form (``callAsFunction(_:attentionMask:positionIds:)``
    /// finishes it through ``Module/completeCall(_:)``).
    public func compute(_ ids: Tensor, attentionMask: Tensor?, positionIds: Tensor?) -> Tensor {
        checkTokenIds(ids, op: "LlamaModel")
        let rotary = configuration.rotary
        let tables: (cos: Tensor, sin: Tensor)
        if let positionIds {
            Shape.check(positionIds.shape == ids.shape, op: "LlamaModel", shapes: [positionIds.shape, ids.shape],
                        "position ids must have the token ids' shape [B, T]")
            tables = rotary.tables(positions: positionIds)
        } else {
            tables = rotary.tables(length: ids.shape[1])
        }
        return norm(layers.reduce(embedTokens(ids)) { $1($0, rotaryTables: tables, attentionMask: attentionMask) })
    }

    public func callAsFunction(_ ids: Tensor, attentionMask: Tensor? = nil, positionIds: Tensor? = nil) -> Tensor {
        completeCall(compute(ids, attentionMask: attentionMask, positionIds: positionIds))
    }

    public override func forward(_ x: Tensor) -> Tensor { compute(x, attentionMask: nil, positionIds: nil) }

    /// New positions through every layer, attending to `cache` (generation): token ids and
    /// position ids `[B, L]`, `allowed` `[B, 1, L, S]` as ``LlamaAttention`` takes it.
    public func callAsFunction(_ ids: Tensor, positionIds: Tensor, allowed: Tensor, cache: KeyValueCache) -> Tensor {
        checkTokenIds(ids, op: "LlamaModel")
        Shape.check(cache.layers.count == layers.count, op: "LlamaModel", shapes: [[cache.layers.count], [layers.count]],
                    "the cache has \(cache.layers.count) layers, the model \(layers.count)")
        let tables = configuration.rotary.tables(positions: positionIds)
        var h = embedTokens(ids)
        for (layer, layerCache) in zip(layers, cache.layers) { h = layer(h, rotaryTables: tables, allowed: allowed, cache: layerCache) }
        return completeCall(norm(h))
    }

    /// Layer groups under `prefix`: the token embeddings, then each decoder layer.
    func layerGroups(prefix: String) -> [[String]] {
        [[prefix + "embed_tokens"]] + (0..<layers.count).map { [prefix + "layers.\($0)"] }
    }
}

/// Hugging Face's `LlamaForCausalLM` (`MistralForCausalLM`, `Qwen2ForCausalLM`): `model` and
/// `lm_head`, which shares the token embeddings' weight when `tie_word_embeddings` is set
/// (a checkpoint then holds it once, as `model.embed_tokens.weight`). Layer groups: the
/// embeddings, each decoder layer, then `model.norm` and `lm_head`.
///
/// ```swift
/// let folder = URL(fileURLWithPath: "TinyLlama-1.1B")
/// let model = try LlamaForCausalLM(config: PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json")))
/// try model.loadPretrained(from: folder)
/// try model.applyLoRA(LoRAConfig(rank: 8, alpha: 16, targetModules: ["q_proj", "v_proj"]))
/// let loss = model.loss(ids, labels: ids, attentionMask: mask)   // next-token cross-entropy
/// ```
public final class LlamaForCausalLM: Module, LayerGrouped {
    @Child public var model: LlamaModel
    @Child public var lmHead: Linear

    public init(_ configuration: LlamaConfiguration) {
        model = LlamaModel(configuration)
        lmHead = Linear(configuration.hiddenSize, configuration.vocabSize, bias: false)
        super.init()
        initializeAsHuggingFace(lmHead, std: configuration.initializerRange)
        if configuration.tieWordEmbeddings { lmHead.weight = model.embedTokens.weight }
    }

    public convenience init(config: PretrainedConfig) throws(ModelError) {
        self.init(try LlamaConfiguration(config))
    }

    /// Next-token logits `[B, T, vocab]`.
    /// The computation behind every call form (``callAsFunction(_:attentionMask:positionIds:)``
    /// finishes it through ``Module/completeCall(_:)``).
    public func compute(_ ids: Tensor, attentionMask: Tensor?, positionIds: Tensor?) -> Tensor {
        lmHead(model(ids, attentionMask: attentionMask, positionIds: positionIds))
    }

    public func callAsFunction(_ ids: Tensor, attentionMask: Tensor? = nil, positionIds: Tensor? = nil) -> Tensor {
        completeCall(compute(ids, attentionMask: attentionMask, positionIds: positionIds))
    }

    public override func forward(_ x: Tensor) -> Tensor { compute(x, attentionMask: nil, positionIds: nil) }

    /// The causal language-modelling loss of transformers (`labels=` in the forward): the
    /// logits at position `t` predict `labels[:, t + 1]`, labels equal to `ignoreIndex`
    /// (padding, prompt tokens) are left out of the mean. Pass the token ids as `labels` to
    /// train on every token.
    public func loss(_ ids: Tensor, labels: Tensor, attentionMask: Tensor? = nil, ignoreIndex: Int = -100) -> Tensor {
        Tensor.causalLanguageModelingLoss(self(ids, attentionMask: attentionMask), labels: labels, ignoreIndex: ignoreIndex)
    }

    public var layerGroups: [[String]] { model.layerGroups(prefix: "model.") + [["model.norm", "lm_head"]] }
}

/// Hugging Face's `LlamaForSequenceClassification` (and Mistral's, Qwen2's): `model`, then
/// `score` (no bias) on the last token of each row that is not `pad_token_id` (the rightmost,
/// so left and right padding both work). Without a `pad_token_id` the last position is used,
/// and only one row at a time is accepted, as in transformers. Layer groups: the embeddings,
/// each decoder layer, then `model.norm` and `score`.
public final class LlamaForSequenceClassification: Module, LayerGrouped {
    @Child public var model: LlamaModel
    @Child public var score: Linear

    public init(_ configuration: LlamaConfiguration) {
        model = LlamaModel(configuration)
        score = Linear(configuration.hiddenSize, configuration.labelCount, bias: false)
        super.init()
        initializeAsHuggingFace(score, std: configuration.initializerRange)
    }

    public convenience init(config: PretrainedConfig) throws(ModelError) {
        self.init(try LlamaConfiguration(config))
    }

    /// Logits `[B, labels]` (`positionIds` as in ``LlamaModel/compute(_:attentionMask:positionIds:)``).
    /// The computation behind every call form (``callAsFunction(_:attentionMask:positionIds:)``
    /// finishes it through ``Module/completeCall(_:)``).
    public func compute(_ ids: Tensor, attentionMask: Tensor?, positionIds: Tensor?) -> Tensor {
        let hidden = model(ids, attentionMask: attentionMask, positionIds: positionIds)
        let b = ids.shape[0], t = ids.shape[1]
        let rows: [Int]
        if let pad = model.configuration.padTokenId {
            let tokens = ids.scalars
            rows = (0..<b).map { row in
                let last = (0..<t).last { tokens[row * t + $0] != Float(pad) } ?? 0
                return row * t + last
            }
        } else {
            Shape.check(b == 1, op: "LlamaForSequenceClassification", shapes: [ids.shape],
                        "without a pad_token_id the last token of a padded row cannot be found: pass one row at a time")
            rows = [t - 1]
        }
        return score(hidden.reshaped([b * t, hidden.shape[2]]).indexSelect(axis: 0, rows))
    }

    public func callAsFunction(_ ids: Tensor, attentionMask: Tensor? = nil, positionIds: Tensor? = nil) -> Tensor {
        completeCall(compute(ids, attentionMask: attentionMask, positionIds: positionIds))
    }

    public override func forward(_ x: Tensor) -> Tensor { compute(x, attentionMask: nil, positionIds: nil) }

    public var layerGroups: [[String]] { model.layerGroups(prefix: "model.") + [["model.norm", "score"]] }
}
