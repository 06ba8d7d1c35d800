import Foundation
import Testing
@testable import FineTune

// LoRA: the layer (forward, gradients, merge/unmerge), injection into any model through
// replaceModule, PEFT adapter parity on the peft-lora-mlp fixture, and adapter round trips.

/// The peft-lora-mlp fixture's base model: fc1 = Linear(64, 32), ReLU, fc2 = Linear(32, 10).
private final class MLP: Module {
    @Child var fc1 = Linear(64, 32)
    @Child var fc2 = Linear(32, 10)
    override func forward(_ x: Tensor) -> Tensor { fc2(fc1(x).relu()) }
}

private func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
    zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? .infinity
}

@Suite("LoRA")
struct LoRATests {
    @Test("a LoRA layer computes W x + b + (alpha / r) B A x, and starts equal to its base layer")
    func forwardMatchesDefinition() {
        let base = Linear(7, 5)
        let x = randomTensor([3, 7], seed: 2)
        let before = base(x)
        let lora = LoRALinear(base, rank: 2, alpha: 6)
        #expect(lora(x).scalars == before.scalars)    // B starts at zero
        lora.loraB.weight.value = randomTensor([5, 2], seed: 3)
        let expected = Tensor.linear(x, weight: base.weight.value, bias: base.bias!.value)
            + x.matmul(lora.loraA.weight.value.transposed()).matmul(lora.loraB.weight.value.transposed()) * 3
        expectClose(lora(x).scalars, expected.scalars, atol: 1e-5, rtol: 1e-5)
        #expect(lora.weight === base.weight && base.weight.isFrozen && base.bias!.isFrozen)
        #expect(lora.namedParameters().map(\.name) == ["weight", "bias", "lora_A.weight", "lora_B.weight"])
        #expect(LoRALinear(Linear(4, 4), rank: 4, alpha: 8, useRSLoRA: true).scaling == 4)
    }

    @Test("gradients reach A and B (finite differences), never the frozen base weight")
    func gradients() {
        let lora = LoRALinear(Linear(6, 4), rank: 3, alpha: 3)
        lora.loraB.weight.value = randomTensor([4, 3], seed: 5)
        let x = randomTensor([5, 6], seed: 6)
        gradCheck([lora.loraA.weight.value, lora.loraB.weight.value, x], "LoRA") { t in
            Tensor.linear(t[2], weight: lora.weight.value, bias: lora.bias!.value)
                + t[2].matmul(t[0].transposed()).matmul(t[1].transposed())
        }
        lora(x).sum().backward()
        #expect(lora.weight.grad == nil && lora.loraA.weight.grad != nil && lora.loraB.weight.grad != nil)
    }

    @Test("merge folds the update into W (same outputs, one matmul); unmerge restores W")
    func mergeAndUnmerge() {
        let base = Linear(9, 4)
        let original = base.weight.value.scalars
        let lora = LoRALinear(base, rank: 2, alpha: 4)
        lora.loraB.weight.value = randomTensor([4, 2], seed: 8)
        let x = randomTensor([3, 9], seed: 9)
        let unmerged = lora(x)
        lora.merge()
        #expect(lora.isMerged)
        expectClose(lora(x).scalars, unmerged.scalars, atol: 1e-5, rtol: 1e-5)
        expectClose(base(x).scalars, unmerged.scalars, atol: 1e-5, rtol: 1e-5)    // the shared weight is merged
        lora.unmerge()
        expectClose(base.weight.value.scalars, original, atol: 1e-6, rtol: 1e-6)
    }

