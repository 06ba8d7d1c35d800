import Foundation
import Testing
@testable import FineTune

// Tests for the saved training state (Checkpoint/TrainingState.swift) and what it rests on:
// exact integer tensors in safetensors, optimizer step counts as Int64, the random generator's
// state. The resume tests train, save in the middle of an epoch, restore into a freshly built
// base model and compare every parameter, buffer and optimizer value bit for bit with an
// uninterrupted run.

private func bits(_ tensor: Tensor) -> [UInt32] { tensor.scalars.map(\.bitPattern) }

/// A safetensors file written byte by byte: `header` JSON, then `data`.
private func rawSafeTensors(_ header: String, _ data: [UInt8]) -> Data {
    let json = Array(header.utf8)
    return Data(withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) } + json + data)
}

private func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

/// Twenty-four labelled examples of six features, three classes.
private func examples() -> TensorDataset {
    TensorDataset(inputs: randomTensor([24, 6], seed: 31), labels: (0..<24).map { ($0 * 7) % 3 })
}

/// The Trainer's loop, resumable in the middle of an epoch: epoch `e` trains the batches of
/// `examples().batches(size: 4, shuffle: true, seed: 40 + e)`; an epoch begun here (not a resumed
/// one) first sets training mode and runs `epochStart`. Stops before batch `stop.batch` of
/// epoch `stop.epoch`, or after `epochs` epochs.
private func train(_ model: Module, _ optimizer: any Optimizer, epochs: Int = 3,
                   from start: TrainingState.Progress = .init(), until stop: TrainingState.Progress? = nil,
                   epochStart: (Int) throws -> Void) rethrows {
    let data = examples()
    for epoch in start.epoch..<epochs {
        let first = epoch == start.epoch ? start.batch : 0
        if first == 0 {
            model.train()
            try epochStart(epoch)
        }
        let batches = data.batches(size: 4, shuffle: true, seed: 40 &+ UInt64(epoch))
        for index in first..<batches.count {
            if let stop, stop.epoch == epoch, stop.batch == index { return }
            optimizer.zeroGrad()
            Tensor.crossEntropy(model(batches[index].inputs), targets: batches[index].labels).backward()
            optimizer.step()
        }
    }
}

/// Every state-dict tensor, the optimizer's state (per-parameter steps and buffers), its step
/// count and learning rate must match bit for bit.
private func expectIdentical(_ model: Module, _ optimizer: any Optimizer, _ reference: Module, _ referenceOptimizer: any Optimizer,
                             sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(model.stateDictKeys == reference.stateDictKeys, sourceLocation: sourceLocation)
    let state = model.stateDict(), expected = reference.stateDict()
    for (key, value) in expected {
        #expect(state[key].map(bits) == bits(value), "\(key)", sourceLocation: sourceLocation)
    }
    #expect(optimizer.stepCount == referenceOptimizer.stepCount, sourceLocation: sourceLocation)
    #expect(optimizer.learningRate.bitPattern == referenceOptimizer.learningRate.bitPattern, sourceLocation: sourceLocation)
    #expect(optimizer.parameterNamesWithState == referenceOptimizer.parameterNamesWithState, sourceLocation: sourceLocation)
    for name in referenceOptimizer.parameterNamesWithState {
        let a = optimizer.state(for: name), b = referenceOptimizer.state(for: name)!
        #expect(a?.step == b.step, "\(name).step", sourceLocation: sourceLocation)
        for (buffer, tensor) in b.tensors {
            #expect(a?.tensors[buffer].map(bits) == bits(tensor), "\(name).\(buffer)", sourceLocation: sourceLocation)
        }
    }
}

/// The gradual-unfreezing model: four layer groups (0, 1, 4, 7), BatchNorm and two dropouts.
private func unfreezingModel() -> Sequential {
    Sequential(Linear(6, 8), BatchNorm1d(8), ReLU(), Dropout(p: 0.3), Linear(8, 8), ReLU(), Dropout(p: 0.3), Linear(8, 3))
}

/// The LoRA run's base model.
private func loraBase() -> Sequential {
    Sequential(Linear(6, 8), ReLU(), Dropout(p: 0.2), Linear(8, 8), ReLU(), Linear(8, 3))
}

