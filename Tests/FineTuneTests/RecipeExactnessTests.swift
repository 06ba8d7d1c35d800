import Foundation
import Testing
@testable import FineTune

// Recipes that do exactly what their names promise: PEFT's modules_to_save and bias settings,
// LoRA combined with adapters, BitFit over normalisation biases, freeze(upTo:) over layer
// groups, whole-name regex patterns and PEFT's target_modules rules.

private final class PEFTMLP: Module {
    @Child var fc1 = Linear(6, 5)
    @Child var fc2 = Linear(5, 4)
    @Child var head = Linear(4, 3)
    override func forward(_ x: Tensor) -> Tensor { head(fc2(fc1(x).relu()).relu()) }
}

private func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
    zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? .infinity
}

private func trainableNames(_ model: Module) -> [String] {
    model.namedParameters().filter { !$0.parameter.isFrozen }.map(\.name)
}

@Suite("Recipe exactness")
struct RecipeExactnessTests {
    static let variants: [(folder: String, reference: String, modulesToSave: [String], bias: PEFTAdapter.Bias, trained: [String])] = [
        ("head-lora-only", "outputs_head_lora_only", ["head"], .loraOnly,
         ["fc1.bias", "fc1.lora_A.weight", "fc1.lora_B.weight", "fc2.bias", "fc2.lora_A.weight", "fc2.lora_B.weight",
          "head.weight", "head.bias"]),
        ("bias-all", "outputs_bias_all", [], .all,
         ["fc1.bias", "fc1.lora_A.weight", "fc1.lora_B.weight", "fc2.bias", "fc2.lora_A.weight", "fc2.lora_B.weight",
          "head.bias"]),
        ("head-none", "outputs_head_none", ["head"], .none,
         ["fc1.lora_A.weight", "fc1.lora_B.weight", "fc2.lora_A.weight", "fc2.lora_B.weight", "head.weight", "head.bias"]),
    ]

