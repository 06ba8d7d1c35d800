import FineTune

/// One training step (zeroGrad, forward, loss, backward, step) of a model on a fixed batch,
/// with AdamW (lr 1e-3) unless the case picks another optimizer.
final class TrainingStepWorkload: Workload {
    private let model: Module
    private let optimizer: any Optimizer
    private let loss: (Module) -> Tensor
    private var lastLoss: Float = 0

    /// `prepare` may freeze parts of the model before the optimizer is built; a failure to build
    /// or prepare the model stops the benchmark (a case must never time a different model).
    init(seed: UInt64, model makeModel: () throws -> Module, prepare: (Module) throws -> Void = { _ in },
         optimizer makeOptimizer: (Module) -> any Optimizer = { AdamW($0, lr: 1e-3) },
         loss: @escaping (Module) -> Tensor) throws {
        model = try RandomGenerator.withSeed(seed) { try makeModel() }
        try prepare(model)
        optimizer = makeOptimizer(model)
        self.loss = loss
    }

    func run(threads: Int) {
        Kernels.maxThreads = threads
        optimizer.zeroGrad()
        let value = loss(model)
        value.backward()
        optimizer.step()
        lastLoss = value.item()
    }

    func checksum() -> Double { Double(lastLoss) }
}

/// Deterministic batch data for the training suites.
enum TrainingData {
    static func inputs(_ shape: [Int], seed: UInt64) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        return Tensor.randomUniform(shape, low: -1, high: 1, generator: &rng)
    }

    static func labels(_ count: Int, classes: Int, seed: UInt64) -> [Int] {
        var rng = RandomGenerator(seed: seed)
        return (0..<count).map { _ in Int(rng.next() % UInt64(classes)) }
    }
}

/// MLP 784-512-512-10, batch 128, AdamW step.
struct MLPSuite: BenchSuite {
    let name = "mlp"
    let summary = "AdamW training step: MLP 784-512-512-10, batch 128, cross-entropy"

    func cases() -> [BenchCase] {
        [BenchCase(name: "mlp_step", detail: "zeroGrad + forward + cross-entropy + backward + AdamW step", flops: nil) {
            let x = TrainingData.inputs([128, 784], seed: 1), y = TrainingData.labels(128, classes: 10, seed: 2)
            return try TrainingStepWorkload(seed: 3, model: {
                Sequential(Linear(784, 512), ReLU(), Linear(512, 512), ReLU(), Linear(512, 10))
            }, loss: { Tensor.crossEntropy($0(x), targets: y) })
        }]
    }
}

/// A small MNIST-sized CNN, full fine-tuning vs both convolutions frozen.
struct CNNSuite: BenchSuite {
    let name = "cnn"
    let summary = "AdamW training step: Conv(1,32)-ReLU-Pool-Conv(32,64)-ReLU-Pool-Linear(3136,128)-ReLU-Linear(128,10), batch 64 of 1x28x28"

    static func model() -> Module {
        Sequential(Conv2d(1, 32, kernelSize: 3, padding: 1), ReLU(), MaxPool2d(kernelSize: 2),
                   Conv2d(32, 64, kernelSize: 3, padding: 1), ReLU(), MaxPool2d(kernelSize: 2),
                   Flatten(), Linear(3136, 128), ReLU(), Linear(128, 10))
    }

    func cases() -> [BenchCase] {
        let make = { (frozen: Bool) throws -> any Workload in
            let x = TrainingData.inputs([64, 1, 28, 28], seed: 4), y = TrainingData.labels(64, classes: 10, seed: 5)
            return try TrainingStepWorkload(seed: 6, model: CNNSuite.model, prepare: { model in
                if frozen {
                    // Both convolutions: Sequential children 0 and 3.
                    _ = try model.freeze(matching: .regex(#"[03]\..*"#))
                }
            }, loss: { Tensor.crossEntropy($0(x), targets: y) })
        }
        return [
            BenchCase(name: "cnn_step_full", detail: "every parameter trains", flops: nil) { try make(false) },
            BenchCase(name: "cnn_step_frozen", detail: "both convolutions frozen (feature extractor + head)", flops: nil) { try make(true) },
        ]
    }

    var extraRatios: [RatioSpec] {
        [.speedup(of: "cnn_step_frozen", over: "cnn_step_full", label: "full fine-tuning step")]
    }
}

/// One pre-norm transformer encoder block, d_model 256, 4 heads, ffn 1024, seq 64, batch 16.
struct TransformerSuite: BenchSuite {
    let name = "transformer"
    let summary = "AdamW training step: pre-norm encoder block, d_model 256, 4 heads, ffn 1024, seq 64, batch 16"

    func cases() -> [BenchCase] {
        let make = { (lora: Bool) throws -> any Workload in
            let x = TrainingData.inputs([16, 64, 256], seed: 7), target = TrainingData.inputs([16, 64, 256], seed: 8)
            return try TrainingStepWorkload(seed: 9, model: {
                TransformerEncoderBlock(dModel: 256, numHeads: 4, ffnDim: 1024, dropout: 0, activation: .gelu)
            }, prepare: { model in
                if lora {
                    // Rank-8 LoRA on the attention output projection and both FFN layers; the rest frozen.
                    _ = try model.applyLoRA(LoRAConfig(rank: 8, alpha: 16, targetModules: ["out_proj", "linear1", "linear2"]))
                }
            }, loss: { Tensor.mse($0(x), target) })
        }
        return [
            BenchCase(name: "transformer_step", detail: "forward + MSE to a fixed target + backward + AdamW step", flops: nil) {
                try make(false)
            },
            BenchCase(name: "transformer_step_lora", detail: "the same with rank-8 LoRA on out_proj, linear1, linear2 (rest frozen)",
                      flops: nil) { try make(true) },
        ]
    }

    var extraRatios: [RatioSpec] {
        [.speedup(of: "transformer_step_lora", over: "transformer_step", label: "full fine-tuning step")]
    }
}
