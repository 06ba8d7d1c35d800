import Foundation

/// Reads a family's `config.json` fields with the family's errors: a missing or mistyped key
/// is ``ModelError/invalidConfig(key:reason:)``; a value that would change the architecture in
/// a way the family does not implement is ``ModelError/unsupportedConfig(key:value:supported:)``.
struct FamilyConfig {
    let config: PretrainedConfig

    func value<T: ConfigValue>(_ key: String, as type: T.Type = T.self) throws(ModelError) -> T {
        do { return try config.value(key, as: type) } catch { throw .invalidConfig(key: key, reason: error.description) }
    }

    func value<T: ConfigValue>(_ key: String, default defaultValue: T) throws(ModelError) -> T {
        do { return try config.value(key, default: defaultValue) } catch { throw .invalidConfig(key: key, reason: error.description) }
    }

    /// A string setting that must be one of `supported` (missing or null: `defaultValue`).
    func choice(_ key: String, default defaultValue: String, supported: [String]) throws(ModelError) -> String {
        let v: String = try value(key, default: defaultValue)
        guard supported.contains(v) else {
            throw .unsupportedConfig(key: key, value: v, supported: supported.joined(separator: ", "))
        }
        return v
    }

    /// A boolean setting whose only supported value is `required` (missing or null is fine).
    func requireFlag(_ key: String, _ required: Bool) throws(ModelError) {
        let v: Bool = try value(key, default: required)
        guard v == required else { throw .unsupportedConfig(key: key, value: "\(v)", supported: "\(required)") }
    }

    /// The label count: `num_labels`, else the size of `id2label`, else 2 (transformers' default).
    func labelCount() throws(ModelError) -> Int {
        if let n = try value("num_labels", default: Int?.none) { return n }
        if case .object(let labels)? = config.fields["id2label"] { return labels.count }
        return 2
    }

    /// The hidden activation as a function of `hidden_act` / `activation`.
    func activation(_ key: String) throws(ModelError) -> HiddenActivation {
        let name = try choice(key, default: "gelu", supported: HiddenActivation.allCases.map(\.rawValue))
        return HiddenActivation(rawValue: name)!
    }
}

/// Checks of values read from a `config.json` that no model can be built with, so that such a
/// file throws ``ModelError/invalidConfig(key:reason:)`` naming the key instead of stopping a
/// layer's constructor: counts that must be positive (sizes, heads, labels) or non-negative
/// (layers), probabilities in [0, 1) (dropout), a padding id inside the vocabulary.
enum ConfigCheck {
    static func positive(_ values: KeyValuePairs<String, Int>) throws(ModelError) {
        for (key, value) in values where value <= 0 { throw .invalidConfig(key: key, reason: "\(value) is not positive") }
    }

    static func nonNegative(_ values: KeyValuePairs<String, Int>) throws(ModelError) {
        for (key, value) in values where value < 0 { throw .invalidConfig(key: key, reason: "\(value) is negative") }
    }

    static func probabilities(_ values: KeyValuePairs<String, Float>) throws(ModelError) {
        for (key, value) in values where !(value >= 0 && value < 1) {
            throw .invalidConfig(key: key, reason: "\(value) is not in [0, 1)")
        }
    }

    /// `pad_token_id` as PyTorch's `nn.Embedding` accepts it: in `-vocabulary..<vocabulary`.
    static func paddingId(_ id: Int?, vocabulary: Int) throws(ModelError) {
        if let id, id < -vocabulary || id >= vocabulary {
            throw .invalidConfig(key: "pad_token_id", reason: "\(id) is outside the vocabulary of \(vocabulary)")
        }
    }
}

/// The feed-forward nonlinearities of the Hugging Face families (`hidden_act`).
public enum HiddenActivation: String, Sendable, CaseIterable {
    /// Exact (erf) GELU.
    case gelu
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    case geluNew = "gelu_new", geluPyTorchTanh = "gelu_pytorch_tanh"
    case relu

    func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .gelu: return x.gelu()
        case .geluNew, .geluPyTorchTanh: return x.gelu(approximate: true)
        case .relu: return x.relu()
        }
    }
}

