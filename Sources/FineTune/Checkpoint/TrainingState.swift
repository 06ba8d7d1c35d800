import Foundation

/// Everything a fine-tuning run needs to continue exactly where it stopped, in one file:
/// weights, every per-parameter control, the LoRA and adapter structure, modes, optimizer
/// state, the schedule position, the data position and the random generator. Restoring it
/// into a freshly built base model re-creates the LoRA layers and adapters, loads the weights
/// and re-applies every flag, so a resumed run never unfreezes a base and continues bit for
/// bit (same dropout masks, same Adam bias corrections).
///
/// ```swift
/// // Saving, e.g. after batch 5 of epoch 2:
/// try TrainingState(model: model, optimizer: optimizer, progress: .init(epoch: 2, batch: 6)).write(to: url)
///
/// // Resuming, in a new process: build the base model and the optimizer as before, then
/// let model = makeBaseModel()
/// let optimizer = Adam(model, lr: 1e-3)
/// let state = try TrainingState(contentsOf: url)
/// try state.restore(into: model, optimizer: optimizer)   // LoRA re-created, base frozen, RNG restored
/// // continue with batch state.progress.batch of epoch state.progress.epoch (same shuffle seed)
/// ```
///
/// ## File format (version 1)
///
/// A safetensors file (written atomically) with the metadata `"format": "finetune.training_state"`
/// and `"training_state"`, a JSON document, plus these tensors:
///
/// | key | dtype | content |
/// |---|---|---|
/// | `model.<state-dict key>` | F32 (buffers keep their dtype, e.g. I64 `num_batches_tracked`) | ``Module/stateDict()``, PyTorch's names, LoRA and adapter weights included |
/// | `optimizer.<parameter>.<buffer>` | F32 | optimizer buffers (`exp_avg`, `exp_avg_sq`, `momentum_buffer`) |
/// | `optimizer.<parameter>.step` | I64 `[]` | the parameter's own step count, exact |
///
/// The JSON document (keys in snake_case; floats as JSON numbers that read back bit for bit,
/// `"inf"`/`"-inf"`/`"nan"` for non-finite ones):
///
/// ```text
/// {"format_version": 1,
///  "progress": {"epoch": 2, "batch": 6},
///  "parameters": {"fc1.weight": {"frozen": true, "lr_multiplier": 1, "weight_decay_multiplier": 1}, ...},
///  "modules": {"": {"training": true}, "backbone": {"training": false, "pinned": "inference"},
///              "backbone.1": {"training": false, "batch_norm": {"statistics": "running", "frozen_as_module": true}}, ...},
///  "lora": [{"path": "fc1", "kind": "linear", "rank": 4, "alpha": 8, "dropout": 0.1, "rslora": false, "merged": false}],
///  "adapters": [{"path": "fc2", "type": "BottleneckAdapter", "features": 32, "bottleneck": 8,
///                "activation": {"type": "GELU", "approximate": false}}],
///  "optimizer": {"type": "Adam", "step_count": 180, "learning_rate": 0.001},
///  "random_generator": ["9e3779b97f4a7c15", "...", "...", "..."],
///  "metadata": {"run": "digits-lora"}}
/// ```
///
/// - `parameters`: every parameter by dotted name (``Module/namedParameters()``): frozen flag,
///   learning-rate and weight-decay multipliers.
/// - `modules`: every module by path (`""` is the root): its training mode, its pin
///   (``Module/pin(_:)``) and, for BatchNorm, ``BatchNorm/statistics`` (absent when nil) and
///   ``BatchNorm/isFrozenAsModule``.
/// - `lora`: each LoRA layer: `kind` `linear`, `conv2d` or `embedding` (another ``LoRALayer``
///   type is stored by its type name and must already be in the model when restoring),
///   `rank`, `alpha`, `dropout`, `rslora` and whether it is merged.
/// - `adapters`: each output adapter by the path of the module it follows; a
///   ``BottleneckAdapter`` with its widths and activation (`GELU`, `ReLU`, `LeakyReLU`,
///   `Tanh`, `Sigmoid`, `SiLU`), other adapter types by their type name (they must already be
///   in the model).
/// - `optimizer` (absent without one): the optimizer type, ``Optimizer/stepCount`` (the
///   schedule position) and the learning rate.
/// - `random_generator`: the four words of the default generator's state
///   (``RandomGenerator/current``) in hexadecimal.
/// - `progress`: the epoch in progress and the batches of it already trained; `metadata`:
///   the caller's strings.
///
/// In PyTorch, `safetensors.torch.load_file` reads the tensors; strip `model.` to get a
/// `state_dict`, and `json.loads(safe_open(...).metadata()["training_state"])` reads the rest.
///
/// Reading checks the whole file first: truncated or hostile files throw
/// ``CheckpointError/malformed(reason:)`` and never crash. ``restore(into:optimizer:)``
/// changes nothing when it throws.
public struct TrainingState {
    /// The value of the `format` metadata entry.
    public static let formatName = "finetune.training_state"
    /// The version this library writes (and the newest it reads).
    public static let formatVersion = 1

