import Foundation
import Testing
@testable import FineTune

// Rotary positions and the LLaMA-family decoders (LLaMA, Mistral, Qwen2) against fixtures
// transformers produced (scripts/make-model-fixtures.py, decoder_main).

@Suite("Rotary position embedding")
struct RotaryEmbeddingTests {
    /// Hugging Face's formula from primitive ops: `x * cos + rotate_half(x) * sin` on the first
    /// `2R` elements of each head, the rest passed through.
    static func composed(_ x: Tensor, _ cos: Tensor, _ sin: Tensor) -> Tensor {
        let r = cos.shape[cos.rank - 1], d = x.shape[x.rank - 1], axis = x.rank - 1
        // Tables broadcast over the heads axis of [B, T, H, D] (and over B for [T, R]).
        func table(_ t: Tensor) -> Tensor {
            let full = Tensor.concat([t, t], axis: t.rank - 1)
            return x.rank == 4 ? full.unsqueezed(axis: full.rank - 1) : full
        }
        let x1 = x.slice(axis: axis, 0..<r), x2 = x.slice(axis: axis, r..<(2 * r))
        let rotated = Tensor.concat([x1, x2], axis: axis) * table(cos) + Tensor.concat([-x2, x1], axis: axis) * table(sin)
        return 2 * r == d ? rotated : Tensor.concat([rotated, x.slice(axis: axis, (2 * r)..<d)], axis: axis)
    }

    @Test("the fused op equals the composed formula: values and gradients of x, cos and sin",
          arguments: [([2, 3, 4, 8], [3, 4]), ([2, 3, 2, 10], [2, 3, 3]), ([2, 5, 6], [5, 3]), ([1, 1, 3, 2], [1, 1])])
    func matchesComposition(xShape: [Int], tableShape: [Int]) {
        let x = randomTensor(xShape, seed: 1), c = randomTensor(tableShape, seed: 2), s = randomTensor(tableShape, seed: 3)
        expectSameValuesAndGradients([x, c, s], "rotary \(xShape) \(tableShape)") {
            Tensor.rotaryEmbedding($0[0], cos: $0[1], sin: $0[2])
        } _: {
            Self.composed($0[0], $0[1], $0[2])
        }
    }

    @Test("gradient check through x and both tables")
    func gradientCheck() {
        gradCheck([randomTensor([2, 3, 2, 6], seed: 4), randomTensor([3, 2], seed: 5), randomTensor([3, 2], seed: 6)],
                  linearInEachInput: true, "rotary, partial") {
            Tensor.rotaryEmbedding($0[0], cos: $0[1], sin: $0[2])
        }
    }

    @Test("tables turn a pair by the position's angle; the turn keeps norms and relative angles")
    func tablesRotate() {
        let rope = RotaryEmbedding(dimension: 4, base: 100)
        #expect(rope.inverseFrequencies == [1, 0.1])
        let (cos, sin) = rope.tables(length: 3)
        #expect(cos.shape == [3, 2])
        expectClose(cos.scalars, [1, 1, Foundation.cos(1), Foundation.cos(0.1), Foundation.cos(2), Foundation.cos(0.2)], atol: 1e-6)
        expectClose(sin.scalars, [0, 0, Foundation.sin(1), Foundation.sin(0.1), Foundation.sin(2), Foundation.sin(0.2)], atol: 1e-6)
        // Pair (x[0], x[2]) turns by the position (frequency 1): (1, 0) at position 2 -> (cos 2, sin 2).
        var one = [Float](repeating: 0, count: 12)
        one[8] = 1                                  // x[0, 2, 0]
        let x = Tensor(shape: [1, 3, 4], scalars: one)
        let y = Tensor.rotaryEmbedding(x, cos: cos, sin: sin)
        expectClose(Array(y.scalars[8..<12]), [Foundation.cos(2), 0, Foundation.sin(2), 0], atol: 1e-6)
        // Per-sample position ids give the same tables as the shared ones.
        let perSample = rope.tables(positions: Tensor(shape: [2, 3], scalars: [0, 1, 2, 0, 1, 2]))
        #expect(perSample.cos.shape == [2, 3, 2] && Array(perSample.cos.scalars[6..<12]) == cos.scalars)
    }

