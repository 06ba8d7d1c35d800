import Foundation
import Testing
@testable import FineTune

// Model families with their home names, against fixtures their home projects produced.

/// max |a - b| <= 1e-4 * max(1, max |reference|), the families' parity bound.
func expectParity(_ a: Tensor, _ reference: Tensor, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.shape == reference.shape, "\(what) shape", sourceLocation: sourceLocation)
    let bound = 1e-4 * max(1, reference.scalars.map(abs).max() ?? 0)
    let worst = zip(a.scalars, reference.scalars).map { abs($0 - $1) }.max() ?? .infinity
    #expect(worst <= bound, "\(what): max difference \(worst) > \(bound)", sourceLocation: sourceLocation)
}

@Suite("Model families")
struct ModelFamilyTests {
    static let resnets: [(name: String, block: ResNet.Block, counts: [Int], width: Int, classes: Int)] = [
        ("resnet-basic", .basic, [2, 1, 1, 1], 8, 5),
        ("resnet-bottleneck", .bottleneck, [1, 2, 1, 1], 4, 4),
    ]

    @Test("ResNet loads torchvision's .pth strictly and reproduces its logits, loss and gradients", arguments: 0..<2)
    func resnetParity(index: Int) throws {
        let spec = Self.resnets[index]
        let model = ResNet(block: spec.block, blockCounts: spec.counts, classCount: spec.classes, baseWidth: spec.width)
        let report = try model.load(from: PyTorchFile(contentsOf: fixtureURL("models/\(spec.name).pth")))
        #expect(report.isExact)
        let reference = try SafeTensors(contentsOf: fixtureURL("models/\(spec.name)-reference.safetensors"))
        let x = try reference.tensor("inputs")
        expectParity(model.inferring { model(x) }, try reference.tensor("logits"), "\(spec.name) logits")
        model.train()
        let loss = Tensor.crossEntropy(model(x), targets: [0, 2, spec.classes - 1])
        expectParity(loss.reshaped([1]), try reference.tensor("loss"), "loss")
        loss.backward()
        for (name, p) in model.namedParameters() {
            expectParity(p.grad!, try reference.tensor("grad.\(name)"), "gradient of \(name)")
        }
    }

    @Test("ResNet by depth: torchvision's parameter counts and names; unknown depths throw")
    func resnetDepths() throws {
        let resnet18 = try ResNet(depth: 18)
        #expect(resnet18.parameterCount == 11_689_512 && resnet18.featureCount == 512)
        #expect(resnet18.stateDictKeys.prefix(3) == ["conv1.weight", "bn1.weight", "bn1.bias"])
        #expect(resnet18.stateDictKeys.contains("layer2.0.downsample.0.weight") && resnet18.stateDictKeys.last == "fc.bias")
        let resnet50 = try ResNet(depth: 50, classCount: 10, baseWidth: 16)
        #expect(resnet50.featureCount == 16 * 8 * 4 && resnet50.stateDictKeys.contains("layer4.2.conv3.weight"))
        #expect(throws: ModelError.unsupportedDepth(20, supported: [18, 34, 50, 101, 152])) { try ResNet(depth: 20) }
    }

    @Test("a new head: loading skips the old head with ignoringMismatchedSizes, and throws without it, changing nothing")
    func newHeadLoad() throws {
        let file = try PyTorchFile(contentsOf: fixtureURL("models/resnet-basic.pth"))
        let model = ResNet(block: .basic, blockCounts: [2, 1, 1, 1], classCount: 3, baseWidth: 8)
        let before = model.stateDict().mapValues(\.scalars)
        #expect(throws: CheckpointError.self) { try model.load(from: file) }
        #expect(model.stateDict().mapValues(\.scalars) == before)
        let report = try model.load(from: file, ignoringMismatchedSizes: true)
        #expect(report.skippedMismatches.map(\.key) == ["fc.weight", "fc.bias"] && report.isExact)
        #expect(report.skippedMismatches[0].expected == [3, 64] && report.skippedMismatches[0].found == [5, 64])
        #expect((model.fc as? Linear)?.weight.value.scalars == before["fc.weight"]!)
        #expect(model.conv1.weight.value.scalars != before["conv1.weight"]!)
        #expect(report.description.contains("skipped (shapes differ): fc.weight"))
    }

