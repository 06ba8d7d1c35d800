import Testing
@testable import FineTune

/// Minimal modules so these tests don't depend on the layer library.
private final class Dense: Module {
    let weight: Parameter
    let bias: Parameter
    init(_ inputs: Int, _ outputs: Int, seed: UInt64) {
        weight = Parameter(randomTensor([outputs, inputs], seed: seed))
        bias = Parameter(Tensor.zeros([outputs]), role: .bias)
    }
    override func forward(_ x: Tensor) -> Tensor { Tensor.linear(x, weight: weight.value, bias: bias.value) }
}

private final class Block: Module {
    let conv1 = Dense(4, 4, seed: 1)
    let conv2 = Dense(4, 4, seed: 2)
    let runningMean = Buffer(Tensor.zeros([4]))
    override func forward(_ x: Tensor) -> Tensor { conv2(conv1(x).relu()) + x }
}

private final class Backbone: Module {
    let stem = Dense(3, 4, seed: 3)
    let layers = [Block(), Block()]
    override func forward(_ x: Tensor) -> Tensor { layers.reduce(stem(x)) { $1($0) } }
}

private final class Net: Module {
    let backbone = Backbone()
    @Child var head: Dense? = Dense(4, 2, seed: 4)
    var _cache: Dense? = Dense(1, 1, seed: 5)   // underscore: not part of the state
    override func forward(_ x: Tensor) -> Tensor { head!(backbone(x)) }
}

