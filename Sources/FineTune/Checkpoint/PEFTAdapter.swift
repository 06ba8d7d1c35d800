import Foundation

/// Reading and writing LoRA adapters in Hugging Face PEFT's folder format
/// (`save_pretrained` / `PeftModel.from_pretrained`):
///
/// - `adapter_config.json`: `peft_type` "LORA", `r`, `lora_alpha`, `lora_dropout`,
///   `target_modules`, `use_rslora`, ...
/// - `adapter_model.safetensors`: `base_model.model.<path>.lora_A.weight` `[r, in]` and
///   `...lora_B.weight` `[out, r]`.
///
/// ```swift
/// let model = MLP()                                          // fc1, fc2 as in the base model
/// try model.load(from: baseURL)                              // pretrained weights
/// let config = try model.loadPEFTAdapter(from: adapterFolder)
/// model.mergeLoRA()                                          // optional: fold for inference
/// ```
public enum PEFTAdapter {
    /// The prefix PEFT puts before module paths in adapter files.
    public static let keyPrefix = "base_model.model."
    static let configName = "adapter_config.json", weightsName = "adapter_model.safetensors"

    /// PEFT's `bias` setting: which bias terms train (and are saved) next to the LoRA weights.
    public enum Bias: String, Sendable, Equatable {
        /// No bias trains.
        case none
        /// Every bias of the model trains.
        case all
        /// The biases of the LoRA-wrapped layers train (saved as `<path>.base_layer.bias`).
        case loraOnly = "lora_only"
    }

    /// What an adapter folder holds besides the LoRA layers.
    public struct Config: Sendable, Equatable {
        /// The LoRA layers (PEFT's `LoraConfig` fields).
        public var lora: LoRAConfig
        /// Modules trained and saved whole next to the LoRA weights (a new head), matched like
        /// `target_modules` names: a path or its `"."`-suffix.
        public var modulesToSave: [String]
        /// Which biases train.
        public var bias: Bias

        public init(lora: LoRAConfig, modulesToSave: [String] = [], bias: Bias = .none) {
            self.lora = lora; self.modulesToSave = modulesToSave; self.bias = bias
        }
    }

    /// Parses `adapter_config.json`. Features FineTune does not implement (DoRA, per-module
    /// ranks, LoRA biases, excluded or per-layer targets, `fan_in_fan_out`) are rejected rather
    /// than silently ignored.
    public static func config(from data: Data) throws(CheckpointError) -> Config {
        guard let json = try? JSONSerialization.jsonObject(with: data), let fields = json as? [String: Any] else {
            throw .invalidAdapter(reason: "\(configName) is not a JSON object")
        }
        func value<T>(_ key: String, _: T.Type) throws(CheckpointError) -> T? {
            guard let raw = fields[key], !(raw is NSNull) else { return nil }
            guard let typed = raw as? T else { throw .invalidAdapter(reason: "\(key) has the wrong type in \(configName)") }
            return typed
        }
        if let type = try value("peft_type", String.self), type != "LORA" {
            throw .invalidAdapter(reason: "peft_type \(type) is not LORA")
        }
        guard let rank = try value("r", Int.self), rank > 0 else { throw .invalidAdapter(reason: "r must be a positive integer") }
        let alpha = try value("lora_alpha", Double.self) ?? 8
        let dropout = try value("lora_dropout", Double.self) ?? 0
        let targets: LoRATargets
        if let list = try? value("target_modules", [String].self) {
            targets = .names(list)
        } else if let single = try value("target_modules", String.self) {
            targets = LoRATargets(stringLiteral: single)    // "all-linear" or a full-match regex, as PEFT reads it
        } else {
            throw .invalidAdapter(reason: "target_modules is missing")
        }
        if try value("use_dora", Bool.self) == true { throw .invalidAdapter(reason: "DoRA adapters (use_dora) are not supported") }
        if try value("fan_in_fan_out", Bool.self) == true { throw .invalidAdapter(reason: "fan_in_fan_out (Conv1D layers) is not supported") }
        if try value("lora_bias", Bool.self) == true { throw .invalidAdapter(reason: "lora_bias (a bias on lora_B) is not supported") }
        for key in ["exclude_modules", "layers_to_transform", "layers_pattern", "target_parameters",
                    "trainable_token_indices", "layer_replication"] {
            if let raw = fields[key], !(raw is NSNull), !((raw as? [Any])?.isEmpty ?? false) {
                throw .invalidAdapter(reason: "\(key) is not supported")
            }
        }
        let biasName = try value("bias", String.self) ?? "none"
        guard let bias = Bias(rawValue: biasName) else {
            throw .invalidAdapter(reason: "bias \"\(biasName)\" is not one of none, all, lora_only")
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let pattern = try value(key, [String: Any].self), !pattern.isEmpty {
                throw .invalidAdapter(reason: "\(key) (per-module ranks) is not supported")
            }
        }
        let lora = LoRAConfig(rank: rank, alpha: Float(alpha), dropout: Float(dropout), targetModules: targets,
                              useRSLoRA: try value("use_rslora", Bool.self) ?? false)
        return Config(lora: lora, modulesToSave: try value("modules_to_save", [String].self) ?? [], bias: bias)
    }

