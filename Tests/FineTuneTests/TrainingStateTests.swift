import Foundation
import Testing
@testable import FineTune

// Tests for what a saved training state rests on: exact integer tensors in safetensors,
// optimizer step counts as Int64, the random generator's state.

private func bits(_ tensor: Tensor) -> [UInt32] { tensor.scalars.map(\.bitPattern) }

/// A safetensors file written byte by byte: `header` JSON, then `data`.
private func rawSafeTensors(_ header: String, _ data: [UInt8]) -> Data {
    let json = Array(header.utf8)
    return Data(withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) } + json + data)
}

private func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
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
        for dtype in [SafeTensors.DType.i64, .f32] {
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
}