    /// Where in the data the run stopped.
    public var progress: Progress
    /// The caller's strings, saved with the state (run name, data seed, ...).
    public var metadata: [String: String]
    /// Frozen flag and multipliers of every parameter, by dotted name.
    public let parameters: [String: ParameterSettings]
    /// Mode, pin and BatchNorm statistics of every module, by path (`""` is the root).
    public let modules: [String: ModuleSettings]
    /// The LoRA layers, by path.
    public let loraLayers: [LoRASettings]
    /// The output adapters, by the path of the module they follow.
    public let adapters: [AdapterSettings]
    /// The optimizer's type and schedule position, when the state was taken with an optimizer.
    public let optimizer: OptimizerPosition?
    /// The default random generator's state (``RandomGenerator/state``).
    public let randomState: [UInt64]
    /// The model's state dict (parameters and persistent buffers), by key.
    public let modelState: [String: Tensor]
    let modelDTypes: [String: DType]
    /// Optimizer buffers by `<parameter>.<buffer>`.
    let optimizerTensors: [String: Tensor]
    /// Optimizer step counts by `<parameter>.step`.
    let optimizerSteps: [String: SafeTensors.Integers]

    // MARK: Taking a state

    /// Takes the state of `model`, of `optimizer` (one of the library's optimizers) when given,
    /// and of the default random generator. The tensors are copies: training on changes nothing here.
    ///
    /// Throws ``CheckpointError/incompatibleTrainingState(reason:)`` for an optimizer that does
    /// not expose its state (one not built on the library's optimizers).
    public init(model: Module, optimizer: (any Optimizer)? = nil, progress: Progress = Progress(),
                metadata: [String: String] = [:]) throws(CheckpointError) {
        var state: [String: Tensor] = [:], dtypes: [String: DType] = [:]
        for (name, entry) in model.namedStateEntries() where state[name] == nil {
            state[name] = entry.value.contiguousCopy()
            dtypes[name] = entry.checkpointDType
        }
        modelState = state
        modelDTypes = dtypes
        parameters = Dictionary(model.namedParameters().map { ($0.name, ParameterSettings($0.parameter)) },
                                uniquingKeysWith: { first, _ in first })
        modules = Dictionary(model.namedModules().map { ($0.name, ModuleSettings($0.module)) },
                             uniquingKeysWith: { first, _ in first })
        loraLayers = model.loraLayers.map { LoRASettings(path: $0.name, layer: $0.layer) }
        adapters = model.namedModules().compactMap { path, module in
            module.outputAdapter.map { AdapterSettings(path: path, adapter: $0) }
        }
        if let optimizer {
            let snapshot = optimizer.exportState()    // a copy: the optimizer updates its buffers in place
            let (tensors, steps) = OptimizerStateEntries.entries(of: snapshot)
            self.optimizer = OptimizerPosition(type: "\(type(of: optimizer))", stepCount: snapshot.stepCount,
                                               learningRate: snapshot.learningRate)
            optimizerTensors = tensors
            optimizerSteps = steps
        } else {
            self.optimizer = nil
            optimizerTensors = [:]
            optimizerSteps = [:]
        }
        randomState = RandomGenerator.current.state
        self.progress = progress
        self.metadata = metadata
    }

    // MARK: Writing and reading