    @Test("applyLoRA wraps the targets of any model, freezes the rest, and trains only A and B")
    func applyToModel() throws {
        let model = MLP()
        let x = randomTensor([4, 64], seed: 1)
        let before = model(x)
        let wrapped = try model.applyLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["fc1", "fc2"]))
        #expect(wrapped == ["fc1", "fc2"])
        #expect(model.namedParameters().map(\.name) == ["fc1.weight", "fc1.bias", "fc1.lora_A.weight", "fc1.lora_B.weight",
                                                        "fc2.weight", "fc2.bias", "fc2.lora_A.weight", "fc2.lora_B.weight"])
        #expect(model.trainableParameterCount == 4 * 64 + 32 * 4 + 4 * 32 + 10 * 4)
        #expect(model(x).scalars == before.scalars)
        let optimizer = AdamW(model, lr: 0.01)
        let fc1Weight = model.fc1.weight.value.scalars
        for _ in 0..<3 {
            optimizer.zeroGrad()
            Tensor.crossEntropy(model(x), targets: [0, 1, 2, 3]).backward()
            optimizer.step()
        }
        #expect(model.fc1.weight.value.scalars == fc1Weight)
        #expect(model(x).scalars != before.scalars)
        #expect(optimizer.parameterNamesWithState == ["fc1.lora_A.weight", "fc1.lora_B.weight", "fc2.lora_A.weight", "fc2.lora_B.weight"])

        let table = model.summary(input: x)
        #expect(table.contains("fc1.lora_A") && table.contains("LoRALinear") && table.contains("[4, 10]"))
        #expect(throws: SelectionError.self) { try MLP().applyLoRA(LoRAConfig(targetModules: ["fc3"])) }
        let seq = Sequential(Linear(2, 2), ReLU())
        #expect(throws: SelectionError.unsupportedModule(path: "1", type: "ReLU", expected: "Linear, Conv2d (groups 1) or Embedding")) {
            try seq.applyLoRA(LoRAConfig(targetModules: ["0", "1"]))
        }
    }

    @Test("removeLoRA puts the Linear layers back, merged (merge_and_unload) or not (unload)")
    func removeLoRA() throws {
        let model = MLP()
        let x = randomTensor([2, 64], seed: 4)
        try model.applyLoRA(LoRAConfig(rank: 2, alpha: 2, targetModules: ["fc2"]))
        (model.loraLayers[0].layer as! LoRALinear).loraB.weight.value = randomTensor([10, 2], seed: 7)
        let adapted = model(x)
        #expect(model.removeLoRA(merge: true) == ["fc2"])
        #expect(model.namedParameters().map(\.name) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        expectClose(model(x).scalars, adapted.scalars, atol: 1e-5, rtol: 1e-5)

        let other = MLP()
        let otherPlain = other(x)
        try other.applyLoRA(LoRAConfig(rank: 2, alpha: 2, targetModules: ["fc2"]))
        (other.loraLayers[0].layer as! LoRALinear).loraB.weight.value = randomTensor([10, 2], seed: 7)
        other.removeLoRA(merge: false)
        #expect(other(x).scalars == otherPlain.scalars)
    }

    @Test("LoRA on Conv2d: base conv + scaling * B(A(x)); merging folds B A into the kernel exactly")
    func convolutionLoRA() throws {
        let base = Conv2d(3, 5, kernelSize: 3, stride: 2, padding: 1)
        let lora = LoRAConv2d(base, rank: 2, alpha: 4)
        #expect(lora.namedParameters().map(\.name) == ["weight", "bias", "lora_A.weight", "lora_B.weight"])
        #expect(lora.loraA.weight.shape == [2, 3, 3, 3] && lora.loraB.weight.shape == [5, 2, 1, 1])
        let x = randomTensor([2, 3, 7, 9], seed: 3)
        #expect(lora(x).scalars == base(x).scalars)
        lora.loraB.weight.value = randomTensor([5, 2, 1, 1], seed: 4)
        let expected = base(x) + lora.loraB(lora.loraA(x)) * 2
        expectClose(lora(x).scalars, expected.scalars, atol: 1e-5, rtol: 1e-5)
        let unmerged = lora(x)
        lora.merge()
        expectClose(base(x).scalars, unmerged.scalars, atol: 1e-5, rtol: 1e-5)
        lora.unmerge()
        gradCheck([lora.loraA.weight.value, lora.loraB.weight.value], "LoRAConv2d") { t in
            Tensor.conv2d(Tensor.conv2d(x, weight: t[0], stride: (2, 2), padding: (1, 1)), weight: t[1]) * 2
        }
        // A CNN: LoRA on both convolutions and the head; only the low-rank weights train.
        let cnn = digitsCNN()
        let wrapped = try cnn.applyLoRA(LoRAConfig(rank: 4, alpha: 4, targetModules: ["0", "4", "10"]))
        #expect(wrapped == ["0", "4", "10"] && cnn.loraLayers.map { "\(type(of: $0.layer))" } == ["LoRAConv2d", "LoRAConv2d", "LoRALinear"])
        #expect(cnn.trainableParameterCount == (4 * 9 + 16 * 4) + (4 * 16 * 9 + 32 * 4) + (4 * 64 + 10 * 4))
        #expect(throws: SelectionError.self) {
            try Sequential(Conv2d(4, 4, kernelSize: 3, groups: 2)).applyLoRA(LoRAConfig(targetModules: ["0"]))
        }
    }

    @Test("LoRA on Embedding: lookups add scaling * rows of (B A)^T; the [Int] call path forwards; adapters round-trip")
    func embeddingLoRA() throws {
        final class Tagger: Module {
            @Child var embed = Embedding(11, 6)
            @Child var head = Linear(6, 3)
            override func forward(_ x: Tensor) -> Tensor { head(embed(x)) }
        }
        let model = Tagger()
        let ids: [Int] = [3, 0, 10, 3]
        let before = model.embed(ids)
        try model.applyLoRA(LoRAConfig(rank: 2, alpha: 4, targetModules: ["embed"]))
        let lora = model.loraLayers[0].layer as! LoRAEmbedding
        #expect(lora.namedParameters().map(\.name) == ["weight", "lora_embedding_A", "lora_embedding_B"])
        #expect(model.embed(ids).scalars == before.scalars)    // A starts at zero (PEFT)
        lora.loraEmbeddingA.value = randomTensor([2, 11], seed: 5)
        let delta = lora.delta
        let expected = Tensor.embedding(ids, weight: model.embed.weight.value + delta)
        expectClose(model.embed(ids).scalars, expected.scalars, atol: 1e-5, rtol: 1e-5)
        let x = Tensor(shape: [2, 2], scalars: [3, 0, 10, 3])
        expectClose(model(x).scalars, model.head(expected.reshaped([2, 2, 6])).scalars, atol: 1e-5, rtol: 1e-5)
        gradCheck([lora.loraEmbeddingA.value, lora.loraEmbeddingB.value], "LoRAEmbedding") { t in
            Tensor.embedding(ids, weight: t[1].matmul(t[0]).transposed()) * 2
        }
        lora.merge()
        expectClose(model.embed.weight.value.scalars, lora.baseLayer().namedParameters()[0].parameter.value.scalars)
        expectClose(Tensor.embedding(ids, weight: model.embed.weight.value).scalars, expected.scalars, atol: 1e-5, rtol: 1e-5)
        lora.unmerge()

        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try model.savePEFTAdapter(to: directory)
        let file = try SafeTensors(contentsOf: directory.appendingPathComponent("adapter_model.safetensors"))
        #expect(file.keys == ["base_model.model.embed.lora_embedding_A", "base_model.model.embed.lora_embedding_B"])
        let copy = Tagger()
        try copy.loadStateDict(model.stateDict(), strict: false)
        try copy.loadPEFTAdapter(from: directory)
        #expect(copy(x).scalars == model(x).scalars)
    }

    // MARK: PEFT fixture

    @Test("the PEFT adapter reproduces PEFT's adapted and merged outputs")
    func peftParity() throws {
        let folder = fixtureURL("peft-lora-mlp")
        let model = MLP()
        try model.load(from: folder.appendingPathComponent("base.safetensors"))
        let config = try model.loadPEFTAdapter(from: folder.appendingPathComponent("adapter"))
        #expect(config == PEFTAdapter.Config(lora: LoRAConfig(rank: 4, alpha: 8, dropout: 0, targetModules: ["fc1", "fc2"])))
        #expect(model.loraLayers.map(\.name) == ["fc1", "fc2"] && model.loraLayers[0].layer.scaling == 2)
        let reference = try SafeTensors(contentsOf: folder.appendingPathComponent("reference.safetensors"))
        let inputs = try reference.tensor("inputs")
        model.eval()
        let adapted = withoutGradients { model(inputs) }
        #expect(maxDifference(adapted, try reference.tensor("outputs_adapted")) < 1e-5)
        model.mergeLoRA()
        let merged = withoutGradients { model(inputs) }
        #expect(maxDifference(merged, try reference.tensor("outputs_merged")) < 1e-5)
    }

    @Test("an adapter FineTune writes loads back (here and in PEFT's layout)")
    func adapterRoundTrip() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let fixture = fixtureURL("peft-lora-mlp")
        let model = MLP()
        try model.load(from: fixture.appendingPathComponent("base.safetensors"))
        try model.loadPEFTAdapter(from: fixture.appendingPathComponent("adapter"))
        let out = directory.appendingPathComponent("my-adapter")
        try model.savePEFTAdapter(to: out)

        let file = try SafeTensors(contentsOf: out.appendingPathComponent("adapter_model.safetensors"))
        let original = try SafeTensors(contentsOf: fixture.appendingPathComponent("adapter/adapter_model.safetensors"))
        #expect(file.keys == original.keys)
        let config = try PEFTAdapter.config(from: Data(contentsOf: out.appendingPathComponent("adapter_config.json")))
        #expect(config == PEFTAdapter.Config(lora: LoRAConfig(rank: 4, alpha: 8, targetModules: ["fc1", "fc2"])))

        let copy = MLP()
        try copy.load(from: fixture.appendingPathComponent("base.safetensors"))
        try copy.loadPEFTAdapter(from: out)
        let x = randomTensor([3, 64], seed: 12)
        #expect(copy(x).scalars == model(x).scalars)
    }

    @Test("a bad adapter throws and leaves the model as it was")
    func badAdapters() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(throws: CheckpointError.self) { try PEFTAdapter.config(from: Data("[]".utf8)) }
        #expect(throws: CheckpointError.invalidAdapter(reason: "DoRA adapters (use_dora) are not supported")) {
            try PEFTAdapter.config(from: Data(#"{"peft_type":"LORA","r":4,"target_modules":["fc1"],"use_dora":true}"#.utf8))
        }
        // Weights for fc1 only, while the config targets fc1 and fc2.
        let adapter = directory.appendingPathComponent("adapter")
        try FileManager.default.createDirectory(at: adapter, withIntermediateDirectories: true)
        try Data(#"{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["fc1","fc2"]}"#.utf8)
            .write(to: adapter.appendingPathComponent("adapter_config.json"))
        try SafeTensors.write(["base_model.model.fc1.lora_A.weight": Tensor.zeros([2, 64]),
                               "base_model.model.fc1.lora_B.weight": Tensor.zeros([32, 2])],
                              to: adapter.appendingPathComponent("adapter_model.safetensors"))
        let model = MLP()
        let names = model.namedParameters().map(\.name)
        #expect(throws: CheckpointError.self) { try model.loadPEFTAdapter(from: adapter) }
        #expect(model.namedParameters().map(\.name) == names && model.frozenParameterCount == 0)
    }
}
