import Foundation

/// The architecture of a DistilBERT model, read from a Hugging Face `config.json`.
///
/// Supported keys: `vocab_size`, `dim`, `n_layers`, `n_heads`, `hidden_dim`,
/// `max_position_embeddings`, `dropout`, `attention_dropout`, `seq_classif_dropout`,
/// `pad_token_id`, `activation` (`gelu`, `gelu_new`, `gelu_pytorch_tanh`, `relu`),
/// `num_labels` / `id2label`. `sinusoidal_pos_embds: true` throws
/// ``ModelError/unsupportedConfig(key:value:supported:)`` (learned positions only).
public struct DistilBertConfiguration: Sendable, Equatable {
    public var vocabSize: Int
    public var dim: Int
    public var layerCount: Int
    public var headCount: Int
    public var hiddenDim: Int
    public var maxPositions: Int
    public var dropout: Float
    public var attentionDropout: Float
    public var classifierDropout: Float
    public var padTokenId: Int
    public var activation: HiddenActivation
    public var labelCount: Int

    /// DistilBERT-base's sizes, with `labelCount` labels.
    public init(vocabSize: Int = 30522, dim: Int = 768, layerCount: Int = 6, headCount: Int = 12, hiddenDim: Int = 3072,
                maxPositions: Int = 512, dropout: Float = 0.1, attentionDropout: Float = 0.1, classifierDropout: Float = 0.2,
                padTokenId: Int = 0, activation: HiddenActivation = .gelu, labelCount: Int = 2) {
        self.vocabSize = vocabSize; self.dim = dim; self.layerCount = layerCount; self.headCount = headCount
        self.hiddenDim = hiddenDim; self.maxPositions = maxPositions; self.dropout = dropout
        self.attentionDropout = attentionDropout; self.classifierDropout = classifierDropout
        self.padTokenId = padTokenId; self.activation = activation; self.labelCount = labelCount
    }

    /// Reads `config.json` (see the type's documentation for the keys).
    public init(_ config: PretrainedConfig) throws(ModelError) {
        let c = FamilyConfig(config: config)
        try c.requireFlag("sinusoidal_pos_embds", false)
        self.init(vocabSize: try c.value("vocab_size"), dim: try c.value("dim"), layerCount: try c.value("n_layers"),
                  headCount: try c.value("n_heads"), hiddenDim: try c.value("hidden_dim"),
                  maxPositions: try c.value("max_position_embeddings", default: 512),
                  dropout: try c.value("dropout", default: 0.1), attentionDropout: try c.value("attention_dropout", default: 0.1),
                  classifierDropout: try c.value("seq_classif_dropout", default: 0.2),
                  padTokenId: try c.value("pad_token_id", default: 0), activation: try c.activation("activation"),
                  labelCount: try c.labelCount())
        try ConfigCheck.positive(["vocab_size": vocabSize, "dim": dim, "n_heads": headCount, "hidden_dim": hiddenDim,
                                  "max_position_embeddings": maxPositions, "num_labels": labelCount])
        try ConfigCheck.nonNegative(["n_layers": layerCount])
        try ConfigCheck.probabilities(["dropout": dropout, "attention_dropout": attentionDropout, "seq_classif_dropout": classifierDropout])
        try ConfigCheck.paddingId(padTokenId, vocabulary: vocabSize)
        guard dim % headCount == 0 else {
            throw .invalidConfig(key: "dim", reason: "\(dim) is not a multiple of n_heads \(headCount)")
        }
    }
}

/// `distilbert.embeddings`: word and position embeddings, summed, normalised, dropped out.
public final class DistilBertEmbeddings: Module {
    @Child public var wordEmbeddings: Embedding
    @Child public var positionEmbeddings: Embedding
    @Child public var layerNorm: LayerNorm
    @Child public var dropout: Dropout

    public init(_ c: DistilBertConfiguration) {
        wordEmbeddings = Embedding(c.vocabSize, c.dim, paddingIndex: c.padTokenId)
        positionEmbeddings = Embedding(c.maxPositions, c.dim)
        layerNorm = LayerNorm(c.dim, eps: 1e-12)
        dropout = Dropout(p: c.dropout)
        super.init()
    }

    public override func key(forProperty name: String) -> String { name == "layerNorm" ? "LayerNorm" : super.key(forProperty: name) }

    public override func forward(_ ids: Tensor) -> Tensor {
        let b = ids.shape[0], t = ids.shape[1]
        Shape.check(t <= positionEmbeddings.count, op: "DistilBertEmbeddings", shapes: [ids.shape, positionEmbeddings.weight.shape],
                    "sequence length \(t) exceeds max_position_embeddings \(positionEmbeddings.count)")
        return dropout(layerNorm(wordEmbeddings(ids) + positionEmbeddings(positionIds(batch: b, length: t))))
    }
}

/// `attention`: `q_lin`, `k_lin`, `v_lin` and `out_lin`.
public final class DistilBertAttention: MaskedSequenceModule {
    @Child public var qLin: Linear
    @Child public var kLin: Linear
    @Child public var vLin: Linear
    @Child public var outLin: Linear
    public let headCount: Int
    public let dropout: Float

    public init(_ c: DistilBertConfiguration) {
        qLin = Linear(c.dim, c.dim); kLin = Linear(c.dim, c.dim); vLin = Linear(c.dim, c.dim); outLin = Linear(c.dim, c.dim)
        headCount = c.headCount
        dropout = c.attentionDropout
        super.init()
    }