    @Test("scaled frequencies: linear divides all; llama3 keeps short wavelengths, stretches long ones, blends between")
    func scaledFrequencies() {
        let plain = RotaryEmbedding(dimension: 8, base: 500).inverseFrequencies
        let linear = RotaryEmbedding(dimension: 8, base: 500, scaling: .linear(factor: 4)).inverseFrequencies
        expectClose(linear, plain.map { $0 / 4 }, atol: 0)
        // Wavelengths 2 pi / f: 6.3 (between 16 / 4 and 16 / 1: blended), 29.7, 140.5, 664 (beyond 16: / 4).
        let llama3 = RotaryEmbedding(dimension: 8, base: 500, scaling: .llama3(factor: 4, lowFrequencyFactor: 1,
                                                                              highFrequencyFactor: 4, originalContext: 16))
        let smooth = (16 / (2 * Float.pi) - 1) / 3
        expectClose(llama3.inverseFrequencies, [(1 - smooth) / 4 + smooth, plain[1] / 4, plain[2] / 4, plain[3] / 4], atol: 1e-7)
        // A shorter wavelength than context / highFrequencyFactor is kept.
        let kept = RotaryEmbedding(dimension: 8, base: 500, scaling: .llama3(factor: 4, lowFrequencyFactor: 1,
                                                                            highFrequencyFactor: 4, originalContext: 32))
        #expect(kept.inverseFrequencies[0] == 1)
    }
}

@Suite("LLaMA-family decoders")
struct DecoderFamilyTests {
    func folder(_ name: String) -> URL { fixtureURL("models/\(name)") }
    func config(_ name: String) throws -> PretrainedConfig {
        try PretrainedConfig(contentsOf: folder(name).appendingPathComponent("config.json"))
    }
    func reference(_ name: String) throws -> SafeTensors {
        try SafeTensors(contentsOf: folder(name).appendingPathComponent("reference.safetensors"))
    }

    /// Eval-mode logits, the training-mode loss transformers computed and every gradient.
    func checkParity(_ model: Module, _ name: String, logits: () -> Tensor, loss: () -> Tensor) throws {
        let ref = try reference(name)
        expectParity(model.inferring { logits() }, try ref.tensor("logits"), "\(name) logits")
        model.train()
        let value = loss()
        expectParity(value.reshaped([1]), try ref.tensor("loss"), "\(name) loss")
        value.backward()
        var checked = 0
        for (param, p) in model.namedParameters() {
            let key = "grad." + param
            #expect(ref.keys.contains(key), "\(name): no reference gradient for \(param)")
            guard ref.keys.contains(key) else { continue }
            expectParity(p.grad ?? Tensor.zeros(p.shape), try ref.tensor(key), "\(name) gradient of \(param)")
            checked += 1
        }
        #expect(checked == ref.keys.filter { $0.hasPrefix("grad.") }.count, "\(name): every reference gradient has a parameter")
    }

    func causalParity(_ name: String) throws -> LlamaForCausalLM {
        let model = try LlamaForCausalLM(config: config(name))
        let report = try model.loadPretrained(from: folder(name))
        #expect(report.isExact, "\(name): \(report)")
        let ref = try reference(name)
        let ids = try ref.tensor("input.input_ids"), mask = try ref.tensor("input.attention_mask"), labels = try ref.tensor("labels")
        try checkParity(model, name, logits: { model(ids, attentionMask: mask) },
                        loss: { model.loss(ids, labels: labels, attentionMask: mask) })
        return model
    }

    @Test("LlamaForCausalLM (grouped-query attention, separate lm_head) matches transformers")
    func llamaCausal() throws {
        let model = try causalParity("llama-causal")
        #expect(model.model.configuration.keyValueHeadCount == 2 && model.model.layers[0].selfAttn.kProj.outFeatures == 16)
        #expect(model.lmHead.weight !== model.model.embedTokens.weight)
        // The padding row of the embeddings gets no gradient.
        #expect(model.model.embedTokens.weight.grad!.scalars.prefix(32).allSatisfy { $0 == 0 })
    }

