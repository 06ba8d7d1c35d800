import Foundation
import Testing
@testable import FineTune

// The module tree: real replacement through @Child slots (any call arity reaches the new
// module), typed errors for replacements that cannot be placed, a cached registry that
// reflects once and never goes stale, per-module modes with pinning, and BatchNorm
// statistics as a third freeze axis.

/// A layer with a call overload of its own (defined here, so no library type can be special-cased).
private class Scaler: Module {
    override func forward(_ x: Tensor) -> Tensor { x }
    /// Deliberately does not go through `callAsFunction(_:)` or `completeCall`.
    func callAsFunction(_ x: Tensor, scale: Float) -> Tensor { forward(x) * scale }
}

private final class Shifter: Scaler {
    override func forward(_ x: Tensor) -> Tensor { x + 1 }
}

private final class Holder: Module {
    @Child var inner = Scaler()
    @Child var fc = Linear(3, 3)
    @Child var blocks = [Linear(3, 3), Linear(3, 3)]
    @Child var extra: Linear? = nil
    let fixed = Linear(3, 3)
    override func forward(_ x: Tensor) -> Tensor {
        let y = fc(inner(x, scale: 2))
        return fixed(blocks.reduce(y) { $1($0) })
    }
}

/// Records the mode it is called in.
private final class ModeProbe: Module {
    var seenTraining: [Bool] = []
    override func forward(_ x: Tensor) -> Tensor {
        seenTraining.append(isTraining)
        return x
    }
}

private func bnNet(affine: Bool = true) -> Sequential {
    RandomGenerator.withSeed(3) {
        Sequential(Conv2d(1, 4, kernelSize: 3, padding: 1), BatchNorm2d(4, affine: affine), ReLU(),
                   Flatten(), Linear(4 * 4 * 4, 3))
    }
}

private func statistics(_ model: Module) -> [Float] {
    model.namedBuffers().flatMap(\.buffer.value.scalars)
}

@Suite("Module tree")
struct ModuleTreeTests {
    // MARK: Real replacement

    @Test("a replaced child runs in its parent's multi-argument call, and the typed property holds it")
    func multiArgumentCallRunsTheReplacement() throws {
        let model = Holder()
        let x = randomTensor([2, 3], seed: 2)
        let expected = model.fixed(model.blocks[1](model.blocks[0](model.fc((x + 1) * 2))))
        let old = try model.replaceModule(at: "inner", with: Shifter())
        #expect(!(old is Shifter) && model.inner is Shifter)
        #expect(model(x).scalars == expected.scalars)
        #expect(model.module(named: "inner") === model.inner)
    }