/// LoRA on 0 and 3 (dropout 0.25, rsLoRA), an adapter after 3, and a trainable head at twice the rate.
private func addLoRA(to model: Module) throws {
    try model.applyLoRA(LoRAConfig(rank: 2, alpha: 4, dropout: 0.25, targetModules: ["0", "3"], useRSLoRA: true))
    try model.addAdapters(after: ["3"], bottleneck: 3)
    for (name, parameter) in model.namedParameters() where name.contains("lora_") { parameter.isFrozen = false }
    try model.unfreeze(matching: "5")
    try model.setLearningRateMultiplier(2, matching: "5")
}

/// A model with every kind of state: LoRA on an Embedding, a Conv2d and a Linear (merged),
/// adapters with two activations, BatchNorm settings, a pinned and an evaluating module.
private final class Mixed: Module {
    @Child var embed = Embedding(10, 4)
    @Child var conv = Conv2d(1, 2, kernelSize: 3, padding: 1)
    @Child var bn = BatchNorm2d(2)
    @Child var fc = Linear(2, 3)
    @Child var backbone = Sequential(Linear(3, 3), ReLU())

    override func forward(_ x: Tensor) -> Tensor {
        backbone(fc(bn(conv(x)).relu().mean(axes: [2, 3])))
    }
}

/// Mixed with everything set to something other than the defaults.
private func configuredMixed() throws -> Mixed {
    let model = RandomGenerator.withSeed(2) { Mixed() }
    try model.applyLoRA(LoRAConfig(rank: 2, alpha: 3, dropout: 0.1, targetModules: ["embed", "conv", "fc"], useRSLoRA: true))
    for (index, (_, layer)) in model.loraLayers.enumerated() {
        // A trained update, so merging changes the weight.
        for (name, parameter) in layer.namedParameters() where name.hasPrefix("lora_") {
            parameter.value = randomTensor(parameter.shape, seed: 50 + UInt64(index))
        }
    }
    (model.fc as! LoRALinear).merge()
    try model.addAdapters(after: ["fc"], bottleneck: 2, activation: LeakyReLU(slope: 0.2))
    try model.addAdapters(after: ["backbone.0"], bottleneck: 1, activation: GELU(approximate: true))
    try model.unfreeze(matching: "backbone")
    try model.setLearningRateMultiplier(0.25, matching: "backbone.0.weight")
    try model.setWeightDecayMultiplier(0, matching: "fc.adapter.**")
    model.bn.freeze()
    model.bn.statistics = .batch
    model.backbone.pin(.inference)
    model.conv.eval()
    return model
}

@Suite("Training state")
struct TrainingStateTests {
    // MARK: Exact integers, step counts, generator state

    @Test("integer tensors round-trip exactly beyond 2^24; integer dtypes read exactly, floats only when whole")
    func exactIntegers() throws {
        let large: [Int64] = [(1 << 24) + 1, -(1 << 53) - 1, .max, .min]
        let data = try SafeTensors.encode(["w": Tensor([1.5])], integers: ["big": .init(shape: [2, 2], values: large), "s": .init(7)])
        let file = try SafeTensors(data: data)
        #expect(file.entries["big"]?.dtype == .i64 && file.entries["big"]?.shape == [2, 2] && file.entries["s"]?.shape == [])
        #expect(try file.integers("big").values == large && file.integers("s").values == [7])
        #expect(try file.tensor("w").scalars == [1.5])
        #expect(throws: CheckpointError.self) { try SafeTensors.encode(["x": Tensor([1])], integers: ["x": .init(1)]) }

        let u64: [UInt64] = [3, 1 << 63]
        let others = rawSafeTensors(#"{"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"#
                                    + #""b":{"dtype":"U8","shape":[1],"data_offsets":[8,9]},"#
                                    + #""c":{"dtype":"U64","shape":[2],"data_offsets":[9,25]},"#
                                    + #""d":{"dtype":"F64","shape":[1],"data_offsets":[25,33]},"#
                                    + #""e":{"dtype":"F32","shape":[2],"data_offsets":[33,41]},"#
                                    + #""f":{"dtype":"F32","shape":[1],"data_offsets":[41,45]},"#
                                    + #""g":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[45,46]}}"#,
                                    littleEndianBytes([Int32(-5), Int32.max]) + [200] + littleEndianBytes(u64)
                                    + littleEndianBytes([Double(1 << 40 + 1).bitPattern])
                                    + littleEndianBytes([Float(3).bitPattern, Float(-16_777_216).bitPattern])
                                    + littleEndianBytes([Float(2.5).bitPattern]) + [0])
        let mixed = try SafeTensors(data: others)
        #expect(try mixed.integers("a").values == [-5, Int64(Int32.max)])
        #expect(try mixed.integers("b").values == [200])
        #expect(try mixed.integers("d").values == [1 << 40 + 1])
        #expect(try mixed.integers("e").values == [3, -16_777_216])
        #expect(throws: CheckpointError.malformed(reason: "c (U64) does not hold integers that fit in Int64")) { try mixed.integers("c") }
        #expect(throws: CheckpointError.malformed(reason: "f (F32) does not hold integers that fit in Int64")) { try mixed.integers("f") }
        #expect(throws: CheckpointError.unsupportedDType(key: "g", dtype: "F8_E4M3")) { try mixed.integers("g") }
        #expect(throws: CheckpointError.missingTensor(key: "h")) { try mixed.integers("h") }
    }

