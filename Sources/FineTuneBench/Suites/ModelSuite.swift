import FineTune

/// Real architectures at real sizes: torchvision-shaped ResNet-18 and ResNet-50 steps (SGD with
/// momentum) and a BERT-base-shaped encoder step (AdamW), with everything trainable, frozen below
/// the top, and with LoRA; a SmolLM-135M-shaped LLaMA language-model step (AdamW), full and
/// with LoRA; and an epoch of head training on cached backbone features against the
/// same epoch through the frozen backbone. scripts/torch_bench.py runs the same cases in PyTorch.
struct ModelSuite: BenchSuite {
    let name = "models"
    let summary = "Training steps of ResNet-18/50 (SGD momentum 0.9, batch 8, 3x224x224) and a BERT-base encoder "
        + "(AdamW, 12 layers, hidden 768, seq 128, batch 8), a SmolLM-135M-shaped LLaMA (AdamW, batch 4, seq 128); "
        + "head training on cached features"

    /// Seconds per step on one thread: run it by name (`FineTuneBench models`).
    var runsByDefault: Bool { false }

    /// How much of the model trains.
    enum Variant: String { case full, frozen, lora }

    func cases() -> [BenchCase] {
        let resnet = { (depth: Int, variant: Variant) throws -> any Workload in
            let x = TrainingData.inputs([8, 3, 224, 224], seed: 21), y = TrainingData.labels(8, classes: 1000, seed: 22)
            return try TrainingStepWorkload(seed: 23, model: { try ResNet(depth: depth) }, prepare: { model in
                switch variant {
                case .full: break
                case .frozen: try model.freeze(upTo: -1)          // only fc trains (torchvision's feature-extractor recipe)
                case .lora: try model.applyLoRA(LoRAConfig(rank: 8, alpha: 16, targetModules: ["conv2"]))
                }
            }, optimizer: ModelSuite.resNetOptimizer, loss: { Tensor.crossEntropy($0(x), targets: y) })
        }
        let bert = { (variant: Variant) throws -> any Workload in
            let ids = Tensor(shape: [8, 128], scalars: TrainingData.labels(8 * 128, classes: 30522, seed: 24).map(Float.init))
            let y = TrainingData.labels(8, classes: 2, seed: 25)
            return try TrainingStepWorkload(seed: 26, model: {
                BertForSequenceClassification(BertConfiguration(hiddenDropout: 0, attentionDropout: 0))
            }, prepare: { model in
                switch variant {
                case .full: break
                case .frozen: try model.freeze(upTo: -3)         // the last two encoder layers, pooler and classifier train
                case .lora: try model.applyLoRA(LoRAConfig(rank: 8, alpha: 16, targetModules: ["query", "value"]))
                }
            }, loss: { Tensor.crossEntropy($0(ids), targets: y) })
        }
        let llama = { (variant: Variant) throws -> any Workload in
            let ids = Tensor(shape: [4, 128], scalars: TrainingData.labels(4 * 128, classes: 49152, seed: 27).map(Float.init))
            return try TrainingStepWorkload(seed: 28, model: { LlamaForCausalLM(ModelSuite.llama135M) }, prepare: { model in
                switch variant {
                case .full: break
                case .frozen: try model.freeze(upTo: -3)         // the last two decoder layers, the final norm (and tied lm_head) train
                case .lora: try model.applyLoRA(LoRAConfig(rank: 8, alpha: 16, targetModules: ["q_proj", "v_proj"]))
                }
            }, loss: { Tensor.causalLanguageModelingLoss($0(ids), labels: ids) })
        }
        // Flops as direct convolutions and matrix products (BatchNorm, ReLU, pooling not counted):
        // the forward, the weight gradients and every input gradient but the stem's.
        return [
            BenchCase(name: "resnet18_step_full", detail: "ResNet-18, batch 8, 224x224, every parameter trains (85.2 GFLOP)",
                      flops: 85.2e9) { try resnet(18, .full) },
            BenchCase(name: "resnet18_step_frozen", detail: "everything but fc frozen (29.0 GFLOP)", flops: 29.0e9) {
                try resnet(18, .frozen)
            },
            BenchCase(name: "resnet18_step_lora", detail: "rank-8 LoRA on every block's conv2, the rest frozen", flops: nil) {
                try resnet(18, .lora)
            },
            BenchCase(name: "resnet50_step_full", detail: "ResNet-50, batch 8, 224x224, every parameter trains (194.4 GFLOP)",
                      flops: 194.4e9) { try resnet(50, .full) },
            BenchCase(name: "resnet50_step_frozen", detail: "everything but fc frozen (65.5 GFLOP)", flops: 65.5e9) {
                try resnet(50, .frozen)
            },
            BenchCase(name: "resnet18_head_epoch_backbone",
                      detail: "an epoch (64 images, batch 8) training a Linear(512, 10) head through the frozen ResNet-18",
                      flops: nil) { try HeadEpochWorkload(cachedFeatures: false) },
            BenchCase(name: "resnet18_head_epoch_cached",
                      detail: "the same epoch on the backbone's features, computed once (TensorDataset.features(through:))",
                      flops: nil) { try HeadEpochWorkload(cachedFeatures: true) },
            BenchCase(name: "bert_base_step_full", detail: "BERT-base classifier, batch 8, seq 128, every parameter trains",
                      flops: nil) { try bert(.full) },
            BenchCase(name: "bert_base_step_frozen", detail: "frozen below the last two encoder layers", flops: nil) { try bert(.frozen) },
            BenchCase(name: "bert_base_step_lora", detail: "rank-8 LoRA on query and value, the rest frozen", flops: nil) {
                try bert(.lora)
            },
            BenchCase(name: "llama_135m_step_full", detail: "SmolLM-135M-shaped LlamaForCausalLM, batch 4, seq 128, next-token loss, every parameter trains",
                      flops: nil) { try llama(.full) },
            BenchCase(name: "llama_135m_step_lora", detail: "rank-8 LoRA on q_proj and v_proj, the rest frozen", flops: nil) {
                try llama(.lora)
            },
            BenchCase(name: "llama_135m_generate", detail: "the same model: 64 greedy tokens after a 16-token prompt (key/value cache)",
                      flops: nil) { GenerationWorkload() },
        ]
    }