    /// The bytes of the state's file (what ``write(to:)`` writes).
    public func data() throws(CheckpointError) -> Data {
        var tensors: [String: Tensor] = [:], dtypes: [String: DType] = [:]
        var integers: [String: SafeTensors.Integers] = [:]
        for (key, tensor) in modelState { tensors[Self.modelPrefix + key] = tensor }
        for (key, dtype) in modelDTypes { dtypes[Self.modelPrefix + key] = dtype }
        for (key, tensor) in optimizerTensors { tensors[Self.optimizerPrefix + key] = tensor }
        for (key, step) in optimizerSteps { integers[Self.optimizerPrefix + key] = step }
        return try SafeTensors.encode(tensors, dtypes: dtypes, integers: integers,
                                      metadata: ["format": Self.formatName, Self.manifestKey: try manifestJSON()])
    }

    /// Writes the state atomically: a crash or a full disk leaves the previous file intact.
    public func write(to url: URL) throws(CheckpointError) {
        try AtomicFile.write(try data(), to: url)
    }

    /// Reads a state file, checking all of it: a file that is not a complete, valid training
    /// state throws ``CheckpointError/malformed(reason:)`` (or ``CheckpointError/io(path:reason:)``).
    public init(contentsOf url: URL) throws(CheckpointError) {
        try self.init(file: SafeTensors(contentsOf: url))
    }

    /// Reads a state from the bytes of its file (see ``init(contentsOf:)``).
    public init(data: Data) throws(CheckpointError) {
        try self.init(file: SafeTensors(data: data))
    }

    init(file: SafeTensors) throws(CheckpointError) {
        guard file.metadata["format"] == Self.formatName, let json = file.metadata[Self.manifestKey] else {
            throw .malformed(reason: "not a FineTune training state (no \"format\": \"\(Self.formatName)\" metadata)")
        }
        let manifest = try Manifest.decode(json)
        var modelState: [String: Tensor] = [:], modelDTypes: [String: DType] = [:]
        for key in file.keys where !key.hasPrefix(Self.optimizerPrefix) {
            guard key.hasPrefix(Self.modelPrefix) else {
                throw .malformed(reason: "training state: tensor \(key) is neither model. nor optimizer. state")
            }
            let name = String(key.dropFirst(Self.modelPrefix.count))
            modelState[name] = try file.tensor(key)
            let dtype = file.entries[key]!.dtype
            modelDTypes[name] = DType.writable.contains(dtype) ? dtype : .f32
        }
        let (optimizerTensors, optimizerSteps) = try OptimizerStateEntries.read(in: file, prefix: Self.optimizerPrefix)
        if manifest.optimizer == nil && !(optimizerTensors.isEmpty && optimizerSteps.isEmpty) {
            throw .malformed(reason: "training state: optimizer tensors without an \"optimizer\" entry")
        }
        if let unknown = manifest.parameters.keys.sorted().first(where: { modelState[$0] == nil }) {
            throw .malformed(reason: "training state: parameter \(unknown) has settings but no tensor")
        }
        progress = manifest.progress
        metadata = manifest.metadata
        parameters = manifest.parameters
        modules = manifest.modules
        loraLayers = manifest.lora
        adapters = manifest.adapters
        optimizer = manifest.optimizer
        randomState = try Manifest.randomState(manifest.randomGenerator)
        self.modelState = modelState
        self.modelDTypes = modelDTypes
        self.optimizerTensors = optimizerTensors
        self.optimizerSteps = optimizerSteps
    }

    // MARK: Restoring

