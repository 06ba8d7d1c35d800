import Foundation

/// The architecture of a BERT model, read from a Hugging Face `config.json`.
///
/// Supported keys: `vocab_size`, `hidden_size`, `num_hidden_layers`, `num_attention_heads`,
/// `intermediate_size`, `max_position_embeddings`, `type_vocab_size`, `layer_norm_eps`,
/// `hidden_dropout_prob`, `attention_probs_dropout_prob`, `classifier_dropout`, `pad_token_id`,
/// `hidden_act` (`gelu`, `gelu_new`, `gelu_pytorch_tanh`, `relu`), `num_labels` / `id2label`.
/// Keys that would change the architecture in ways not implemented throw
/// ``ModelError/unsupportedConfig(key:value:supported:)``: `position_embedding_type` other than
/// `absolute`, `is_decoder`, `add_cross_attention`.
public struct BertConfiguration: Sendable, Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var intermediateSize: Int
    public var maxPositions: Int
    public var typeVocabSize: Int
    public var layerNormEps: Float
    public var hiddenDropout: Float
    public var attentionDropout: Float
    /// Dropout before the classifier (`classifier_dropout`, else `hidden_dropout_prob`).
    public var classifierDropout: Float
    public var padTokenId: Int
    public var activation: HiddenActivation
    public var labelCount: Int

    /// BERT-base's sizes (uncased vocabulary), with `labelCount` labels.
    public init(vocabSize: Int = 30522, hiddenSize: Int = 768, layerCount: Int = 12, headCount: Int = 12,
                intermediateSize: Int = 3072, maxPositions: Int = 512, typeVocabSize: Int = 2, layerNormEps: Float = 1e-12,
                hiddenDropout: Float = 0.1, attentionDropout: Float = 0.1, classifierDropout: Float? = nil,
                padTokenId: Int = 0, activation: HiddenActivation = .gelu, labelCount: Int = 2) {
        self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.layerCount = layerCount; self.headCount = headCount
        self.intermediateSize = intermediateSize; self.maxPositions = maxPositions; self.typeVocabSize = typeVocabSize
        self.layerNormEps = layerNormEps; self.hiddenDropout = hiddenDropout; self.attentionDropout = attentionDropout
        self.classifierDropout = classifierDropout ?? hiddenDropout
        self.padTokenId = padTokenId; self.activation = activation; self.labelCount = labelCount
    }

    /// Reads `config.json` (see the type's documentation for the keys).
    public init(_ config: PretrainedConfig) throws(ModelError) {
        let c = FamilyConfig(config: config)
        _ = try c.choice("position_embedding_type", default: "absolute", supported: ["absolute"])
        try c.requireFlag("is_decoder", false)
        try c.requireFlag("add_cross_attention", false)
        let hidden: Float = try c.value("hidden_dropout_prob", default: 0.1)
        self.init(vocabSize: try c.value("vocab_size"), hiddenSize: try c.value("hidden_size"),
                  layerCount: try c.value("num_hidden_layers"), headCount: try c.value("num_attention_heads"),
                  intermediateSize: try c.value("intermediate_size"),
                  maxPositions: try c.value("max_position_embeddings", default: 512),
                  typeVocabSize: try c.value("type_vocab_size", default: 2),
                  layerNormEps: try c.value("layer_norm_eps", default: 1e-12), hiddenDropout: hidden,
                  attentionDropout: try c.value("attention_probs_dropout_prob", default: 0.1),
                  classifierDropout: try c.value("classifier_dropout", as: Float?.self),
                  padTokenId: try c.value("pad_token_id", default: 0), activation: try c.activation("hidden_act"),
                  labelCount: try c.labelCount())
        try ConfigCheck.positive(["vocab_size": vocabSize, "hidden_size": hiddenSize, "num_attention_heads": headCount,
                                  "intermediate_size": intermediateSize, "max_position_embeddings": maxPositions,
                                  "type_vocab_size": typeVocabSize, "num_labels": labelCount])
        try ConfigCheck.nonNegative(["num_hidden_layers": layerCount])
        try ConfigCheck.probabilities(["hidden_dropout_prob": hiddenDropout, "attention_probs_dropout_prob": attentionDropout,
                                       "classifier_dropout": classifierDropout])
        try ConfigCheck.paddingId(padTokenId, vocabulary: vocabSize)
        guard hiddenSize % headCount == 0 else {
            throw .invalidConfig(key: "hidden_size", reason: "\(hiddenSize) is not a multiple of num_attention_heads \(headCount)")
        }
    }
}

