import Foundation
import Testing
@testable import FineTune

// Tests for Checkpoint/: the safetensors codec (every dtype, half-precision rounding, hostile
// files), atomic writes, and loading state dicts into modules (PyTorch parity on the
// torch-digits-cnn fixture, strict and partial loads, renaming, nothing changed on failure).

/// A safetensors file written byte by byte: `header` JSON, then `data`.
private func rawFile(_ header: String, _ data: [UInt8] = [], headerLength: UInt64? = nil) -> Data {
    let json = Array(header.utf8)
    var bytes = withUnsafeBytes(of: (headerLength ?? UInt64(json.count)).littleEndian) { Array($0) }
    bytes += json + data
    return Data(bytes)
}

private func expectMalformed(_ data: Data, _ comment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try SafeTensors(data: data)
        Issue.record("\(comment): parsed", sourceLocation: sourceLocation)
    } catch {
        guard case .malformed = error else {
            Issue.record("\(comment): \(error)", sourceLocation: sourceLocation)
            return
        }
    }
}

private final class Tagged: Module {
    let fc = Linear(3, 2)
    let scratch = Buffer(Tensor.zeros([4]), persistent: false)
    let steps = Buffer(Tensor(5), checkpointDType: .i64)
}

@Suite("Checkpoints")
struct CheckpointTests {
    // MARK: PyTorch parity