@Suite("Module structure and freezing")
struct FreezingTests {
    @Test func dottedNamesLikePyTorch() {
        let net = Net()
        let names = net.namedParameters().map(\.name)
        #expect(names == [
            "backbone.stem.weight", "backbone.stem.bias",
            "backbone.layers.0.conv1.weight", "backbone.layers.0.conv1.bias",
            "backbone.layers.0.conv2.weight", "backbone.layers.0.conv2.bias",
            "backbone.layers.1.conv1.weight", "backbone.layers.1.conv1.bias",
            "backbone.layers.1.conv2.weight", "backbone.layers.1.conv2.bias",
            "head.weight", "head.bias",
        ])
        #expect(net.namedBuffers().map(\.name) == ["backbone.layers.0.running_mean", "backbone.layers.1.running_mean"])
        #expect(net.module(named: "backbone.layers.1.conv2") === net.backbone.layers[1].conv2)
        #expect(Module.snakeCase("numBatchesTracked") == "num_batches_tracked")
    }

    @Test func freezeAndUnfreezeByGlob() throws {
        let net = Net()
        let frozen = try net.freeze(matching: "backbone.*")
        #expect(frozen.count == 10)
        #expect(net.parameters().filter(\.isFrozen).count == 10)
        #expect(net.trainableParameterCount == 4 * 2 + 2)
        #expect(net.frozenParameterCount == net.parameterCount - net.trainableParameterCount)
        try net.unfreeze(matching: "**.bias")
        #expect(!net.parameter(named: "backbone.stem.bias")!.isFrozen)
        #expect(net.parameter(named: "backbone.stem.weight")!.isFrozen)
        try net.unfreeze(matching: "backbone.layers.1")
        #expect(!net.parameter(named: "backbone.layers.1.conv1.weight")!.isFrozen)
        #expect(net.parameter(named: "backbone.layers.0.conv1.weight")!.isFrozen)
    }

    @Test func globSegments() throws {
        #expect(try ParameterPattern.glob("layers.*.weight").matches("layers.3.weight"))
        #expect(try !ParameterPattern.glob("layers.*.weight").matches("layers.3.conv.weight"))
        #expect(try ParameterPattern.glob("layers.**.weight").matches("layers.3.conv.weight"))
        #expect(try ParameterPattern.glob("**.bias").matches("bias"))
        #expect(try ParameterPattern.glob("fc?.weight").matches("fc1.weight"))
        #expect(try !ParameterPattern.glob("fc").matches("fc1.weight"))
    }

    @Test func regexSelection() throws {
        let net = Net()
        let names = try net.freeze(matching: .regex(#"backbone\.layers\.\d+\.conv2\..*"#))
        #expect(names == ["backbone.layers.0.conv2.weight", "backbone.layers.0.conv2.bias",
                          "backbone.layers.1.conv2.weight", "backbone.layers.1.conv2.bias"])
        #expect(throws: SelectionError.self) { try net.freeze(matching: .regex("((")) }
    }

    @Test func aTypoIsAnErrorAndDryRunChangesNothing() throws {
        let net = Net()
        #expect(throws: SelectionError.self) { try net.freeze(matching: "bakbone.*") }
        do {
            try net.freeze(matching: "bakbone.*")
        } catch {
            #expect(error.description.contains("bakbone") && error.description.contains("backbone.stem.weight"))
        }
        #expect(net.frozenParameterCount == 0)
        let wouldFreeze = try net.freeze(matching: "head", dryRun: true)
        #expect(wouldFreeze == ["head.weight", "head.bias"])
        #expect(net.frozenParameterCount == 0)
    }

    @Test func freezeByDepth() throws {
        let backbone = Backbone()          // children: stem, layers.0, layers.1
        try backbone.freeze(upTo: 2)
        #expect(backbone.stem.weight.isFrozen && backbone.layers[0].conv1.weight.isFrozen)
        #expect(!backbone.layers[1].conv1.weight.isFrozen)
        try backbone.freeze(upTo: -1)
        #expect(backbone.layers[0].conv2.bias.isFrozen && !backbone.layers[1].conv2.bias.isFrozen)
        try backbone.freeze(upTo: 0)
        #expect(backbone.frozenParameterCount == 0)
        #expect(throws: SelectionError.self) { try backbone.freeze(upTo: 4) }
    }

    @Test func frozenParametersGetNoGradientButGradientsFlowThrough() throws {
        let net = Net()
        try net.freeze(matching: "backbone.**")
        try net.unfreeze(matching: "backbone.stem.**")
        let x = randomTensor([5, 3], seed: 9)
        net(x).sum().backward()
        #expect(net.parameter(named: "backbone.layers.0.conv1.weight")!.grad == nil)
        #expect(net.parameter(named: "backbone.stem.weight")!.grad != nil)   // upstream of frozen blocks
        #expect(net.parameter(named: "head.weight")!.grad != nil)
    }

    @Test func multipliersByPattern() throws {
        let net = Net()
        try net.setLearningRateMultiplier(0.1, matching: "backbone.**")
        try net.setWeightDecayMultiplier(0, matching: "head.weight")
        #expect(net.parameter(named: "backbone.layers.1.conv2.bias")!.lrMultiplier == 0.1)
        #expect(net.parameter(named: "head.weight")!.lrMultiplier == 1)
        #expect(net.parameter(named: "head.weight")!.weightDecayMultiplier == 0)
    }

    @Test func headReplacementShowsUpUnderTheSameName() {
        let net = Net()
        let old = net.parameter(named: "head.weight")!
        net.head = Dense(4, 7, seed: 11)
        #expect(net.parameter(named: "head.weight")! !== old)
        #expect(net.parameter(named: "head.weight")!.shape == [7, 4])
    }

    @Test func summaryTable() throws {
        let net = Net()
        try net.freeze(matching: "backbone.**")
        net.head!.weight.lrMultiplier = 10
        let text = net.summary(input: Tensor.zeros([2, 3]))
        #expect(text.contains("backbone.stem"))
        #expect(text.contains("[2, 2]"))                      // head output shape
        #expect(text.contains("frozen"))
        #expect(text.contains("Trainable params:  10 (9.43%)"))
        #expect(text.contains("Total params:      106"))
        #expect(text.contains("\n  backbone.layers.0 "))           // indented one level under backbone
        #expect(text.contains("1,10"))                       // head bias x1, head weight x10
        #expect(net.isTraining)                              // restored after the summary pass
    }
}
