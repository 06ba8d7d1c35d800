import Foundation

/// What a state-dict key names: a parameter or a persistent buffer of the module tree.
public enum StateEntry {
    case parameter(Parameter)
    case buffer(Buffer)

    /// The current value.
    public var value: Tensor {
        switch self {
        case .parameter(let p): return p.value
        case .buffer(let b): return b.value
        }
    }

    /// The element type a checkpoint stores this entry as.
    var checkpointDType: DType {
        switch self {
        case .parameter: return .f32
        case .buffer(let b): return b.checkpointDType
        }
    }

    /// The parameter or buffer object: names that share one are tied (loaded and saved once).
    var identity: ObjectIdentifier {
        switch self {
        case .parameter(let p): return ObjectIdentifier(p)
        case .buffer(let b): return ObjectIdentifier(b)
        }
    }

    /// Replaces the value, keeping the parameter's flags (frozen, multipliers) and identity,
    /// so optimizer state stays attached (PyTorch's in-place `copy_`).
    func assign(_ tensor: Tensor) {
        switch self {
        case .parameter(let p): p.value = tensor
        case .buffer(let b): b.value = tensor
        }
    }
}

/// The outcome of loading a state dict or checkpoint into a module (PyTorch's
/// `_IncompatibleKeys`, plus what was loaded).
public struct LoadReport: Equatable, Sendable, CustomStringConvertible {
    /// Module keys that received a value, in state-dict order.
    public var loadedKeys: [String]
    /// Module keys the checkpoint had no value for (they keep their current values).
    public var missingKeys: [String]
    /// Checkpoint keys the module has no place for (ignored), sorted.
    public var unexpectedKeys: [String]
    /// Module keys that name the same parameter as a key loaded from the checkpoint (tied
    /// weights: `lm_head.weight` sharing `model.embed_tokens.weight`): they hold that value. A
    /// checkpoint that has both keys gives the parameter the first one's value, in state-dict order.
    public var tiedKeys: [String] = []
    /// Keys skipped because the shapes differ, with both shapes (only with
    /// `ignoringMismatchedSizes`, Hugging Face's `ignore_mismatched_sizes`): a new head keeps
    /// its initialisation.
    public var skippedMismatches: [CheckpointError.ShapeMismatch] = []

    /// Whether every module key was loaded and every checkpoint key used.
    public var isExact: Bool { missingKeys.isEmpty && unexpectedKeys.isEmpty }

