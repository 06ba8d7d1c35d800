import Foundation
import Testing
@testable import FineTune

/// The README's tour, kept compiling and true (smaller batch, same calls).
@Suite("README tour")
struct ReadmeTests {
    @Test func tensorTour() {
        RandomGenerator.seed(0)
        var w = Tensor.randomNormal([784, 10], std: 0.01)
        w.requiresGrad = true
        let x = Tensor.randomUniform([4, 784])
        let loss = Tensor.crossEntropy(x.matmul(w), targets: Array(repeating: 3, count: 4))
        loss.backward()
        #expect(w.grad?.shape == [784, 10])
        let logits = withoutGradients { x.matmul(w) }
        #expect(!logits.requiresGrad)
    }

    @Test func moduleTour() throws {
        let model = RandomGenerator.withSeed(0) {
            Sequential(
                Conv2d(1, 32, kernelSize: 3, padding: 1), ReLU(), MaxPool2d(kernelSize: 2),
                Conv2d(32, 64, kernelSize: 3, padding: 1), ReLU(), MaxPool2d(kernelSize: 2),
                Flatten(), Linear(3136, 128), ReLU(), Linear(128, 10))
        }
        #expect(model.namedParameters().map(\.name) == ["0.weight", "0.bias", "3.weight", "3.bias",
                                                         "7.weight", "7.bias", "9.weight", "9.bias"])
        try model.freeze(matching: "0")
        try model.freeze(matching: .regex(#"3\..*"#))
        #expect(throws: SelectionError.self) { try model.freeze(matching: "convs.*") }
        try model.setLearningRateMultiplier(0.1, matching: "7.**")
        let table = model.summary(input: Tensor.zeros([1, 1, 28, 28]))
        #expect(table.contains("[1, 10]"))

        let optimizer = AdamW(model, lr: 1e-3, weightDecay: 0.01,
                              schedule: CosineWithWarmup(warmupSteps: 100, totalSteps: 1_000))
        // The schedule scales the optimizer's lr: half of it halfway through warmup, all of it at the peak.
        #expect(optimizer.learningRate == 1e-3)
        #expect(abs(optimizer.learningRate(at: 50) - 5e-4) < 1e-9 && abs(optimizer.learningRate(at: 100) - 1e-3) < 1e-9)
        let x = Tensor.randomUniform([2, 1, 28, 28]), y = [3, 7]
        let frozenBefore = model.parameter(named: "3.weight")!.value.scalars
        for _ in 0..<2 {
            optimizer.zeroGrad()
            let loss = Tensor.crossEntropy(model(x), targets: y)
            loss.backward()
            clipGradNorm(model, maxNorm: 1)
            optimizer.step()
        }
        #expect(model.parameter(named: "3.weight")!.value.scalars == frozenBefore)
        try model.unfreeze(matching: "3.**")
        #expect(!model.parameter(named: "3.weight")!.isFrozen)
    }

    @Test func fineTuningAndLoRATour() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = Sequential(Conv2d(1, 16, kernelSize: 3, padding: 1), BatchNorm2d(16), ReLU(), MaxPool2d(kernelSize: 2),
                               Conv2d(16, 32, kernelSize: 3, padding: 1), ReLU(), MaxPool2d(kernelSize: 2),
                               Flatten(), Linear(128, 64), ReLU(), Linear(64, 10))
        try model.load(from: fixtureURL("torch-digits-cnn/model.safetensors"))
        model.freeze()
        try model.replaceModule(at: "10", with: Linear(64, 10))
        let data = try TensorDataset(csv: fixtureURL("digits/digits.csv"), featureShape: [1, 8, 8], scale: 1.0 / 16)
        let (train, validation) = data.slice(0..<100).split(validationFraction: 0.2, seed: 1)
        let trainer = Trainer(model: model, optimizer: AdamW(model, lr: 1e-2), batchSize: 32,
                              earlyStopping: EarlyStopping(patience: 3))
        let history = try trainer.fit(train, validation: validation, epochs: 2)
        #expect(history.epochs.count == 2)
        try model.save(to: directory.appendingPathComponent("finetuned.safetensors"))

        try model.applyLoRA(LoRAConfig(rank: 8, alpha: 16, targetModules: ["8", "10"]))
        #expect(model.trainableParameterCount == 8 * 128 + 64 * 8 + 8 * 64 + 10 * 8)
        let adapter = directory.appendingPathComponent("adapter")
        try model.savePEFTAdapter(to: adapter)
        model.mergeLoRA()
        #expect(model.removeLoRA(merge: true) == ["8", "10"])

        let other = Sequential(Conv2d(1, 16, kernelSize: 3, padding: 1), BatchNorm2d(16), ReLU(), MaxPool2d(kernelSize: 2),
                               Conv2d(16, 32, kernelSize: 3, padding: 1), ReLU(), MaxPool2d(kernelSize: 2),
                               Flatten(), Linear(128, 64), ReLU(), Linear(64, 10))
        try other.loadPEFTAdapter(from: adapter)
        try other.addAdapters(after: ["8"], bottleneck: 16)
        #expect(other.stateDictKeys.contains("8.adapter.down.weight"))
    }

    @Test func moduleTreeTour() throws {
        final class Classifier: Module {
            @Child var backbone = Sequential(Conv2d(1, 8, kernelSize: 3, padding: 1), BatchNorm2d(8), ReLU(),
                                             GlobalAvgPool2d(), Flatten())
            @Child var head = Linear(8, 10)
            override func forward(_ x: Tensor) -> Tensor { head(backbone(x)) }
        }
        let net = Classifier()
        try net.replaceModule(at: "head", with: Linear(8, 3))
        #expect(net.head.outFeatures == 3 && net(Tensor.zeros([2, 1, 5, 5])).shape == [2, 3])
        #expect(throws: SelectionError.self) { try net.replaceModule(at: "head", with: ReLU()) }
        net.backbone.freeze()
        #expect((net.backbone[1] as! BatchNorm).effectiveStatistics == .running)
        net.backbone.pin(.inference)
        net.train()
        #expect(!net.backbone.isTraining && net.head.isTraining)
        #expect(net.summary().contains("eval (pinned)"))
    }
}