    @Test("the PyTorch-trained digits CNN loads strictly and reproduces PyTorch's logits")
    func torchDigitsParity() throws {
        let model = digitsCNN()
        let report = try model.load(from: fixtureURL("torch-digits-cnn/model.safetensors"))
        #expect(report.isExact && report.loadedKeys == model.stateDictKeys)
        model.eval()
        let reference = try SafeTensors(contentsOf: fixtureURL("torch-digits-cnn/reference.safetensors"))
        let inputs = try reference.tensor("inputs"), expected = try reference.tensor("logits")
        #expect(inputs.shape == [32, 1, 8, 8] && expected.shape == [32, 10])
        let logits = withoutGradients { model(inputs) }
        let worst = zip(logits.scalars, expected.scalars).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst < 1e-4, "max |FineTune - PyTorch| = \(worst)")
        // num_batches_tracked is int64 in the file and a whole number here.
        let tracked = model.namedBuffers().first { $0.name == "1.num_batches_tracked" }!.buffer.value.scalars[0]
        #expect(tracked > 0 && tracked == tracked.rounded())
    }

    @Test("save then load gives the same state bit for bit, with PyTorch's names and dtypes")
    func roundTrip() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = digitsCNN()
        source.train()
        _ = source(randomTensor([4, 1, 8, 8]))    // moves the BatchNorm statistics
        let url = directory.appendingPathComponent("model.safetensors")
        try source.save(to: url)

        let file = try SafeTensors(contentsOf: url)
        #expect(file.keys == source.stateDictKeys.sorted())
        #expect(file.entries["1.num_batches_tracked"]?.dtype == .i64 && file.entries["0.weight"]?.dtype == .f32)
        #expect(file.metadata == ["format": "pt"])

        let copy = digitsCNN()
        try copy.load(from: url)
        let a = source.stateDict(), b = copy.stateDict()
        #expect(a.keys.sorted() == b.keys.sorted())
        for key in a.keys {
            #expect(a[key]!.shape == b[key]!.shape && a[key]!.scalars.map(\.bitPattern) == b[key]!.scalars.map(\.bitPattern), "\(key)")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(leftovers == ["model.safetensors"], "temporary files left: \(leftovers)")
    }

    @Test("non-persistent buffers stay out of the state dict; buffer dtypes are kept")
    func buffersAndDTypes() throws {
        let m = Tagged()
        #expect(m.stateDictKeys == ["steps", "fc.weight", "fc.bias"])    // own entries first, as PyTorch
        let data = try SafeTensors.encode(m.stateDict(), dtypes: ["steps": .i64])
        let file = try SafeTensors(data: data)
        let steps = try file.tensor("steps")
        #expect(file.entries["steps"]?.dtype == DType.i64)
        #expect(steps.scalars == [5])
    }

    // MARK: Element types

    @Test("every readable dtype converts to Float32")
    func readsEveryDType() throws {
        func file(_ dtype: String, _ bytes: [UInt8], count: Int) throws -> [Float] {
            let header = "{\"t\":{\"dtype\":\"\(dtype)\",\"shape\":[\(count)],\"data_offsets\":[0,\(bytes.count)]}}"
            return try SafeTensors(data: rawFile(header, bytes)).tensor("t").scalars
        }
        func le<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] { values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } } }
        #expect(try file("F32", le([Float(1.5).bitPattern, Float(-2).bitPattern]), count: 2) == [1.5, -2])
        #expect(try file("F64", le([Double(0.25).bitPattern, Double(-3).bitPattern]), count: 2) == [0.25, -3])
        #expect(try file("F16", le([UInt16(0x3C00), 0xC000, 0x7C00, 0x0001]), count: 4) == [1, -2, .infinity, 0x1p-24])
        #expect(try file("BF16", le([UInt16(0x3F80), 0xC040]), count: 2) == [1, -3])
        #expect(try file("I64", le([Int64(-7), 123_456]), count: 2) == [-7, 123_456])
        #expect(try file("I32", le([Int32(-1), 9]), count: 2) == [-1, 9])
        #expect(try file("U32", le([UInt32(4_000_000_000)]), count: 1) == [4e9])
        #expect(try file("I16", le([Int16(-300)]), count: 1) == [-300])
        #expect(try file("U16", le([UInt16(65535)]), count: 1) == [65535])
        #expect(try file("I8", [0xFF, 0x05], count: 2) == [-1, 5])
        #expect(try file("U8", [0xFF, 0x05], count: 2) == [255, 5])
        #expect(try file("BOOL", [0, 1, 2], count: 3) == [0, 1, 1])
        #expect(try file("U64", le([UInt64(3)]), count: 1) == [3])
        #expect(throws: CheckpointError.unsupportedDType(key: "t", dtype: "F8_E4M3")) { try file("F8_E4M3", [1, 2], count: 2) }
    }

    @Test("half-precision bits: every F16 value reads exactly and writes back; narrowing rounds to nearest even")
    func halfPrecision() {
        for bits in 0...UInt16.max {
            let f = Float(bitPattern: ElementCodec.halfToFloatBits(bits))
            let back = ElementCodec.floatToHalfBits(f.bitPattern)
            if f.isNaN {
                #expect(back & 0x7C00 == 0x7C00 && back & 0x3FF != 0, "NaN \(bits)")
            } else {
                #expect(back == bits, "F16 \(bits): \(f) -> \(back)")
            }
            #if !(os(macOS) && arch(x86_64))
            if !f.isNaN { #expect(Float(Float16(bitPattern: bits)) == f, "F16 \(bits)") }
            #endif
        }
        #if !(os(macOS) && arch(x86_64))
        var rng = RandomGenerator(seed: 5)
        for _ in 0..<200_000 {
            // Random bit patterns cover subnormals, overflow and exact ties.
            let f = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            guard !f.isNaN else { continue }
            #expect(ElementCodec.floatToHalfBits(f.bitPattern) == Float16(f).bitPattern, "F32 \(f)")
        }
        #endif
        // bfloat16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 and rounds to the even one (1);
        // 1 + 3 * 2^-8 rounds up to 1 + 2^-6.
        #expect(ElementCodec.floatToBFloat16Bits(Float(1 + 0x1p-8).bitPattern) == 0x3F80)
        #expect(ElementCodec.floatToBFloat16Bits(Float(1 + 3 * 0x1p-8).bitPattern) == 0x3F82)
        #expect(ElementCodec.floatToBFloat16Bits(Float.infinity.bitPattern) == 0x7F80)
        #expect(Float(bitPattern: UInt32(ElementCodec.floatToBFloat16Bits(Float.nan.bitPattern)) << 16).isNaN)
    }

    @Test("writing F16, BF16, F64, I64 and I32 and reading back")
    func writesNarrowTypes() throws {
        let t = Tensor([1, -2.5, 65504, 0.1])
        let data = try SafeTensors.encode(["h": t, "b": t, "d": t, "i": t, "j": t],
                                          dtypes: ["h": .f16, "b": .bf16, "d": .f64, "i": .i64, "j": .i32],
                                          metadata: ["note": "quote \" and \\ and\nnewline"])
        let file = try SafeTensors(data: data)
        #expect(file.metadata["note"] == "quote \" and \\ and\nnewline")
        #expect(try file.tensor("h").scalars == [1, -2.5, 65504, Float(bitPattern: ElementCodec.halfToFloatBits(0x2E66))])
        #expect(try file.tensor("b").scalars == [1, -2.5, 65536, Float(bitPattern: 0x3DCD_0000)])
        #expect(try file.tensor("d").scalars == t.scalars)
        #expect(try file.tensor("i").scalars == [1, -2, 65504, 0] && file.entries["i"]?.dtype == .i64)
        #expect(try file.tensor("j").scalars == [1, -2, 65504, 0])
        #expect(throws: CheckpointError.unsupportedDType(key: "x", dtype: "U8")) {
            try SafeTensors.encode(["x": t], dtypes: ["x": .u8])
        }
    }

    // MARK: Hostile files

    @Test("every truncation of a valid file is rejected as malformed, never a crash")
    func truncations() throws {
        let data = try SafeTensors.encode(["a": Tensor([1, 2, 3]), "b": Tensor(shape: [2, 2], scalars: [4, 5, 6, 7])])
        #expect(try SafeTensors(data: data).keys == ["a", "b"])
        for length in 0..<data.count { expectMalformed(data.prefix(length), "first \(length) of \(data.count) bytes") }
        expectMalformed(data + Data([0]), "a trailing byte")
    }

    @Test("malformed headers and offsets give clear errors")
    func malformedHeaders() {
        let four: [UInt8] = [0, 0, 128, 63]
        expectMalformed(rawFile("{}", headerLength: 1 << 40), "huge header length")
        expectMalformed(rawFile("{\"a\":", four), "invalid JSON")
        expectMalformed(rawFile("[1,2]"), "array header")
        expectMalformed(rawFile("{\"a\":3}"), "entry not an object")
        expectMalformed(rawFile("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", four), "unknown dtype")
        expectMalformed(rawFile("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", four), "no dtype")
        expectMalformed(rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", four), "negative dimension")
        expectMalformed(rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", four), "fractional dimension")
        expectMalformed(rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", four), "size disagrees with shape")
        expectMalformed(rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", four), "reversed offsets")
        expectMalformed(rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", []), "data past the end")
        expectMalformed(rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", four + four), "a gap")
        expectMalformed(rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                + "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", four), "overlap")
        expectMalformed(rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}}", four),
                        "overflowing shape")
        expectMalformed(rawFile("{\"__metadata__\":{\"k\":1}}"), "non-string metadata")
    }

    @Test("random corruption of a header parses or throws, never crashes")
    func corruptedHeaders() throws {
        let data = try SafeTensors.encode(["weight": Tensor(shape: [3, 2], scalars: [1, 2, 3, 4, 5, 6]), "bias": Tensor([7, 8])],
                                          metadata: ["format": "pt"])
        let headerEnd = 8 + Int(data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var rng = RandomGenerator(seed: 11)
        var rejected = 0, accepted = 0
        for _ in 0..<2_000 {
            var bytes = [UInt8](data)
            for _ in 0..<1 + Int(rng.next() % 3) {
                bytes[Int(rng.next() % UInt64(headerEnd))] = UInt8(truncatingIfNeeded: rng.next())
            }
            // Every outcome is a typed error (the API throws only CheckpointError) or a file whose
            // tensors have their declared sizes.
            do {
                let file = try SafeTensors(data: Data(bytes))
                accepted += 1
                for key in file.keys {
                    if let tensor = try? file.tensor(key) {
                        #expect(tensor.shape == file.entries[key]!.shape && tensor.scalars.count == tensor.shape.reduce(1, *))
                    }
                }
            } catch {
                rejected += 1
            }
        }
        // Most corruptions of the JSON header are detected; a changed digit in a shape or a name can be valid.
        #expect(rejected + accepted == 2_000 && rejected > 1_500)
    }

    // MARK: Files

    @Test("I/O errors are typed, and a failed write leaves the old file and no temporary files")
    func ioErrors() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("nope.safetensors")
        #expect {
            try SafeTensors(contentsOf: missing)
        } throws: { error in
            guard case .io(let path, _) = error as? CheckpointError else { return false }
            return path == missing.path
        }
        let inMissingFolder = directory.appendingPathComponent("no/such/dir/model.safetensors")
        #expect { try SafeTensors.write(["a": Tensor([1])], to: inMissingFolder) } throws: { error in
            if case .io = error as? CheckpointError { return true } else { return false }
        }
        let url = directory.appendingPathComponent("model.safetensors")
        try SafeTensors.write(["a": Tensor([1])], to: url)
        try SafeTensors.write(["a": Tensor([2, 3])], to: url)    // replaces
        #expect(try SafeTensors(contentsOf: url).tensor("a").scalars == [2, 3])
        let folder = directory.appendingPathComponent("folder")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
        #expect(throws: CheckpointError.self) { try SafeTensors.write(["a": Tensor([1])], to: folder) }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(names == ["folder", "model.safetensors"])
    }

    // MARK: Loading into modules

    @Test("a shape mismatch names every key and both shapes, and changes nothing")
    func shapeMismatchChangesNothing() throws {
        let pretrained = digitsCNN()
        let model = Sequential(Conv2d(1, 16, kernelSize: 3, padding: 1), BatchNorm2d(16), ReLU(), MaxPool2d(kernelSize: 2),
                               Conv2d(16, 32, kernelSize: 3, padding: 1), ReLU(), MaxPool2d(kernelSize: 2),
                               Flatten(), Linear(128, 64), ReLU(), Linear(64, 5))    // a 5-class head
        let before = model.stateDict()
        #expect(throws: CheckpointError.shapeMismatch([
            .init(key: "10.weight", expected: [5, 64], found: [10, 64]), .init(key: "10.bias", expected: [5], found: [10]),
        ])) { try model.loadStateDict(pretrained.stateDict(), strict: false) }
        #expect(model.stateDict().allSatisfy { $0.value.scalars == before[$0.key]!.scalars })
        let message = CheckpointError.shapeMismatch([.init(key: "10.bias", expected: [5], found: [10])]).description
        #expect(message.contains("10.bias") && message.contains("[10]") && message.contains("[5]"))
    }

    @Test("strict loads throw on missing or unexpected keys without changing anything; partial loads report them")
    func strictAndPartialLoads() throws {
        let pretrained = digitsCNN()
        var partial = pretrained.stateDict()
        partial["10.weight"] = nil; partial["10.bias"] = nil
        partial["extra.weight"] = Tensor([1])
        let model = digitsCNN()
        let before = model.stateDict()
        do {
            try model.loadStateDict(partial)
            Issue.record("strict load succeeded")
        } catch {
            guard case .keysDoNotMatch(let report) = error else { Issue.record("\(error)"); return }
            #expect(report.missingKeys == ["10.weight", "10.bias"] && report.unexpectedKeys == ["extra.weight"])
        }
        #expect(model.stateDict().allSatisfy { $0.value.scalars == before[$0.key]!.scalars })

        try model.freeze(matching: "0.*")
        let report = try model.loadStateDict(partial, strict: false)
        #expect(report.missingKeys == ["10.weight", "10.bias"] && report.unexpectedKeys == ["extra.weight"])
        #expect(report.loadedKeys.count == 11 && !report.isExact)
        #expect(model.parameter(named: "0.weight")!.isFrozen && !model.parameter(named: "4.weight")!.isFrozen)
        #expect(model.parameter(named: "4.weight")!.value.scalars == pretrained.parameter(named: "4.weight")!.value.scalars)
        #expect(model.parameter(named: "10.weight")!.value.scalars == before["10.weight"]!.scalars)
        #expect(report.description.contains("missing key(s) in the checkpoint: 10.weight, 10.bias"))
    }

    @Test("renaming maps checkpoint keys (prefixes, skipped heads)")
    func renaming() throws {
        final class Wrapped: Module {
            let backbone = digitsCNN()
        }
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("backbone.safetensors")
        let pretrained = digitsCNN()
        try pretrained.save(to: url)
        let model = Wrapped()
        let report = try model.load(from: url) { "backbone." + $0 }
        #expect(report.isExact)
        #expect(model.parameter(named: "backbone.8.weight")!.value.scalars == pretrained.parameter(named: "8.weight")!.value.scalars)
        let skipping = try digitsCNN().load(from: url, strict: false) { $0.hasPrefix("10.") ? nil : $0 }
        #expect(skipping.missingKeys == ["10.weight", "10.bias"] && skipping.unexpectedKeys.isEmpty)
        // Two keys renamed to one name throw, naming both, and load nothing.
        let target = digitsCNN(), before = target.stateDict().mapValues(\.scalars)
        #expect(throws: CheckpointError.renamingCollision(key: "8.bias", fileKeys: ["10.bias", "8.bias"])) {
            try target.load(from: url, strict: false) { $0 == "10.bias" ? "8.bias" : $0 }
        }
        #expect(target.stateDict().mapValues(\.scalars) == before)
    }

    @Test("loaded parameters keep training: gradients flow and optimizer state stays attached")
    func loadKeepsTraining() throws {
        let model = digitsCNN()
        let optimizer = SGD(model, lr: 0.1, momentum: 0.9)
        let x = randomTensor([2, 1, 8, 8])
        Tensor.crossEntropy(model(x), targets: [1, 2]).backward()
        optimizer.step()
        try model.loadStateDict(digitsCNN().stateDict())
        #expect(optimizer.state(for: "8.weight") != nil)
        optimizer.zeroGrad()
        Tensor.crossEntropy(model(x), targets: [1, 2]).backward()
        #expect(model.parameter(named: "8.weight")!.grad != nil)
        optimizer.step()
    }

    // MARK: Optimizer state

    @Test("saving model and optimizer state and resuming gives the same weights as never stopping",
          arguments: ["SGD", "AdamW"])
    func resumeTraining(_ kind: String) throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let x = randomTensor([6, 1, 8, 8], seed: 3), y = [0, 1, 2, 3, 4, 5]
        func make() -> (Sequential, BuiltInOptimizer) {
            let model = RandomGenerator.withSeed(4) { digitsCNN() }
            try! model.freeze(matching: "0")
            let optimizer: BuiltInOptimizer = kind == "SGD"
                ? SGD(model, lr: 0.05, momentum: 0.9, nesterov: true) : AdamW(model, lr: 0.01)
            return (model, optimizer)
        }
        func train(_ model: Module, _ optimizer: BuiltInOptimizer, steps: Int) {
            for _ in 0..<steps {
                optimizer.zeroGrad()
                Tensor.crossEntropy(model(x), targets: y).backward()
                optimizer.step()
            }
        }
        let (model, optimizer) = make()
        train(model, optimizer, steps: 3)
        optimizer.learningRate *= 0.5
        try model.save(to: directory.appendingPathComponent("model.safetensors"))
        try optimizer.saveState(to: directory.appendingPathComponent("optimizer.safetensors"))
        train(model, optimizer, steps: 2)

        let (resumed, resumedOptimizer) = make()
        try resumed.load(from: directory.appendingPathComponent("model.safetensors"))
        let report = try resumedOptimizer.loadState(from: directory.appendingPathComponent("optimizer.safetensors"))
        #expect(report.loadedKeys == optimizer.parameterNamesWithState && !report.loadedKeys.contains("0.weight"))
        #expect(resumedOptimizer.stepCount == 3 && resumedOptimizer.learningRate == optimizer.learningRate)
        train(resumed, resumedOptimizer, steps: 2)
        for (name, p) in model.namedParameters() {
            #expect(resumed.parameter(named: name)!.value.scalars.map(\.bitPattern) == p.value.scalars.map(\.bitPattern), "\(name)")
        }

        // The wrong optimizer type, or state for parameters the model no longer has, is refused.
        let other: BuiltInOptimizer = kind == "SGD" ? AdamW(resumed) : SGD(resumed, momentum: 0.9)
        #expect(throws: CheckpointError.self) { try other.loadState(from: directory.appendingPathComponent("optimizer.safetensors")) }
        let smaller = RandomGenerator.withSeed(4) { digitsCNN() }
        try smaller.replaceModule(at: "10", with: Linear(64, 3))
        let fresh: BuiltInOptimizer = kind == "SGD" ? SGD(smaller, lr: 0.05, momentum: 0.9, nesterov: true) : AdamW(smaller, lr: 0.01)
        #expect(throws: CheckpointError.self) { try fresh.loadState(from: directory.appendingPathComponent("optimizer.safetensors")) }
        #expect(fresh.stepCount == 0 && fresh.parameterNamesWithState.isEmpty)
    }
}
