import Foundation
import Testing
@testable import FineTune

// Tests for PyTorchFile, ZipArchive and WeightsOnlyUnpickler: files written by torch.save
// (every dtype, strides, shared storages, a torchvision-style .pth), parity with
// torch.load(weights_only=True) on accepted and refused pickles, legacy/big-endian/zip64
// archives, and hostile files (hand-made and fuzzed), which must throw, never crash.

// MARK: Hand-made pickles

private func le32(_ value: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
private func unicode(_ text: String) -> [UInt8] { [0x58] + le32(text.utf8.count) + Array(text.utf8) }
private func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
private let proto: [UInt8] = [0x80, 0x02]
/// `("storage", torch.FloatStorage, key, "cpu", numel)` loaded by BINPERSID.
private func storage(_ key: String = "0", numel: Int = 3, type: [UInt8] = global("torch", "FloatStorage")) -> [UInt8] {
    [0x28] + unicode("storage") + type + unicode(key) + unicode("cpu") + [0x4A] + le32(numel) + [0x74, 0x51]
}
private func int(_ value: Int) -> [UInt8] { [0x4A] + le32(value) }
private func tuple(_ items: [Int]) -> [UInt8] { [0x28] + items.flatMap(int) + [0x74] }
/// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
private func tensor(offset: Int = 0, size: [Int] = [3], stride: [Int] = [1], storage storageBytes: [UInt8] = storage(),
                    sizeBytes: [UInt8]? = nil) -> [UInt8] {
    global("torch._utils", "_rebuild_tensor_v2") + [0x28] + storageBytes + int(offset) + (sizeBytes ?? tuple(size)) + tuple(stride)
        + [0x89] + global("collections", "OrderedDict") + [0x29, 0x52, 0x74, 0x52]
}

private func contains(_ data: Data, _ pattern: [UInt8]) -> Bool {
    let bytes = [UInt8](data)
    return bytes.indices.dropLast(pattern.count - 1).contains { bytes[$0..<$0 + pattern.count].elementsEqual(pattern) }
}
/// `{key: value, ...}` then STOP.
private func stateDict(_ items: [(String, [UInt8])]) -> [UInt8] {
    proto + [0x7D, 0x28] + items.flatMap { unicode($0.0) + $0.1 } + [0x75, 0x2E]
}
private let floats: [UInt8] = [Float(1), 2, 3].flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }

/// A torch.save-style archive around `pickle`, with storage `data/0` = [1, 2, 3] by default.
private func archive(_ pickle: [UInt8], storages: [(String, [UInt8])] = [("0", floats)], byteorder: String = "little",
                     version: String = "3\n") -> Data {
    ZipBuilder([("archive/data.pkl", pickle), ("archive/byteorder", Array(byteorder.utf8))]
               + storages.map { ("archive/data/\($0.0)", $0.1) } + [("archive/version", Array(version.utf8))]).build()
}

private func expectUnreadable(_ data: Data, _ comment: String, mentioning text: String? = nil,
                              sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let file = try PyTorchFile(data: data)
        Issue.record("\(comment): opened with keys \(file.keys)", sourceLocation: sourceLocation)
    } catch {
        guard case .unreadablePyTorchFile(let reason) = error else {
            Issue.record("\(comment): \(error)", sourceLocation: sourceLocation)
            return
        }
        if let text { #expect(reason.contains(text), "\(comment): \(reason)", sourceLocation: sourceLocation) }
    }
}

/// Opens `data` and converts every tensor, ignoring errors: the fuzz tests only ask that nothing crashes.
@discardableResult
private func openAndConvert(_ data: Data) -> Bool {
    guard let file = try? PyTorchFile(data: data) else { return false }
    for key in file.keys { _ = try? file.tensor(key) }
    return true
}