    /// The `adapter_config.json` PEFT would write for `config`.
    public static func configData(_ config: Config) -> Data {
        let lora = config.lora
        let fields: [String: Any] = [
            "peft_type": "LORA", "r": lora.rank, "lora_alpha": Double(lora.alpha), "lora_dropout": Double(lora.dropout),
            "target_modules": lora.targetModules.peftValue, "use_rslora": lora.useRSLoRA, "bias": config.bias.rawValue,
            "fan_in_fan_out": false, "use_dora": false, "init_lora_weights": true, "inference_mode": true,
            "modules_to_save": config.modulesToSave.isEmpty ? NSNull() : config.modulesToSave as Any,
            "task_type": NSNull(), "base_model_name_or_path": NSNull(),
            "rank_pattern": [String: Any](), "alpha_pattern": [String: Any](),
        ]
        return try! JSONSerialization.data(withJSONObject: fields, options: [.prettyPrinted, .sortedKeys])
    }

    /// A key of an adapter file as a FineTune state-dict key: without the prefix, with PEFT's
    /// wrapper segments removed (`fc1.base_layer.bias` is `fc1.bias`; a saved module's
    /// `modules_to_save.` copy is the module itself). Nil for `original_module.` copies, which
    /// PEFT writes beside a saved module's copy when every bias trains.
    static func stateKey(_ fileKey: String) -> String? {
        var key = fileKey.hasPrefix(keyPrefix) ? String(fileKey.dropFirst(keyPrefix.count)) : fileKey
        if key.contains(".original_module.") { return nil }
        for segment in [".base_layer.", ".modules_to_save."] { key = key.replacingOccurrences(of: segment, with: ".") }
        return key
    }

    /// Whether a parameter name ends in a bias term.
    static func isBias(_ name: String) -> Bool { name == "bias" || name.hasSuffix(".bias") }
}

