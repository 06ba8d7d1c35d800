import FineTune

/// Real architectures at real sizes: a torchvision-shaped ResNet-18 step and a BERT-base-shaped
/// encoder step, each with everything trainable, frozen below the top, and with LoRA.
struct ModelSuite: BenchSuite {
    let name = "models"
    let summary = "AdamW training steps of ResNet-18 (batch 8, 3x224x224) and a BERT-base encoder (12 layers, hidden 768, seq 128, batch 8)"

    /// Seconds per step on one thread: run it by name (`FineTuneBench models`).
    var runsByDefault: Bool { false }

    /// How much of the model trains.
    enum Variant: String { case full, frozen, lora }

    func cases() -> [BenchCase] {
        let resnet = { (variant: Variant) throws -> any Workload in
            let x = TrainingData.inputs([8, 3, 224, 224], seed: 21), y = TrainingData.labels(8, classes: 1000, seed: 22)
            return try TrainingStepWorkload(seed: 23, model: { try ResNet(depth: 18) }, prepare: { model in
                switch variant {
                case .full: break
                case .frozen: try model.freeze(upTo: -1)          // only fc trains (torchvision's feature-extractor recipe)
                case .lora: try model.applyLoRA(LoRAConfig(rank: 8, alpha: 16, targetModules: ["conv2"]))
                }
            }, loss: { Tensor.crossEntropy($0(x), targets: y) })
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
        return [
            BenchCase(name: "resnet18_step_full", detail: "ResNet-18, batch 8, 224x224, every parameter trains (85.2 GFLOP)",
                      flops: 85.2e9) { try resnet(.full) },
            BenchCase(name: "resnet18_step_frozen", detail: "everything but fc frozen (29.0 GFLOP)", flops: 29.0e9) { try resnet(.frozen) },
            BenchCase(name: "resnet18_step_lora", detail: "rank-8 LoRA on every block's conv2, the rest frozen", flops: nil) {
                try resnet(.lora)
            },
            BenchCase(name: "bert_base_step_full", detail: "BERT-base classifier, batch 8, seq 128, every parameter trains",
                      flops: nil) { try bert(.full) },
            BenchCase(name: "bert_base_step_frozen", detail: "frozen below the last two encoder layers", flops: nil) { try bert(.frozen) },
            BenchCase(name: "bert_base_step_lora", detail: "rank-8 LoRA on query and value, the rest frozen", flops: nil) {
                try bert(.lora)
            },
        ]
    }

    var extraRatios: [RatioSpec] {
        [.speedup(of: "resnet18_step_frozen", over: "resnet18_step_full", label: "full fine-tuning step"),
         .speedup(of: "bert_base_step_lora", over: "bert_base_step_full", label: "full fine-tuning step")]
    }
}