    @Test("tied embeddings, head_dim beyond hidden / heads, llama3 RoPE scaling: parity, and the tie kept through save and load")
    func llamaTied() throws {
        let model = try causalParity("llama-tied-llama3")
        #expect(model.lmHead.weight === model.model.embedTokens.weight)
        #expect(model.model.configuration.headDim == 16)
        if case .llama3 = model.model.configuration.rotary.scaling {} else { Issue.record("llama3 scaling not read") }
        let report = try model.loadPretrained(from: folder("llama-tied-llama3"))
        #expect(report.tiedKeys == ["lm_head.weight"] && report.missingKeys.isEmpty)
        // Saved once, as transformers writes it; read back into a fresh model, tie and values intact.
        let out = temporaryDirectory()
        try model.savePretrained(to: out, config: try config("llama-tied-llama3"))
        let saved = try PretrainedFolder(contentsOf: out)
        #expect(!saved.keys.contains("lm_head.weight") && saved.keys.contains("model.embed_tokens.weight"))
        let again = try LlamaForCausalLM(config: config("llama-tied-llama3"))
        #expect(try again.loadPretrained(from: out).isExact)
        #expect(again.lmHead.weight === again.model.embedTokens.weight)
        #expect(again.lmHead.weight.value.scalars == model.lmHead.weight.value.scalars)
        // One SGD step moves the shared weight once, by the sum of both uses' gradients.
        let ids = try reference("llama-tied-llama3").tensor("input.input_ids")
        let before = again.lmHead.weight.value.scalars
        let sgd = SGD(again, lr: 0.5)
        again.loss(ids, labels: ids).backward()
        let gradient = again.lmHead.weight.grad!.scalars
        sgd.step()
        #expect(again.model.embedTokens.weight.value.scalars == zip(before, gradient).map { $0 - 0.5 * $1 })
    }

    @Test("MistralForCausalLM: a sliding window shorter than the sequence matches transformers")
    func mistralWindow() throws {
        let model = try causalParity("mistral-window")
        #expect(model.model.configuration.family == .mistral && model.model.configuration.slidingWindow == 4)
    }

    @Test("Qwen2ForSequenceClassification: biased q/k/v, the last non-padding token pooled")
    func qwen2Sequence() throws {
        let name = "qwen2-sequence"
        let model = try LlamaForSequenceClassification(config: config(name))
        #expect(try model.loadPretrained(from: folder(name)).isExact)
        #expect(model.model.layers[0].selfAttn.qProj.bias != nil && model.model.layers[0].selfAttn.oProj.bias == nil)
        let ref = try reference(name)
        let ids = try ref.tensor("input.input_ids"), mask = try ref.tensor("input.attention_mask")
        let labels = try ref.tensor("labels").scalars.map { Int($0) }
        try checkParity(model, name, logits: { model(ids, attentionMask: mask) },
                        loss: { Tensor.crossEntropy(model(ids, attentionMask: mask), targets: labels) })
    }

    @Test("left padding with matching position ids gives the unpadded row's logits")
    func leftPadding() throws {
        let model = try LlamaForSequenceClassification(config: config("qwen2-sequence"))
        try model.loadPretrained(from: folder("qwen2-sequence"))
        model.eval()
        let tokens: [Float] = [5, 17, 33, 8, 61]
        let alone = model(Tensor(shape: [1, 5], scalars: tokens))
        let padded = Tensor(shape: [2, 7], scalars: [0, 0] + tokens + [9, 10, 11, 12, 13, 14, 15])
        let mask = Tensor(shape: [2, 7], scalars: [0, 0, 1, 1, 1, 1, 1] + [Float](repeating: 1, count: 7))
        let positions = Tensor(shape: [2, 7], scalars: [0, 0, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6])
        let both = model(padded, attentionMask: mask, positionIds: positions)
        expectClose(Array(both.scalars[0..<3]), alone.scalars, atol: 2e-6, rtol: 1e-5, "left-padded row")
        // Rotary positions are relative: shifting a row's positions by 2 changes nothing, and
        // position ids that are not a shift (spacing 2) change the logits.
        let shifted = model(padded, attentionMask: mask)
        expectClose(Array(shifted.scalars[0..<3]), alone.scalars, atol: 2e-6, rtol: 1e-5, "shifted positions")
        let spread = Tensor(shape: [2, 7], scalars: [0, 0, 0, 2, 4, 6, 8, 0, 1, 2, 3, 4, 5, 6])
        let stretched = model(padded, attentionMask: mask, positionIds: spread)
        #expect(zip(stretched.scalars[0..<3], alone.scalars).contains { abs($0 - $1) > 1e-4 })
        #expect(Array(stretched.scalars[3..<6]) == Array(both.scalars[3..<6]))
    }

