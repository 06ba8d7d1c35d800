import Foundation
import Testing
@testable import FineTune

// Tests for PretrainedFolder and PretrainedConfig: Hugging Face folders written by
// transformers (sharded safetensors, pytorch_model.bin) and by hand (sharded .bin), index
// checks, loads that report like loadStateDict, save_pretrained-style writing with shards,
// and config.json reading/writing (typed errors, transformers' exact text, hostile JSON).

/// A copy of a fixture folder in a fresh temporary directory.
private func copyOfFixture(_ path: String) throws -> (root: URL, folder: URL) {
    let root = temporaryDirectory()
    let folder = root.appendingPathComponent("model")
    try FileManager.default.copyItem(at: fixtureURL(path), to: folder)
    return (root, folder)
}

private func editIndex(_ folder: URL, _ edit: (inout [String: String]) -> Void) throws {
    let url = folder.appendingPathComponent("model.safetensors.index.json")
    var index = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    var map = try #require(index["weight_map"] as? [String: String])
    edit(&map)
    index["weight_map"] = map
    try JSONSerialization.data(withJSONObject: index).write(to: url)
}

private func expectInvalidFolder(_ folder: URL, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try PretrainedFolder(contentsOf: folder)
        Issue.record("opened a folder that should be refused (\(text))", sourceLocation: sourceLocation)
    } catch {
        guard case .invalidFolder(_, let reason) = error else { Issue.record("\(error)", sourceLocation: sourceLocation); return }
        #expect(reason.contains(text), "\(reason)", sourceLocation: sourceLocation)
    }
}

private func expectSameTensors(_ archive: some TensorArchive, _ reference: some TensorArchive,
                               sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(archive.keys == reference.keys, sourceLocation: sourceLocation)
    for key in reference.keys {
        let a = try archive.tensor(key), b = try reference.tensor(key)
        #expect(a.shape == b.shape && a.scalars.map(\.bitPattern) == b.scalars.map(\.bitPattern), "\(key)", sourceLocation: sourceLocation)
    }
}

/// Bytes per shard file's tensors, in the file's order of keys as written.
private func tensorBytes(_ file: SafeTensors) -> Int { file.entries.values.map(\.byteRange.count).reduce(0, +) }

@Suite("Hugging Face folders")
struct PretrainedFolderTests {
    // MARK: Reading what transformers and torch write

    @Test("a transformers model saved with a tiny max_shard_size reads as its state dict, with its config")
    func shardedSafetensors() throws {
        let folder = try PretrainedFolder(contentsOf: fixtureURL("bert-tiny/sharded"))
        #expect(folder.indexFile == "model.safetensors.index.json")
        #expect(folder.weightFiles == (1...5).map { "model-0000\($0)-of-00005.safetensors" })
        try expectSameTensors(folder, SafeTensors(contentsOf: fixtureURL("bert-tiny/reference.safetensors")))
        #expect(folder.shape(of: "embeddings.word_embeddings.weight") == [32, 8] && folder.shape(of: "nope") == nil)
        let config = try #require(folder.config)
        #expect(try config.value("model_type", as: String.self) == "bert")
        #expect(try config.value("hidden_size", as: Int.self) == 8)
        #expect(try config.value("layer_norm_eps", as: Float.self) == 1e-12)
        #expect(try config.value("architectures", as: [String].self) == ["BertModel"])
        #expect(try config.value("bos_token_id", as: Int?.self) == nil)
        #expect(try config.value("tie_word_embeddings", as: Bool.self))
        #expect(throws: CheckpointError.missingTensor(key: "nope")) { try folder.tensor("nope") }
    }

    @Test("a pytorch_model.bin folder reads the same tensors through the PyTorch reader")
    func pytorchBinFolder() throws {
        let folder = try PretrainedFolder(contentsOf: fixtureURL("bert-tiny/bin"))
        #expect(folder.weightFiles == ["pytorch_model.bin"] && folder.indexFile == nil)
        try expectSameTensors(folder, SafeTensors(contentsOf: fixtureURL("bert-tiny/reference.safetensors")))
        #expect(folder.config == (try PretrainedFolder(contentsOf: fixtureURL("bert-tiny/sharded")).config))
    }