/// Maps `layerNorm` to Hugging Face's `LayerNorm` key.
private func huggingFaceKey(_ name: String) -> String? { name == "layerNorm" ? "LayerNorm" : nil }

/// `bert.embeddings`: word, position and token-type embeddings, summed, normalised, dropped out.
public final class BertEmbeddings: Module {
    @Child public var wordEmbeddings: Embedding
    @Child public var positionEmbeddings: Embedding
    @Child public var tokenTypeEmbeddings: Embedding
    @Child public var layerNorm: LayerNorm
    @Child public var dropout: Dropout

    public init(_ c: BertConfiguration) {
        wordEmbeddings = Embedding(c.vocabSize, c.hiddenSize, paddingIndex: c.padTokenId)
        positionEmbeddings = Embedding(c.maxPositions, c.hiddenSize)
        tokenTypeEmbeddings = Embedding(c.typeVocabSize, c.hiddenSize)
        layerNorm = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
        dropout = Dropout(p: c.hiddenDropout)
        super.init()
    }

    public override func key(forProperty name: String) -> String { huggingFaceKey(name) ?? super.key(forProperty: name) }

    /// `[B, T]` ids (and token types) to `[B, T, hidden]`.
    /// The computation behind every call form (``callAsFunction`` finishes it through ``Module/completeCall(_:)``).
    public func compute(_ ids: Tensor, tokenTypeIds: Tensor?) -> Tensor {
        let b = ids.shape[0], t = ids.shape[1]
        Shape.check(t <= positionEmbeddings.count, op: "BertEmbeddings", shapes: [ids.shape, positionEmbeddings.weight.shape],
                    "sequence length \(t) exceeds max_position_embeddings \(positionEmbeddings.count)")
        let types = tokenTypeIds ?? Tensor.zeros([b, t])
        let sum = wordEmbeddings(ids) + positionEmbeddings(positionIds(batch: b, length: t)) + tokenTypeEmbeddings(types)
        return dropout(layerNorm(sum))
    }

    public func callAsFunction(_ ids: Tensor, tokenTypeIds: Tensor?) -> Tensor {
        completeCall(compute(ids, tokenTypeIds: tokenTypeIds))
    }

    public override func forward(_ x: Tensor) -> Tensor { compute(x, tokenTypeIds: nil) }
}

/// `dense`, dropout, then `LayerNorm(dense(h) + residual)`: BERT's `attention.output` and `output`.
public final class BertResidualOutput: Module {
    @Child public var dense: Linear
    @Child public var layerNorm: LayerNorm
    @Child public var dropout: Dropout

    public init(_ inFeatures: Int, _ c: BertConfiguration) {
        dense = Linear(inFeatures, c.hiddenSize)
        layerNorm = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
        dropout = Dropout(p: c.hiddenDropout)
        super.init()
    }

    public override func key(forProperty name: String) -> String { huggingFaceKey(name) ?? super.key(forProperty: name) }

    /// The computation behind every call form (``callAsFunction`` finishes it through ``Module/completeCall(_:)``).
    public func compute(_ h: Tensor, residual: Tensor) -> Tensor {
        layerNorm(dropout(dense(h)) + residual)
    }

    public func callAsFunction(_ h: Tensor, residual: Tensor) -> Tensor {
        completeCall(compute(h, residual: residual))
    }
}

/// `encoder.layer.N.attention`: `self` and `output`.
public final class BertAttention: MaskedSequenceModule {
    @Child public var selfAttention: QueryKeyValueAttention
    @Child public var output: BertResidualOutput

    public init(_ c: BertConfiguration) {
        selfAttention = QueryKeyValueAttention(hidden: c.hiddenSize, heads: c.headCount, dropout: c.attentionDropout)
        output = BertResidualOutput(c.hiddenSize, c)
        super.init()
    }

    public override func key(forProperty name: String) -> String { name == "selfAttention" ? "self" : super.key(forProperty: name) }