    /// Puts the state into `model` (and `optimizer`, when given) and the default random
    /// generator, in this order:
    ///
    /// 1. re-creates the LoRA layers and adapters the state lists (on a freshly built base
    ///    model; layers that are already there must have the same settings),
    /// 2. checks that the model's module paths, parameters and state-dict keys are the state's,
    ///    and that the optimizer (of the saved type) has a parameter for every saved state,
    /// 3. loads the weights, then re-applies frozen flags, multipliers, BatchNorm statistics
    ///    modes, training modes and pins, the optimizer state with its step count and learning
    ///    rate, and the random generator's state.
    ///
    /// Nothing changes when it throws: re-created layers are removed again and flags put back.
    /// Throws ``CheckpointError/keysDoNotMatch(_:)`` or ``CheckpointError/shapeMismatch(_:)``
    /// when the weights do not fit, ``CheckpointError/incompatibleTrainingState(reason:)``
    /// for any other difference. Without `optimizer`, the saved optimizer state is ignored.
    public func restore(into model: Module, optimizer: (any Optimizer)? = nil) throws(CheckpointError) {
        var savedOptimizer: OptimizerStateSnapshot?
        if let optimizer {
            guard let saved = self.optimizer else {
                throw .incompatibleTrainingState(reason: "the state was taken without an optimizer")
            }
            guard saved.type == "\(type(of: optimizer))" else {
                throw .incompatibleTrainingState(reason: "the state holds \(saved.type) state, not \(type(of: optimizer))")
            }
            savedOptimizer = try OptimizerStateEntries.snapshot(tensors: optimizerTensors, steps: optimizerSteps,
                                                                stepCount: saved.stepCount, learningRate: saved.learningRate)
        }
        let flags = model.parameters().map { ($0, ParameterSettings($0)) }
        var edits: [StructureEdit] = []
        var previousOptimizerState: OptimizerStateSnapshot?    // put back when loading the weights fails
        do throws(CheckpointError) {
            try recreateStructure(in: model, edits: &edits)
            try checkStructure(of: model)
            if let optimizer, let savedOptimizer {
                let current = optimizer.exportState()
                do {
                    try OptimizerStateEntries.importing(savedOptimizer, into: optimizer, strict: true)
                } catch .keysDoNotMatch(let report) {
                    throw .incompatibleTrainingState(reason: "the optimizer has no parameter for the saved state "
                                                     + report.unexpectedKeys.joined(separator: ", "))
                }
                previousOptimizerState = current
            }
            try model.loadStateDict(modelState, strict: true)
            // Nothing below throws.
            apply(to: model)
            RandomGenerator.current = RandomGenerator(state: randomState)!
        } catch {
            for edit in edits.reversed() { edit.undo(in: model) }
            for (parameter, settings) in flags { settings.apply(to: parameter) }
            if let optimizer, let previousOptimizerState {
                do { try optimizer.importState(previousOptimizerState) } catch {
                    preconditionFailure("the optimizer refused its own exported state: \(error)")
                }
            }
            throw error
        }
    }

