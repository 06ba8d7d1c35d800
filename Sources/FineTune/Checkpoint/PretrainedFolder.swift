import Foundation

/// A Hugging Face model folder (what `save_pretrained` writes and `from_pretrained` reads):
/// `config.json` plus the weights as
///
/// - `model.safetensors`, or shards `model-00001-of-00003.safetensors`, ... listed in
///   `model.safetensors.index.json` (its `weight_map` names the shard of every tensor), or
/// - `pytorch_model.bin`, or `.bin` shards listed in `pytorch_model.bin.index.json`, read as
///   ``PyTorchFile``s,
///
/// in that order of preference, as `transformers` picks them. A sharded folder is checked
/// completely when it is opened: every shard the index names must exist, hold each tensor
/// mapped to it and nothing else; otherwise ``CheckpointError/invalidFolder(path:reason:)``.
///
/// ```swift
/// let folder = try PretrainedFolder(contentsOf: URL(fileURLWithPath: "bert-base-uncased"))
/// folder.weightFiles                                          // ["model.safetensors"]
/// let hidden = try folder.config?.value("hidden_size", as: Int.self)
/// let embeddings = try folder.tensor("embeddings.word_embeddings.weight")
/// ```
public struct PretrainedFolder: TensorArchive {
    /// `save_pretrained`'s default shard size ("50GB", decimal).
    public static let defaultMaxShardSize = 50_000_000_000

    /// The folder.
    public let directory: URL
    /// The weight files read: one file, or the shards in the order of their names.
    public let weightFiles: [String]
    /// The index file of a sharded folder, nil for a single weights file.
    public let indexFile: String?
    /// The parsed `config.json`, nil when the folder has none.
    public let config: PretrainedConfig?
    private let shards: [any TensorArchive]
    /// The shard (index into `shards`) holding each tensor.
    private let shardOfKey: [String: Int]

    static let safetensorsName = "model.safetensors", safetensorsIndexName = "model.safetensors.index.json"
    static let binName = "pytorch_model.bin", binIndexName = "pytorch_model.bin.index.json"
    static let configName = "config.json"

    /// Tensor names, sorted.
    public var keys: [String] { shardOfKey.keys.sorted() }