    @Test("next-token loss: position t scores label t + 1, ignored labels leave the mean")
    func causalLoss() {
        let logits = randomTensor([2, 3, 5], seed: 8)
        let labels = Tensor(shape: [2, 3], scalars: [1, 4, 2, 0, -100, 3])
        let loss = Tensor.causalLanguageModelingLoss(logits, labels: labels)
        // Rows scored: (0,0)->4, (0,1)->2, (1,1)->3; (1,0)'s label is ignored, last positions predict nothing.
        let rows = Tensor.concat([logits.slice(axis: 0, 0..<1).slice(axis: 1, 0..<2).reshaped([2, 5]),
                                  logits.slice(axis: 0, 1..<2).slice(axis: 1, 1..<2).reshaped([1, 5])], axis: 0)
        expectClose(loss.scalars, Tensor.crossEntropy(rows, targets: [4, 2, 3]).scalars, atol: 1e-6)
    }

    @Test("unsupported architecture keys throw typed errors")
    func configErrors() throws {
        let base = try config("llama-causal")
        func expectError(_ key: String, _ value: JSONValue, _ error: ModelError) {
            var c = base
            c.fields[key] = value
            #expect(throws: error) { try LlamaForCausalLM(config: c) }
        }
        expectError("model_type", .string("gpt2"), .unsupportedConfig(key: "model_type", value: "gpt2", supported: "llama, mistral, qwen2"))
        expectError("hidden_act", .string("gelu"), .unsupportedConfig(key: "hidden_act", value: "gelu", supported: "silu, swish"))
        expectError("num_key_value_heads", .int(3),
                    .invalidConfig(key: "num_key_value_heads", reason: "3 does not divide num_attention_heads 4"))
        var yarn = base
        yarn.fields["rope_parameters"] = .object(["rope_type": .string("yarn"), "rope_theta": .double(10000), "factor": .double(4)])
        #expect(throws: ModelError.unsupportedConfig(key: "rope_parameters.rope_type", value: "yarn", supported: "default, linear, llama3")) {
            try LlamaForCausalLM(config: yarn)
        }
        var oldStyle = base
        oldStyle.fields["rope_parameters"] = nil
        oldStyle.fields["rope_theta"] = .double(1000)
        oldStyle.fields["rope_scaling"] = .object(["type": .string("linear"), "factor": .double(2)])
        #expect(try LlamaConfiguration(oldStyle).rotary == RotaryEmbedding(dimension: 8, base: 1000, scaling: .linear(factor: 2)))
        // Sizes no model can be built with: typed errors naming the key, never a stopped constructor.
        for (key, value) in [("num_hidden_layers", JSONValue.int(-1)), ("vocab_size", .int(0)), ("intermediate_size", .int(-3)),
                             ("num_labels", .int(0)), ("pad_token_id", .int(96)), ("attention_dropout", .double(1)),
                             ("hidden_size", .int(0)), ("num_attention_heads", .int(0)), ("head_dim", .int(7))] {
            var bad = base
            bad.fields[key] = value
            #expect(throws: ModelError.self, "\(key) = \(value)") { try LlamaForCausalLM(config: bad) }
            do { _ = try LlamaConfiguration(bad) } catch {
                if case .invalidConfig(let named, _) = error { #expect(named == key, "\(key): \(error)") }
            }
        }
        var badRope = base
        badRope.fields["rope_parameters"] = .object(["rope_type": .string("llama3"), "rope_theta": .double(500), "factor": .double(4),
                                                     "low_freq_factor": .double(4), "high_freq_factor": .double(1),
                                                     "original_max_position_embeddings": .int(16)])
        #expect(throws: ModelError.self) { try LlamaForCausalLM(config: badRope) }
        var qwen = try config("qwen2-sequence")
        qwen.fields["use_sliding_window"] = .bool(true)
        #expect(throws: ModelError.unsupportedConfig(key: "use_sliding_window", value: "true", supported: "false")) {
            try LlamaForSequenceClassification(config: qwen)
        }
    }

    @Test("layer groups, LoRA on q_proj/v_proj and all-linear, a new head in one call")
    func fineTuning() throws {
        let model = try LlamaForCausalLM(config: config("llama-causal"))
        try model.loadPretrained(from: folder("llama-causal"))
        #expect(model.defaultLayerGroups().count == 4)
        try model.freeze(upTo: -2)      // the last decoder layer, the final norm and lm_head train
        let trainable = Set(model.namedParameters().filter { !$0.parameter.isFrozen }.map(\.name))
        #expect(trainable == ["model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                              "model.layers.1.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight",
                              "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight",
                              "model.layers.1.mlp.down_proj.weight", "model.layers.1.input_layernorm.weight",
                              "model.layers.1.post_attention_layernorm.weight", "model.norm.weight", "lm_head.weight"])

        let lora = try LlamaForCausalLM(config: config("llama-causal"))
        try lora.loadPretrained(from: folder("llama-causal"))
        #expect(try lora.applyLoRA(LoRAConfig(rank: 2, alpha: 4, targetModules: ["q_proj", "v_proj"])).count == 4)
        let ids = try reference("llama-causal").tensor("input.input_ids")
        let start = lora.stateDict().mapValues(\.scalars)
        let adam = AdamW(lora, lr: 0.01)
        lora.loss(ids, labels: ids).backward()
        adam.step()
        let moved = lora.stateDict().filter { $0.value.scalars != start[$0.key]! }.map(\.key)
        #expect(moved.count == 8 && moved.allSatisfy { $0.contains(".lora_") }, "\(moved)")
        let everyLinear = try LlamaForCausalLM(config: config("llama-causal"))
        #expect(try everyLinear.applyLoRA(LoRAConfig(targetModules: "all-linear")).count == 14 && !(everyLinear.lmHead is LoRALinear))

        // A 5-label classifier from the causal checkpoint: the decoder loads, `score` is new.
        var labels = try config("llama-causal")
        labels.fields["num_labels"] = .int(5)
        let classifier = try LlamaForSequenceClassification(config: labels)
        let report = try classifier.loadPretrained(from: folder("llama-causal"), strict: false)
        #expect(report.missingKeys == ["score.weight"] && report.unexpectedKeys == ["lm_head.weight"])
        #expect(classifier.model.embedTokens.weight.value.scalars == model.model.embedTokens.weight.value.scalars)
        #expect(classifier(ids).shape == [2, 5])
    }
}

