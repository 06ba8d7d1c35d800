import Foundation
import Testing
@testable import FineTune

// Fine-tuning recipes: head replacement on any model, bottleneck adapters, BitFit,
// discriminative learning rates and gradual unfreezing.

private final class Backbone: Module {
    @Child var embed = Linear(6, 8)
    @Child var block = Linear(8, 8)
    @Child var fc = Linear(8, 3)
    @Child var drop = Dropout(p: 0.5)
    override func forward(_ x: Tensor) -> Tensor { fc(drop(block(embed(x).relu()).relu())) }
}

@Suite("Fine-tuning recipes")
struct FineTuningRecipeTests {
    @Test("replaceModule swaps a @Child head: names, training, optimizer and checkpoints follow")
    func headReplacement() throws {
        let model = Backbone()
        model.eval()
        let previous = model.fc
        let old = try model.replaceModule(at: "fc", with: Linear(8, 5))
        #expect(old === previous && model.fc.outFeatures == 5)   // the parent holds the new head
        #expect(model.module(named: "fc").map { ($0 as! Linear).outFeatures } == 5)
        #expect(model.parameter(named: "fc.weight")?.shape == [5, 8])
        #expect(model(randomTensor([2, 6])).shape == [2, 5])
        #expect(!(model.module(named: "fc")!.isTraining))    // takes the replaced module's mode
        model.freeze()
        try model.unfreeze(matching: "fc")
        #expect(model.trainableParameterCount == 5 * 8 + 5)
        let optimizer = SGD(model, lr: 0.1)
        model.train()
        Tensor.crossEntropy(model(randomTensor([4, 6])), targets: [0, 1, 4, 2]).backward()
        optimizer.step()
        #expect(model.stateDictKeys.contains("fc.weight") && model.stateDict()["fc.weight"]!.shape == [5, 8])
        #expect(throws: SelectionError.self) { try model.replaceModule(at: "fcc", with: Linear(8, 5)) }
        #expect(throws: SelectionError.self) { try model.replaceModule(at: "", with: Linear(8, 5)) }
    }