    @Test("ResNet.fc takes any module: Identity() returns the pooled features, a new Linear a new head")
    func resNetHeadAnyModule() throws {
        let model = ResNet(block: .basic, blockCounts: [1, 1, 1, 1], classCount: 3, baseWidth: 8)
        let x = Tensor.randomNormal([2, 3, 32, 32])
        let features = model.features(x).flattened(startAxis: 1, endAxis: 3)
        #expect(model(x).shape == [2, 3])
        model.fc = Identity()
        #expect(model(x).shape == [2, model.featureCount] && model(x).scalars == features.scalars)
        #expect(!model.stateDictKeys.contains { $0.hasPrefix("fc.") } && model.featureCount == 64)
        // Through the dotted path too (as `setattr`), and back to a classifier.
        try model.replaceModule(at: "fc", with: Linear(64, 5))
        #expect(model(x).shape == [2, 5] && model.stateDictKeys.suffix(2) == ["fc.weight", "fc.bias"])
        try model.replaceModule(at: "fc", with: Identity())
        let head = try model.replaceHead(classCount: 4)
        #expect(model.fc === head && model(x).shape == [2, 4])
    }

    @Test("ResNet layer groups: freeze(upTo:) below the last stage, discriminative rates, LoRA on conv2 changes only LoRA")
    func resnetFineTuning() throws {
        let model = ResNet(block: .basic, blockCounts: [2, 1, 1, 1], classCount: 5, baseWidth: 8)
        try model.load(from: PyTorchFile(contentsOf: fixtureURL("models/resnet-basic.pth")))
        #expect(model.defaultLayerGroups().count == 6)
        try model.freeze(upTo: -2)
        let trainable = Set(model.namedParameters().filter { !$0.parameter.isFrozen }.map { String($0.name.prefix { $0 != "." }) })
        #expect(trainable == ["layer4", "fc"])
        #expect((model.layer1[0] as! BasicBlock).bn1.effectiveStatistics == .running)
        let rates = try model.setDiscriminativeLearningRates(factor: 2)
        #expect(rates.count == 6 && model.parameter(named: "bn1.weight")!.lrMultiplier == 1.0 / 32)

        let lora = try ResNet(depth: 18, classCount: 5, baseWidth: 8)
        try lora.load(from: PyTorchFile(contentsOf: fixtureURL("models/resnet-basic.pth")), strict: false)
        let wrapped = try lora.applyLoRA(LoRAConfig(rank: 2, alpha: 2, targetModules: ["conv2"]))
        #expect(wrapped.count == 8)
        let before = lora.stateDict().mapValues(\.scalars)
        let optimizer = Adam(lora, lr: 0.01)
        Tensor.crossEntropy(lora(randomTensor([2, 3, 32, 32], seed: 3)), targets: [0, 4]).backward()
        optimizer.step()
        let changed = lora.stateDict().filter { $0.value.scalars != before[$0.key]! }.map(\.key)
        #expect(!changed.isEmpty && changed.allSatisfy { $0.contains(".lora_") })
    }
}

@Suite("Hugging Face families")
struct HuggingFaceFamilyTests {
    /// The fixture folder's reference tensors.
    func reference(_ name: String) throws -> SafeTensors {
        try SafeTensors(contentsOf: fixtureURL("models/\(name)/reference.safetensors"))
    }