@Suite("Generation")
struct GenerationTests {
    @Test("greedy generation with a cache matches transformers' generate: left padding, an end token, padding after it")
    func greedyMatchesTransformers() throws {
        let folder = fixtureURL("models/llama-causal")
        let model = try LlamaForCausalLM(config: PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json")))
        try model.loadPretrained(from: folder)
        let ref = try SafeTensors(contentsOf: folder.appendingPathComponent("generation.safetensors"))
        let ids = try ref.tensor("input_ids"), mask = try ref.tensor("attention_mask")
        let free = model.generate(ids, attentionMask: mask, maxNewTokens: 8, endTokenIds: [])
        let expectedFree = try ref.tensor("free"), expectedStopped = try ref.tensor("stopped")
        #expect(free.shape == [2, 13] && free.scalars == expectedFree.scalars)
        let end = Int(try ref.tensor("eos").scalars[0])
        let stopped = model.generate(ids, attentionMask: mask, maxNewTokens: 8, endTokenIds: [end])
        #expect(stopped.shape == [2, 10] && stopped.scalars == expectedStopped.scalars)
        // The configuration's eos_token_id (2) is the default end token; the model stays in training mode.
        model.train()
        #expect(model.generate(ids, attentionMask: mask, maxNewTokens: 3).shape[1] <= 8 && model.isTraining)
    }

    @Test("each cached step equals the full forward's last position (sliding window and GQA included)")
    func cacheEqualsFullForward() throws {
        for name in ["mistral-window", "llama-tied-llama3"] {
            let folder = fixtureURL("models/\(name)")
            let model = try LlamaForCausalLM(config: PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json")))
            try model.loadPretrained(from: folder)
            model.eval()
            let prompt = Tensor(shape: [1, 3], scalars: [4, 9, 30])
            let out = model.generate(prompt, maxNewTokens: 7, endTokenIds: [])
            // Greedy without a cache: the whole sequence through the model for every token.
            var sequence = prompt.scalars
            for _ in 0..<7 {
                let logits = model(Tensor(shape: [1, sequence.count], scalars: sequence))
                let last = logits.slice(axis: 1, (sequence.count - 1)..<sequence.count).reshaped([-1])
                sequence.append(Float(last.argmax(axis: 0).values[0]))
            }
            #expect(out.scalars == sequence, "\(name)")
        }
    }
}

@Suite("Sampling")
struct SamplingTests {
    @Test("temperature, top-k and top-p give transformers' warped distribution; draws follow it")
    func distribution() {
        let logits: [Float] = [2, 1, 0.5, 0.5, -1, 3]
        func softmax(_ x: [Double]) -> [Double] { let m = x.max()!; let e = x.map { Foundation.exp($0 - m) }; let s = e.reduce(0, +); return e.map { $0 / s } }
        let plain = softmax(logits.map(Double.init))
        expectClose(Sampling().probabilities(logits).map(Float.init), plain.map(Float.init), atol: 1e-6)
        // Temperature 0.5 doubles the logits.
        expectClose(Sampling(temperature: 0.5).probabilities(logits).map(Float.init), softmax(logits.map { 2 * Double($0) }).map(Float.init), atol: 1e-6)
        // Top-3: tokens 5, 0, 1 renormalised.
        let top3 = softmax([2, 1, 3])
        expectClose(Sampling(topK: 3).probabilities(logits).map(Float.init),
                    [top3[0], top3[1], 0, 0, 0, top3[2]].map(Float.init), atol: 1e-6)
        // Top-4 reaches the tie at 0.5: both stay, as transformers keeps scores >= the k-th.
        #expect(Sampling(topK: 4).probabilities(logits).filter { $0 > 0 }.count == 5)
        // Top-p 0.7: token 5 (0.58) is not enough, tokens 5 and 0 (0.80) are.
        let nucleus = Sampling(topP: 0.7).probabilities(logits)
        #expect(nucleus.enumerated().filter { $0.element > 0 }.map(\.offset) == [0, 5])
        #expect(Sampling(topP: 1e-6).probabilities(logits).enumerated().filter { $0.element > 0 }.map(\.offset) == [5])
        // 40,000 draws: every frequency within 0.01 of its probability.
        let sampling = Sampling(temperature: 1.5, topK: 4)
        var generator = RandomGenerator(seed: 3)
        var counts = [Int](repeating: 0, count: logits.count)
        for _ in 0..<40_000 { counts[sampling.draw(logits, generator: &generator)] += 1 }
        expectClose(counts.map { Float($0) / 40_000 }, sampling.probabilities(logits).map(Float.init), atol: 0.01)
    }

    @Test("sampled generation repeats with its seed; top-k 1 is greedy")
    func sampledGeneration() throws {
        let folder = fixtureURL("models/llama-causal")
        let model = try LlamaForCausalLM(config: PretrainedConfig(contentsOf: folder.appendingPathComponent("config.json")))
        try model.loadPretrained(from: folder)
        let prompt = Tensor(shape: [2, 3], scalars: [4, 9, 30, 7, 8, 9])
        let greedy = model.generate(prompt, maxNewTokens: 10, endTokenIds: [])
        #expect(model.generate(prompt, maxNewTokens: 10, endTokenIds: [], sampling: Sampling(topK: 1, seed: 5)).scalars == greedy.scalars)
        let a = model.generate(prompt, maxNewTokens: 10, endTokenIds: [], sampling: Sampling(temperature: 2, seed: 7))
        let b = model.generate(prompt, maxNewTokens: 10, endTokenIds: [], sampling: Sampling(temperature: 2, seed: 7))
        let c = model.generate(prompt, maxNewTokens: 10, endTokenIds: [], sampling: Sampling(temperature: 2, seed: 8))
        #expect(a.scalars == b.scalars && a.scalars != c.scalars && a.scalars != greedy.scalars)
    }
}