    @Test("a sharded .bin folder with a hand-written index builds the model its config describes and reproduces PyTorch")
    func shardedBinFolder() throws {
        let url = fixtureURL("tiny-resnet/sharded-bin")
        let folder = try PretrainedFolder(contentsOf: url)
        #expect(folder.indexFile == "pytorch_model.bin.index.json" && folder.weightFiles.count == 2)
        let config = try #require(folder.config)
        let model = try TinyResNet(inChannels: config.value("in_channels", as: Int.self),
                                   channels: config.value("channels", as: [Int].self),
                                   classes: config.value("num_classes", as: Int.self))
        #expect(try config.value("layer_norm_eps", default: Float(1e-5)) == 1e-5)    // null: the default
        let report = try model.loadPretrained(from: url)
        #expect(report.isExact && report.loadedKeys == model.stateDictKeys)
        model.eval()
        let reference = try SafeTensors(contentsOf: fixtureURL("tiny-resnet/reference.safetensors"))
        expectReproduces(withoutGradients { model(try! reference.tensor("inputs")) }, try reference.tensor("outputs"), "sharded .bin")
        try expectSameTensors(folder, PyTorchFile(contentsOf: fixtureURL("tiny-resnet/model.pth")))
    }

    // MARK: Broken folders

    @Test("a sharded folder is checked: missing shards, wrong or incomplete indexes, names outside the folder")
    func brokenFolders() throws {
        func broken(_ edit: (URL) throws -> Void, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let (root, folder) = try copyOfFixture("bert-tiny/sharded")
            defer { try? FileManager.default.removeItem(at: root) }
            try edit(folder)
            expectInvalidFolder(folder, mentioning: text, sourceLocation: sourceLocation)
        }
        let shard3 = "model-00003-of-00005.safetensors"
        try broken({ try FileManager.default.removeItem(at: $0.appendingPathComponent(shard3)) }, mentioning: "shard \(shard3) named by the index is missing")
        try broken({ try editIndex($0) { $0["pooler.dense.bias"] = "model-00001-of-00005.safetensors" } }, mentioning: "holds it")
        try broken({ try editIndex($0) { $0["extra.weight"] = shard3 } }, mentioning: "maps extra.weight to \(shard3), which does not hold it")
        try broken({ try editIndex($0) { $0["pooler.dense.bias"] = nil } }, mentioning: "which the index does not list")
        try broken({ try editIndex($0) { $0["pooler.dense.bias"] = "../model-00005-of-00005.safetensors" } }, mentioning: "not a file in the folder")
        try broken({ try Data("{\"weight_map\": ".utf8).write(to: $0.appendingPathComponent("model.safetensors.index.json")) },
                   mentioning: "not valid JSON")
        try broken({ try Data("{\"metadata\": {}}".utf8).write(to: $0.appendingPathComponent("model.safetensors.index.json")) },
                   mentioning: "no weight_map")
        try broken({ folder in
            // A second shard holding a tensor of the first, named by the index for another key.
            let first = try SafeTensors(contentsOf: folder.appendingPathComponent("model-00001-of-00005.safetensors"))
            try SafeTensors.write(first.tensors(), to: folder.appendingPathComponent("model-extra.safetensors"))
            try editIndex(folder) { $0[first.keys[0]] = "model-extra.safetensors" }
        }, mentioning: "in more than one shard")
        try broken({ folder in
            for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where name != "config.json" {
                try FileManager.default.removeItem(at: folder.appendingPathComponent(name))
            }
        }, mentioning: "no model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json")

        let (root, folder) = try copyOfFixture("bert-tiny/sharded")
        defer { try? FileManager.default.removeItem(at: root) }
        expectInvalidFolder(folder.appendingPathComponent("config.json"), mentioning: "not a folder")
        #expect { try PretrainedFolder(contentsOf: root.appendingPathComponent("absent")) } throws: { error in
            if case .io = error as? CheckpointError { return true } else { return false }
        }
        try Data("{\"hidden_size\": 8,}".utf8).write(to: folder.appendingPathComponent("config.json"))
        #expect { try PretrainedFolder(contentsOf: folder) } throws: { error in
            if case .malformedConfig = error as? CheckpointError { return true } else { return false }
        }
    }

    // MARK: Loading into modules

    @Test("loading a folder reports missing, unexpected and mismatched keys exactly as loadStateDict, and changes nothing on failure")
    func loadReportsLikeStateDicts() throws {
        let url = fixtureURL("tiny-resnet/sharded-bin")
        let tensors = try PretrainedFolder(contentsOf: url).tensors()

        // Shape mismatches: the same error, nothing assigned.
        let threeClasses = TinyResNet(classes: 3)
        let before = threeClasses.stateDict()
        let fromFolder = #expect(throws: CheckpointError.self) { try threeClasses.loadPretrained(from: url, strict: false) }
        let fromDict = #expect(throws: CheckpointError.self) { try threeClasses.loadStateDict(tensors, strict: false) }
        #expect(fromFolder == fromDict && fromFolder == .shapeMismatch([
            .init(key: "fc.weight", expected: [3, 8], found: [5, 8]), .init(key: "fc.bias", expected: [3], found: [5]),
        ]))
        #expect(threeClasses.stateDict().allSatisfy { $0.value.scalars == before[$0.key]!.scalars })

        // Missing and unexpected keys: the same strict error and the same partial report.
        final class WithHead: Module {
            let backbone = TinyResNet()
            let head = Linear(5, 2)
        }
        let renamed: (String) -> String? = { $0.hasPrefix("fc.") ? nil : "backbone." + $0 }
        let model = WithHead(), twin = WithHead()
        let untouched = model.stateDict()
        let strictFolder = #expect(throws: CheckpointError.self) { try model.loadPretrained(from: url) { "backbone." + $0 } }
        let strictDict = #expect(throws: CheckpointError.self) {
            try model.loadStateDict(Dictionary(uniqueKeysWithValues: tensors.map { ("backbone." + $0.key, $0.value) }))
        }
        #expect(strictFolder == strictDict)
        guard case .keysDoNotMatch(let strictReport)? = strictFolder else { Issue.record("\(String(describing: strictFolder))"); return }
        #expect(strictReport.missingKeys == ["head.weight", "head.bias"] && strictReport.unexpectedKeys.isEmpty)
        #expect(model.stateDict().allSatisfy { $0.value.scalars == untouched[$0.key]!.scalars })

        let report = try model.loadPretrained(from: url, strict: false, renaming: renamed)
        let dictReport = try twin.loadStateDict(Dictionary(uniqueKeysWithValues: tensors.compactMap { key, value in
            renamed(key).map { ($0, value) }
        }), strict: false)
        #expect(report == dictReport && !report.isExact && report.unexpectedKeys.isEmpty)
        #expect(report.missingKeys == ["backbone.fc.weight", "backbone.fc.bias", "head.weight", "head.bias"])
        #expect(model.parameter(named: "backbone.conv1.weight")!.value.scalars == tensors["conv1.weight"]!.scalars)
    }

    // MARK: Writing

    @Test("savePretrained writes config.json and model.safetensors like save_pretrained, and reads back bit for bit")
    func saveSingleFile() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = TinyResNet()
        try model.loadPretrained(from: fixtureURL("tiny-resnet/sharded-bin"))
        let config = PretrainedConfig(["model_type": .string("tiny-resnet"), "channels": .array([.int(4), .int(8)]),
                                       "layer_norm_eps": .double(1e-5), "note": .string("é\"\n")])
        let folder = directory.appendingPathComponent("saved")
        try model.savePretrained(to: folder, config: config)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() == ["config.json", "model.safetensors"])
        let file = try SafeTensors(contentsOf: folder.appendingPathComponent("model.safetensors"))
        #expect(file.metadata == ["format": "pt"] && file.keys == model.stateDictKeys.sorted())
        #expect(file.entries["bn1.num_batches_tracked"]?.dtype == .i64 && file.entries["conv1.weight"]?.dtype == .f32)

        let opened = try PretrainedFolder(contentsOf: folder)
        #expect(opened.config == config && opened.indexFile == nil)
        let copy = TinyResNet()
        try copy.loadPretrained(from: folder)
        try expectSameTensors(SafeTensors(data: SafeTensors.encode(copy.stateDict())), SafeTensors(data: SafeTensors.encode(model.stateDict())))
    }

    @Test("past maxShardSize the folder is sharded by Hugging Face's rule, with the index transformers reads; stale weights go")
    func saveSharded() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = TinyResNet()
        try model.loadPretrained(from: fixtureURL("tiny-resnet/sharded-bin"))
        let limit = 1_200
        try Data("keep me".utf8).write(to: directory.appendingPathComponent("README.md"))
        try model.savePretrained(to: directory, config: PretrainedConfig(["model_type": .string("tiny-resnet")]), maxShardSize: limit)

        let index = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent(
            "model.safetensors.index.json"))) as? [String: Any])
        let metadata = try #require(index["metadata"] as? [String: Any]), map = try #require(index["weight_map"] as? [String: String])
        let entries = model.checkpointEntries()
        let sizes = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.tensor.count * $0.dtype.bits / 8) })
        #expect(metadata["total_size"] as? Int == sizes.values.reduce(0, +))
        #expect(metadata["total_parameters"] as? Int == model.parameterCount)
        #expect(Set(map.keys) == Set(sizes.keys))
        let shards = Set(map.values).sorted()
        #expect(shards.count > 2 && shards == (1...shards.count).map { String(format: "model-%05d-of-%05d.safetensors", $0, shards.count) })

        // Hugging Face's rule: a tensor above the limit gets a shard of its own; the others fill
        // shards in state-dict order, a new one starting when the next tensor would not fit.
        let order = entries.map(\.name)
        let oversized = order.filter { sizes[$0]! > limit }
        #expect(!oversized.isEmpty, "the test needs a tensor above the limit")
        var regular: [[String]] = []
        for shard in shards {
            let file = try SafeTensors(contentsOf: directory.appendingPathComponent(shard))
            let keys = order.filter { map[$0] == shard }
            let bytes = keys.map { sizes[$0]! }.reduce(0, +)
            #expect(file.keys == keys.sorted() && tensorBytes(file) == bytes && file.metadata == ["format": "pt"], "\(shard)")
            if keys.count == 1, oversized.contains(keys[0]) { continue }
            #expect(bytes <= limit && !keys.contains(where: oversized.contains), "\(shard) holds \(bytes) bytes")
            regular.append(keys)
        }
        #expect(regular.flatMap { $0 } == order.filter { !oversized.contains($0) }, "shards are not consecutive runs")
        for (run, next) in zip(regular, regular.dropFirst()) {
            #expect(run.map { sizes[$0]! }.reduce(0, +) + sizes[next[0]]! > limit, "\(next[0]) would have fitted the previous shard")
        }
        let copy = TinyResNet()
        #expect(try copy.loadPretrained(from: directory).isExact)
        try expectSameTensors(SafeTensors(data: SafeTensors.encode(copy.stateDict())), SafeTensors(data: SafeTensors.encode(model.stateDict())))

        // Saving again unsharded removes the shards and the index; sharded again removes model.safetensors.
        try model.savePretrained(to: directory, config: nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == ["README.md", "config.json", "model.safetensors"])
        try model.savePretrained(to: directory, config: nil, maxShardSize: 4_000)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(names == ["README.md", "config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                          "model.safetensors.index.json"])
        #expect(throws: CheckpointError.invalidFolder(path: directory.path, reason: "maxShardSize must be positive")) {
            try model.savePretrained(to: directory, config: nil, maxShardSize: 0)
        }
        #expect(PretrainedFolder.isShardName("model-00001-of-00002.safetensors") && !PretrainedFolder.isShardName("model-1-of-2.safetensors"))
    }

    @Test("FineTune-saved folder: the committed fixture (loaded by transformers in the script) is what FineTune writes")
    func fineTuneSavedFolder() throws {
        let source = try PretrainedFolder(contentsOf: fixtureURL("bert-tiny/sharded"))
        let tensors = try source.tensors()
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // FINETUNE_WRITE_FIXTURES=1 rewrites the fixture in the source tree instead (see scripts/make-checkpoint-fixtures.py).
        let committed = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/bert-tiny/finetune-saved")
        let writeFixture = ProcessInfo.processInfo.environment["FINETUNE_WRITE_FIXTURES"] != nil
        let target = writeFixture ? committed : directory.appendingPathComponent("finetune-saved")
        if writeFixture { try? FileManager.default.removeItem(at: committed) }
        try PretrainedFolder.write(tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, config: source.config, to: target,
                                   maxShardSize: 2_500, totalParameters: tensors.values.map(\.count).reduce(0, +))
        try expectSameTensors(PretrainedFolder(contentsOf: target), source)
        guard !writeFixture else { return }    // the test bundle holds the previous copy until the next build

        let names = try FileManager.default.contentsOfDirectory(atPath: target.path).sorted()
        #expect(names.contains("model.safetensors.index.json") && names.count > 3)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixtureURL("bert-tiny/finetune-saved").path).sorted() == names)
        for name in names {
            let written = try Data(contentsOf: target.appendingPathComponent(name))
            #expect(written == (try Data(contentsOf: fixtureURL("bert-tiny/finetune-saved/\(name)"))), "\(name) differs from the fixture")
        }
        // The config is written with transformers' exact text.
        #expect(try Data(contentsOf: target.appendingPathComponent("config.json"))
                == Data(contentsOf: fixtureURL("bert-tiny/sharded/config.json")))
    }

    // MARK: config.json

    @Test("config values: typed lookups, defaults, sections, and errors naming the dotted key")
    func configLookups() throws {
        let text = """
        {"hidden_size": 16, "scale": 2.0, "ratio": 2.5, "huge": 1e300, "flag": true, "one": 1, "name": "bert",
         "sizes": [1, 2, 3], "mixed": [1, "x"], "nothing": null, "vision_config": {"patch_size": 4, "depths": [2, 2]}}
        """
        let config = try PretrainedConfig(data: Data(text.utf8))
        #expect(try config.value("hidden_size", as: Int.self) == 16 && config.value("hidden_size", as: Float.self) == 16)
        #expect(try config.value("scale", as: Int.self) == 2 && config.value("ratio", as: Double.self) == 2.5)
        #expect(try config.value("sizes", as: [Int].self) == [1, 2, 3] && config.value("flag", as: Bool.self))
        #expect(try config.value("nothing", as: String?.self) == nil && config.value("name", as: String?.self) == "bert")
        #expect(try config.value("missing", default: 7) == 7 && config.value("nothing", default: 7) == 7 && config.value("one", default: 7) == 1)
        #expect(try config.value("huge", as: Double.self) == 1e300 && config.value("mixed", as: JSONValue.self) == .array([.int(1), .string("x")]))
        #expect(throws: CheckpointError.missingConfigKey("vocab_size")) { try config.value("vocab_size", as: Int.self) }
        #expect(throws: CheckpointError.wrongConfigType(key: "ratio", expected: "Int", found: "a float")) { try config.value("ratio", as: Int.self) }
        #expect(throws: CheckpointError.wrongConfigType(key: "one", expected: "Bool", found: "an int")) { try config.value("one", as: Bool.self) }
        #expect(throws: CheckpointError.wrongConfigType(key: "huge", expected: "Float", found: "a float")) { try config.value("huge", as: Float.self) }
        #expect(throws: CheckpointError.wrongConfigType(key: "mixed", expected: "[Int]", found: "an array of an int and a string")) {
            try config.value("mixed", as: [Int].self)
        }
        #expect(throws: CheckpointError.wrongConfigType(key: "name", expected: "Int", found: "a string")) { try config.value("name", default: 3) }
        let vision = try config.section("vision_config")
        #expect(try vision.path == "vision_config" && vision.value("depths", as: [Int].self) == [2, 2])
        #expect(throws: CheckpointError.missingConfigKey("vision_config.hidden_size")) { try vision.value("hidden_size", as: Int.self) }
        #expect(throws: CheckpointError.wrongConfigType(key: "name", expected: "an object", found: "a string")) { try config.section("name") }
        #expect(throws: CheckpointError.missingConfigKey("text_config")) { try config.section("text_config") }
        let message = CheckpointError.wrongConfigType(key: "vision_config.depths", expected: "[Int]", found: "a string").description
        #expect(message.contains("vision_config.depths") && message.contains("[Int]") && message.contains("a string"))
    }

    @Test("config.json text: transformers' format byte for byte, Python's escapes and numbers")
    func configText() throws {
        let url = fixtureURL("bert-tiny/sharded/config.json")
        #expect(try PretrainedConfig(contentsOf: url).jsonData() == Data(contentsOf: url))
        let config = PretrainedConfig(["text": .string("é😀\"\\\n\u{7F}/"), "eps": .double(1e-12), "theta": .double(10000),
                                       "big": .double(1e16), "inf": .double(.infinity), "int": .int(Int.max), "neg": .double(-0.0),
                                       "empty": .object([:]), "list": .array([]), "z": .null, "B": .bool(false)])
        // What Python's json.dumps(..., indent=2, sort_keys=True) writes for the same values.
        let python = """
        {
          "B": false,
          "big": 1e+16,
          "empty": {},
          "eps": 1e-12,
          "inf": Infinity,
          "int": 9223372036854775807,
          "list": [],
          "neg": -0.0,
          "text": "\\u00e9\\ud83d\\ude00\\"\\\\\\n\\u007f/",
          "theta": 10000.0,
          "z": null
        }

        """
        #expect(String(decoding: config.jsonData(), as: UTF8.self) == python)
        let parsed = try PretrainedConfig(data: config.jsonData())
        #expect(parsed.fields.filter { $0.key != "neg" } == config.fields.filter { $0.key != "neg" })
        #expect(try PretrainedConfig(data: Data("{\"a\": 1e400, \"b\": -Infinity, \"c\": NaN, \"d\": \"\\u00e9\\ud83d\\ude00\", \"a\": 2}".utf8)).fields
                .filter { $0.key != "c" } == ["a": .int(2), "b": .double(-.infinity), "d": .string("é😀")])
    }

    @Test("malformed and hostile config.json files throw malformedConfig, never crash")
    func malformedConfigs() throws {
        let bad = ["", "[1, 2]", "{", "{\"a\": }", "{\"a\": 1,}", "{\"a\": 01}", "{\"a\": 1.}", "{\"a\": .5}", "{\"a\": \"\u{1}\"}",
                   "{\"a\": \"\\x\"}", "{\"a\": \"\\ud800\"}", "{\"a\": tru}", "{\"a\": 1} x", "{a: 1}", "{\"a\" 1}",
                   String(repeating: "[", count: 100_000), String(repeating: "{\"a\":", count: 100_000)]
        for text in bad {
            #expect(throws: CheckpointError.self, "\(text.prefix(20))") { try PretrainedConfig(data: Data(text.utf8)) }
            do { _ = try PretrainedConfig(data: Data(text.utf8)) } catch {
                guard case .malformedConfig = error else { Issue.record("\(text.prefix(20)): \(error)"); continue }
            }
        }
        #expect(throws: CheckpointError.malformedConfig(reason: "not valid JSON: a string is not UTF-8 at byte 7")) {
            try PretrainedConfig(data: Data([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xFF, 0x22, 0x7D]))
        }
        let original = try [UInt8](Data(contentsOf: fixtureURL("bert-tiny/sharded/config.json")))
        let syntax = Array("{}[]\",:0e-.\\ u".utf8)
        var rng = RandomGenerator(seed: 31)
        var parsed = 0
        for _ in 0..<2_000 {
            var bytes = original
            for _ in 0..<1 + Int(rng.next() % 3) {
                bytes[Int(rng.next() % UInt64(bytes.count))] = rng.next() % 2 == 0
                    ? syntax[Int(rng.next() % UInt64(syntax.count))] : UInt8(truncatingIfNeeded: rng.next())
            }
            if (try? PretrainedConfig(data: Data(bytes))) != nil { parsed += 1 }
        }
        #expect(parsed > 0 && parsed < 2_000)
    }

    // MARK: README

    @Test("README: pretrained weights from PyTorch files and Hugging Face folders")
    func readmeSnippet() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = TinyResNet()
        let file = try PyTorchFile(contentsOf: fixtureURL("tiny-resnet/model.pth"))
        try model.load(from: file)

        let folder = try PretrainedFolder(contentsOf: fixtureURL("tiny-resnet/sharded-bin"))
        let channels = try folder.config?.value("channels", as: [Int].self)
        try model.loadPretrained(from: folder.directory)
        try model.savePretrained(to: directory.appendingPathComponent("finetuned"), config: folder.config,
                                 maxShardSize: 2_000_000_000)
        #expect(channels == [4, 8])
        let saved = try PretrainedFolder(contentsOf: directory.appendingPathComponent("finetuned"))
        #expect(saved.weightFiles == ["model.safetensors"] && saved.config == folder.config)
        try expectSameTensors(saved, file)
    }
}