    /// Opens a folder: reads `config.json` (if any), picks the weights, checks a sharded index.
    public init(contentsOf directory: URL) throws(CheckpointError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory) else {
            throw .io(path: directory.path, reason: "no such folder")
        }
        guard isDirectory.boolValue else { throw .invalidFolder(path: directory.path, reason: "not a folder") }
        func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path) }
        let configURL = directory.appendingPathComponent(Self.configName)
        self.config = exists(Self.configName) ? try PretrainedConfig(contentsOf: configURL) : nil
        self.directory = directory

        let openSafeTensors: (URL) throws(CheckpointError) -> any TensorArchive = { url throws(CheckpointError) in try SafeTensors(contentsOf: url) }
        let openPyTorch: (URL) throws(CheckpointError) -> any TensorArchive = { url throws(CheckpointError) in try PyTorchFile(contentsOf: url) }
        if exists(Self.safetensorsName) {
            (weightFiles, indexFile) = ([Self.safetensorsName], nil)
            shards = [try openSafeTensors(directory.appendingPathComponent(Self.safetensorsName))]
        } else if exists(Self.safetensorsIndexName) {
            (weightFiles, indexFile) = try Self.shardNames(directory, Self.safetensorsIndexName)
            shards = try Self.open(weightFiles, in: directory, with: openSafeTensors)
        } else if exists(Self.binName) {
            (weightFiles, indexFile) = ([Self.binName], nil)
            shards = [try openPyTorch(directory.appendingPathComponent(Self.binName))]
        } else if exists(Self.binIndexName) {
            (weightFiles, indexFile) = try Self.shardNames(directory, Self.binIndexName)
            shards = try Self.open(weightFiles, in: directory, with: openPyTorch)
        } else {
            throw .invalidFolder(path: directory.path, reason: "no \(Self.safetensorsName), \(Self.safetensorsIndexName), "
                                 + "\(Self.binName) or \(Self.binIndexName)")
        }

        var shardOfKey: [String: Int] = [:]
        for (i, shard) in shards.enumerated() {
            for key in shard.keys where shardOfKey.updateValue(i, forKey: key) != nil {
                throw .invalidFolder(path: directory.path, reason: "\(key) is in more than one shard")
            }
        }
        if let indexFile {
            try Self.checkIndex(Self.weightMap(directory, indexFile), shardOfKey: shardOfKey, weightFiles: weightFiles,
                                path: directory.appendingPathComponent(indexFile).path)
        }
        self.shardOfKey = shardOfKey
    }

    public func shape(of key: String) -> [Int]? { shardOfKey[key].flatMap { shards[$0].shape(of: key) } }

    public func tensor(_ key: String) throws(CheckpointError) -> Tensor {
        guard let shard = shardOfKey[key] else { throw .missingTensor(key: key) }
        return try shards[shard].tensor(key)
    }

    // MARK: Index files

    /// `weight_map` of an index file: tensor name -> shard file name.
    private static func weightMap(_ directory: URL, _ indexFile: String) throws(CheckpointError) -> [String: String] {
        let url = directory.appendingPathComponent(indexFile)
        func invalid(_ reason: String) -> CheckpointError { .invalidFolder(path: url.path, reason: reason) }
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw .io(path: url.path, reason: SafeTensors.reason(error)) }
        let json: JSONValue
        do { json = try JSONValue.parse(data) } catch { throw invalid("not valid JSON: \(error.message)") }
        guard case .object(let index) = json, case .object(let map)? = index["weight_map"] else {
            throw invalid("no weight_map object")
        }
        var result: [String: String] = [:]
        for (key, value) in map {
            guard case .string(let shard) = value else { throw invalid("weight_map[\(key)] is not a file name") }
            // Plain names only: an index must not reach outside its folder.
            guard !shard.isEmpty, shard != ".", shard != "..", !shard.contains("/"), !shard.contains("\\") else {
                throw invalid("weight_map[\(key)] names \(shard), which is not a file in the folder")
            }
            result[key] = shard
        }
        return result
    }

    private static func shardNames(_ directory: URL, _ indexFile: String) throws(CheckpointError) -> ([String], String?) {
        (Set(try weightMap(directory, indexFile).values).sorted(), indexFile)
    }

    private static func open(_ names: [String], in directory: URL,
                             with reader: (URL) throws(CheckpointError) -> any TensorArchive) throws(CheckpointError) -> [any TensorArchive] {
        var shards: [any TensorArchive] = []
        for name in names {
            let url = directory.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw .invalidFolder(path: directory.path, reason: "shard \(name) named by the index is missing")
            }
            shards.append(try reader(url))
        }
        return shards
    }

    /// Every mapped tensor is in its shard, and every shard tensor is mapped there.
    private static func checkIndex(_ map: [String: String], shardOfKey: [String: Int], weightFiles: [String],
                                   path: String) throws(CheckpointError) {
        for (key, shard) in map.sorted(by: { $0.key < $1.key }) {
            guard let actual = shardOfKey[key].map({ weightFiles[$0] }) else {
                throw .invalidFolder(path: path, reason: "the index maps \(key) to \(shard), which does not hold it")
            }
            guard actual == shard else {
                throw .invalidFolder(path: path, reason: "the index maps \(key) to \(shard), but \(actual) holds it")
            }
        }
        if let unlisted = shardOfKey.keys.sorted().first(where: { map[$0] == nil }) {
            throw .invalidFolder(path: path, reason: "\(weightFiles[shardOfKey[unlisted]!]) holds \(unlisted), which the index does not list")
        }
    }

    // MARK: Writing

    /// Writes a folder as `save_pretrained` does: `config.json` (when given) and the tensors as
    /// `model.safetensors` with `{"format": "pt"}` metadata, or, past `maxShardSize` bytes, as
    /// shards `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`
    /// (`metadata.total_size`, `metadata.total_parameters`, `weight_map`).
    ///
    /// Shards are filled in `tensors` order until the next tensor would pass `maxShardSize`; a
    /// tensor larger than that gets a shard of its own (Hugging Face's rule). Each file is
    /// written atomically; shard and index files of an earlier save that the new one does not
    /// use are removed afterwards, so the folder never offers stale weights.
    ///
    /// ```swift
    /// try PretrainedFolder.write(tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
    ///                            config: config, to: folder, maxShardSize: 2_000_000_000)
    /// ```
    public static func write(_ tensors: [(name: String, tensor: Tensor)], dtypes: [String: DType] = [:],
                             config: PretrainedConfig?, to directory: URL, maxShardSize: Int = defaultMaxShardSize,
                             totalParameters: Int? = nil) throws(CheckpointError) {
        guard maxShardSize > 0 else { throw .invalidFolder(path: directory.path, reason: "maxShardSize must be positive") }
        var names = Set<String>()
        for (name, _) in tensors where !names.insert(name).inserted {
            throw .invalidFolder(path: directory.path, reason: "two tensors are named \(name)")
        }
        // Hugging Face's split: fill in order; a tensor too big for any shard gets its own.
        var shards: [[(name: String, tensor: Tensor)]] = [], current: [(name: String, tensor: Tensor)] = []
        var currentSize = 0, totalSize = 0
        for item in tensors {
            let size = item.tensor.count * (dtypes[item.name] ?? .f32).bits / 8
            totalSize += size
            if size > maxShardSize { shards.append([item]); continue }
            if currentSize + size > maxShardSize, !current.isEmpty {
                shards.append(current)
                current = []; currentSize = 0
            }
            current.append(item)
            currentSize += size
        }
        if !current.isEmpty || shards.isEmpty { shards.append(current) }

        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw .io(path: directory.path, reason: SafeTensors.reason(error))
        }
        func encode(_ shard: [(name: String, tensor: Tensor)]) throws(CheckpointError) -> Data {
            let tensors = Dictionary(uniqueKeysWithValues: shard.map { ($0.name, $0.tensor) })
            return try SafeTensors.encode(tensors, dtypes: dtypes.filter { tensors[$0.key] != nil }, metadata: ["format": "pt"])
        }
        var written: Set<String>
        if shards.count == 1 {
            try AtomicFile.write(try encode(shards[0]), to: directory.appendingPathComponent(safetensorsName))
            written = [safetensorsName]
        } else {
            var weightMap: [String: JSONValue] = [:]
            written = [safetensorsIndexName]
            for (i, shard) in shards.enumerated() {
                let name = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
                try AtomicFile.write(try encode(shard), to: directory.appendingPathComponent(name))
                for (key, _) in shard { weightMap[key] = .string(name) }
                written.insert(name)
            }
            var metadata: [String: JSONValue] = ["total_size": .int(totalSize)]
            metadata["total_parameters"] = totalParameters.map { .int($0) }
            let index = JSONValue.object(["metadata": .object(metadata), "weight_map": .object(weightMap)])
            try AtomicFile.write(Data((index.pythonJSONText() + "\n").utf8), to: directory.appendingPathComponent(safetensorsIndexName))
        }
        if let config { try config.write(to: directory.appendingPathComponent(configName)) }
        removeStaleWeights(in: directory, keeping: written)
    }

    /// Removes safetensors weights of an earlier save: the single file, the index and shards
    /// named `model-NNNNN-of-NNNNN.safetensors` that the new save did not write.
    private static func removeStaleWeights(in directory: URL, keeping written: Set<String>) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in names where !written.contains(name) {
            if name == safetensorsName || name == safetensorsIndexName || isShardName(name) {
                try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
            }
        }
    }

    /// `model-00001-of-00003.safetensors`: five digits, "-of-", five digits.
    static func isShardName(_ name: String) -> Bool {
        let parts = Array(name.utf8)
        guard parts.count == "model-00001-of-00003.safetensors".utf8.count, name.hasPrefix("model-"),
              name.hasSuffix(".safetensors") else { return false }
        let middle = Array(parts[6..<20])    // "00001-of-00003"
        let digits = (UInt8(ascii: "0")...UInt8(ascii: "9"))
        return middle[0..<5].allSatisfy(digits.contains) && middle[5..<9].elementsEqual("-of-".utf8)
            && middle[9..<14].allSatisfy(digits.contains)
    }
}