    var extraRatios: [RatioSpec] {
        [.speedup(of: "resnet18_step_frozen", over: "resnet18_step_full", label: "full fine-tuning step"),
         .speedup(of: "resnet50_step_frozen", over: "resnet50_step_full", label: "full fine-tuning step"),
         .speedup(of: "resnet18_head_epoch_cached", over: "resnet18_head_epoch_backbone", label: "an epoch through the backbone"),
         .speedup(of: "bert_base_step_lora", over: "bert_base_step_full", label: "full fine-tuning step"),
         .speedup(of: "llama_135m_step_lora", over: "llama_135m_step_full", label: "full fine-tuning step")]
    }

    /// SmolLM-135M's sizes (a LLaMA: 30 layers, hidden 576, 9 query and 3 key/value heads of 64,
    /// SwiGLU 1536, vocabulary 49152, tied embeddings), without dropout.
    static let llama135M = LlamaConfiguration(vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, layerCount: 30,
                                              headCount: 9, keyValueHeadCount: 3, maxPositions: 2048, rmsNormEps: 1e-5,
                                              tieWordEmbeddings: true)

    /// The ResNet cases' optimizer, as in torchvision's reference training (without weight decay).
    static func resNetOptimizer(_ model: Module) -> any Optimizer { SGD(model, lr: 0.01, momentum: 0.9) }
}

/// One epoch of training a `Linear(512, 10)` head with SGD (momentum 0.9) on 64 random
/// 224x224 images in batches of 8: through the frozen ResNet-18 backbone at every step, or on
/// the backbone's features computed once when the workload is built (not timed).
final class HeadEpochWorkload: Workload {
    private let model: Module
    private let optimizer: any Optimizer
    private let data: TensorDataset
    private var lastLoss: Float = 0

    init(cachedFeatures: Bool) throws {
        let images = TensorDataset(inputs: TrainingData.inputs([64, 3, 224, 224], seed: 31),
                                   labels: TrainingData.labels(64, classes: 10, seed: 32))
        let resnet = try RandomGenerator.withSeed(33) { try ResNet(depth: 18, classCount: 10) }
        if cachedFeatures {
            // The backbone, images -> [N, 512]: everything before fc (ResNet.features, flattened).
            let backbone = Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, resnet.layer1, resnet.layer2,
                                      resnet.layer3, resnet.layer4, resnet.avgpool, Flatten())
            backbone.freeze()
            model = resnet.fc
            data = try images.features(through: backbone, batchSize: 8)
        } else {
            try resnet.freeze(upTo: -1)                                 // only fc trains
            model = resnet
            data = images
        }
        optimizer = ModelSuite.resNetOptimizer(model)
    }

    func run(threads: Int) {
        Kernels.maxThreads = threads
        for (x, y) in data.batches(size: 8) {
            optimizer.zeroGrad()
            let loss = Tensor.crossEntropy(model(x), targets: y)
            loss.backward()
            optimizer.step()
            lastLoss = loss.item()
        }
    }

    func checksum() -> Double { Double(lastLoss) }
}

/// Greedy generation of 64 tokens after a 16-token prompt with the SmolLM-135M-shaped model
/// (batch 1: every step is matrix-vector products over all the weights).
final class GenerationWorkload: Workload {
    private let model = RandomGenerator.withSeed(29) { LlamaForCausalLM(ModelSuite.llama135M) }
    private let prompt = Tensor(shape: [1, 16], scalars: (0..<16).map { Float(($0 * 7919) % 49152) })
    private var last: Float = 0

    func run(threads: Int) {
        Kernels.maxThreads = threads
        let out = model.generate(prompt, maxNewTokens: 64, endTokenIds: [])
        last = out.scalars.last!
    }

    func checksum() -> Double { Double(last) }
}