    public var description: String {
        var lines = ["loaded \(loadedKeys.count) tensor(s)"]
        if !missingKeys.isEmpty { lines.append("missing key(s) in the checkpoint: " + missingKeys.joined(separator: ", ")) }
        if !tiedKeys.isEmpty { lines.append("tied to a loaded key: " + tiedKeys.joined(separator: ", ")) }
        if !unexpectedKeys.isEmpty { lines.append("unexpected key(s) in the checkpoint: " + unexpectedKeys.joined(separator: ", ")) }
        if !skippedMismatches.isEmpty {
            lines.append("skipped (shapes differ): " + skippedMismatches.map(\.description).joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}

extension Module {
    /// Every state-dict key with the parameter or persistent buffer behind it, in PyTorch's
    /// order (each module's parameters, then its buffers, then its children). A parameter
    /// shared by two modules appears under both names, as in PyTorch.
    public func namedStateEntries() -> [(name: String, entry: StateEntry)] {
        namedModules().flatMap { prefix, module -> [(name: String, entry: StateEntry)] in
            let own = module.namedDirectParameters().map { ($0.name, StateEntry.parameter($0.parameter)) }
                + module.namedDirectBuffers().filter(\.buffer.isPersistent).map { ($0.name, StateEntry.buffer($0.buffer)) }
            return own.map { (prefix.isEmpty ? $0.0 : "\(prefix).\($0.0)", $0.1) }
        }
    }

    /// The state-dict keys in PyTorch's order.
    public var stateDictKeys: [String] { namedStateEntries().map(\.name) }

    /// Parameters and persistent buffers by key, as PyTorch's `state_dict()`. The tensors share
    /// storage with the module until either side is written (copy-on-write).
    public func stateDict() -> [String: Tensor] {
        Dictionary(namedStateEntries().map { ($0.name, $0.entry.value.detached()) }, uniquingKeysWith: { first, _ in first })
    }

    /// Loads values by key, as PyTorch's `load_state_dict`.
    ///
    /// Every shape is checked first; any mismatch throws ``CheckpointError/shapeMismatch(_:)``
    /// listing all of them, and with `strict` any missing or unexpected key throws
    /// ``CheckpointError/keysDoNotMatch(_:)``. In both cases the module is left unchanged
    /// (PyTorch may have copied some tensors before it raises). Frozen flags and learning-rate
    /// multipliers are kept.
    ///
    /// ```swift
    /// let report = try model.loadStateDict(pretrained.stateDict(), strict: false)
    /// report.missingKeys      // ["head.weight", "head.bias"]: a new head keeps its initialisation
    /// ```
    @discardableResult
    public func loadStateDict(_ tensors: [String: Tensor], strict: Bool = true,
                              ignoringMismatchedSizes: Bool = false) throws(CheckpointError) -> LoadReport {
        try load(keys: Set(tensors.keys), strict: strict, ignoringMismatchedSizes: ignoringMismatchedSizes,
                 shape: { tensors[$0]!.shape },
                 value: { key throws(CheckpointError) in tensors[key]!.contiguousData() })
    }

    /// Saves the state dict as a safetensors file (atomically) under PyTorch's names, so
    /// `safetensors.torch.load_file` + `load_state_dict` reads it back in PyTorch.
    public func save(to url: URL, metadata: [String: String] = ["format": "pt"]) throws(CheckpointError) {
        let entries = checkpointEntries()
        try SafeTensors.write(Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.tensor) }),
                              dtypes: Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.dtype) }),
                              metadata: metadata, to: url)
    }

    /// What a checkpoint of this module holds, in state-dict order: each key once, and a
    /// parameter shared under several names (tied weights) under its first name only, as
    /// transformers' `save_pretrained` and safetensors' `save_model` write it; loading fills
    /// the other names (``LoadReport/tiedKeys``). Each comes with the element type it is stored as.
    func checkpointEntries() -> [(name: String, tensor: Tensor, dtype: DType)] {
        var seen = Set<String>(), objects = Set<ObjectIdentifier>()
        return namedStateEntries().filter { seen.insert($0.name).inserted && objects.insert($0.entry.identity).inserted }
            .map { ($0.name, $0.entry.value, $0.entry.checkpointDType) }
    }

    /// Loads a safetensors checkpoint (e.g. a PyTorch `state_dict` saved with
    /// `safetensors.torch.save_file`). Tensors of any readable dtype are converted to Float32.
    ///
    /// `renaming` maps each checkpoint key to a module key, or to nil to skip it (not counted
    /// as unexpected): strip a `module.` prefix, load a backbone's weights into `backbone.*`,
    /// or drop an old head. Only the tensors that are loaded are converted.
    ///
    /// ```swift
    /// let report = try model.load(from: url, strict: false) { key in
    ///     key.hasPrefix("fc.") ? nil : "backbone." + key
    /// }
    /// print(report)
    /// ```
    @discardableResult
    public func load(from url: URL, strict: Bool = true, ignoringMismatchedSizes: Bool = false,
                     renaming: ((String) -> String?)? = nil) throws(CheckpointError) -> LoadReport {
        try load(from: SafeTensors(contentsOf: url), strict: strict, ignoringMismatchedSizes: ignoringMismatchedSizes,
                 renaming: renaming)
    }

    /// Loads tensors from an opened checkpoint: a safetensors file, a PyTorch file
    /// (``PyTorchFile``) or a Hugging Face folder (``PretrainedFolder``); see
    /// ``load(from:strict:renaming:)-(URL,_,_)``.
    ///
    /// ```swift
    /// try model.load(from: PyTorchFile(contentsOf: URL(fileURLWithPath: "resnet18.pth")))
    /// ```
    @discardableResult
    public func load(from archive: some TensorArchive, strict: Bool = true, ignoringMismatchedSizes: Bool = false,
                     renaming: ((String) -> String?)? = nil) throws(CheckpointError) -> LoadReport {
        var source: [String: String] = [:]    // module key -> file key
        for fileKey in archive.keys.sorted() {
            guard let key = renaming.map({ $0(fileKey) }) ?? fileKey else { continue }
            if let other = source[key] { throw .renamingCollision(key: key, fileKeys: [other, fileKey]) }
            source[key] = fileKey
        }
        return try load(keys: Set(source.keys), strict: strict, ignoringMismatchedSizes: ignoringMismatchedSizes, shape: { archive.shape(of: source[$0]!)! },
                        value: { key throws(CheckpointError) in try archive.tensor(source[key]!) })
    }

    /// The shared load: match keys, check every shape, check strictness, convert, then assign.
    private func load(keys available: Set<String>, strict: Bool, ignoringMismatchedSizes: Bool, shape: (String) -> [Int],
                      value: (String) throws(CheckpointError) -> Tensor) throws(CheckpointError) -> LoadReport {
        let entries = namedStateEntries()
        var seen = Set<String>()
        var report = LoadReport(loadedKeys: [], missingKeys: [], unexpectedKeys: [])
        var mismatches: [CheckpointError.ShapeMismatch] = []
        var pending: [(name: String, entry: StateEntry)] = []
        // A parameter shared under several names is loaded once, from the first name the
        // checkpoint holds; its other names are tied, not missing.
        var source: [ObjectIdentifier: String] = [:]
        for (name, entry) in entries where available.contains(name) && source[entry.identity] == nil {
            source[entry.identity] = name
        }
        for (name, entry) in entries where seen.insert(name).inserted {
            if let loadedName = source[entry.identity], loadedName != name {
                report.tiedKeys.append(name)
                continue
            }
            guard available.contains(name) else { report.missingKeys.append(name); continue }
            let found = shape(name)
            if found != entry.value.shape {
                mismatches.append(.init(key: name, expected: entry.value.shape, found: found))
            } else {
                report.loadedKeys.append(name)
                pending.append((name, entry))
            }
        }
        report.unexpectedKeys = available.subtracting(seen).sorted()
        if ignoringMismatchedSizes {
            report.skippedMismatches = mismatches
        } else if !mismatches.isEmpty {
            throw .shapeMismatch(mismatches)
        }
        if strict && !report.isExact { throw .keysDoNotMatch(report) }
        // Convert everything before assigning anything, so a late failure changes nothing.
        var values: [Tensor] = []
        for (name, _) in pending { values.append(try value(name)) }
        withoutGradients {
            for ((_, entry), tensor) in zip(pending, values) { entry.assign(tensor) }
        }
        return report
    }
}