/// Multi-head attention over already projected queries, keys and values `[B, T, heads * d]`,
/// as the Hugging Face encoders compute it: `softmax(Q K^T / sqrt(d))` with padded keys hidden,
/// dropout on the weights in training mode, heads merged back to `[B, T, heads * d]`.
///
/// `keyMask` is `[B, S]` with 1 for tokens and 0 for padding (Hugging Face's `attention_mask`).
func encoderAttention(query: Tensor, key: Tensor, value: Tensor, heads: Int, keyMask: Tensor?,
                      dropout: Float, training: Bool, op: String) -> Tensor {
    let b = query.shape[0], t = query.shape[1], s = key.shape[1], width = query.shape[2]
    Shape.check(width % heads == 0, op: op, shapes: [query.shape], "width \(width) is not a multiple of \(heads) heads")
    let d = width / heads
    func split(_ x: Tensor, _ length: Int) -> Tensor { x.reshaped([b, length, heads, d]).permuted([0, 2, 1, 3]) }
    let q = split(query, t), k = split(key, s), v = split(value, s)
    var mask: AttentionMask?
    if let keyMask {
        Shape.check(keyMask.shape == [b, s], op: op, shapes: [keyMask.shape, [b, s]], "attention mask must be [B, S]")
        mask = .allowed(keyMask.reshaped([b, 1, 1, s]))
    }
    let heads = Tensor.scaledDotProductAttention(query: q, key: k, value: v, mask: mask, dropout: training ? dropout : 0)
    return heads.permuted([0, 2, 1, 3]).reshaped([b, t, width])
}

/// Token ids held in a tensor of integer-valued floats, `[B, T]`, checked for rank.
func checkTokenIds(_ ids: Tensor, op: String) {
    Shape.check(ids.rank == 2, op: op, shapes: [ids.shape], "expected token ids [B, T]")
}

/// `[0, 1, ..., length - 1]` repeated for each row: position ids `[B, T]`.
func positionIds(batch: Int, length: Int) -> Tensor {
    Tensor(shape: [batch, length], scalars: (0..<batch * length).map { Float($0 % length) })
}

/// A pooler: `tanh(dense(first token))` (BERT's and ViT's `pooler`).
public final class FirstTokenPooler: Module {
    @Child public var dense: Linear

    public init(_ hidden: Int) {
        dense = Linear(hidden, hidden)
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor { dense(x.select(axis: 1, 0)).tanh() }
}

/// A module over a sequence `[B, T, hidden]` that can hide padded keys: it implements
/// ``compute(_:attentionMask:)`` once, and both call forms run it: `module(x, attentionMask:)`
/// (finished through ``Module/completeCall(_:)``) and `module(x)` (through ``forward(_:)``, no mask).
/// `attentionMask` is `[B, S]` with 1 for tokens and 0 for padding.
open class MaskedSequenceModule: Module {
    /// The computation behind both call forms.
    open func compute(_ x: Tensor, attentionMask: Tensor?) -> Tensor {
        preconditionFailure("\(type(of: self)) does not implement compute(_:attentionMask:)")
    }

    public final func callAsFunction(_ x: Tensor, attentionMask: Tensor?) -> Tensor {
        completeCall(compute(x, attentionMask: attentionMask))
    }

    public final override func forward(_ x: Tensor) -> Tensor { compute(x, attentionMask: nil) }
}

/// A stack of encoder layers named `layer.N` (BERT's `encoder`, DistilBERT's `transformer`),
/// applied in order with the same attention mask.
public final class EncoderLayerStack<Layer: MaskedSequenceModule>: MaskedSequenceModule {
    @Child public var layer: [Layer]

    public init(_ layers: [Layer]) {
        layer = layers
        super.init()
    }

    public override func compute(_ x: Tensor, attentionMask: Tensor?) -> Tensor {
        layer.reduce(x) { $1($0, attentionMask: attentionMask) }
    }
}

/// Query, key and value projections and multi-head attention over them, with Hugging Face's
/// names (`query`, `key`, `value`): BERT's `attention.self` and ViT's `attention.attention`.
public final class QueryKeyValueAttention: MaskedSequenceModule {
    @Child public var query: Linear
    @Child public var keyProjection: Linear
    @Child public var value: Linear
    public let headCount: Int
    /// Dropout on the attention weights (training mode).
    public let dropout: Float

    public init(hidden: Int, heads: Int, dropout: Float, bias: Bool = true) {
        query = Linear(hidden, hidden, bias: bias)
        keyProjection = Linear(hidden, hidden, bias: bias)
        value = Linear(hidden, hidden, bias: bias)
        headCount = heads
        self.dropout = dropout
        super.init()
    }

    public override func key(forProperty name: String) -> String { name == "keyProjection" ? "key" : super.key(forProperty: name) }

    /// Self-attention of `x` `[B, T, hidden]`, hiding padded keys (`attentionMask` `[B, T]`, 0 = padding).
    public override func compute(_ x: Tensor, attentionMask: Tensor?) -> Tensor {
        encoderAttention(query: query(x), key: keyProjection(x), value: value(x), heads: headCount,
                         keyMask: attentionMask, dropout: dropout, training: isTraining, op: "QueryKeyValueAttention")
    }
}

/// `intermediate`: `dense` and the activation (BERT's and ViT's feed-forward expansion).
public final class IntermediateDense: Module {
    @Child public var dense: Linear
    public let activation: HiddenActivation

    public init(_ inFeatures: Int, _ outFeatures: Int, activation: HiddenActivation) {
        dense = Linear(inFeatures, outFeatures)
        self.activation = activation
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor { activation(dense(x)) }
}