    /// Re-creates the state's LoRA layers and adapters that the model lacks, outer paths
    /// first (an adapter before a LoRA layer inside it), recording each edit.
    private func recreateStructure(in model: Module, edits: inout [StructureEdit]) throws(CheckpointError) {
        enum Pending { case lora(LoRASettings), adapter(AdapterSettings) }
        func depth(_ path: String) -> Int { path.isEmpty ? 0 : path.split(separator: ".").count }
        let pending = (loraLayers.map { (depth($0.path), Pending.lora($0)) } + adapters.map { (depth($0.path) + 1, Pending.adapter($0)) })
            .enumerated().sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }.map(\.element.1)
        for item in pending {
            switch item {
            case .lora(let settings):
                if let edit = try settings.recreate(in: model) { edits.append(edit) }
            case .adapter(let settings):
                if let edit = try settings.recreate(in: model) { edits.append(edit) }
            }
        }
        let loraPaths = Set(model.loraLayers.map(\.name)), savedLoRA = Set(loraLayers.map(\.path))
        guard loraPaths == savedLoRA else {
            throw .incompatibleTrainingState(reason: "the model has LoRA layers at \(loraPaths.subtracting(savedLoRA).sorted()) "
                                             + "that the state does not have")
        }
        let adapterPaths = Set(model.namedModules().filter { $0.module.outputAdapter != nil }.map(\.name))
        let savedAdapters = Set(adapters.map(\.path))
        guard adapterPaths == savedAdapters else {
            throw .incompatibleTrainingState(reason: "the model has adapters after \(adapterPaths.subtracting(savedAdapters).sorted()) "
                                             + "that the state does not have")
        }
    }

    /// The model's state-dict keys, parameters, module paths and BatchNorm layers must be the state's.
    private func checkStructure(of model: Module) throws(CheckpointError) {
        let keys = model.stateDictKeys
        let missing = keys.filter { modelState[$0] == nil }, unexpected = Set(modelState.keys).subtracting(keys).sorted()
        guard missing.isEmpty && unexpected.isEmpty else {
            throw .keysDoNotMatch(LoadReport(loadedKeys: keys.filter { modelState[$0] != nil }, missingKeys: missing,
                                             unexpectedKeys: unexpected))
        }
        let names = Set(model.namedParameters().map(\.name))
        guard names == Set(parameters.keys) else {
            throw .incompatibleTrainingState(reason: "parameters differ: the model has \(names.subtracting(parameters.keys).sorted()), "
                                             + "the state \(Set(parameters.keys).subtracting(names).sorted())")
        }
        let paths = Set(model.namedModules().map(\.name))
        guard paths == Set(modules.keys) else {
            throw .incompatibleTrainingState(reason: "module paths differ: the model has \(paths.subtracting(modules.keys).sorted()), "
                                             + "the state \(Set(modules.keys).subtracting(paths).sorted())")
        }
        for (path, module) in model.namedModules() where (module is BatchNorm) != (modules[path]!.batchNorm != nil) {
            throw .incompatibleTrainingState(reason: "\(path) is a \(type(of: module)), "
                                             + (module is BatchNorm ? "the state has no BatchNorm settings for it" : "the state has a BatchNorm there"))
        }
    }

    /// Re-applies flags, multipliers, BatchNorm statistics, modes and pins (the structure was checked).
    private func apply(to model: Module) {
        for (name, parameter) in model.namedParameters() { parameters[name]!.apply(to: parameter) }
        let all = model.namedModules()
        for (path, module) in all {
            module.unpin()
            if let bn = module as? BatchNorm, let settings = modules[path]!.batchNorm {
                bn.statistics = settings.statistics
                bn.isFrozenAsModule = settings.isFrozenAsModule
            }
        }
        // Pins set whole subtrees' modes, so outer ones first; then every module's own mode.
        for (path, module) in all.sorted(by: { $0.name.count < $1.name.count }) {
            if let pin = modules[path]!.pinnedMode { module.pin(pin) }
        }
        for (path, module) in all { module.isTraining = modules[path]!.isTraining }
    }

    static let modelPrefix = "model.", optimizerPrefix = "optimizer.", manifestKey = "training_state"

    private func manifestJSON() throws(CheckpointError) -> String {
        let manifest = Manifest(formatVersion: Self.formatVersion, progress: progress, parameters: parameters, modules: modules,
                                lora: loraLayers, adapters: adapters, optimizer: optimizer,
                                randomGenerator: randomState.map { String($0, radix: 16) }, metadata: metadata)
        return try manifest.encoded()
    }
}

// MARK: - The settings it holds

extension TrainingState {
    /// Where in the data a run stopped.
    public struct Progress: Equatable, Sendable, Codable {
        /// The epoch in progress (0-based).
        public var epoch: Int
        /// Batches of that epoch already trained: a resumed run continues with this batch
        /// (0-based) of the same shuffled order.
        public var batch: Int

        public init(epoch: Int = 0, batch: Int = 0) {
            self.epoch = epoch
            self.batch = batch
        }
    }

    /// A parameter's fine-tuning controls.
    public struct ParameterSettings: Equatable, Sendable, Codable {
        public var isFrozen: Bool
        public var lrMultiplier: Float
        public var weightDecayMultiplier: Float

        init(_ parameter: Parameter) {
            isFrozen = parameter.isFrozen
            lrMultiplier = parameter.lrMultiplier
            weightDecayMultiplier = parameter.weightDecayMultiplier
        }

        func apply(to parameter: Parameter) {
            parameter.isFrozen = isFrozen
            parameter.lrMultiplier = lrMultiplier
            parameter.weightDecayMultiplier = weightDecayMultiplier
        }

        enum CodingKeys: String, CodingKey {
            case isFrozen = "frozen", lrMultiplier = "lr_multiplier", weightDecayMultiplier = "weight_decay_multiplier"
        }
    }

    /// A module's mode and pin, and a BatchNorm's statistics settings.
    public struct ModuleSettings: Equatable, Sendable, Codable {
        public var isTraining: Bool
        public var pinnedMode: Module.Mode?
        /// Present exactly for BatchNorm layers.
        public var batchNorm: BatchNormSettings?

        init(_ module: Module) {
            isTraining = module.isTraining
            pinnedMode = module.pinnedMode
            batchNorm = (module as? BatchNorm).map { BatchNormSettings(statistics: $0.statistics, isFrozenAsModule: $0.isFrozenAsModule) }
        }

