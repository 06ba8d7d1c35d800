import Foundation

/// The architecture of a Vision Transformer, read from a Hugging Face `config.json`.
///
/// Supported keys: `hidden_size`, `num_hidden_layers`, `num_attention_heads`, `intermediate_size`,
/// `hidden_act`, `hidden_dropout_prob`, `attention_probs_dropout_prob`, `layer_norm_eps`,
/// `image_size`, `patch_size`, `num_channels`, `qkv_bias`, `num_labels` / `id2label`,
/// `pooler_act` (`tanh` only). Images must have the configured size (position embeddings are not
/// interpolated).
public struct ViTConfiguration: Sendable, Equatable {
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var intermediateSize: Int
    public var activation: HiddenActivation
    public var hiddenDropout: Float
    public var attentionDropout: Float
    public var layerNormEps: Float
    public var imageSize: Int
    public var patchSize: Int
    public var channels: Int
    public var qkvBias: Bool
    public var labelCount: Int

    /// Patches per image.
    public var patchCount: Int { (imageSize / patchSize) * (imageSize / patchSize) }

    /// ViT-Base/16 at 224x224, with `labelCount` labels.
    public init(hiddenSize: Int = 768, layerCount: Int = 12, headCount: Int = 12, intermediateSize: Int = 3072,
                activation: HiddenActivation = .gelu, hiddenDropout: Float = 0, attentionDropout: Float = 0,
                layerNormEps: Float = 1e-12, imageSize: Int = 224, patchSize: Int = 16, channels: Int = 3,
                qkvBias: Bool = true, labelCount: Int = 2) {
        self.hiddenSize = hiddenSize; self.layerCount = layerCount; self.headCount = headCount
        self.intermediateSize = intermediateSize; self.activation = activation; self.hiddenDropout = hiddenDropout
        self.attentionDropout = attentionDropout; self.layerNormEps = layerNormEps; self.imageSize = imageSize
        self.patchSize = patchSize; self.channels = channels; self.qkvBias = qkvBias; self.labelCount = labelCount
    }

    /// Reads `config.json` (see the type's documentation for the keys).
    public init(_ config: PretrainedConfig) throws(ModelError) {
        let c = FamilyConfig(config: config)
        _ = try c.choice("pooler_act", default: "tanh", supported: ["tanh"])
        self.init(hiddenSize: try c.value("hidden_size"), layerCount: try c.value("num_hidden_layers"),
                  headCount: try c.value("num_attention_heads"), intermediateSize: try c.value("intermediate_size"),
                  activation: try c.activation("hidden_act"), hiddenDropout: try c.value("hidden_dropout_prob", default: 0),
                  attentionDropout: try c.value("attention_probs_dropout_prob", default: 0),
                  layerNormEps: try c.value("layer_norm_eps", default: 1e-12), imageSize: try c.value("image_size", default: 224),
                  patchSize: try c.value("patch_size", default: 16), channels: try c.value("num_channels", default: 3),
                  qkvBias: try c.value("qkv_bias", default: true), labelCount: try c.labelCount())
        try ConfigCheck.positive(["hidden_size": hiddenSize, "num_attention_heads": headCount, "intermediate_size": intermediateSize,
                                  "image_size": imageSize, "patch_size": patchSize, "num_channels": channels, "num_labels": labelCount])
        try ConfigCheck.nonNegative(["num_hidden_layers": layerCount])
        try ConfigCheck.probabilities(["hidden_dropout_prob": hiddenDropout, "attention_probs_dropout_prob": attentionDropout])
        guard hiddenSize % headCount == 0 else {
            throw .invalidConfig(key: "hidden_size", reason: "\(hiddenSize) is not a multiple of num_attention_heads \(headCount)")
        }
        guard patchSize > 0, imageSize % patchSize == 0 else {
            throw .invalidConfig(key: "patch_size", reason: "image_size \(imageSize) is not a multiple of patch_size \(patchSize)")
        }
    }
}

/// `embeddings.patch_embeddings`: a convolution with kernel and stride `patch_size` (`projection`).
public final class ViTPatchEmbeddings: Module {
    @Child public var projection: Conv2d
    public let imageSize: Int

    public init(_ c: ViTConfiguration) {
        projection = Conv2d(c.channels, c.hiddenSize, kernelSize: c.patchSize, stride: c.patchSize)
        imageSize = c.imageSize
        super.init()
    }

    /// `[B, C, H, W]` images to `[B, patches, hidden]`.
    public override func forward(_ x: Tensor) -> Tensor {
        Shape.check(x.rank == 4 && x.shape[1] == projection.inChannels && x.shape[2] == imageSize && x.shape[3] == imageSize,
                    op: "ViTPatchEmbeddings", shapes: [x.shape, [projection.inChannels, imageSize, imageSize]],
                    "expected images [B, \(projection.inChannels), \(imageSize), \(imageSize)]")
        let y = projection(x)                                              // [B, hidden, h, w]
        return y.flattened(startAxis: 2, endAxis: 3).transposed()          // [B, h*w, hidden]
    }
}

/// `embeddings`: `[CLS]` token, patch embeddings and position embeddings, dropped out.
public final class ViTEmbeddings: Module {
    public let clsToken: Parameter
    public let positionEmbeddings: Parameter
    @Child public var patchEmbeddings: ViTPatchEmbeddings
    @Child public var dropout: Dropout