    public override func compute(_ x: Tensor, attentionMask: Tensor?) -> Tensor {
        outLin(encoderAttention(query: qLin(x), key: kLin(x), value: vLin(x), heads: headCount, keyMask: attentionMask,
                                             dropout: dropout, training: isTraining, op: "DistilBertAttention"))
    }
}

/// `ffn`: `lin2(dropout? activation(lin1(x)))`, then dropout.
public final class DistilBertFeedForward: Module {
    @Child public var lin1: Linear
    @Child public var lin2: Linear
    @Child public var dropout: Dropout
    public let activation: HiddenActivation

    public init(_ c: DistilBertConfiguration) {
        lin1 = Linear(c.dim, c.hiddenDim)
        lin2 = Linear(c.hiddenDim, c.dim)
        dropout = Dropout(p: c.dropout)
        activation = c.activation
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor { dropout(lin2(activation(lin1(x)))) }
}

/// One block (`transformer.layer.N`): attention, `sa_layer_norm`, `ffn`, `output_layer_norm` (post-norm).
public final class DistilBertBlock: MaskedSequenceModule {
    @Child public var attention: DistilBertAttention
    @Child public var saLayerNorm: LayerNorm
    @Child public var ffn: DistilBertFeedForward
    @Child public var outputLayerNorm: LayerNorm

    public init(_ c: DistilBertConfiguration) {
        attention = DistilBertAttention(c)
        saLayerNorm = LayerNorm(c.dim, eps: 1e-12)
        ffn = DistilBertFeedForward(c)
        outputLayerNorm = LayerNorm(c.dim, eps: 1e-12)
        super.init()
    }

    public override func compute(_ x: Tensor, attentionMask: Tensor?) -> Tensor {
        let h = saLayerNorm(attention(x, attentionMask: attentionMask) + x)
        return outputLayerNorm(ffn(h) + h)
    }
}

/// `transformer`: the blocks (`transformer.layer.N`).
public typealias DistilBertTransformer = EncoderLayerStack<DistilBertBlock>

/// Hugging Face's `DistilBertModel` with its names (`embeddings.word_embeddings.weight`,
/// `transformer.layer.0.attention.q_lin.weight`, ...).
public final class DistilBertModel: Module {
    @Child public var embeddings: DistilBertEmbeddings
    @Child public var transformer: DistilBertTransformer
    public let configuration: DistilBertConfiguration

    public init(_ configuration: DistilBertConfiguration) {
        self.configuration = configuration
        embeddings = DistilBertEmbeddings(configuration)
        transformer = DistilBertTransformer((0..<configuration.layerCount).map { _ in DistilBertBlock(configuration) })
        super.init()
        initializeAsHuggingFace(self, std: 0.02)
    }

    public convenience init(config: PretrainedConfig) throws(ModelError) {
        self.init(try DistilBertConfiguration(config))
    }

    /// The last hidden states `[B, T, dim]` for token ids `[B, T]`, with `attentionMask` (1 = token, 0 = padding).
    /// The computation behind every call form (``callAsFunction`` finishes it through ``Module/completeCall(_:)``).
    public func compute(_ ids: Tensor, attentionMask: Tensor?) -> Tensor {
        checkTokenIds(ids, op: "DistilBertModel")
        return transformer(embeddings(ids), attentionMask: attentionMask)
    }

    public func callAsFunction(_ ids: Tensor, attentionMask: Tensor? = nil) -> Tensor {
        completeCall(compute(ids, attentionMask: attentionMask))
    }

    public override func forward(_ x: Tensor) -> Tensor { compute(x, attentionMask: nil) }
}

/// Hugging Face's `DistilBertForSequenceClassification`: `distilbert`, then on the first token
/// `pre_classifier`, ReLU, dropout and `classifier`. Layer groups: the embeddings, each block,
/// then `pre_classifier` and `classifier`.
public final class DistilBertForSequenceClassification: Module, LayerGrouped {
    @Child public var distilbert: DistilBertModel
    @Child public var preClassifier: Linear
    @Child public var classifier: Linear
    @Child public var dropout: Dropout

    public init(_ configuration: DistilBertConfiguration) {
        distilbert = DistilBertModel(configuration)
        preClassifier = Linear(configuration.dim, configuration.dim)
        classifier = Linear(configuration.dim, configuration.labelCount)
        dropout = Dropout(p: configuration.classifierDropout)
        super.init()
        initializeAsHuggingFace(preClassifier, std: 0.02)
        initializeAsHuggingFace(classifier, std: 0.02)
    }

    public convenience init(config: PretrainedConfig) throws(ModelError) {
        self.init(try DistilBertConfiguration(config))
    }

    /// Logits `[B, labels]`.
    /// The computation behind every call form (``callAsFunction`` finishes it through ``Module/completeCall(_:)``).
    public func compute(_ ids: Tensor, attentionMask: Tensor?) -> Tensor {
        let first = distilbert(ids, attentionMask: attentionMask).select(axis: 1, 0)
        return classifier(dropout(preClassifier(first).relu()))
    }

    public func callAsFunction(_ ids: Tensor, attentionMask: Tensor? = nil) -> Tensor {
        completeCall(compute(ids, attentionMask: attentionMask))
    }

    public override func forward(_ x: Tensor) -> Tensor { compute(x, attentionMask: nil) }

    public var layerGroups: [[String]] {
        [["distilbert.embeddings"]] + (0..<distilbert.transformer.layer.count).map { ["distilbert.transformer.layer.\($0)"] }
            + [["pre_classifier", "classifier"]]
    }
}