    /// Checks logits (eval), the training loss and every gradient against the reference.
    func checkParity(_ model: Module, _ name: String, logits: (Module) -> Tensor, labels: [Int], ignoreIndex: Int? = nil) throws {
        let ref = try reference(name)
        expectParity(model.inferring { logits(model) }, try ref.tensor("logits"), "\(name) logits")
        model.train()
        let out = logits(model)
        let flat = out.reshaped([-1, out.shape[out.rank - 1]])
        let keep = labels.enumerated().filter { $0.element != ignoreIndex }.map(\.offset)
        let rows = Tensor.concat(keep.map { flat.slice(axis: 0, $0..<($0 + 1)) }, axis: 0)
        let loss = Tensor.crossEntropy(rows, targets: keep.map { labels[$0] })
        expectParity(loss.reshaped([1]), try ref.tensor("loss"), "\(name) loss")
        loss.backward()
        for (param, p) in model.namedParameters() {
            let key = "grad." + param
            if ref.keys.contains(key) {
                expectParity(p.grad ?? Tensor.zeros(p.shape), try ref.tensor(key), "\(name) gradient of \(param)")
            } else {
                // PyTorch has no gradient where none flows (the pooler of a token classifier).
                #expect(p.grad == nil || p.grad!.scalars.allSatisfy { $0 == 0 }, "\(name): unexpected gradient for \(param)")
            }
        }
    }

    @Test("BertForSequenceClassification: config.json, strict load, logits, loss and gradients match transformers")
    func bertSequence() throws {
        let folder = fixtureURL("models/bert-sequence")
        let config = try PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json"))
        let model = try BertForSequenceClassification(config: config)
        #expect(try model.loadPretrained(from: folder).isExact)
        let ref = try reference("bert-sequence")
        let ids = try ref.tensor("input.input_ids"), mask = try ref.tensor("input.attention_mask")
        let types = try ref.tensor("input.token_type_ids")
        try checkParity(model, "bert-sequence", logits: { ($0 as! BertForSequenceClassification)(ids, attentionMask: mask, tokenTypeIds: types) },
                        labels: try ref.tensor("labels").scalars.map { Int($0) })
        // The padding row of the word embeddings gets no gradient.
        #expect(model.bert.embeddings.wordEmbeddings.weight.grad!.scalars.prefix(32).allSatisfy { $0 == 0 })
    }