    @Test("adapters written by PEFT with modules_to_save and bias load, reproduce PEFT's outputs and save back in PEFT's layout",
          arguments: 0..<3)
    func peftModulesToSave(variant: Int) throws {
        let (folderName, referenceName, modulesToSave, bias, trained) = Self.variants[variant]
        let fixture = fixtureURL("peft-modules-to-save")
        let reference = try SafeTensors(contentsOf: fixture.appendingPathComponent("reference.safetensors"))
        let inputs = try reference.tensor("inputs"), expected = try reference.tensor(referenceName)
        func loaded(_ adapter: URL) throws -> PEFTMLP {
            let model = PEFTMLP()
            try model.load(from: fixture.appendingPathComponent("base.safetensors"))
            let config = try model.loadPEFTAdapter(from: adapter)
            #expect(config.modulesToSave == modulesToSave && config.bias == bias)
            return model
        }
        let model = try loaded(fixture.appendingPathComponent(folderName))
        #expect(trainableNames(model) == trained)
        #expect(maxDifference(model.inferring { model(inputs) }, expected) < 1e-5)

        // Saved by FineTune: the same keys and settings as PEFT's file, and it loads back identically.
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("adapter")
        try model.savePEFTAdapter(to: out)
        let ours = try SafeTensors(contentsOf: out.appendingPathComponent("adapter_model.safetensors"))
        let peft = try SafeTensors(contentsOf: fixture.appendingPathComponent("\(folderName)/adapter_model.safetensors"))
        #expect(Set(ours.keys) == Set(peft.keys))
        for key in peft.keys { #expect(try ours.tensor(key).scalars == peft.tensor(key).scalars, "\(key)") }
        let config = try PEFTAdapter.config(from: Data(contentsOf: out.appendingPathComponent("adapter_config.json")))
        #expect(config.modulesToSave == modulesToSave && config.bias == bias)
        let copy = try loaded(out)
        #expect(copy.inferring { copy(inputs) }.scalars == model.inferring { model(inputs) }.scalars)
    }

    @Test("what PEFT's adapter format cannot express throws instead of being dropped")
    func peftRefusals() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = PEFTMLP()
        try model.applyLoRA(LoRAConfig(rank: 2, alpha: 2, targetModules: ["fc1", "fc2"]))
        // One LoRA bias of two: neither "lora_only" nor "all".
        model.fc1.bias!.isFrozen = false
        #expect(throws: CheckpointError.self) { try model.savePEFTAdapter(to: directory.appendingPathComponent("a")) }
        model.fc1.bias!.isFrozen = true
        // A trainable bottleneck adapter.
        try model.addAdapters(after: ["fc2"], bottleneck: 2)
        try model.unfreeze(matching: "**.lora_*")
        #expect(throws: CheckpointError.invalidAdapter(reason: "fc2.adapter is a bottleneck adapter: PEFT's LoRA format cannot hold it")) {
            try model.savePEFTAdapter(to: directory.appendingPathComponent("b"))
        }
        #expect(throws: CheckpointError.self) {
            try PEFTAdapter.config(from: Data(#"{"peft_type":"LORA","r":4,"target_modules":["fc1"],"bias":"some"}"#.utf8))
        }
        #expect(throws: CheckpointError.invalidAdapter(reason: "exclude_modules is not supported")) {
            try PEFTAdapter.config(from: Data(#"{"peft_type":"LORA","r":4,"target_modules":"all-linear","exclude_modules":["head"]}"#.utf8))
        }
    }

    @Test("LoRA and an adapter on the same layer, in either order: merge, remove and save still see the LoRA layer")
    func loraInsideAdapter() throws {
        for loraFirst in [true, false] {
            let model = RandomGenerator.withSeed(4) { PEFTMLP() }
            let x = randomTensor([3, 6], seed: 2)
            if loraFirst {
                try model.applyLoRA(LoRAConfig(rank: 2, alpha: 2, targetModules: ["fc2"]))
                try model.addAdapters(after: ["fc2"], bottleneck: 2)
            } else {
                try model.addAdapters(after: ["fc2"], bottleneck: 2)
                try model.applyLoRA(LoRAConfig(rank: 2, alpha: 2, targetModules: ["fc2"]))
            }
            #expect(model.loraLayers.map(\.name) == ["fc2"] && model.fc2.outputAdapter is BottleneckAdapter)
            let lora = model.fc2 as! LoRALinear
            lora.loraB.weight.value = randomTensor([4, 2], seed: 3)
            (model.fc2.outputAdapter as! BottleneckAdapter).up.weight.value = randomTensor([4, 2], seed: 5)
            let adapted = model.inferring { model(x) }
            model.mergeLoRA()
            #expect(lora.isMerged && maxDifference(model.inferring { model(x) }, adapted) < 1e-5)
            model.unmergeLoRA()
            // Saving refuses the trainable adapter; with the adapter frozen, the LoRA layer is saved.
            let directory = temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            try model.unfreeze(matching: "fc2.adapter")
            #expect(throws: CheckpointError.self) { try model.savePEFTAdapter(to: directory) }
            try model.freeze(matching: "fc2.adapter")
            try model.unfreeze(matching: "fc2.lora_*")
            try model.savePEFTAdapter(to: directory)
            let file = try SafeTensors(contentsOf: directory.appendingPathComponent("adapter_model.safetensors"))
            #expect(Set(file.keys) == ["base_model.model.fc2.lora_A.weight", "base_model.model.fc2.lora_B.weight"])
            // Removing LoRA keeps the adapter on the plain layer and the merged function.
            #expect(model.removeLoRA(merge: true) == ["fc2"])
            #expect(type(of: model.fc2) == Linear.self && model.fc2.outputAdapter is BottleneckAdapter)
            #expect(maxDifference(model.inferring { model(x) }, adapted) < 1e-5)
        }
    }

    @Test("BitFit trains every bias, LayerNorm's and BatchNorm's included")
    func bitFitNormalizationBiases() throws {
        let model = Sequential(Conv2d(1, 2, kernelSize: 3), BatchNorm2d(2), Flatten(), Linear(8, 4), LayerNorm(4),
                               MultiHeadAttention(embedDim: 4, numHeads: 2))
        let names = try model.trainOnlyBiases()
        #expect(names == ["0.bias", "1.bias", "3.bias", "4.bias", "5.in_proj_bias", "5.out_proj.bias"])
        #expect(trainableNames(model) == names)
        // Partly frozen BatchNorm (weight frozen, bias trainable) keeps training its statistics.
        #expect((model[1] as! BatchNorm).effectiveStatistics == .batch)
    }

    @Test("freeze(upTo:) counts layer groups (children with parameters) and refuses to freeze everything")
    func freezeUpToCountsGroups() throws {
        let cnn = Sequential(Conv2d(1, 32, kernelSize: 3, padding: 1), ReLU(), MaxPool2d(kernelSize: 2),
                             Conv2d(32, 64, kernelSize: 3, padding: 1), ReLU(), MaxPool2d(kernelSize: 2),
                             Flatten(), Linear(3136, 128), ReLU(), Linear(128, 10))
        try cnn.freeze(upTo: -2)
        #expect(trainableNames(cnn) == ["7.weight", "7.bias", "9.weight", "9.bias"])
        try cnn.freeze(upTo: 1)
        #expect(trainableNames(cnn) == ["3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias"])
        #expect(cnn.defaultLayerGroups().count == 4)
        #expect(throws: SelectionError.self) { try cnn.freeze(upTo: 4) }
        #expect(throws: SelectionError.self) { try cnn.freeze(upTo: -5) }
        #expect(trainableNames(cnn).count == 6)    // unchanged by the refused calls
    }

    @Test("regex patterns match whole names through any alternative")
    func regexWholeNames() throws {
        final class Named: Module {
            let layer1 = Linear(2, 2)
            let head = Parameter(Tensor.zeros([2]))
            let headWeightG = Parameter(Tensor.zeros([2]))
            override func key(forProperty name: String) -> String { name == "headWeightG" ? "head.weight_g" : name }
        }
        let model = Named()
        #expect(try model.parameters(matching: .regex(#"layer1|layer1\..*"#)).map(\.name) == ["layer1.weight", "layer1.bias"])
        #expect(try model.parameters(matching: .regex(#"head\.(weight|weight_g)"#)).map(\.name) == ["head.weight_g"])
        #expect(throws: SelectionError.self) { try model.parameters(matching: .regex("layer")) }    // not a prefix match
    }

    @Test("PEFT's target_modules rules: names by suffix, a string as a full-match regex, all-linear without the head")
    func peftTargetRules() throws {
        let block = { TransformerEncoderBlock(dModel: 4, numHeads: 2, ffnDim: 8) }
        let model = Sequential(block(), block(), Linear(4, 2))
        #expect(try LoRATargets.names(["linear1"]).select(in: model).map(\.name) == ["0.linear1", "1.linear1"])
        #expect(try LoRATargets.regex(#"1\.linear\d"#).select(in: model).map(\.name) == ["1.linear1", "1.linear2"])
        #expect(try LoRATargets.regex("linear1").select(in: model).isEmpty)          // a full match, not a search
        #expect(try LoRATargets.allLinear.select(in: model).map(\.name)
                == ["0.self_attn.out_proj", "0.linear1", "0.linear2", "1.self_attn.out_proj", "1.linear1", "1.linear2"])
        let wrapped = try model.applyLoRA(LoRAConfig(rank: 2, alpha: 2, targetModules: "all-linear"))
        #expect(wrapped.count == 6 && !(model[2] is LoRALinear))
        // LoRA factors are never targets themselves.
        #expect(try LoRATargets.allLinear.select(in: model).isEmpty)
        #expect(LoRATargets(stringLiteral: "all-linear") == .allLinear && LoRATargets(stringLiteral: "q|v") == .regex("q|v"))
    }

    @Test("LoRA on an embedding with a padding index: the padding row's update gets no gradient (PEFT), and removeLoRA keeps the index")
    func loraEmbeddingPadding() throws {
        let model = Sequential(Embedding(6, 4, paddingIndex: 0), Flatten(), Linear(12, 2))
        try model.applyLoRA(LoRAConfig(rank: 2, alpha: 2, targetModules: ["0"]))
        let lora = model[0] as! LoRAEmbedding
        #expect(lora.paddingIndex == 0)
        lora.loraEmbeddingA.value = randomTensor([2, 6], seed: 3)    // a trained update, padding column included
        Tensor.crossEntropy(model(Tensor(shape: [2, 3], scalars: [0, 2, 3, 4, 0, 5])), targets: [0, 1]).backward()
        let gradient = lora.loraEmbeddingA.grad!                      // [rank, count]: column 0 is the padding token
        #expect((0..<2).allSatisfy { gradient.scalars[$0 * 6] == 0 })
        #expect((0..<2).contains { gradient.scalars[$0 * 6 + 2] != 0 })
        model.removeLoRA(merge: false)
        #expect((model[0] as! Embedding).paddingIndex == 0 && !(model[0] is LoRAEmbedding))
    }
}