    public override func compute(_ x: Tensor, attentionMask: Tensor?) -> Tensor {
        output(selfAttention(x, attentionMask: attentionMask), residual: x)
    }
}

/// One encoder layer (`encoder.layer.N`): attention, intermediate, output (post-norm).
public final class BertLayer: MaskedSequenceModule {
    @Child public var attention: BertAttention
    @Child public var intermediate: IntermediateDense
    @Child public var output: BertResidualOutput

    public init(_ c: BertConfiguration) {
        attention = BertAttention(c)
        intermediate = IntermediateDense(c.hiddenSize, c.intermediateSize, activation: c.activation)
        output = BertResidualOutput(c.intermediateSize, c)
        super.init()
    }

    public override func compute(_ x: Tensor, attentionMask: Tensor?) -> Tensor {
        let h = attention(x, attentionMask: attentionMask)
        return output(intermediate(h), residual: h)
    }
}

/// `encoder`: the layers (`encoder.layer.N`).
public typealias BertEncoder = EncoderLayerStack<BertLayer>

/// Hugging Face's `BertModel`: embeddings, encoder and (optionally) the pooler, with its
/// parameter names (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`,
/// `pooler.dense.weight`).
///
/// ```swift
/// let bert = try BertModel(config: PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json")))
/// let states = bert(ids, attentionMask: mask)          // [B, T, hidden]
/// ```
public final class BertModel: Module {
    @Child public var embeddings: BertEmbeddings
    @Child public var encoder: BertEncoder
    @Child public var pooler: FirstTokenPooler?
    public let configuration: BertConfiguration

    public init(_ configuration: BertConfiguration, addPoolingLayer: Bool = true) {
        self.configuration = configuration
        embeddings = BertEmbeddings(configuration)
        encoder = BertEncoder((0..<configuration.layerCount).map { _ in BertLayer(configuration) })
        pooler = addPoolingLayer ? FirstTokenPooler(configuration.hiddenSize) : nil
        super.init()
        initializeAsHuggingFace(self, std: 0.02)
    }

    /// Builds the model `config.json` describes.
    public convenience init(config: PretrainedConfig, addPoolingLayer: Bool = true) throws(ModelError) {
        self.init(try BertConfiguration(config), addPoolingLayer: addPoolingLayer)
    }

    /// The last hidden states `[B, T, hidden]` for token ids `[B, T]` (integer-valued floats),
    /// with `attentionMask` `[B, T]` (1 = token, 0 = padding) and `tokenTypeIds` `[B, T]`.
    /// The computation behind every call form (``callAsFunction`` finishes it through ``Module/completeCall(_:)``).
    public func compute(_ ids: Tensor, attentionMask: Tensor?, tokenTypeIds: Tensor?) -> Tensor {
        checkTokenIds(ids, op: "BertModel")
        return encoder(embeddings(ids, tokenTypeIds: tokenTypeIds), attentionMask: attentionMask)
    }

    public func callAsFunction(_ ids: Tensor, attentionMask: Tensor? = nil, tokenTypeIds: Tensor? = nil) -> Tensor {
        completeCall(compute(ids, attentionMask: attentionMask, tokenTypeIds: tokenTypeIds))
    }

    public override func forward(_ x: Tensor) -> Tensor { compute(x, attentionMask: nil, tokenTypeIds: nil) }

    /// The pooled first-token representation `[B, hidden]` (needs the pooler).
    public func pooled(_ hiddenStates: Tensor) -> Tensor {
        guard let pooler else { preconditionFailure("BertModel: built without a pooling layer") }
        return pooler(hiddenStates)
    }
}

/// Hugging Face's `BertForSequenceClassification`: `bert` (with pooler), dropout, `classifier`
/// on the pooled output. Layer groups: the embeddings, each encoder layer, then pooler and classifier.
///
/// ```swift
/// let model = try BertForSequenceClassification(config: config)
/// try model.loadPretrained(from: folder, ignoringMismatchedSizes: true)   // a new head for your labels
/// try model.freeze(upTo: -3)                                               // train the top layer and the head
/// let logits = model(ids, attentionMask: mask)                             // [B, labels]
/// ```
public final class BertForSequenceClassification: Module, LayerGrouped {
    @Child public var bert: BertModel
    @Child public var dropout: Dropout
    @Child public var classifier: Linear

