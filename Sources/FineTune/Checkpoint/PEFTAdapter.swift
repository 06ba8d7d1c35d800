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

    /// Parses `adapter_config.json`. Features FineTune does not implement (DoRA, per-module
    /// ranks, trained biases, `fan_in_fan_out`) are rejected rather than silently ignored.
    public static func config(from data: Data) throws(CheckpointError) -> LoRAConfig {
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
        if let bias = try value("bias", String.self), bias != "none" {
            throw .invalidAdapter(reason: "bias \"\(bias)\" is not supported (only \"none\")")
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let pattern = try value(key, [String: Any].self), !pattern.isEmpty {
                throw .invalidAdapter(reason: "\(key) (per-module ranks) is not supported")
            }
        }
        return LoRAConfig(rank: rank, alpha: Float(alpha), dropout: Float(dropout), targetModules: targets,
                          useRSLoRA: try value("use_rslora", Bool.self) ?? false)
    }

    /// The `adapter_config.json` PEFT would write for `config`.
    public static func configData(_ config: LoRAConfig) -> Data {
        let fields: [String: Any] = [
            "peft_type": "LORA", "r": config.rank, "lora_alpha": Double(config.alpha), "lora_dropout": Double(config.dropout),
            "target_modules": config.targetModules.peftValue, "use_rslora": config.useRSLoRA, "bias": "none",
            "fan_in_fan_out": false, "use_dora": false, "init_lora_weights": true, "inference_mode": true,
            "modules_to_save": NSNull(), "task_type": NSNull(), "base_model_name_or_path": NSNull(),
            "rank_pattern": [String: Any](), "alpha_pattern": [String: Any](),
        ]
        return try! JSONSerialization.data(withJSONObject: fields, options: [.prettyPrinted, .sortedKeys])
    }
}

extension Module {
    /// Adds the LoRA adapter in a PEFT folder: wraps its `target_modules` (``applyLoRA(_:)``,
    /// which freezes everything else) and loads its weights. Every adapter tensor must find
    /// its LoRA layer with the right shape, and every LoRA layer must get its weights;
    /// otherwise it throws and the model is left as it was.
    @discardableResult
    public func loadPEFTAdapter(from directory: URL) throws(CheckpointError) -> LoRAConfig {
        let configURL = directory.appendingPathComponent(PEFTAdapter.configName)
        let configBytes: Data
        do { configBytes = try Data(contentsOf: configURL) } catch {
            throw .io(path: configURL.path, reason: SafeTensors.reason(error))
        }
        let config = try PEFTAdapter.config(from: configBytes)
        let file = try SafeTensors(contentsOf: directory.appendingPathComponent(PEFTAdapter.weightsName))
        let frozen = parameters().map(\.isFrozen)
        let paths: [String]
        do { paths = try applyLoRA(config) } catch { throw .invalidAdapter(reason: error.description) }
        do throws(CheckpointError) {
            let keys = Set(loraLayers.filter { paths.contains($0.name) }.flatMap { path, layer in
                layer.namedParameters().map(\.name).filter { $0.hasPrefix("lora_") }.map { "\(path).\($0)" }
            })
            let report = try load(from: file, strict: false) { key in
                key.hasPrefix(PEFTAdapter.keyPrefix) ? String(key.dropFirst(PEFTAdapter.keyPrefix.count)) : key
            }
            let missing = report.missingKeys.filter(keys.contains)
            guard report.unexpectedKeys.isEmpty && missing.isEmpty else {
                throw .keysDoNotMatch(LoadReport(loadedKeys: report.loadedKeys, missingKeys: missing,
                                                                unexpectedKeys: report.unexpectedKeys))
            }
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
    /// All LoRA layers must share rank, alpha, dropout and scaling rule.
    public func savePEFTAdapter(to directory: URL) throws(CheckpointError) {
        let layers = loraLayers
        guard let first = layers.first?.layer else { throw .invalidAdapter(reason: "the model has no LoRA layers") }
        for (name, layer) in layers where layer.rank != first.rank || layer.alpha != first.alpha
            || layer.usesRSLoRA != first.usesRSLoRA || layer.loraDropout?.p != first.loraDropout?.p {
            throw .invalidAdapter(reason: "\(name) has a different rank, alpha or dropout (per-module settings are not supported)")
        }
        let config = LoRAConfig(rank: first.rank, alpha: first.alpha, dropout: first.loraDropout?.p ?? 0,
                                targetModules: .names(layers.map(\.name)), useRSLoRA: first.usesRSLoRA)
        var tensors: [String: Tensor] = [:]
        for (name, layer) in layers {
            for (key, p) in layer.namedParameters() where key.hasPrefix("lora_") {
                tensors["\(PEFTAdapter.keyPrefix)\(name).\(key)"] = p.value
            }
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw .io(path: directory.path, reason: SafeTensors.reason(error))
        }
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent(PEFTAdapter.weightsName))
        try AtomicFile.write(PEFTAdapter.configData(config), to: directory.appendingPathComponent(PEFTAdapter.configName))
    }
}