/// Makes `rounds` copies of `original` with 1...`maxEdits` random `edit`s each and counts the
/// copies `open` accepts (the fuzz tests check that some open and some do not).
private func mutations(of original: [UInt8], rounds: Int, maxEdits: Int, seed: UInt64,
                       edit: (inout [UInt8], inout RandomGenerator, _ round: Int) -> Void, open: ([UInt8]) -> Bool) -> Int {
    var rng = RandomGenerator(seed: seed)
    var opened = 0
    for round in 0..<rounds {
        var bytes = original
        for _ in 0..<1 + Int(rng.next() % UInt64(maxEdits)) { edit(&bytes, &rng, round) }
        if open(bytes) { opened += 1 }
    }
    return opened
}

@Suite("PyTorch files")
struct PyTorchFileTests {
    // MARK: What torch.save writes

    @Test("every dtype, transposed tensors, shared storages and offsets read as PyTorch saved them")
    func dtypesAndViews() throws {
        let file = try PyTorchFile(contentsOf: fixtureURL("pytorch-dtypes/state.pt"))
        let expected = try jsonFixture("pytorch-dtypes/expected.json")
        #expect(file.keys == expected.keys.sorted())
        #expect(file.formatVersion >= 1)
        for (key, raw) in expected {
            let fields = try #require(raw as? [String: Any])
            let entry = try #require(file.entries[key])
            #expect(entry.dtype == fields["dtype"] as? String, "\(key)")
            #expect(entry.shape == fields["shape"] as? [Int] && entry.strides == fields["strides"] as? [Int], "\(key)")
            #expect(entry.storageOffset == fields["storage_offset"] as? Int, "\(key)")
            let values = try #require(fields["values"] as? [Any]).map { value -> Float in
                if let text = value as? String { return Float(text)! }
                return Float((value as! NSNumber).doubleValue)
            }
            let tensor = try file.tensor(key)
            #expect(tensor.shape == entry.shape && tensor.isContiguous, "\(key)")
            #expect(tensor.scalars == values, "\(key): \(tensor.scalars) vs PyTorch \(values)")
        }
        // The fixture exercises what it claims to: a transposed view, two views of one storage, an offset.
        #expect(file.entries["transposed"]!.strides == [1, 4])
        #expect(file.entries["view_a"]!.storageKey == file.entries["view_b"]!.storageKey)
        #expect(file.entries["view_b"]!.storageOffset == 6 && file.entries["view_b"]!.strides == [4, 1])
        #expect(Set(file.entries.values.map(\.dtype)).isSuperset(of: ["float32", "float16", "bfloat16", "float64", "int64",
                                                                     "int32", "int16", "int8", "uint8", "bool", "uint16"]))
    }

    @Test("a torchvision-style .pth loads strictly into ResidualBlocks and reproduces PyTorch's outputs")
    func torchvisionStyleModel() throws {
        let model = TinyResNet()
        let file = try PyTorchFile(contentsOf: fixtureURL("tiny-resnet/model.pth"))
        let report = try model.load(from: file)
        #expect(report.isExact && report.loadedKeys == model.stateDictKeys)
        model.eval()
        let reference = try SafeTensors(contentsOf: fixtureURL("tiny-resnet/reference.safetensors"))
        let outputs = withoutGradients { model(try! reference.tensor("inputs")) }
        expectReproduces(outputs, try reference.tensor("outputs"), "tiny-resnet")
        #expect(file.entries["bn1.num_batches_tracked"]?.dtype == "int64")
        #expect(try file.tensor("bn1.num_batches_tracked").scalars == [3])
    }

    // MARK: Parity with torch.load(weights_only=True)

    @Test("the allowlisted globals are exactly PyTorch's weights-only set")
    func allowlistMatchesPyTorch() throws {
        let exported = try jsonFixture("pytorch-pickles/allowed-globals.json")
        let names = try #require(exported["allowed_globals"] as? [String])
        let missing = Set(names).subtracting(WeightsOnlyUnpickler.allowedGlobals).sorted()
        let extra = WeightsOnlyUnpickler.allowedGlobals.subtracting(names).sorted()
        #expect(missing.isEmpty && extra.isEmpty, "missing: \(missing), extra: \(extra)")
        #expect(names.count == 144)
    }

    @Test("pickles torch.load(weights_only=True) refuses are refused, naming the global or opcode; the others are read")
    func pickleParity() throws {
        let cases = try jsonFixture("pytorch-pickles/cases.json")
        #expect(cases.count >= 20)
        for (name, raw) in cases.sorted(by: { $0.key < $1.key }) {
            let fields = try #require(raw as? [String: Any])
            let torchAccepts = try #require((fields["torch"] as? [String: Any])?["accepts"] as? Bool)
            let expected = try #require(fields["finetune"] as? [String: Any])
            let data = try Data(contentsOf: fixtureURL("pytorch-pickles/\(name).pt"))
            if let keys = expected["keys"] as? [String] {
                #expect(torchAccepts, "\(name): torch refuses what FineTune reads")
                let file = try PyTorchFile(data: data)
                #expect(file.keys == keys, "\(name)")
                let unsupported = expected["unsupported"] as? [String] ?? []
                for key in keys {
                    if unsupported.contains(key) {
                        #expect(throws: CheckpointError.unsupportedDType(key: key, dtype: file.entries[key]!.dtype)) { try file.tensor(key) }
                    } else {
                        let tensor = try file.tensor(key)
                        if let values = (expected["values"] as? [String: [Double]])?[key] { #expect(tensor.scalars == values.map(Float.init), "\(name)") }
                    }
                }
                continue
            }
            let kind = try #require(expected["error"] as? String), detail = expected["detail"] as? String
            do {
                _ = try PyTorchFile(data: data)
                Issue.record("\(name): FineTune read a file it must refuse")
            } catch {
                switch (kind, error) {
                case ("disallowedGlobal", .disallowedGlobal(let global)):
                    if let detail { #expect(global == detail, "\(name)") }
                    #expect(!torchAccepts, "\(name)")
                case ("disallowedOpcode", .disallowedOpcode(let opcode)):
                    if let detail { #expect(opcode == detail, "\(name)") }
                    #expect(!torchAccepts, "\(name)")
                case ("unreadable", .unreadablePyTorchFile(let reason)):
                    if let detail { #expect(reason.contains(detail), "\(name): \(reason)") }
                    #expect(!torchAccepts || name == "sparse-tensor", "\(name)")
                default: Issue.record("\(name): expected \(kind), got \(error)")
                }
            }
        }
    }

    @Test("a pickled module's error says what torch.load says: only weights, nothing executed")
    func pickledModuleMessage() throws {
        let error = #expect(throws: CheckpointError.self) {
            try PyTorchFile(contentsOf: fixtureURL("pytorch-pickles/pickled-module.pt"))
        }
        #expect(error?.description.contains("torch.nn.modules.linear.Linear") == true)
        #expect(error?.description.contains("weights_only=True") == true)
    }

    // MARK: Formats that are refused with advice

    @Test("legacy, big-endian, TorchScript and non-zip files get errors that say what to do")
    func refusedFormats() throws {
        let legacy = #expect(throws: CheckpointError.legacyPyTorchFormat) {
            try PyTorchFile(contentsOf: fixtureURL("pytorch-dtypes/legacy.pt"))
        }
        #expect(legacy?.description.contains("torch.save(") == true && legacy?.description.contains("_use_new_zipfile_serialization=True") == true)
        var tar = [UInt8](repeating: 0, count: 512)
        tar.replaceSubrange(257..<262, with: Array("ustar".utf8))
        #expect(throws: CheckpointError.legacyPyTorchFormat) { try PyTorchFile(data: Data(tar)) }

        var zip = try ZipBuilder(reading: Data(contentsOf: fixtureURL("pytorch-dtypes/state.pt")))
        zip["/byteorder"] = Array("big".utf8)
        #expect(throws: CheckpointError.bigEndianPyTorchFile) { try PyTorchFile(data: zip.build()) }
        zip["/byteorder"] = Array("middle".utf8)
        expectUnreadable(zip.build(), "unknown byte order", mentioning: "byteorder")

        let script = ZipBuilder([("model/constants.pkl", proto + [0x29, 0x2E]), ("model/code/__torch__.py", Array("x".utf8)),
                                 ("model/version", Array("3".utf8))])
        expectUnreadable(script.build(), "TorchScript", mentioning: "torch.jit.load")
        expectUnreadable(try SafeTensors.encode(["a": Tensor([1])]), "a safetensors file", mentioning: "SafeTensors")
        expectUnreadable(Data(), "empty", mentioning: "not a zip")
        #expect(throws: CheckpointError.self) { try PyTorchFile(contentsOf: fixtureURL("pytorch-dtypes/nope.pt")) }
    }

    @Test("zip64 archives and archives without zip64 records read the same")
    func zip64() throws {
        let original = try Data(contentsOf: fixtureURL("pytorch-dtypes/state.pt"))
        let reference = try PyTorchFile(data: original)
        let entries = try ZipBuilder(reading: original)
        for zip64 in [true, false] {
            let data = entries.build(zip64: zip64)
            // The re-packed archive really uses (or avoids) the zip64 structures.
            let hasLocator = contains(data, [0x50, 0x4B, 0x06, 0x07])
            #expect(hasLocator == zip64)
            let file = try PyTorchFile(data: data)
            #expect(file.entries == reference.entries)
            for key in file.keys { #expect(try file.tensor(key).scalars.map(\.bitPattern) == reference.tensor(key).scalars.map(\.bitPattern)) }
        }
    }

    // MARK: Hostile files

    @Test("damaged zip structures throw typed errors")
    func damagedZips() throws {
        let good = archive(stateDict([("w", tensor())]))
        #expect(try PyTorchFile(data: good).tensor("w").scalars == [1, 2, 3])
        func patched(_ data: Data, signature: [UInt8], at field: Int, _ bytes: [UInt8]) -> Data {
            var copy = [UInt8](data)
            var i = 0
            while i + 4 <= copy.count {
                if copy[i..<i + 4].elementsEqual(signature) { copy.replaceSubrange(i + field..<i + field + bytes.count, with: bytes) }
                i += 1
            }
            return Data(copy)
        }
        let centralHeader: [UInt8] = [0x50, 0x4B, 0x01, 0x02], end: [UInt8] = [0x50, 0x4B, 0x05, 0x06]
        expectUnreadable(patched(good, signature: centralHeader, at: 10, [8, 0]), "deflated entries", mentioning: "compressed")
        expectUnreadable(patched(good, signature: centralHeader, at: 8, [1, 0]), "encrypted entries", mentioning: "encrypted")
        expectUnreadable(patched(good, signature: centralHeader, at: 42, [0xFF, 0xFF, 0, 0]), "local header offset", mentioning: "local header")
        expectUnreadable(patched(good, signature: centralHeader, at: 20, [0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0, 0]), "entry size", mentioning: "runs past")
        expectUnreadable(patched(good, signature: end, at: 8, [0xFE, 0xFF, 0xFE, 0xFF]), "entry count", mentioning: "entries")
        expectUnreadable(patched(good, signature: end, at: 16, [0xFF, 0xFF, 0xFF, 0x7F]), "directory offset", mentioning: "outside")
        expectUnreadable(patched(good, signature: end, at: 16, [0xFF, 0xFF, 0xFF, 0xFF]), "zip64 without record", mentioning: "zip64")
        expectUnreadable(patched(good, signature: end, at: 4, [1, 0]), "multi-disk", mentioning: "multi-disk")
        expectUnreadable(good.prefix(good.count - 1), "cut end record", mentioning: "end-of-central-directory")
        let zip64 = try ZipBuilder(reading: good).build(zip64: true)
        expectUnreadable(patched(zip64, signature: [0x50, 0x4B, 0x06, 0x07], at: 8, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
                         "zip64 locator", mentioning: "zip64")
        expectUnreadable(patched(zip64, signature: [0x50, 0x4B, 0x06, 0x06], at: 24, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0,
                                                                         0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
                         "zip64 entry count", mentioning: "entries")

        let pickle = stateDict([("w", tensor())])
        expectUnreadable(ZipBuilder([("archive/data.pkl", pickle), ("archive/data.pkl", pickle)]).build(), "duplicate names", mentioning: "two entries")
        expectUnreadable(ZipBuilder([("archive/data.pkl", pickle), ("other/version", [0x33])]).build(), "two folders", mentioning: "outside")
        expectUnreadable(ZipBuilder([("data.pkl", pickle)]).build(), "no folder", mentioning: "top-level folder")
        expectUnreadable(ZipBuilder([("archive/version", [0x33])]).build(), "no data.pkl", mentioning: "data.pkl")
        expectUnreadable(archive(pickle, version: "11"), "a future version", mentioning: "version")
        expectUnreadable(archive(pickle, version: "three"), "a bad version", mentioning: "version")
        expectUnreadable(archive(pickle, storages: []), "a missing storage", mentioning: "no data/0 record")
        expectUnreadable(archive(pickle, storages: [("0", Array(floats.prefix(8)))]), "a short storage", mentioning: "record has 8 bytes")
    }

    @Test("hostile pickles throw typed errors without allocating what they claim")
    func hostilePickles() throws {
        func file(_ pickle: [UInt8]) throws(CheckpointError) -> PyTorchFile { try PyTorchFile(data: archive(pickle)) }
        // Lengths and sizes are checked before anything is allocated.
        expectUnreadable(archive(proto + [0x58, 0xFF, 0xFF, 0xFF, 0x7F, 0x61]), "a 2 GB string", mentioning: "truncated")
        expectUnreadable(archive(stateDict([("w", tensor(size: [1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1], stride: [1, 1, 1]))])),
                         "an overflowing shape", mentioning: "overflows")
        expectUnreadable(archive(stateDict([("w", tensor(size: [4]))])), "past the storage", mentioning: "needs more than the 3 elements")
        expectUnreadable(archive(stateDict([("w", tensor(offset: 3, size: [1]))])), "offset past the storage", mentioning: "needs more")
        expectUnreadable(archive(stateDict([("w", tensor(size: [1_000_000_000], stride: [0]))])), "a zero-stride giant", mentioning: "needs more")
        expectUnreadable(archive(stateDict([("w", tensor(offset: -1, size: [1]))])), "a negative offset", mentioning: "offset")
        expectUnreadable(archive(stateDict([("w", tensor(size: [3], stride: [-1]))])), "a negative stride", mentioning: "non-negative")
        expectUnreadable(archive(stateDict([("w", tensor(size: [3, 1], stride: [1]))])), "sizes without strides", mentioning: "strides")
        // A zero stride within the storage's element count is a valid (expanded) view.
        #expect(try file(stateDict([("w", tensor(offset: 1, size: [3], stride: [0]))])).tensor("w").scalars == [2, 2, 2])
        #expect(try file(stateDict([("w", tensor(offset: 2, size: [], stride: []))])).tensor("w").scalars == [3])

        // Storage ids.
        expectUnreadable(archive(stateDict([("w", tensor(storage: storage("7")))])), "an unknown storage key", mentioning: "data/7")
        expectUnreadable(archive(stateDict([("w", tensor(storage: storage(numel: 4)))])), "a storage size mismatch", mentioning: "4 elements")
        expectUnreadable(archive(stateDict([("w", tensor(storage: storage(type: global("torch", "float32"))))])),
                         "a dtype as storage class", mentioning: "not a storage class")
        expectUnreadable(archive(stateDict([("w", [0x28] + unicode("module") + [0x4B, 1, 0x4B, 1, 0x4B, 1, 0x4B, 1, 0x74, 0x51])])),
                         "a module id", mentioning: "only storages")
        expectUnreadable(archive(stateDict([("w", [0x28] + unicode("storage") + [0x4B, 1, 0x74, 0x51])])), "a short id", mentioning: "5-tuple")

        // Stack, memo, marks, calls.
        expectUnreadable(archive(proto + [0x28, 0x28, 0x2E]), "STOP after MARK", mentioning: "empty stack")
        expectUnreadable(archive(proto + [0x74, 0x2E]), "TUPLE without MARK", mentioning: "MARK")
        expectUnreadable(archive(proto + [0x86, 0x2E]), "TUPLE2 on an empty stack", mentioning: "underflow")
        expectUnreadable(archive(proto + [0x7D, 0x28, 0x4B, 1, 0x75, 0x2E]), "odd SETITEMS", mentioning: "odd")
        expectUnreadable(archive(proto + global("torch", "float32") + [0x29, 0x52, 0x2E]), "calling a dtype", mentioning: "cannot be called")
        expectUnreadable(archive(proto + [0x4B, 1, 0x29, 0x52, 0x2E]), "calling an int", mentioning: "REDUCE")
        let huge: [UInt8] = [0x28, 0x8A, 9, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x74]    // (2^64 + 1,)
        expectUnreadable(archive(stateDict([("w", tensor(sizeBytes: huge))])), "a size beyond 64 bits", mentioning: "non-negative ints")
        expectUnreadable(archive(Array(stateDict([("w", tensor(size: [], stride: []))]).dropLast())), "no STOP", mentioning: "without STOP")
        expectUnreadable(archive(proto + [0x63] + Array("torch\nfloat32".utf8)), "GLOBAL without newline", mentioning: "newline")
        expectUnreadable(archive(proto + [0x58] + le32(2) + [0xC3, 0x28, 0x2E]), "invalid UTF-8", mentioning: "UTF-8")
        expectUnreadable(archive(proto + tensor() + [0x2E]), "a bare tensor", mentioning: "single tensor")
        expectUnreadable(archive(proto + [0x4B, 1, 0x2E]), "an int", mentioning: "not a state dict")

        // Object graphs: cycles are not followed, shared containers of tensors are refused, depth and size are bounded.
        let cyclic = proto + [0x7D, 0x28] + unicode("l") + [0x5D, 0x71, 0, 0x68, 0, 0x61] + tensor() + [0x61, 0x75, 0x2E]
        #expect(try file(cyclic).keys == ["l.1"])
        let shared = proto + [0x7D, 0x28] + unicode("a") + [0x7D, 0x71, 1] + unicode("w") + tensor() + [0x73]
            + unicode("b") + [0x68, 1, 0x75, 0x2E]
        expectUnreadable(archive(shared), "a shared dict of tensors", mentioning: "referenced again")
        let deep = proto + [UInt8](repeating: 0x5D, count: 100_000) + [UInt8](repeating: 0x61, count: 99_999) + [0x2E]
        expectUnreadable(archive(deep), "100,000 nested lists", mentioning: "too large or too deep")
        var bomb = proto + [0x7D] + unicode("t") + [0x28, 0x4B, 1, 0x85, 0x71, 0]    // t0 = (1,); t(n+1) = (tn, tn)
        for level in 0..<60 { bomb += [0x68, UInt8(level), 0x68, UInt8(level), 0x86, 0x71, UInt8(level + 1)] }
        expectUnreadable(archive(bomb + [0x74, 0x73, 0x2E]), "2^60 tuple leaves", mentioning: "too large")
        // Memo keys are a dictionary: a 4-byte key allocates nothing.
        #expect(try file(proto + [0x7D, 0x72, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E]).keys.isEmpty)
    }

    @Test("every truncation of a PyTorch file is refused, never a crash")
    func truncations() throws {
        let data = try Data(contentsOf: fixtureURL("pytorch-dtypes/state.pt"))
        #expect(try PyTorchFile(data: data).keys.count == 17)
        var rng = RandomGenerator(seed: 21)
        // The end records and central directory at every length, the rest at random lengths.
        let lengths = Array(max(0, data.count - 1_200)..<data.count) + (0..<300).map { _ in Int(rng.next() % UInt64(data.count)) }
        for length in lengths { expectUnreadable(data.prefix(length), "first \(length) of \(data.count) bytes") }
    }

    @Test("thousands of random mutations of the zip layer throw or read, never crash")
    func fuzzZipLayer() throws {
        let data = try [UInt8](Data(contentsOf: fixtureURL("pytorch-dtypes/state.pt")))
        let directoryStart = try #require(ZipArchive(Data(data)).entries.map(\.dataRange.upperBound).max())
        let rounds = 2_000
        let opened = mutations(of: data, rounds: rounds, maxEdits: 4, seed: 22, edit: { bytes, rng, round in
            // Half the mutations hit the central directory and end records, the rest any byte.
            let low = round % 2 == 0 ? directoryStart : 0
            let position = low + Int(rng.next() % UInt64(bytes.count - low))
            bytes[position] = rng.next() % 3 == 0 ? [0x00, 0xFF, 0x7F, 0x80][Int(rng.next() % 4)] : UInt8(truncatingIfNeeded: rng.next())
        }, open: { openAndConvert(Data($0)) })
        #expect(opened > 0 && opened < rounds, "\(opened) of \(rounds) mutated archives opened")
    }

    @Test("thousands of random mutations of data.pkl, and random opcode streams, throw or read, never crash")
    func fuzzPickleLayer() throws {
        var zip = try ZipBuilder(reading: Data(contentsOf: fixtureURL("pytorch-dtypes/state.pt")))
        let pickle = try #require(zip["/data.pkl"])
        let rounds = 1_500
        let opened = mutations(of: pickle, rounds: rounds, maxEdits: 3, seed: 23, edit: { bytes, rng, _ in
            let position = Int(rng.next() % UInt64(bytes.count))
            switch rng.next() % 4 {
            case 0: bytes.remove(at: position)
            case 1: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: position)
            default: bytes[position] = UInt8(truncatingIfNeeded: rng.next())
            }
        }, open: { bytes in
            zip["/data.pkl"] = bytes
            return openAndConvert(zip.build())
        })
        #expect(opened > 0 && opened < rounds, "\(opened) of \(rounds) mutated pickles opened")

        // Streams of allowed opcodes with random operands exercise the stack, marks and memo.
        var rng = RandomGenerator(seed: 24)
        let opcodes: [UInt8] = [0x80, 0x81, 0x52, 0x62, 0x61, 0x65, 0x73, 0x75, 0x28, 0x74, 0x85, 0x86, 0x87, 0x4E, 0x89, 0x88,
                                0x29, 0x5D, 0x7D, 0x8F, 0x4A, 0x4B, 0x4D, 0x47, 0x58, 0x55, 0x51, 0x68, 0x6A, 0x71, 0x72, 0x8A]
        let pieces = [global("collections", "OrderedDict"), global("torch._utils", "_rebuild_tensor_v2"), storage(), tensor(),
                      global("torch", "Size"), global("torch.nn.parameter", "Parameter"), global("torch", "Tensor")]
        for _ in 0..<1_000 {
            var stream = proto
            for _ in 0..<1 + Int(rng.next() % 40) {
                if rng.next() % 6 == 0 { stream += pieces[Int(rng.next() % UInt64(pieces.count))]; continue }
                stream.append(opcodes[Int(rng.next() % UInt64(opcodes.count))])
                for _ in 0..<Int(rng.next() % 3) { stream.append(UInt8(truncatingIfNeeded: rng.next() % 4)) }
            }
            stream.append(0x2E)
            openAndConvert(archive(stream))
        }
    }
}