    public init(_ configuration: BertConfiguration) {
        bert = BertModel(configuration)
        dropout = Dropout(p: configuration.classifierDropout)
        classifier = Linear(configuration.hiddenSize, configuration.labelCount)
        super.init()
        initializeAsHuggingFace(classifier, std: 0.02)
    }

    public convenience init(config: PretrainedConfig) throws(ModelError) {
        self.init(try BertConfiguration(config))
    }

    /// Logits `[B, labels]`.
    /// The computation behind every call form (``callAsFunction`` finishes it through ``Module/completeCall(_:)``).
    public func compute(_ ids: Tensor, attentionMask: Tensor?, tokenTypeIds: Tensor?) -> Tensor {
        let states = bert(ids, attentionMask: attentionMask, tokenTypeIds: tokenTypeIds)
        return classifier(dropout(bert.pooled(states)))
    }

    public func callAsFunction(_ ids: Tensor, attentionMask: Tensor? = nil, tokenTypeIds: Tensor? = nil) -> Tensor {
        completeCall(compute(ids, attentionMask: attentionMask, tokenTypeIds: tokenTypeIds))
    }

    public override func forward(_ x: Tensor) -> Tensor { compute(x, attentionMask: nil, tokenTypeIds: nil) }

    public var layerGroups: [[String]] {
        [["bert.embeddings"]] + (0..<bert.encoder.layer.count).map { ["bert.encoder.layer.\($0)"] } + [["bert.pooler", "classifier"]]
    }
}

/// Hugging Face's `BertForTokenClassification`: `bert` (no pooler), dropout, `classifier` on
/// every token. Logits are `[B, T, labels]`: cross-entropy takes the class axis last.
public final class BertForTokenClassification: Module, LayerGrouped {
    @Child public var bert: BertModel
    @Child public var dropout: Dropout
    @Child public var classifier: Linear

    public init(_ configuration: BertConfiguration) {
        bert = BertModel(configuration, addPoolingLayer: false)
        dropout = Dropout(p: configuration.classifierDropout)
        classifier = Linear(configuration.hiddenSize, configuration.labelCount)
        super.init()
        initializeAsHuggingFace(classifier, std: 0.02)
    }

    public convenience init(config: PretrainedConfig) throws(ModelError) {
        self.init(try BertConfiguration(config))
    }

    /// Logits `[B, T, labels]`.
    /// The computation behind every call form (``callAsFunction`` finishes it through ``Module/completeCall(_:)``).
    public func compute(_ ids: Tensor, attentionMask: Tensor?, tokenTypeIds: Tensor?) -> Tensor {
        classifier(dropout(bert(ids, attentionMask: attentionMask, tokenTypeIds: tokenTypeIds)))
    }

    public func callAsFunction(_ ids: Tensor, attentionMask: Tensor? = nil, tokenTypeIds: Tensor? = nil) -> Tensor {
        completeCall(compute(ids, attentionMask: attentionMask, tokenTypeIds: tokenTypeIds))
    }

    public override func forward(_ x: Tensor) -> Tensor { compute(x, attentionMask: nil, tokenTypeIds: nil) }

    public var layerGroups: [[String]] {
        [["bert.embeddings"]] + (0..<bert.encoder.layer.count).map { ["bert.encoder.layer.\($0)"] } + [["classifier"]]
    }
}

/// Hugging Face's `_init_weights` for these encoders: Linear and Embedding weights N(0, std),
/// biases zero, padding rows zero, LayerNorm weight 1 and bias 0.
func initializeAsHuggingFace(_ model: Module, std: Float) {
    RandomGenerator.withGlobal { generator in
        for (_, module) in model.namedModules() {
            if let linear = module as? Linear {
                linear.weight.value = Tensor.randomNormal(linear.weight.shape, std: std, generator: &generator)
                if let bias = linear.bias { bias.value = Tensor.zeros(bias.shape) }
            } else if let embedding = module as? Embedding {
                var table = Tensor.randomNormal(embedding.weight.shape, std: std, generator: &generator)
                if let pad = embedding.paddingIndex {
                    let dim = embedding.dim
                    table.withUnsafeMutableBufferPointer { $0[(pad * dim)..<((pad + 1) * dim)].update(repeating: 0) }
                }
                embedding.weight.value = table
            }
        }
    }
}