        enum CodingKeys: String, CodingKey {
            case isTraining = "training", pinnedMode = "pinned", batchNorm = "batch_norm"
        }
    }

    /// A BatchNorm's third freeze axis (see ``BatchNorm``).
    public struct BatchNormSettings: Equatable, Sendable, Codable {
        /// ``BatchNorm/statistics``: nil decides from the frozen state.
        public var statistics: BatchNorm.Statistics?
        /// ``BatchNorm/isFrozenAsModule``.
        public var isFrozenAsModule: Bool

        enum CodingKeys: String, CodingKey {
            case statistics, isFrozenAsModule = "frozen_as_module"
        }
    }

    /// The optimizer's type and its position in the schedule.
    public struct OptimizerPosition: Equatable, Sendable, Codable {
        /// The optimizer's type name (`Adam`, `AdamW`, `SGD`).
        public var type: String
        /// Completed steps (``Optimizer/stepCount``): where the schedule continues.
        public var stepCount: Int
        /// The optimizer's base learning rate, its `lr` (a schedule scales it from the step count).
        public var learningRate: Float

        enum CodingKeys: String, CodingKey {
            case type, stepCount = "step_count", learningRate = "learning_rate"
        }
    }
}

// MARK: - LoRA layers and adapters

extension TrainingState {
    /// One LoRA layer: what re-creates it on a base model.
    public struct LoRASettings: Equatable, Sendable, Codable {
        /// The module path of the layer.
        public var path: String
        /// `linear`, `conv2d`, `embedding`, or the type name of another ``LoRALayer``.
        public var kind: String
        public var rank: Int
        public var alpha: Float
        /// The dropout probability on the low-rank path (0 for none).
        public var dropout: Float
        public var usesRSLoRA: Bool
        public var isMerged: Bool

        init(path: String, layer: any LoRALayer) {
            self.path = path
            switch layer {
            case is LoRALinear: kind = "linear"
            case is LoRAConv2d: kind = "conv2d"
            case is LoRAEmbedding: kind = "embedding"
            default: kind = "\(type(of: layer))"
            }
            rank = layer.rank
            alpha = layer.alpha
            dropout = layer.loraDropout?.p ?? 0
            usesRSLoRA = layer.usesRSLoRA
            isMerged = layer.isMerged
        }

        enum CodingKeys: String, CodingKey {
            case path, kind, rank, alpha, dropout, usesRSLoRA = "rslora", isMerged = "merged"
        }

        func validate() throws(CheckpointError) {
            guard !path.isEmpty, rank > 0, alpha.isFinite, dropout >= 0 && dropout < 1, kind != "embedding" || dropout == 0 else {
                throw .malformed(reason: "training state: invalid LoRA settings for \"\(path)\" "
                                 + "(rank \(rank), alpha \(alpha), dropout \(dropout), kind \(kind))")
            }
        }

        /// Wraps the module at ``path`` unless it already is this LoRA layer; returns the edit.
        func recreate(in model: Module) throws(CheckpointError) -> StructureEdit? {
            guard let module = model.module(named: path) else {
                throw .incompatibleTrainingState(reason: "no module at \(path) for the LoRA layer")
            }
            if let existing = module as? any LoRALayer {
                guard LoRASettings(path: path, layer: existing) == self else {
                    throw .incompatibleTrainingState(reason: "\(path) already holds a LoRA layer with other settings")
                }
                return nil
            }
            // Initial values are overwritten by the saved weights: draw them from a private
            // generator so the default one is untouched.
            let layer: (any LoRALayer)? = RandomGenerator.withSeed(0) {
                switch kind {
                case "linear":
                    return (module as? Linear).map {
                        LoRALinear($0, rank: rank, alpha: alpha, dropout: dropout, useRSLoRA: usesRSLoRA)
                    }
                case "conv2d":
                    return (module as? Conv2d).flatMap {
                        $0.groups == 1 ? LoRAConv2d($0, rank: rank, alpha: alpha, dropout: dropout, useRSLoRA: usesRSLoRA) : nil
                    }
                case "embedding":
                    return (module as? Embedding).map { LoRAEmbedding($0, rank: rank, alpha: alpha, useRSLoRA: usesRSLoRA) }
                default:
                    return nil
                }
            }
            guard let layer else {
                throw .incompatibleTrainingState(reason: "cannot put a \(kind) LoRA layer at \(path), a \(type(of: module))")
            }
            do {
                try model.replaceModule(at: path, with: layer)
            } catch {
                throw .incompatibleTrainingState(reason: error.description)
            }
            // The new update is zero, so this only marks it merged; the saved weights follow.
            if isMerged { layer.merge() }
            return .wrapped(path: path, original: module)
        }
    }

