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
        #expect(model.fc.weight.value.scalars == before["fc.weight"]!)
        #expect(model.conv1.weight.value.scalars != before["conv1.weight"]!)
        #expect(report.description.contains("skipped (shapes differ): fc.weight"))
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