    @Test("optimizer step counts are stored as exact Int64 beyond 2^24; files with whole-number float steps still load")
    func exactOptimizerSteps() throws {
        let model = RandomGenerator.withSeed(3) { Linear(3, 2) }
        let adam = Adam(model, lr: 0.01)
        adam.zeroGrad()
        model(randomTensor([2, 3])).sum().backward()
        adam.step()
        // Counts a Float32 cannot hold: 2^24 + 1 rounds to 2^24.
        let states = Dictionary(uniqueKeysWithValues: adam.parameterNamesWithState.enumerated().map { index, name in
            var state = adam.state(for: name)!
            state.step = (1 << 24) + 1 + index
            return (name, state)
        })
        adam.core.restore(stepCount: (1 << 40) + 3, states: states)
        let file = try SafeTensors(data: try adam.stateData())
        #expect(file.entries["weight.step"]?.dtype == .i64)
        for name in adam.parameterNamesWithState {
            #expect(try file.integers("\(name).step").values == [Int64(states[name]!.step)] && states[name]!.step > 1 << 24)
        }

        let resumed = Adam(model, lr: 0.01)
        try resumed.loadState(from: file)
        #expect(resumed.stepCount == (1 << 40) + 3)
        for name in adam.parameterNamesWithState { #expect(resumed.state(for: name)?.step == states[name]!.step) }

        // Files written before (the step as a float converted to I64, or stored as F32) load;
        // a fractional or non-positive step does not.
        let m = Tensor.zeros([2, 3]), metadata = ["optimizer": "Adam", "step_count": "4", "learning_rate": "0.01"]
        for dtype in [DType.i64, .f32] {
            let old = try SafeTensors.encode(["weight.exp_avg": m, "weight.exp_avg_sq": m, "weight.step": Tensor(3)],
                                             dtypes: ["weight.step": dtype], metadata: metadata)
            let fresh = Adam(model, lr: 0.01)
            try fresh.loadState(from: SafeTensors(data: old), strict: false)
            #expect(fresh.state(for: "weight")?.step == 3 && fresh.stepCount == 4)
        }
        for step: Float in [2.5, 0] {
            let bad = try SafeTensors.encode(["weight.exp_avg": m, "weight.exp_avg_sq": m, "weight.step": Tensor(step)],
                                             metadata: metadata)
            let fresh = Adam(model, lr: 0.01)
            #expect(throws: CheckpointError.self) { try fresh.loadState(from: SafeTensors(data: bad), strict: false) }
            #expect(fresh.parameterNamesWithState.isEmpty && fresh.stepCount == 0)
        }
    }

    @Test("a generator rebuilt from its state continues the same stream; the default generator can be read and replaced")
    func generatorState() {
        var generator = RandomGenerator(seed: 8)
        for _ in 0..<5 { _ = generator.next() }
        var copy = RandomGenerator(state: generator.state)!
        #expect((0..<16).map { _ in generator.next() } == (0..<16).map { _ in copy.next() })
        #expect(RandomGenerator(state: [1, 2, 3]) == nil && RandomGenerator(state: [0, 0, 0, 0]) == nil)

        RandomGenerator.withSeed(4) {
            let saved = RandomGenerator.current
            let first = Tensor.zeros([64]).dropout(p: 0.5)
            RandomGenerator.current = saved
            #expect(bits(Tensor.zeros([64]).dropout(p: 0.5)) == bits(first))
            #expect(RandomGenerator.current.state != saved.state)
        }
    }

    // MARK: Resuming in the middle of an epoch

    @Test("gradual unfreezing with Adam, dropout and BatchNorm resumed mid-epoch continues bit for bit and keeps the base frozen")
    func resumeGradualUnfreezing() throws {
        let unfreezing = GradualUnfreezing(groups: unfreezingModel().defaultLayerGroups())
        #expect(unfreezing.groups.map(\.description) == ["glob \"0\"", "glob \"1\"", "glob \"4\"", "glob \"7\""])
        func epochStart(_ model: Module, _ epoch: Int) throws {
            try unfreezing.apply(to: model, epoch: epoch)
            if epoch == 1 { model.module(named: "3")!.eval() }     // a hook's mode choice for the epoch
        }
        let stop = TrainingState.Progress(epoch: 1, batch: 3)
        let pretrained = RandomGenerator.withSeed(5) { unfreezingModel() }.stateDict()

        // Uninterrupted, with a checkpoint in the middle of epoch 1.
        let model = RandomGenerator.withSeed(5) { unfreezingModel() }, adam = Adam(model, lr: 0.02)
        try model.loadStateDict(pretrained)
        try model.setDiscriminativeLearningRates(factor: 2)
        let (saved, finalGenerator) = try RandomGenerator.withSeed(9) {
            try train(model, adam, until: stop) { try epochStart(model, $0) }
            let saved = try TrainingState(model: model, optimizer: adam, progress: stop).data()
            try train(model, adam, from: stop) { try epochStart(model, $0) }
            return (saved, RandomGenerator.current.state)
        }
        #expect(bits(model.parameter(named: "0.weight")!.value) == bits(pretrained["0.weight"]!))

        // Resumed: a freshly built model (other initial weights, everything trainable), a new
        // optimizer, another generator.
        func resume(perturbingGenerator: Bool) throws -> (Sequential, Adam, [UInt64]) {
            let fresh = RandomGenerator.withSeed(77) { unfreezingModel() }, freshAdam = Adam(fresh, lr: 0.02)
            return try RandomGenerator.withSeed(1234) {
                let state = try TrainingState(data: saved)
                try state.restore(into: fresh, optimizer: freshAdam)
                #expect(state.progress == stop)
                #expect(fresh.namedParameters().filter(\.parameter.isFrozen).map(\.name) == ["0.weight", "0.bias", "1.weight", "1.bias"])
                #expect((fresh.module(named: "1") as! BatchNorm).effectiveStatistics == .running)
                #expect(!fresh.module(named: "3")!.isTraining && fresh.module(named: "6")!.isTraining)
                #expect(freshAdam.stepCount == 9)
                if perturbingGenerator { _ = RandomGenerator.current.next() }
                try train(fresh, freshAdam, from: state.progress) { try epochStart(fresh, $0) }
                return (fresh, freshAdam, RandomGenerator.current.state)
            }
        }
        let (resumed, resumedAdam, resumedGenerator) = try resume(perturbingGenerator: false)
        expectIdentical(resumed, resumedAdam, model, adam)
        #expect(resumedGenerator == finalGenerator)
        #expect(bits(resumed.parameter(named: "0.weight")!.value) == bits(pretrained["0.weight"]!))

        // The dropout masks matter: the same resume with the generator one draw off diverges.
        let (diverged, _, _) = try resume(perturbingGenerator: true)
        #expect(bits(diverged.parameter(named: "7.weight")!.value) != bits(model.parameter(named: "7.weight")!.value))
    }

    @Test("a LoRA run with an adapter, Adam and dropout resumed mid-epoch into a fresh base re-creates LoRA, never unfreezes the base, continues bit for bit")
    func resumeLoRA() throws {
        let stop = TrainingState.Progress(epoch: 1, batch: 2)
        let pretrained = RandomGenerator.withSeed(6) { loraBase() }.stateDict()

        let model = RandomGenerator.withSeed(6) { loraBase() }
        try model.loadStateDict(pretrained)
        try RandomGenerator.withSeed(7) { try addLoRA(to: model) }
        let adam = Adam(model, lr: 0.03, weightDecay: 0.01)
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("state.safetensors")
        let finalGenerator = try RandomGenerator.withSeed(10) {
            train(model, adam, until: stop) { _ in }
            try TrainingState(model: model, optimizer: adam, progress: stop, metadata: ["run": "lora"]).write(to: url)
            train(model, adam, from: stop) { _ in }
            return RandomGenerator.current.state
        }

        let fresh = RandomGenerator.withSeed(78) { loraBase() }, freshAdam = Adam(fresh, lr: 0.03, weightDecay: 0.01)
        #expect(fresh.frozenParameterCount == 0)
        let resumedGenerator = try RandomGenerator.withSeed(4321) {
            let state = try TrainingState(contentsOf: url)
            #expect(state.metadata == ["run": "lora"] && state.progress == stop)
            try state.restore(into: fresh, optimizer: freshAdam)
            #expect(fresh.loraLayers.map(\.name) == ["0", "3"])
            #expect(fresh.loraLayers.allSatisfy { $0.layer is LoRALinear && $0.layer.usesRSLoRA && $0.layer.loraDropout?.p == 0.25 })
            #expect(fresh.module(named: "3")?.outputAdapter is BottleneckAdapter)
            #expect(fresh.trainableParameterCount == model.trainableParameterCount)
            for name in ["0.weight", "0.bias", "3.weight", "3.bias"] { #expect(fresh.parameter(named: name)!.isFrozen, "\(name)") }
            #expect(fresh.parameter(named: "5.weight")!.lrMultiplier == 2)
            train(fresh, freshAdam, from: state.progress) { _ in }
            return RandomGenerator.current.state
        }
        expectIdentical(fresh, freshAdam, model, adam)
        #expect(resumedGenerator == finalGenerator)
        for name in ["0.weight", "0.bias", "3.weight", "3.bias"] {
            #expect(bits(fresh.parameter(named: name)!.value) == bits(pretrained[name]!), "\(name) trained")
        }
    }

    // MARK: What is saved

    @Test("every LoRA kind, merged layers, adapters, flags, multipliers, BatchNorm statistics, modes and pins are re-created")
    func structureRoundTrip() throws {
        let model = try configuredMixed()
        let sgd = SGD(model, lr: 0.1, momentum: 0.9)
        sgd.zeroGrad()
        model(randomTensor([2, 1, 4, 4])).sum().backward()
        sgd.step()
        let state = try TrainingState(model: model, optimizer: sgd)
        let data = try state.data()

        let fresh = RandomGenerator.withSeed(99) { Mixed() }, freshSGD = SGD(fresh, lr: 0.5, momentum: 0.9)
        // Restores write the generator in scope: a task-scoped one, so parallel suites keep the global one.
        try RandomGenerator.withSeed(0) { try TrainingState(data: data).restore(into: fresh, optimizer: freshSGD) }
        expectIdentical(fresh, freshSGD, model, sgd)
        let again = try TrainingState(model: fresh, optimizer: freshSGD)
        #expect(again.parameters == state.parameters && again.modules == state.modules)
        #expect(again.loraLayers == state.loraLayers && again.adapters == state.adapters)

        #expect(fresh.embed is LoRAEmbedding && fresh.conv is LoRAConv2d && fresh.fc is LoRALinear)
        #expect((fresh.fc as! LoRALinear).isMerged && !(fresh.conv as! LoRAConv2d).isMerged)
        #expect((fresh.conv as! LoRAConv2d).loraDropout?.p == 0.1 && (fresh.conv as! LoRAConv2d).usesRSLoRA)
        #expect(((fresh.fc.outputAdapter as? BottleneckAdapter)?.activation as? LeakyReLU)?.slope == 0.2)
        #expect(((fresh.backbone[0].outputAdapter as? BottleneckAdapter)?.activation as? GELU)?.approximate == true)
        #expect(fresh.bn.statistics == .batch && fresh.bn.isFrozenAsModule && fresh.bn.weight!.isFrozen)
        #expect(fresh.backbone.pinnedMode == .inference && !fresh.backbone[1].isTraining)
        #expect(!fresh.conv.isTraining && fresh.isTraining && fresh.pinnedMode == nil)
        #expect(fresh.parameter(named: "backbone.0.weight")!.lrMultiplier == 0.25 && !fresh.parameter(named: "backbone.0.weight")!.isFrozen)
        #expect(fresh.parameter(named: "fc.adapter.up.weight")!.weightDecayMultiplier == 0)
        #expect(freshSGD.learningRate == 0.1)
        let x = randomTensor([2, 1, 4, 4], seed: 8)
        #expect(bits(fresh.inferring { fresh(x) }) == bits(model.inferring { model(x) }))
        (fresh.fc as! LoRALinear).unmerge()
        (model.fc as! LoRALinear).unmerge()
        #expect(bits(fresh.fc.weight.value) == bits(model.fc.weight.value))

        // The documented layout: prefixed tensors, I64 steps, the JSON document's fields.
        let file = try SafeTensors(data: data)
        #expect(file.metadata["format"] == "finetune.training_state")
        #expect(file.entries["model.bn.num_batches_tracked"]?.dtype == .i64)
        #expect(file.entries["optimizer.backbone.0.weight.step"]?.dtype == .i64)
        #expect(file.entries["optimizer.backbone.0.weight.momentum_buffer"]?.dtype == .f32)
        #expect(file.entries["model.fc.lora_A.weight"]?.dtype == .f32 && file.entries["model.embed.lora_embedding_B"] != nil)
        let json = try #require(JSONSerialization.jsonObject(with: Data(file.metadata["training_state"]!.utf8)) as? [String: Any])
        #expect(json["format_version"] as? Int == 1)
        let lora = try #require(json["lora"] as? [[String: Any]])
        #expect(lora.map { $0["kind"] as? String } == ["embedding", "conv2d", "linear"])
        #expect(lora.map { $0["merged"] as? Bool } == [false, false, true])
        let modules = try #require(json["modules"] as? [String: [String: Any]])
        #expect(modules["backbone"]?["pinned"] as? String == "inference")
        #expect((modules["bn"]?["batch_norm"] as? [String: Any])?["statistics"] as? String == "batch")
        let parameters = try #require(json["parameters"] as? [String: [String: Any]])
        #expect(parameters["backbone.0.weight"]?["lr_multiplier"] as? Double == 0.25)
        #expect((json["optimizer"] as? [String: Any])?["step_count"] as? Int == 1)
        #expect((json["random_generator"] as? [String])?.count == 4)
    }

    @Test("a LoRA layer inside an adapter is re-created after the adapter that holds it")
    func loraInsideAdapter() throws {
        let model = RandomGenerator.withSeed(6) { loraBase() }
        _ = try RandomGenerator.withSeed(7) {
            try model.addAdapters(after: ["3"], bottleneck: 2, activation: SiLU())
            return try model.applyLoRA(LoRAConfig(rank: 1, alpha: 2, targetModules: ["down"]))
        }
        let state = try TrainingState(model: model)
        #expect(state.loraLayers.map(\.path) == ["3.adapter.down"] && state.adapters.map(\.path) == ["3"])

        let fresh = RandomGenerator.withSeed(9) { loraBase() }
        try RandomGenerator.withSeed(0) { try state.restore(into: fresh) }
        #expect(fresh.loraLayers.map(\.name) == ["3.adapter.down"])
        #expect((fresh.module(named: "3")?.outputAdapter as? BottleneckAdapter)?.activation is SiLU)
        #expect(fresh.stateDict().mapValues(bits) == model.stateDict().mapValues(bits))
    }

    @Test("restoring into a model that already has the same LoRA layers reuses them; other settings are refused")
    func existingStructure() throws {
        let model = RandomGenerator.withSeed(6) { loraBase() }
        try RandomGenerator.withSeed(7) { try addLoRA(to: model) }
        let state = try TrainingState(model: model)

        let prepared = RandomGenerator.withSeed(7) { loraBase() }
        _ = try RandomGenerator.withSeed(8) {
            try prepared.applyLoRA(LoRAConfig(rank: 2, alpha: 4, dropout: 0.25, targetModules: ["0", "3"], useRSLoRA: true))
        }
        let layer = prepared.module(named: "0")
        try RandomGenerator.withSeed(0) { try state.restore(into: prepared) }
        #expect(prepared.module(named: "0") === layer && prepared.module(named: "3")?.outputAdapter is BottleneckAdapter)
        #expect(bits(prepared.parameter(named: "0.lora_B.weight")!.value) == bits(model.parameter(named: "0.lora_B.weight")!.value))

        let other = RandomGenerator.withSeed(7) { loraBase() }
        _ = try RandomGenerator.withSeed(8) { try other.applyLoRA(LoRAConfig(rank: 3, alpha: 4, targetModules: ["0"])) }
        #expect(throws: CheckpointError.incompatibleTrainingState(reason: "0 already holds a LoRA layer with other settings")) {
            try RandomGenerator.withSeed(0) { try state.restore(into: other) }
        }
        let extra = RandomGenerator.withSeed(7) { loraBase() }
        _ = try RandomGenerator.withSeed(8) {
            try extra.applyLoRA(LoRAConfig(rank: 2, alpha: 4, dropout: 0.25, targetModules: ["0", "3", "5"], useRSLoRA: true))
        }
        #expect(throws: CheckpointError.incompatibleTrainingState(reason: "the model has LoRA layers at [\"5\"] that the state does not have")) {
            try RandomGenerator.withSeed(0) { try state.restore(into: extra) }
        }
        #expect(extra.loraLayers.map(\.name) == ["0", "3", "5"] && extra.module(named: "3")?.outputAdapter == nil)
    }