    @Test("replacements that cannot be placed throw typed errors naming the property and both types")
    func incompatibleReplacementsThrow() throws {
        let model = Holder()
        #expect(throws: SelectionError.incompatibleReplacement(path: "inner", property: "Holder.inner",
                                                                 expected: "Scaler", actual: "Linear")) {
            try model.replaceModule(at: "inner", with: Linear(3, 3))
        }
        #expect(throws: SelectionError.incompatibleReplacement(path: "blocks.1", property: "Holder.blocks",
                                                                 expected: "Linear", actual: "ReLU")) {
            try model.replaceModule(at: "blocks.1", with: ReLU())
        }
        #expect(throws: SelectionError.notReplaceable(path: "fixed", property: "Holder.fixed")) {
            try model.replaceModule(at: "fixed", with: Linear(3, 3))
        }
        #expect(throws: SelectionError.self) { try model.replaceModule(at: "blocks.2", with: Linear(3, 3)) }
        #expect(throws: SelectionError.wouldCreateCycle(path: "blocks.0")) {
            try model.replaceModule(at: "blocks.0", with: LoRAHolder(model))
        }
        // Nothing changed.
        #expect(!(model.inner is Shifter) && model.blocks.count == 2)
        #expect(model.namedModules().map(\.name) == ["", "inner", "fc", "blocks.0", "blocks.1", "fixed"])
        // Array and optional slots take modules of their element type.
        let replacement = Linear(3, 3)
        try model.replaceModule(at: "blocks.1", with: replacement)
        #expect(model.blocks[1] === replacement && model.module(named: "blocks.1") === replacement)
        model.extra = Linear(3, 1)
        #expect(model.namedParameters().map(\.name).contains("extra.weight"))
    }

    @Test("a LoRA layer fits the slot of the layer it wraps: typed properties and every call form reach it")
    func loraFitsTypedSlots() throws {
        let model = Holder()
        try model.applyLoRA(LoRAConfig(rank: 2, alpha: 2, targetModules: ["fc"]))
        #expect(model.fc is LoRALinear)
        let lora = model.fc as! LoRALinear
        lora.loraB.weight.value = Tensor.ones([3, 2])
        let x = randomTensor([2, 3], seed: 5)
        let base = Linear(weight: lora.weight, bias: lora.bias)
        let y = model.fixed(model.blocks[1](model.blocks[0](lora((x * 2)))))
        #expect(model(x).scalars == y.scalars)
        #expect(base(x * 2).scalars != lora(x * 2).scalars)
        // A plain property cannot take a LoRA layer: nothing changes and the error says why.
        let flags = model.parameters().map(\.isFrozen)
        #expect(throws: SelectionError.notReplaceable(path: "fixed", property: "Holder.fixed")) {
            try model.applyLoRA(LoRAConfig(rank: 2, alpha: 2, targetModules: ["fixed", "blocks.0"]))
        }
        #expect(model.loraLayers.map(\.name) == ["fc"] && !(model.blocks[0] is LoRALinear))
        #expect(model.parameters().map(\.isFrozen) == flags)    // frozen flags restored too
        model.removeLoRA(merge: true)
        #expect(type(of: model.fc) == Linear.self && model.fc.weight === lora.weight)
    }

    @Test("an adapter after self_attn in a frozen encoder gets a gradient and changes the output after one step")
    func adapterAfterAttentionTrains() throws {
        let model = RandomGenerator.withSeed(8) {
            Sequential(TransformerEncoderBlock(dModel: 8, numHeads: 2, ffnDim: 16, dropout: 0), Linear(8, 3))
        }
        let x = randomTensor([2, 5, 8], seed: 3)
        let before = model(x)
        let adapters = try model.addAdapters(after: ["0.self_attn"], bottleneck: 4)
        #expect(model.trainableParameterCount == 8 * 4 + 4 + 4 * 8 + 8)
        #expect(model.stateDictKeys.contains("0.self_attn.adapter.up.weight"))
        #expect(model(x).scalars == before.scalars)    // identity at first
        let optimizer = Adam(model, lr: 0.01)
        Tensor.crossEntropy(model(x).reshaped([10, 3]), targets: [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]).backward()
        let gradient = adapters[0].up.weight.grad
        #expect(gradient != nil && gradient!.scalars.contains { $0 != 0 })
        optimizer.step()
        #expect(model(x).scalars != before.scalars)
        // The masked call form (encode with a mask) passes through the adapter too.
        let block = model[0] as! TransformerEncoderBlock
        let mask = MultiHeadAttention.causalMask(5)
        let withAdapter = block(x, mask: mask)
        block.selfAttn.attachOutputAdapter(nil)
        #expect(block(x, mask: mask).scalars != withAdapter.scalars)
    }

    // MARK: Registry

    @Test("steady-state training reflects nothing: zero reflection passes in 10 steps after the first")
    func noReflectionPerStep() throws {
        let counter = ReflectionCounter()
        try ModuleRegistry.$passCounter.withValue(counter) {
            let model = RandomGenerator.withSeed(1) {
                Sequential(TransformerEncoderBlock(dModel: 8, numHeads: 2, ffnDim: 16), Flatten(), Linear(40, 3))
            }
            try model.applyLoRA(LoRAConfig(rank: 2, alpha: 4, targetModules: ["linear1", "out_proj"]))
            let optimizer = AdamW(model, lr: 1e-3)
            let x = randomTensor([4, 5, 8], seed: 1)
            func step() {
                optimizer.zeroGrad()
                Tensor.crossEntropy(model(x), targets: [0, 1, 2, 0]).backward()
                clipGradNorm(model, maxNorm: 1)
                optimizer.step()
            }
            step()
            let afterFirst = counter.count
            #expect(afterFirst > 0)
            for _ in 0..<10 { step() }
            #expect(counter.count == afterFirst)
        }
    }

    @Test("weight tying by assignment and a module shared by two parents keep every cache current")
    func cachesFollowAssignments() throws {
        final class Parent: Module {
            @Child var body: Linear
            init(_ body: Linear) { self.body = body; super.init() }
        }
        final class Root: Module {
            let left: Parent, right: Parent
            init(shared: Linear) { left = Parent(shared); right = Parent(shared); super.init() }
        }
        let shared = Linear(2, 2)
        let root = Root(shared: shared)
        #expect(root.namedParameters().map(\.name) == ["left.body.weight", "left.body.bias"])
        #expect(root.stateDictKeys == ["left.body.weight", "left.body.bias", "right.body.weight", "right.body.bias"])
        // A new parameter assigned inside the shared module reaches the root through both parents.
        let tied = Parameter(Tensor.ones([2, 2]))
        shared.weight = tied
        #expect(root.parameter(named: "left.body.weight") === tied)
        #expect(root.stateDict()["right.body.weight"]!.scalars == [1, 1, 1, 1])
        // Replacing in one parent leaves the other alone.
        try root.replaceModule(at: "right.body", with: Linear(2, 5))
        #expect(root.namedParameters().map { "\($0.name) \($0.parameter.shape)" }
                == ["left.body.weight [2, 2]", "left.body.bias [2]", "right.body.weight [5, 2]", "right.body.bias [5]"])

        // Weight tying: the decoder holds the encoder's parameter; the optimizer updates it once.
        let encoder = Embedding(4, 3), decoder = Linear(3, 4, bias: false)
        let model = Sequential(encoder, decoder)
        #expect(model.parameters().count == 2)
        decoder.weight = encoder.weight
        #expect(model.namedParameters().map(\.name) == ["0.weight"])
        let optimizer = SGD(model, lr: 1)
        let logits = model(Tensor([0, 2]))
        Tensor.crossEntropy(logits, targets: [1, 3]).backward()
        let before = encoder.weight.value.scalars, gradient = encoder.weight.grad!.scalars
        optimizer.step()
        #expect(zip(before, gradient).map { $0 - $1 } == encoder.weight.value.scalars)
        #expect(decoder.weight.value.scalars == encoder.weight.value.scalars)
    }

    @Test("a plain property reassigned after first use stops a debug build with a message naming it")
    func stalePlainPropertyIsCaught() async {
        #if DEBUG
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            final class Careless: Module {
                var head = Linear(2, 2)
            }
            let model = Careless()
            _ = model.namedParameters()
            model.head = Linear(2, 3)
            _ = model.namedParameters()
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("Careless.head was reassigned") && message.contains("@Child var"))
        #endif
        // Calling structureDidChange() after such an assignment is the documented fix.
        final class Careful: Module {
            var head = Linear(2, 2)
        }
        let model = Careful()
        _ = model.namedParameters()
        model.head = Linear(2, 3)
        model.structureDidChange()
        #expect(model.parameter(named: "head.weight")?.shape == [3, 2])
    }

    // MARK: Modes

    @Test("modes are per module: inferring and fit restore each module's own, and fit's hook has the last word")
    func perModuleModes() throws {
        let probe = ModeProbe()
        let model = Sequential(Sequential(Linear(4, 4), probe), Linear(4, 2))
        model.train()
        model[0].eval()
        _ = model.inferring { model(Tensor.zeros([1, 4])) }
        #expect(!model[0].isTraining && !probe.isTraining && model.isTraining && model[1].isTraining)

        let data = TensorDataset(inputs: randomTensor([8, 4], seed: 1), labels: [0, 1, 0, 1, 0, 1, 0, 1])
        let trainer = Trainer(model: model, optimizer: SGD(model, lr: 0.1), batchSize: 4)
        trainer.onEpochStart = { _ in model[0].eval() }        // the hook's choice stands
        probe.seenTraining = []
        model.train()
        try trainer.fit(data, epochs: 2)
        #expect(probe.seenTraining == [false, false, false, false])
        #expect(model.namedModules().allSatisfy { $0.module.isTraining })    // restored after fit
    }

    @Test("a module pinned to inference stays there through train(), fit, inferring, summary and findLearningRate")
    func pinnedModuleStays() throws {
        let probe = ModeProbe()
        let backbone = Sequential(Linear(4, 4), Dropout(p: 0.5), probe)
        let model = Sequential(backbone, Linear(4, 2))
        backbone.pin(.inference)
        model.train()
        #expect(!backbone.isTraining && !probe.isTraining && model[1].isTraining)
        let data = TensorDataset(inputs: randomTensor([8, 4], seed: 1), labels: [0, 1, 0, 1, 0, 1, 0, 1])
        let trainer = Trainer(model: model, optimizer: Adam(model, lr: 0.01), batchSize: 4)
        try trainer.fit(data, validation: data, epochs: 2)
        _ = model.inferring { model(Tensor.zeros([1, 4])) }
        _ = model.summary(input: Tensor.zeros([1, 4]))
        _ = try trainer.findLearningRate(data, steps: 5)
        #expect(!probe.seenTraining.contains(true) && probe.seenTraining.count > 8)
        #expect(!backbone.isTraining && backbone.pinnedMode == .inference && model[1].isTraining)
        #expect(model.summary().contains("eval (pinned)"))
        backbone.unpin()
        model.train()
        #expect(probe.isTraining)
    }

    // MARK: BatchNorm statistics

    @Test("frozen BatchNorm keeps its running statistics bit for bit through fit; trainBatchNorm updates them")
    func frozenBatchNormThroughFit() throws {
        let data = TensorDataset(inputs: randomTensor([12, 1, 4, 4], seed: 7), labels: (0..<12).map { $0 % 3 })
        for trainBatchNorm in [false, true] {
            let model = bnNet()
            (model[1] as! BatchNorm).runningMean!.value = randomTensor([4], seed: 9)
            model.freeze(trainBatchNorm: trainBatchNorm)
            try model.unfreeze(matching: "4")
            let before = statistics(model)
            let trainer = Trainer(model: model, optimizer: Adam(model, lr: 0.01), batchSize: 4)
            try trainer.fit(data, epochs: 2)
            if trainBatchNorm {
                #expect(statistics(model) != before)
                #expect(model.trainableParameterCount == 4 + 4 + 64 * 3 + 3)
            } else {
                #expect(statistics(model) == before)
            }
        }
    }

    @Test("every row of the BatchNorm statistics table")
    func batchNormStatisticsTable() throws {
        let x = randomTensor([6, 1, 4, 4], seed: 2)
        /// Whether a training-mode call used batch statistics (running statistics moved) and,
        /// if not, matched the eval-mode output exactly.
        func usesBatchStatistics(_ model: Sequential) -> Bool {
            let bn = model[1] as! BatchNorm
            model.train()
            let before = statistics(model)
            let trainOutput = withoutGradients { model(x) }
            let moved = statistics(model) != before
            if !moved {
                let evalOutput = model.inferring { model(x) }
                #expect(trainOutput.scalars == evalOutput.scalars)
                #expect(bn.effectiveStatistics == .running)
            } else {
                #expect(bn.effectiveStatistics == .batch)
            }
            return moved
        }
        // Trainable: batch statistics, updated (PyTorch).
        #expect(usesBatchStatistics(bnNet()))
        // Affine, both parameters frozen by a pattern.
        let byPattern = bnNet()
        try byPattern.freeze(matching: "1")
        #expect(!usesBatchStatistics(byPattern))
        // Frozen by freeze() on an ancestor, affine and non-affine.
        let whole = bnNet(); whole.freeze()
        #expect(!usesBatchStatistics(whole))
        let nonAffine = bnNet(affine: false); nonAffine.freeze()
        #expect(!usesBatchStatistics(nonAffine))
        let nonAffineTrainable = bnNet(affine: false)
        #expect(usesBatchStatistics(nonAffineTrainable))
        // Non-affine frozen by a pattern that selects its path.
        let nonAffinePattern = bnNet(affine: false)
        try nonAffinePattern.freeze(matching: "**")
        #expect(!usesBatchStatistics(nonAffinePattern))
        // Partly frozen (BitFit leaves the weight frozen, the bias trainable): batch statistics.
        let partly = bnNet()
        try partly.freeze(matching: "1.weight")
        #expect(usesBatchStatistics(partly))
        // fastai's train_bn: parameters stay trainable, batch statistics.
        let trainBN = bnNet(); trainBN.freeze(trainBatchNorm: true)
        #expect(usesBatchStatistics(trainBN) && !(trainBN[1] as! BatchNorm).weight!.isFrozen)
        // Unfrozen again: batch statistics.
        let thawed = bnNet(); thawed.freeze(); thawed.unfreeze()
        #expect(usesBatchStatistics(thawed))
        // Explicit settings override everything.
        let forcedBatch = bnNet(); forcedBatch.freeze(); (forcedBatch[1] as! BatchNorm).statistics = .batch
        #expect(usesBatchStatistics(forcedBatch))
        let forcedRunning = bnNet(); (forcedRunning[1] as! BatchNorm).statistics = .running
        #expect(!usesBatchStatistics(forcedRunning))
        // Evaluation mode always uses the running statistics; summary shows each BatchNorm's mode.
        let model = bnNet()
        model.freeze()
        #expect(model.summary().contains("train, running stats"))
        model.unfreeze()
        #expect(model.summary().contains("train, batch stats"))
        model.eval()
        #expect((model[1] as! BatchNorm).effectiveStatistics == .running)
    }
}

/// A module that contains `inner`, for the cycle check.
private final class LoRAHolder: Module {
    let inner: Module
    init(_ inner: Module) { self.inner = inner; super.init() }
}