extension Module {
    /// Loads a Hugging Face model folder (``PretrainedFolder``: `model.safetensors`, sharded
    /// safetensors, `pytorch_model.bin` or sharded `.bin`), with the checks and report of
    /// ``load(from:strict:renaming:)-(URL,_,_)``; nothing changes when it throws.
    ///
    /// ```swift
    /// let report = try model.loadPretrained(from: URL(fileURLWithPath: "checkpoints/tiny-resnet"))
    /// ```
    @discardableResult
    public func loadPretrained(from directory: URL, strict: Bool = true, ignoringMismatchedSizes: Bool = false,
                               renaming: ((String) -> String?)? = nil) throws(CheckpointError) -> LoadReport {
        try load(from: PretrainedFolder(contentsOf: directory), strict: strict,
                 ignoringMismatchedSizes: ignoringMismatchedSizes, renaming: renaming)
    }

    /// Saves the module as a Hugging Face folder (``PretrainedFolder/write(_:dtypes:config:to:maxShardSize:totalParameters:)``):
    /// the state dict under PyTorch's names and dtypes, sharded past `maxShardSize` bytes, and
    /// `config` as `config.json`, so `from_pretrained` of the matching `transformers` class
    /// (or ``loadPretrained(from:strict:renaming:)``) reads it back.
    ///
    /// ```swift
    /// try model.savePretrained(to: URL(fileURLWithPath: "finetuned"),
    ///                          config: PretrainedConfig(["model_type": .string("tiny-resnet")]))
    /// ```
    public func savePretrained(to directory: URL, config: PretrainedConfig?,
                               maxShardSize: Int = PretrainedFolder.defaultMaxShardSize) throws(CheckpointError) {
        let entries = checkpointEntries()
        try PretrainedFolder.write(entries.map { ($0.name, $0.tensor) },
                                   dtypes: Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.dtype) }),
                                   config: config, to: directory, maxShardSize: maxShardSize, totalParameters: parameterCount)
    }
}