extension Module {
    /// Adds the LoRA adapter in a PEFT folder: wraps its `target_modules` (``applyLoRA(_:)``,
    /// which freezes everything else), loads its weights, and loads and unfreezes what PEFT
    /// trained next to them: the `modules_to_save` (a new head) and the biases its `bias`
    /// setting names. Every tensor in the file must find its place with the right shape, and
    /// every LoRA layer, saved module and trained bias must get its values; otherwise it throws
    /// and the model is left as it was.
    @discardableResult
    public func loadPEFTAdapter(from directory: URL) throws(CheckpointError) -> PEFTAdapter.Config {
        let configURL = directory.appendingPathComponent(PEFTAdapter.configName)
        let configBytes: Data
        do { configBytes = try Data(contentsOf: configURL) } catch {
            throw .io(path: configURL.path, reason: SafeTensors.reason(error))
        }
        let config = try PEFTAdapter.config(from: configBytes)
        let file = try SafeTensors(contentsOf: directory.appendingPathComponent(PEFTAdapter.weightsName))
        let frozen = parameters().map(\.isFrozen)
        let paths: [String]
        do { paths = try applyLoRA(config.lora) } catch { throw .invalidAdapter(reason: error.description) }
        do throws(CheckpointError) {
            let loraLayers = self.loraLayers.filter { paths.contains($0.name) }
            var expected = Set(loraLayers.flatMap { path, layer in
                layer.namedParameters().map(\.name).filter { $0.hasPrefix("lora_") }.map { "\(path).\($0)" }
            })
            var trained: [Parameter] = []
            for name in config.modulesToSave {
                let modules = namedModules().filter { !$0.name.isEmpty && ($0.name == name || $0.name.hasSuffix("." + name)) }
                guard !modules.isEmpty else { throw .invalidAdapter(reason: "modules_to_save \"\(name)\" matches no module") }
                for (path, module) in modules {
                    expected.formUnion(module.namedStateEntries().map { "\(path).\($0.name)" })
                    trained += module.parameters()
                }
            }
            let biases: [(name: String, parameter: Parameter)]
            switch config.bias {
            case .none: biases = []
            case .all: biases = namedParameters().filter { PEFTAdapter.isBias($0.name) }
            case .loraOnly: biases = loraLayers.compactMap { path, layer in (layer as? Linear)?.bias.map { ("\(path).bias", $0) }
                ?? (layer as? Conv2d)?.bias.map { ("\(path).bias", $0) } }
            }
            expected.formUnion(biases.map(\.name))
            trained += biases.map(\.parameter)
            let report = try load(from: file, strict: false) { PEFTAdapter.stateKey($0) }
            let missing = report.missingKeys.filter(expected.contains)
            guard report.unexpectedKeys.isEmpty && missing.isEmpty else {
                throw .keysDoNotMatch(LoadReport(loadedKeys: report.loadedKeys, missingKeys: missing,
                                                                unexpectedKeys: report.unexpectedKeys))
            }
            for p in trained { p.isFrozen = false }
        } catch {
            // Undo: drop the new LoRA layers and restore the frozen flags.
            removeLoRA(merge: false)
            for (p, wasFrozen) in zip(parameters(), frozen) { p.isFrozen = wasFrozen }
            throw error
        }
        return config
    }