    @Test("BertForTokenClassification: per-token logits, loss with ignored labels, gradients")
    func bertToken() throws {
        let folder = fixtureURL("models/bert-token")
        let model = try BertForTokenClassification(config: PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json")))
        #expect(try model.loadPretrained(from: folder).isExact)
        let ref = try reference("bert-token")
        let ids = try ref.tensor("input.input_ids"), mask = try ref.tensor("input.attention_mask")
        let types = try ref.tensor("input.token_type_ids")
        try checkParity(model, "bert-token", logits: { ($0 as! BertForTokenClassification)(ids, attentionMask: mask, tokenTypeIds: types) },
                        labels: try ref.tensor("labels").scalars.map { Int($0) }, ignoreIndex: -100)
    }

    @Test("DistilBertForSequenceClassification matches transformers")
    func distilbert() throws {
        let folder = fixtureURL("models/distilbert-sequence")
        let model = try DistilBertForSequenceClassification(config: PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json")))
        #expect(try model.loadPretrained(from: folder).isExact)
        let ref = try reference("distilbert-sequence")
        let ids = try ref.tensor("input.input_ids"), mask = try ref.tensor("input.attention_mask")
        try checkParity(model, "distilbert-sequence", logits: { ($0 as! DistilBertForSequenceClassification)(ids, attentionMask: mask) },
                        labels: try ref.tensor("labels").scalars.map { Int($0) })
    }

    @Test("ViTForImageClassification matches transformers")
    func vit() throws {
        let folder = fixtureURL("models/vit-image")
        let model = try ViTForImageClassification(config: PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json")))
        #expect(try model.loadPretrained(from: folder).isExact)
        let ref = try reference("vit-image")
        let pixels = try ref.tensor("input.pixel_values")
        try checkParity(model, "vit-image", logits: { $0(pixels) }, labels: try ref.tensor("labels").scalars.map { Int($0) })
    }

    @Test("sizes no model can be built with throw invalidConfig naming the key, for every Hugging Face family")
    func impossibleSizes() throws {
        func expectInvalid(_ folder: String, _ key: String, _ value: JSONValue, build: (PretrainedConfig) throws(ModelError) -> Void) throws {
            var config = try PretrainedConfig(contentsOf: fixtureURL("models/\(folder)/config.json"))
            config.fields[key] = value
            do {
                try build(config)
                Issue.record("\(folder): \(key) = \(value) was accepted")
            } catch {
                if case .invalidConfig(let named, _) = error { #expect(named == key, "\(folder): \(error)") } else {
                    Issue.record("\(folder): \(key) = \(value) threw \(error)")
                }
            }
        }
        for (key, value) in [("num_hidden_layers", JSONValue.int(-1)), ("vocab_size", .int(0)), ("num_attention_heads", .int(0)),
                             ("intermediate_size", .int(-1)), ("type_vocab_size", .int(0)), ("pad_token_id", .int(120)),
                             ("hidden_dropout_prob", .double(1.5)), ("num_labels", .int(0))] {
            try expectInvalid("bert-sequence", key, value) { c throws(ModelError) in _ = try BertForSequenceClassification(config: c) }
        }
        for (key, value) in [("n_layers", JSONValue.int(-2)), ("dim", .int(0)), ("n_heads", .int(0)), ("hidden_dim", .int(0)),
                             ("pad_token_id", .int(-121)), ("seq_classif_dropout", .double(-0.1))] {
            try expectInvalid("distilbert-sequence", key, value) { c throws(ModelError) in _ = try DistilBertForSequenceClassification(config: c) }
        }
        for (key, value) in [("num_hidden_layers", JSONValue.int(-1)), ("patch_size", .int(0)), ("num_channels", .int(0)),
                             ("image_size", .int(-32)), ("attention_probs_dropout_prob", .double(1))] {
            try expectInvalid("vit-image", key, value) { c throws(ModelError) in _ = try ViTForImageClassification(config: c) }
        }
    }

    @Test("unsupported architecture keys throw typed errors; layer groups, LoRA by usual names, a new head in one call")
    func configsGroupsAndLoRA() throws {
        let folder = fixtureURL("models/bert-sequence")
        var config = try PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json"))
        config.fields["position_embedding_type"] = .string("relative_key")
        #expect(throws: ModelError.unsupportedConfig(key: "position_embedding_type", value: "relative_key", supported: "absolute")) {
            try BertForSequenceClassification(config: config)
        }
        config.fields["position_embedding_type"] = nil
        config.fields["hidden_act"] = .string("swish")
        #expect(throws: ModelError.self) { try BertForSequenceClassification(config: config) }
        config.fields["hidden_act"] = nil
        config.fields["num_hidden_layers"] = nil
        #expect(throws: ModelError.self) { try BertForSequenceClassification(config: config) }
        var distil = try PretrainedConfig(contentsOf: fixtureURL("models/distilbert-sequence/config.json"))
        distil.fields["sinusoidal_pos_embds"] = .bool(true)
        #expect(throws: ModelError.unsupportedConfig(key: "sinusoidal_pos_embds", value: "true", supported: "false")) {
            try DistilBertForSequenceClassification(config: distil)
        }

        // A new 7-label head: one call loads everything else and lists the skipped head.
        var sevenLabels = try PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json"))
        sevenLabels.fields["id2label"] = nil
        sevenLabels.fields["num_labels"] = .int(7)
        let model = try BertForSequenceClassification(config: sevenLabels)
        let report = try model.loadPretrained(from: folder, ignoringMismatchedSizes: true)
        #expect(report.skippedMismatches.map(\.key) == ["classifier.weight", "classifier.bias"])
        #expect(model.defaultLayerGroups().count == 4)
        try model.freeze(upTo: -2)      // the last encoder layer, pooler and classifier train
        let trainable = Set(model.namedParameters().filter { !$0.parameter.isFrozen }.map(\.name))
        #expect(trainable.contains("bert.encoder.layer.1.output.dense.weight") && trainable.contains("classifier.weight")
                && !trainable.contains("bert.encoder.layer.0.output.dense.weight"))

        // LoRA on query and value, by their usual names: one step changes only LoRA weights.
        let lora = try BertForSequenceClassification(config: PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json")))
        try lora.loadPretrained(from: folder)
        #expect(try lora.applyLoRA(LoRAConfig(rank: 2, alpha: 4, targetModules: ["query", "value"])).count == 4)
        let before = lora.stateDict().mapValues(\.scalars)
        let ref = try reference("bert-sequence")
        let optimizer = AdamW(lora, lr: 0.01)
        Tensor.crossEntropy(lora(try ref.tensor("input.input_ids"), attentionMask: try ref.tensor("input.attention_mask")),
                            targets: [0, 1]).backward()
        optimizer.step()
        let changed = lora.stateDict().filter { $0.value.scalars != before[$0.key]! }.map(\.key)
        #expect(changed.count == 8 && changed.allSatisfy { $0.contains(".lora_") })
        let distilModel = try DistilBertForSequenceClassification(config: PretrainedConfig(contentsOf: fixtureURL("models/distilbert-sequence/config.json")))
        #expect(try distilModel.applyLoRA(LoRAConfig(targetModules: ["q_lin", "v_lin"])).count == 4)
        let vit = try ViTForImageClassification(config: PretrainedConfig(contentsOf: fixtureURL("models/vit-image/config.json")))
        #expect(try vit.applyLoRA(LoRAConfig(targetModules: "all-linear")).count == 12 && !(vit.classifier is LoRALinear))
        // One LoRA step on each changes only LoRA weights.
        func expectOnlyLoRAMoves(_ model: Module, _ loss: () throws -> Tensor) throws {
            let start = model.stateDict().mapValues(\.scalars)
            let adam = Adam(model, lr: 0.01)
            try loss().backward()
            adam.step()
            let moved = model.stateDict().filter { $0.value.scalars != start[$0.key]! }.map(\.key)
            #expect(!moved.isEmpty && moved.allSatisfy { $0.contains(".lora_") }, "\(type(of: model)): \(moved)")
        }
        let distilIds = try ref.tensor("input.input_ids")
        try expectOnlyLoRAMoves(distilModel) { Tensor.crossEntropy(distilModel(distilIds), targets: [0, 2]) }
        try expectOnlyLoRAMoves(vit) { Tensor.crossEntropy(vit(randomTensor([2, 3, 32, 32], seed: 9)), targets: [1, 3]) }
    }
}

@Suite("Model family call forms")
struct ModelFamilyCallFormTests {
    @Test("the one-tensor call (what Trainer uses) equals the explicit call, and an output adapter runs once in both")
    func callForms() throws {
        let ids = Tensor(shape: [2, 4], scalars: [5, 6, 7, 8, 9, 10, 11, 12])
        let bert = try BertForSequenceClassification(config: PretrainedConfig(contentsOf: fixtureURL("models/bert-sequence/config.json")))
        let distil = try DistilBertForSequenceClassification(config: PretrainedConfig(contentsOf: fixtureURL("models/distilbert-sequence/config.json")))
        bert.eval(); distil.eval()
        #expect(bert(ids).scalars == bert(ids, attentionMask: nil, tokenTypeIds: nil).scalars)
        #expect(distil(ids).scalars == distil(ids, attentionMask: nil).scalars)
        // An adapter on an encoder layer: the same output whichever form calls the layer, and
        // applied once (a doubled adapter would differ from one applied by hand).
        let layer = bert.bert.encoder.layer[1]
        let adapter = BottleneckAdapter(features: 32, bottleneck: 4)
        adapter.up.weight.value = randomTensor([32, 4], seed: 3)
        let x = randomTensor([2, 4, 32], seed: 4)
        let plain = layer(x, attentionMask: nil)
        layer.attachOutputAdapter(adapter)
        adapter.eval()
        expectClose(layer(x).scalars, adapter(plain).scalars, atol: 1e-6, rtol: 1e-5)
        expectClose(layer(x, attentionMask: nil).scalars, adapter(plain).scalars, atol: 1e-6, rtol: 1e-5)
        // Trainer drives the single-tensor form.
        let data = TensorDataset(inputs: ids, labels: [0, 1])
        let history = try Trainer(model: distil, optimizer: SGD(distil, lr: 0.01), batchSize: 2).fit(data, epochs: 1)
        #expect(history.epochs.count == 1 && history.epochs[0].trainLoss.isFinite)
    }
}