    /// One output adapter (``Module/outputAdapter``).
    public struct AdapterSettings: Equatable, Sendable, Codable {
        /// The path of the module the adapter follows (its weights are under `<path>.adapter`).
        public var path: String
        /// `BottleneckAdapter`, or the type name of another adapter module.
        public var type: String
        /// A bottleneck adapter's width (its input and output features).
        public var features: Int?
        /// A bottleneck adapter's inner width.
        public var bottleneck: Int?
        /// A bottleneck adapter's nonlinearity.
        public var activation: ActivationSettings?

        init(path: String, adapter: Module) {
            self.path = path
            if let bottleneckAdapter = adapter as? BottleneckAdapter {
                type = "BottleneckAdapter"
                features = bottleneckAdapter.down.inFeatures
                bottleneck = bottleneckAdapter.down.outFeatures
                activation = ActivationSettings(bottleneckAdapter.activation)
            } else {
                type = "\(Swift.type(of: adapter))"
            }
        }

        func validate() throws(CheckpointError) {
            guard type != "BottleneckAdapter" || (features ?? 0 > 0 && bottleneck ?? 0 > 0 && activation != nil) else {
                throw .malformed(reason: "training state: the adapter after \"\(path)\" needs positive features, bottleneck and an activation")
            }
        }

        /// Attaches the adapter after the module at ``path`` unless it is there; returns the edit.
        func recreate(in model: Module) throws(CheckpointError) -> StructureEdit? {
            guard let module = model.module(named: path) else {
                throw .incompatibleTrainingState(reason: "no module at \(path) for the adapter")
            }
            if let existing = module.outputAdapter {
                guard AdapterSettings(path: path, adapter: existing) == self else {
                    throw .incompatibleTrainingState(reason: "\(path) already has an adapter with other settings")
                }
                return nil
            }
            guard type == "BottleneckAdapter", let features, let bottleneck, let activation = activation?.makeModule() else {
                throw .incompatibleTrainingState(reason: "cannot re-create the \(type) adapter after \(path) "
                                                 + "(attach it before restoring)")
            }
            let adapter = RandomGenerator.withSeed(0) {
                BottleneckAdapter(features: features, bottleneck: bottleneck, activation: activation)
            }
            module.attachOutputAdapter(adapter)
            return .attached(module)
        }

        enum CodingKeys: String, CodingKey {
            case path, type, features, bottleneck, activation
        }
    }

    /// A bottleneck adapter's activation: the library's activation layers and their options.
    public struct ActivationSettings: Equatable, Sendable, Codable {
        /// The layer's type name (`GELU`, `ReLU`, `LeakyReLU`, `Tanh`, `Sigmoid`, `SiLU`, or another).
        public var type: String
        /// GELU's tanh approximation.
        public var approximate: Bool?
        /// LeakyReLU's negative slope.
        public var slope: Float?

        init(_ module: Module) {
            type = "\(Swift.type(of: module))"
            approximate = (module as? GELU)?.approximate
            slope = (module as? LeakyReLU)?.slope
        }

        /// A new layer of this kind, or nil for a type the library cannot build.
        func makeModule() -> Module? {
            switch type {
            case "GELU": return GELU(approximate: approximate ?? false)
            case "ReLU": return ReLU()
            case "LeakyReLU": return LeakyReLU(slope: slope ?? 0.01)
            case "Tanh": return Tanh()
            case "Sigmoid": return Sigmoid()
            case "SiLU": return SiLU()
            default: return nil
            }
        }
    }

    /// A LoRA layer or adapter that ``restore(into:optimizer:)`` added, and how to take it out.
    enum StructureEdit {
        case wrapped(path: String, original: Module)
        case attached(Module)