    /// Writes the model's LoRA layers as a PEFT adapter folder (created if needed; both files
    /// written atomically), loadable by `PeftModel.from_pretrained` and ``loadPEFTAdapter(from:)``.
    ///
    /// What else trains is saved the way PEFT saves it: a module whose weights train (a new
    /// head) goes to `modules_to_save`, whole; trainable biases set `bias` to `"lora_only"`
    /// (exactly the LoRA layers' biases) or `"all"` (every bias). Anything PEFT cannot express
    /// throws instead of being dropped: LoRA layers with different settings, trainable biases
    /// that are neither of those sets, bottleneck adapters, or a trainable parameter inside a
    /// LoRA layer other than its factors and bias.
    public func savePEFTAdapter(to directory: URL) throws(CheckpointError) {
        let layers = loraLayers
        guard let first = layers.first?.layer else { throw .invalidAdapter(reason: "the model has no LoRA layers") }
        for (name, layer) in layers where layer.rank != first.rank || layer.alpha != first.alpha
            || layer.usesRSLoRA != first.usesRSLoRA || layer.loraDropout?.p != first.loraDropout?.p {
            throw .invalidAdapter(reason: "\(name) has a different rank, alpha or dropout (per-module settings are not supported)")
        }
        let loraPaths = Set(layers.map(\.name))
        // Classify every trainable parameter that is not a LoRA factor.
        var modulesToSave: [String] = []
        var trainableBiases = Set<String>()
        for (path, module) in namedModules() {
            if module is BottleneckAdapter, module.namedParameters().contains(where: { !$0.parameter.isFrozen }) {
                throw .invalidAdapter(reason: "\(path) is a bottleneck adapter: PEFT's LoRA format cannot hold it")
            }
            let isLoRA = loraPaths.contains(path)
            // The LoRA factors (lora_A, lora_B and their embedding forms) are the adapter itself.
            if loraPaths.contains(where: { path.hasPrefix($0 + ".lora_") }) { continue }
            for (key, p) in module.namedDirectParameters() where !p.isFrozen {
                let name = path.isEmpty ? key : "\(path).\(key)"
                if isLoRA && key.hasPrefix("lora_") { continue }
                if PEFTAdapter.isBias(key) { trainableBiases.insert(name); continue }
                if isLoRA || loraPaths.contains(where: { path.hasPrefix($0 + ".") }) {
                    throw .invalidAdapter(reason: "\(name) trains inside a LoRA layer: PEFT cannot save it")
                }
                if path.isEmpty { throw .invalidAdapter(reason: "\(name) is a parameter of the model itself: PEFT saves modules") }
                if !modulesToSave.contains(path) { modulesToSave.append(path) }
            }
        }
        // Biases inside saved modules are saved with them.
        trainableBiases = trainableBiases.filter { name in !modulesToSave.contains { name.hasPrefix($0 + ".") } }
        let allBiases = Set(namedParameters().map(\.name).filter { name in
            PEFTAdapter.isBias(name) && !modulesToSave.contains { name.hasPrefix($0 + ".") }
        })
        let loraBiases = Set(layers.compactMap { path, layer in
            layer.namedDirectParameters().contains { $0.name == "bias" } ? "\(path).bias" : nil
        })
        let bias: PEFTAdapter.Bias
        if trainableBiases.isEmpty {
            bias = .none
        } else if trainableBiases == loraBiases {
            bias = .loraOnly
        } else if trainableBiases == allBiases {
            bias = .all
        } else {
            throw .invalidAdapter(reason: "trainable biases \(trainableBiases.sorted()) are neither every bias (\"all\") "
                                  + "nor exactly the LoRA layers' (\"lora_only\"): PEFT cannot express them")
        }
        let config = PEFTAdapter.Config(
            lora: LoRAConfig(rank: first.rank, alpha: first.alpha, dropout: first.loraDropout?.p ?? 0,
                             targetModules: .names(layers.map(\.name)), useRSLoRA: first.usesRSLoRA),
            modulesToSave: modulesToSave, bias: bias)
        var tensors: [String: Tensor] = [:], dtypes: [String: DType] = [:]
        for (name, layer) in layers {
            for (key, p) in layer.namedParameters() where key.hasPrefix("lora_") {
                tensors["\(PEFTAdapter.keyPrefix)\(name).\(key)"] = p.value
            }
        }
        for path in modulesToSave {
            for (key, entry) in module(named: path)!.namedStateEntries() {
                tensors["\(PEFTAdapter.keyPrefix)\(path).\(key)"] = entry.value
                dtypes["\(PEFTAdapter.keyPrefix)\(path).\(key)"] = entry.checkpointDType
            }
        }
        for name in trainableBiases {
            let path = String(name.dropLast(".bias".count))
            let key = loraPaths.contains(path) ? "\(path).base_layer.bias" : name
            tensors[PEFTAdapter.keyPrefix + key] = parameter(named: name)!.value
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw .io(path: directory.path, reason: SafeTensors.reason(error))
        }
        try SafeTensors.write(tensors, dtypes: dtypes, metadata: ["format": "pt"],
                              to: directory.appendingPathComponent(PEFTAdapter.weightsName))
        try AtomicFile.write(PEFTAdapter.configData(config), to: directory.appendingPathComponent(PEFTAdapter.configName))
    }
}