    public init(_ c: ViTConfiguration) {
        clsToken = Parameter(Tensor.zeros([1, 1, c.hiddenSize]), role: .embedding)
        positionEmbeddings = Parameter(Tensor.zeros([1, c.patchCount + 1, c.hiddenSize]), role: .embedding)
        patchEmbeddings = ViTPatchEmbeddings(c)
        dropout = Dropout(p: c.hiddenDropout)
        super.init()
        RandomGenerator.withGlobal { generator in
            clsToken.value = Tensor.randomNormal(clsToken.shape, std: 0.02, generator: &generator)
            positionEmbeddings.value = Tensor.randomNormal(positionEmbeddings.shape, std: 0.02, generator: &generator)
        }
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let patches = patchEmbeddings(x)
        let b = patches.shape[0], hidden = patches.shape[2]
        let cls = clsToken.value.expanded(to: [b, 1, hidden])
        return dropout(Tensor.concat([cls, patches], axis: 1) + positionEmbeddings.value)
    }
}

/// `dense` then dropout: ViT's `attention.output` and, with a residual, `output`.
public final class ViTDenseOutput: Module {
    @Child public var dense: Linear
    @Child public var dropout: Dropout

    public init(_ inFeatures: Int, _ c: ViTConfiguration) {
        dense = Linear(inFeatures, c.hiddenSize)
        dropout = Dropout(p: c.hiddenDropout)
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor { dropout(dense(x)) }
}

/// `attention`: `attention` (self-attention) and `output`.
public final class ViTAttention: Module {
    @Child public var attention: QueryKeyValueAttention
    @Child public var output: ViTDenseOutput

    public init(_ c: ViTConfiguration) {
        attention = QueryKeyValueAttention(hidden: c.hiddenSize, heads: c.headCount, dropout: c.attentionDropout, bias: c.qkvBias)
        output = ViTDenseOutput(c.hiddenSize, c)
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor { output(attention(x)) }
}

/// One pre-norm encoder layer (`encoder.layer.N`): `layernorm_before`, `attention`,
/// `layernorm_after`, `intermediate`, `output`.
public final class ViTLayer: Module {
    @Child public var attention: ViTAttention
    @Child public var intermediate: IntermediateDense
    @Child public var output: ViTDenseOutput
    @Child public var layernormBefore: LayerNorm
    @Child public var layernormAfter: LayerNorm

    public init(_ c: ViTConfiguration) {
        attention = ViTAttention(c)
        intermediate = IntermediateDense(c.hiddenSize, c.intermediateSize, activation: c.activation)
        output = ViTDenseOutput(c.intermediateSize, c)
        layernormBefore = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
        layernormAfter = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let h = attention(layernormBefore(x)) + x
        return output(intermediate(layernormAfter(h))) + h
    }
}

/// `encoder`: the layers (`encoder.layer.N`).
public final class ViTEncoder: Module {
    @Child public var layer: [ViTLayer]

    public init(_ c: ViTConfiguration) {
        layer = (0..<c.layerCount).map { _ in ViTLayer(c) }
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor { layer.reduce(x) { $1($0) } }
}

/// Hugging Face's `ViTModel`: embeddings, encoder, final `layernorm` and (optionally) the pooler
/// (`pooler.dense`, tanh on the `[CLS]` token), with Hugging Face's names.
public final class ViTModel: Module {
    @Child public var embeddings: ViTEmbeddings
    @Child public var encoder: ViTEncoder
    @Child public var layernorm: LayerNorm
    @Child public var pooler: FirstTokenPooler?
    public let configuration: ViTConfiguration

    public init(_ configuration: ViTConfiguration, addPoolingLayer: Bool = true) {
        self.configuration = configuration
        embeddings = ViTEmbeddings(configuration)
        encoder = ViTEncoder(configuration)
        layernorm = LayerNorm(configuration.hiddenSize, eps: configuration.layerNormEps)
        pooler = addPoolingLayer ? FirstTokenPooler(configuration.hiddenSize) : nil
        super.init()
        initializeAsHuggingFace(encoder, std: 0.02)
    }

    public convenience init(config: PretrainedConfig, addPoolingLayer: Bool = true) throws(ModelError) {
        self.init(try ViTConfiguration(config), addPoolingLayer: addPoolingLayer)
    }

    /// The last hidden states `[B, patches + 1, hidden]` for images `[B, C, H, W]`.
    public override func forward(_ x: Tensor) -> Tensor { layernorm(encoder(embeddings(x))) }
}

/// Hugging Face's `ViTForImageClassification`: `vit` (no pooler) and a `classifier` on the
/// `[CLS]` token. Layer groups: the embeddings, each encoder layer, then the final layernorm and
/// the classifier.
///
/// ```swift
/// let model = try ViTForImageClassification(config: config)
/// try model.loadPretrained(from: folder)
/// let logits = model(images)          // [B, 3, 224, 224] -> [B, labels]
/// ```
public final class ViTForImageClassification: Module, LayerGrouped {
    @Child public var vit: ViTModel
    @Child public var classifier: Linear

    public init(_ configuration: ViTConfiguration) {
        vit = ViTModel(configuration, addPoolingLayer: false)
        classifier = Linear(configuration.hiddenSize, configuration.labelCount)
        super.init()
        initializeAsHuggingFace(classifier, std: 0.02)
    }

    public convenience init(config: PretrainedConfig) throws(ModelError) {
        self.init(try ViTConfiguration(config))
    }

    public override func forward(_ x: Tensor) -> Tensor { classifier(vit(x).select(axis: 1, 0)) }

    public var layerGroups: [[String]] {
        [["vit.embeddings"]] + (0..<vit.encoder.layer.count).map { ["vit.encoder.layer.\($0)"] } + [["vit.layernorm", "classifier"]]
    }
}