    // MARK: Failures change nothing

    @Test("a restore that fails removes what it re-created and changes no weight, flag, mode, optimizer or generator state")
    func failedRestoreChangesNothing() throws {
        let model = RandomGenerator.withSeed(6) { loraBase() }
        try RandomGenerator.withSeed(7) { try addLoRA(to: model) }
        let adam = Adam(model, lr: 0.01)
        RandomGenerator.withSeed(3) { train(model, adam, epochs: 1, until: .init(epoch: 0, batch: 2)) { _ in } }
        let state = try TrainingState(model: model, optimizer: adam)

        struct Case { let name: String; let model: Sequential; let optimizer: (any Optimizer)?; let error: CheckpointError }
        func headOf(_ width: Int) -> Sequential { Sequential(Linear(6, 8), ReLU(), Dropout(p: 0.2), Linear(8, 8), ReLU(), Linear(8, width)) }
        let wider = headOf(4), reluAt3 = Sequential(Linear(6, 8), ReLU(), Dropout(p: 0.2), ReLU(), ReLU(), Linear(8, 3))
        let withoutState = loraBase()
        let cases = [
            // The structure is re-created, then the head's optimizer state has the wrong shape.
            Case(name: "head width", model: wider, optimizer: Adam(wider), error: .shapeMismatch([
                .init(key: "5.bias.exp_avg", expected: [4], found: [3]), .init(key: "5.bias.exp_avg_sq", expected: [4], found: [3]),
                .init(key: "5.weight.exp_avg", expected: [4, 8], found: [3, 8]),
                .init(key: "5.weight.exp_avg_sq", expected: [4, 8], found: [3, 8]),
            ])),
            // ... or, without an optimizer, its weights.
            Case(name: "head width, no optimizer", model: headOf(4), optimizer: nil,
                 error: .shapeMismatch([.init(key: "5.weight", expected: [4, 8], found: [3, 8]), .init(key: "5.bias", expected: [4], found: [3])])),
            // LoRA on 0 is made, then 3 cannot hold one.
            Case(name: "ReLU at 3", model: reluAt3, optimizer: Adam(reluAt3),
                 error: .incompatibleTrainingState(reason: "cannot put a linear LoRA layer at 3, a ReLU")),
            Case(name: "another optimizer", model: loraBase(), optimizer: SGD(withoutState),
                 error: .incompatibleTrainingState(reason: "the state holds Adam state, not SGD")),
        ]
        for item in cases {
            let target = item.model
            RandomGenerator.withSeed(11) { target.reinitialize() }
            target.module(named: "2")!.pin(.inference)
            try target.setLearningRateMultiplier(3, matching: "0.weight")
            let before = target.stateDict().mapValues(bits), flags = target.namedParameters().map { ($0.name, ParameterSettings($0.parameter)) }
            let modes = target.namedModules().map { ($0.name, $0.module.isTraining, $0.module.pinnedMode) }
            RandomGenerator.withSeed(12) {
                let generator = RandomGenerator.current.state
                do throws(CheckpointError) {
                    try state.restore(into: target, optimizer: item.optimizer)
                    Issue.record("\(item.name): restored")
                } catch {
                    #expect(error == item.error, "\(item.name)")
                }
                #expect(RandomGenerator.current.state == generator, "\(item.name)")
            }
            #expect(target.loraLayers.isEmpty && target.namedModules().allSatisfy { $0.module.outputAdapter == nil }, "\(item.name)")
            #expect(target.stateDict().mapValues(bits) == before, "\(item.name)")
            #expect(target.namedParameters().map { ($0.name, ParameterSettings($0.parameter)) }.elementsEqual(flags) { $0 == $1 }, "\(item.name)")
            #expect(target.namedModules().map { ($0.name, $0.module.isTraining, $0.module.pinnedMode) }.elementsEqual(modes) { $0 == $1 },
                    "\(item.name)")
            if let optimizer = item.optimizer { #expect(optimizer.stepCount == 0 && optimizer.parameterNamesWithState.isEmpty, "\(item.name)") }
        }
        // A state without optimizer state cannot fill an optimizer.
        #expect(throws: CheckpointError.incompatibleTrainingState(reason: "the state was taken without an optimizer")) {
            try TrainingState(model: model).restore(into: loraBase(), optimizer: Adam(withoutState))
        }
    }

    @Test("truncated or hostile files throw typed errors, never crash")
    func hostileFiles() throws {
        let model = RandomGenerator.withSeed(6) { loraBase() }
        try RandomGenerator.withSeed(7) { try addLoRA(to: model) }
        let adam = Adam(model, lr: 0.01)
        RandomGenerator.withSeed(3) { train(model, adam, epochs: 1, until: .init(epoch: 0, batch: 1)) { _ in } }
        let data = try TrainingState(model: model, optimizer: adam).data()
        #expect(try TrainingState(data: data).loraLayers.count == 2)
        var lengths = Array(stride(from: 0, to: data.count, by: 11)) + Array(max(0, data.count - 40)..<data.count)
        lengths.append(contentsOf: [1, 7, 8, 9])
        for length in lengths {
            #expect(throws: CheckpointError.self, "first \(length) of \(data.count) bytes") { try TrainingState(data: data.prefix(length)) }
        }

        // The same tensors with an edited document (or edited tensors).
        let file = try SafeTensors(data: data)
        let tensors = try file.tensors(), dtypes = file.entries.mapValues(\.dtype)
        let document = try JSONSerialization.jsonObject(with: Data(file.metadata["training_state"]!.utf8)) as! [String: Any]
        func edited(_ edit: (inout [String: Any]) -> Void, tensors extra: [String: Tensor] = [:],
                    metadata: [String: String]? = nil) throws -> Data {
            var json = document
            edit(&json)
            let text = String(decoding: try JSONSerialization.data(withJSONObject: json), as: UTF8.self)
            return try SafeTensors.encode(tensors.merging(extra) { $1 }, dtypes: dtypes.filter { extra[$0.key] == nil },
                                          metadata: metadata ?? ["format": "finetune.training_state", "training_state": text])
        }
        func firstLoRA(_ json: inout [String: Any], _ key: String, _ value: Any) {
            var lora = json["lora"] as! [[String: Any]]
            lora[0][key] = value
            json["lora"] = lora
        }
        let hostile: [(String, Data)] = [
            ("no format", try edited({ _ in }, metadata: ["training_state": "{}"])),
            ("not JSON", try edited({ _ in }, metadata: ["format": "finetune.training_state", "training_state": "{\"format_version\": 1,"])),
            ("deeply nested", try edited({ _ in }, metadata: ["format": "finetune.training_state",
                                                              "training_state": String(repeating: "[", count: 100_000)])),
            ("newer version", try edited { $0["format_version"] = 2 }),
            ("no parameters", try edited { $0["parameters"] = nil }),
            ("parameters of the wrong type", try edited { $0["parameters"] = [1, 2] }),
            ("rank 0", try edited { firstLoRA(&$0, "rank", 0) }),
            ("dropout 1", try edited { firstLoRA(&$0, "dropout", 1) }),
            ("fractional rank", try edited { firstLoRA(&$0, "rank", 1.5) }),
            ("zero generator", try edited { $0["random_generator"] = ["0", "0", "0", "0"] }),
            ("three generator words", try edited { $0["random_generator"] = ["1", "2", "3"] }),
            ("generator not hexadecimal", try edited { $0["random_generator"] = ["1", "2", "3", "zz"] }),
            ("unknown pin", try edited { json in
                var modules = json["modules"] as! [String: [String: Any]]
                modules["2"]!["pinned"] = "sleeping"
                json["modules"] = modules
            }),
            ("negative progress", try edited { $0["progress"] = ["epoch": -1, "batch": 0] }),
            ("negative step count", try edited { $0["optimizer"] = ["type": "Adam", "step_count": -1, "learning_rate": 0.01] }),
            ("NaN learning rate", try edited { $0["optimizer"] = ["type": "Adam", "step_count": 1, "learning_rate": "nan"] }),
            ("optimizer tensors without optimizer", try edited { $0["optimizer"] = nil }),
            ("settings for a parameter without tensor", try edited { json in
                var parameters = json["parameters"] as! [String: Any]
                parameters["ghost.weight"] = ["frozen": true, "lr_multiplier": 1, "weight_decay_multiplier": 1]
                json["parameters"] = parameters
            }),
            ("a tensor outside model. and optimizer.", try edited({ _ in }, tensors: ["junk": Tensor([1])])),
            ("a fractional step", try edited({ _ in }, tensors: ["optimizer.0.lora_A.weight.step": Tensor(2.5)])),
        ]
        for (name, bytes) in hostile {
            do {
                _ = try TrainingState(data: bytes)
                Issue.record("\(name): read")
            } catch {
                guard case .malformed = error else { Issue.record("\(name): \(error)"); continue }
            }
        }
    }
}

private typealias ParameterSettings = TrainingState.ParameterSettings