/// The model-family snippet of the README, on the small fixtures.
@Suite("README model families")
struct ReadmeModelFamilyTests {
    @Test func modelFamilies() throws {
        let resnet = ResNet(block: .basic, blockCounts: [2, 1, 1, 1], classCount: 5, baseWidth: 8)
        try resnet.load(from: PyTorchFile(contentsOf: fixtureURL("models/resnet-basic.pth")))
        try resnet.replaceHead(classCount: 5)
        try resnet.freeze(upTo: -2)
        #expect(resnet.trainableParameterCount == resnet.layer4.parameterCount + resnet.fc.parameterCount)

        let folder = fixtureURL("models/bert-sequence")
        var config = try PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json"))
        config.fields["id2label"] = nil
        config.fields["num_labels"] = .int(4)
        let bert = try BertForSequenceClassification(config: config)
        let report = try bert.loadPretrained(from: folder, ignoringMismatchedSizes: true)
        #expect(report.skippedMismatches.map(\.key) == ["classifier.weight", "classifier.bias"])
        try bert.applyLoRA(LoRAConfig(rank: 8, alpha: 16, targetModules: ["query", "value"]))
        let ids = Tensor(shape: [2, 3], scalars: [5, 6, 7, 8, 9, 0]), mask = Tensor(shape: [2, 3], scalars: [1, 1, 1, 1, 1, 0])
        let logits = bert(ids, attentionMask: mask, tokenTypeIds: Tensor.zeros([2, 3]))
        #expect(logits.shape == [2, 4])
    }

    @Test func decoders() throws {
        let llamaFolder = fixtureURL("models/llama-tied-llama3")
        let llamaConfig = try PretrainedConfig(contentsOf: llamaFolder.appendingPathComponent("config.json"))
        let llama = try LlamaForCausalLM(config: llamaConfig)
        let report = try llama.loadPretrained(from: llamaFolder)
        #expect(report.tiedKeys == ["lm_head.weight"] && "\(report)".contains("tied to a loaded key: lm_head.weight"))
        try llama.applyLoRA(LoRAConfig(rank: 8, alpha: 16, targetModules: ["q_proj", "v_proj"]))
        let optimizer = AdamW(llama, lr: 2e-4)
        let tokens = Tensor(shape: [2, 5], scalars: [1, 7, 8, 9, 2, 1, 11, 12, 0, 0])
        let tokenMask = Tensor(shape: [2, 5], scalars: [1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
        let promptLength = 2
        var labels = tokens.scalars
        labels.replaceSubrange(0..<promptLength, with: repeatElement(-100, count: promptLength))
        labels.replaceSubrange(8..<10, with: [-100, -100])
        let before = llama.inferring { llama(tokens, attentionMask: tokenMask) }
        llama.loss(tokens, labels: Tensor(shape: tokens.shape, scalars: labels), attentionMask: tokenMask).backward()
        optimizer.step()
        let out = temporaryDirectory()
        try llama.savePEFTAdapter(to: out.appendingPathComponent("tinyllama-lora"))
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("tinyllama-lora/adapter_model.safetensors").path))
        let tuned = llama.inferring { llama(tokens, attentionMask: tokenMask) }
        #expect(tuned.scalars != before.scalars)
        llama.removeLoRA(merge: true)
        try llama.savePretrained(to: out.appendingPathComponent("tinyllama-tuned"), config: llamaConfig)
        let reloaded = try LlamaForCausalLM(config: llamaConfig)
        #expect(try reloaded.loadPretrained(from: out.appendingPathComponent("tinyllama-tuned")).isExact)
        expectClose(reloaded.inferring { reloaded(tokens, attentionMask: tokenMask) }.scalars, tuned.scalars, atol: 1e-5,
                    "merged, saved and reloaded")
        let prompt = Tensor(shape: [1, 3], scalars: [1, 7, 8])
        let continuation = llama.generate(prompt, maxNewTokens: 32)
        #expect(continuation.shape[0] == 1 && continuation.shape[1] > 3 && continuation.shape[1] <= 35)
        #expect(Array(continuation.scalars[0..<3]) == prompt.scalars)
    }
}