        func undo(in model: Module) {
            switch self {
            case let .wrapped(path, original): _ = try? model.replaceModule(at: path, with: original)
            case let .attached(module): module.attachOutputAdapter(nil)
            }
        }
    }
}

extension BatchNorm.Statistics: Codable {}

extension Module.Mode: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        switch try container.decode(String.self) {
        case "training": self = .training
        case "inference": self = .inference
        case let other: throw DecodingError.dataCorruptedError(in: container, debugDescription: "unknown mode \"\(other)\"")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(self == .training ? "training" : "inference")
    }
}

// MARK: - The JSON document

/// The `training_state` metadata entry.
private struct Manifest: Codable {
    var formatVersion: Int
    var progress: TrainingState.Progress
    var parameters: [String: TrainingState.ParameterSettings]
    var modules: [String: TrainingState.ModuleSettings]
    var lora: [TrainingState.LoRASettings]
    var adapters: [TrainingState.AdapterSettings]
    var optimizer: TrainingState.OptimizerPosition?
    var randomGenerator: [String]
    var metadata: [String: String]

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", progress, parameters, modules, lora, adapters, optimizer
        case randomGenerator = "random_generator", metadata
    }

    private struct Version: Decodable {
        var formatVersion: Int
        enum CodingKeys: String, CodingKey { case formatVersion = "format_version" }
    }

    private static let nonFinite = (positive: "inf", negative: "-inf", nan: "nan")

    func encoded() throws(CheckpointError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: Self.nonFinite.positive, negativeInfinity: Self.nonFinite.negative, nan: Self.nonFinite.nan)
        do {
            return String(decoding: try encoder.encode(self), as: UTF8.self)
        } catch {
            throw .malformed(reason: "training state: cannot encode the settings: \(SafeTensors.reason(error))")
        }
    }

    /// Decodes and checks the document: the version, then every field.
    static func decode(_ json: String) throws(CheckpointError) -> Manifest {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: nonFinite.positive, negativeInfinity: nonFinite.negative, nan: nonFinite.nan)
        let bytes = Data(json.utf8)
        let manifest: Manifest
        do {
            let version = try decoder.decode(Version.self, from: bytes).formatVersion
            guard version >= 1 && version <= TrainingState.formatVersion else {
                throw CheckpointError.malformed(reason: "training state: format version \(version) is not one this "
                                                + "FineTune reads (1...\(TrainingState.formatVersion))")
            }
            manifest = try decoder.decode(Manifest.self, from: bytes)
        } catch let error as CheckpointError {
            throw error
        } catch let error as DecodingError {
            throw .malformed(reason: "training state: \(describe(error))")
        } catch {
            throw .malformed(reason: "training state: the settings are not valid JSON")
        }
        guard manifest.progress.epoch >= 0 && manifest.progress.batch >= 0 else {
            throw .malformed(reason: "training state: negative progress \(manifest.progress)")
        }
        for lora in manifest.lora { try lora.validate() }
        for adapter in manifest.adapters { try adapter.validate() }
        if let optimizer = manifest.optimizer,
           optimizer.stepCount < 0 || !(optimizer.learningRate >= 0 && optimizer.learningRate.isFinite) {
            throw .malformed(reason: "training state: invalid optimizer position \(optimizer.stepCount), \(optimizer.learningRate)")
        }
        _ = try randomState(manifest.randomGenerator)
        return manifest
    }

    /// The generator words from their hexadecimal strings.
    static func randomState(_ words: [String]) throws(CheckpointError) -> [UInt64] {
        let state = words.compactMap { UInt64($0, radix: 16) }
        guard state.count == words.count, RandomGenerator(state: state) != nil else {
            throw .malformed(reason: "training state: random_generator must be four hexadecimal words, not all zero")
        }
        return state
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case let .keyNotFound(key, context):
            return "missing \"\(key.stringValue)\"" + (context.codingPath.isEmpty ? "" : " in \(path(context))")
        case let .typeMismatch(_, context), let .valueNotFound(_, context):
            return "wrong or missing value at \(path(context))"
        case let .dataCorrupted(context):
            return context.codingPath.isEmpty ? "the settings are not valid JSON" : "invalid value at \(path(context))"
        @unknown default:
            return "the settings cannot be read"
        }
    }
}