    @Test("bottleneck adapters start as the identity, keep pretrained names, and train alone")
    func bottleneckAdapters() throws {
        let model = Backbone()
        model.eval()
        let x = randomTensor([3, 6], seed: 4)
        let before = model(x)
        let keys = model.stateDictKeys
        let adapters = try model.addAdapters(after: ["embed", "block"], bottleneck: 2)
        #expect(adapters.count == 2 && model(x).scalars == before.scalars)
        #expect(model.stateDictKeys == ["embed.weight", "embed.bias", "embed.adapter.down.weight", "embed.adapter.down.bias",
                                        "embed.adapter.up.weight", "embed.adapter.up.bias", "block.weight", "block.bias",
                                        "block.adapter.down.weight", "block.adapter.down.bias", "block.adapter.up.weight",
                                        "block.adapter.up.bias", "fc.weight", "fc.bias"])
        #expect(Set(keys).isSubset(of: model.stateDictKeys))
        #expect(model.trainableParameterCount == 2 * (8 * 2 + 2 + 2 * 8 + 8))
        // A pretrained checkpoint of the plain model still loads into the adapted one.
        let report = try model.loadStateDict(Backbone().stateDict(), strict: false)
        #expect(report.unexpectedKeys.isEmpty && report.missingKeys.allSatisfy { $0.contains(".adapter.") })

        let optimizer = Adam(model, lr: 0.05)
        let frozen = model.parameter(named: "block.weight")!.value.scalars
        model.train()
        for _ in 0..<5 {
            optimizer.zeroGrad()
            Tensor.crossEntropy(model(x), targets: [0, 1, 2]).backward()
            optimizer.step()
        }
        #expect(model.parameter(named: "block.weight")!.value.scalars == frozen)
        #expect(model.parameter(named: "block.adapter.up.weight")!.value.scalars.contains { $0 != 0 })
        // Modes reach every module, adapters included: dropout is active in training mode and off in eval.
        // The dropout layer is probed on a fixed non-zero input: after training, the ReLUs before it
        // may all be dead on some builds, and then the whole model's output would not show dropout.
        // (Task-scoped generators: other suites running in parallel may reseed the global one.)
        #expect(model.namedModules().allSatisfy { $0.module.isTraining })
        let probe = randomTensor([3, 8], seed: 9)
        let first = RandomGenerator.withSeed(1) { model.drop(probe) }, second = RandomGenerator.withSeed(2) { model.drop(probe) }
        #expect(first.scalars != second.scalars)
        model.eval()
        #expect(model.namedModules().allSatisfy { !$0.module.isTraining } && model.drop(probe).scalars == probe.scalars)
        #expect(model(x).scalars == model(x).scalars)
        #expect(throws: SelectionError.self) { try Backbone().addAdapters(after: ["drop"], bottleneck: 2) }
    }

    @Test("BitFit trains only biases (plus what `also` selects)")
    func bitFit() throws {
        let model = Backbone()
        let names = try model.trainOnlyBiases()
        #expect(names == ["embed.bias", "block.bias", "fc.bias"])
        #expect(model.trainableParameterCount == 8 + 8 + 3)
        let withHead = try model.trainOnlyBiases(also: ["fc"])
        #expect(withHead == ["embed.bias", "block.bias", "fc.weight", "fc.bias"])
        #expect(throws: SelectionError.self) { try Linear(2, 2, bias: false).trainOnlyBiases() }
    }

    @Test("discriminative rates divide by the factor per group, top group at 1; fastai's slice spaces them geometrically")
    func discriminativeRates() throws {
        let model = Sequential(Linear(4, 4), ReLU(), Linear(4, 4), ReLU(), Linear(4, 2))
        #expect(model.defaultLayerGroups().map(\.description) == ["glob \"0\"", "glob \"2\"", "glob \"4\""])
        let multipliers = try model.setDiscriminativeLearningRates(factor: 2)
        #expect(multipliers == [0.25, 0.5, 1])
        #expect(model.parameter(named: "0.weight")!.lrMultiplier == 0.25 && model.parameter(named: "4.bias")!.lrMultiplier == 1)
        let sliced = try model.setLearningRateMultipliers(from: 0.01, to: 1)
        expectClose(sliced, [0.01, 0.1, 1], atol: 1e-7, rtol: 1e-5)
        // The optimizer applies them: one SGD step moves group 0 by a quarter of group 2's step
        // for the same gradient.
        _ = try model.setDiscriminativeLearningRates(factor: 4)
        let sgd = SGD(model, lr: 1)
        for p in model.parameters() { p.grad = Tensor.ones(p.shape) }
        let w0 = model.parameter(named: "0.weight")!.value.scalars, w4 = model.parameter(named: "4.weight")!.value.scalars
        sgd.step()
        let d0 = zip(model.parameter(named: "0.weight")!.value.scalars, w0).map { $1 - $0 }
        let d4 = zip(model.parameter(named: "4.weight")!.value.scalars, w4).map { $1 - $0 }
        #expect(d0.allSatisfy { abs($0 - 1.0 / 16) < 1e-6 } && d4.allSatisfy { abs($0 - 1) < 1e-6 })
    }

    @Test("gradual unfreezing opens one group per epoch from the top, without rebuilding the optimizer")
    func gradualUnfreezing() throws {
        let model = Sequential(Linear(4, 4), ReLU(), Linear(4, 4), ReLU(), Linear(4, 2))
        let schedule = GradualUnfreezing(groups: model.defaultLayerGroups())
        let optimizer = AdamW(model, lr: 0.01)
        let x = randomTensor([6, 4], seed: 3)
        var trainedNames: [[String]] = []
        for epoch in 0..<4 {
            let names = try schedule.apply(to: model, epoch: epoch)
            #expect(names.count == 2 * schedule.trainableGroupCount(epoch: epoch))
            optimizer.zeroGrad()
            Tensor.crossEntropy(model(x), targets: [0, 1, 0, 1, 0, 1]).backward()
            optimizer.step()
            trainedNames.append(optimizer.parameterNamesWithState)
        }
        #expect(trainedNames[0] == ["4.bias", "4.weight"])
        #expect(trainedNames[1] == ["2.bias", "2.weight", "4.bias", "4.weight"])
        #expect(trainedNames[3].count == 6)
        let slow = GradualUnfreezing(groups: ["0", "2", "4"], epochsPerGroup: 2)
        #expect((0..<6).map(slow.trainableGroupCount) == [1, 1, 2, 2, 3, 3])
    }

    @Test("depth freezing, layer groups and reinitialize see replaced children (LoRA, adapters)")
    func treeOperationsSeeReplacements() throws {
        let model = Sequential(Linear(4, 4), ReLU(), Linear(4, 2))
        try model.applyLoRA(LoRAConfig(rank: 2, alpha: 2, targetModules: ["2"]))
        try model.freeze(upTo: -1)
        #expect(model.namedParameters().filter { !$0.parameter.isFrozen }.map(\.name)
                == ["2.weight", "2.bias", "2.lora_A.weight", "2.lora_B.weight"])
        (model.loraLayers[0].layer as! LoRALinear).loraB.weight.value = Tensor.ones([2, 2])
        model.loraLayers[0].layer.merge()
        var rng = RandomGenerator(seed: 3)
        model.reinitialize(generator: &rng)
        let lora = model.loraLayers[0].layer as! LoRALinear
        #expect(!lora.isMerged && lora.loraB.weight.value.scalars.allSatisfy { $0 == 0 })
        let x = randomTensor([3, 4], seed: 8)
        #expect(model(x).scalars == Sequential(model[0], ReLU(), lora.baseLayer())(x).scalars)

        let adapted = Backbone()
        let adapters = try adapted.addAdapters(after: ["block"], bottleneck: 2)
        adapters[0].up.weight.value = Tensor.ones(adapters[0].up.weight.shape)
        let blockWeight = adapted.parameter(named: "block.weight")!.value.scalars
        adapted.reinitialize()
        #expect(adapters[0].up.weight.value.scalars.allSatisfy { $0 == 0 })
        #expect(adapted.parameter(named: "block.weight")!.value.scalars != blockWeight)
    }
}
