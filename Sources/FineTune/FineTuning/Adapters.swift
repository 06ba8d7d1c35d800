/// A bottleneck adapter (Houlsby et al. 2019): a small residual MLP over the last dimension,
///
/// ```text
/// y = h + up(activation(down(h)))      down: features -> bottleneck, up: bottleneck -> features
/// ```
///
/// with `up` initialised to zero, so a freshly inserted adapter is the identity and training
/// starts from the pretrained function. Insert one after any layer with
/// ``Module/addAdapters(after:bottleneck:)``.
public final class BottleneckAdapter: Module, ParameterInitializing {
    /// features -> bottleneck (key `down`).
    public let down: Linear
    /// bottleneck -> features, zero-initialised (key `up`).
    public let up: Linear
    /// The nonlinearity between them (GELU by default).
    public let activation: Module

    public init(features: Int, bottleneck: Int, activation: Module = GELU()) {
        down = Linear(features, bottleneck)
        up = Linear(bottleneck, features)
        up.weight.value = Tensor.zeros(up.weight.shape)
        up.bias?.value = Tensor.zeros(up.bias!.shape)
        self.activation = activation
        super.init()
    }

    public override func forward(_ h: Tensor) -> Tensor {
        h + up(activation(down(h)))
    }

    /// Keeps the adapter an identity after ``Module/reinitialize()`` (`up` back to zero).
    public func resetParameters(generator: inout RandomGenerator) {
        up.weight.value = Tensor.zeros(up.weight.shape)
        up.bias?.value = Tensor.zeros(up.bias!.shape)
    }
}

/// A module followed by an adapter. The wrapped module's parameters and children keep their
/// names (so pretrained checkpoints still load as they are); the adapter's appear under
/// `adapter.` (`encoder.2.adapter.down.weight`).
public final class AdaptedModule: Module, ParameterInitializing {
    /// The adapter applied to the wrapped module's output.
    public let adapter: Module
    private let _wrapped: Module

    /// The module whose output the adapter transforms.
    public var wrapped: Module { _wrapped }

    public init(_ wrapped: Module, adapter: Module) {
        _wrapped = wrapped
        self.adapter = adapter
        super.init()
    }

    public override func namedChildren() -> [(name: String, module: Module)] {
        _wrapped.namedChildren() + [("adapter", adapter)]
    }

    public override func namedDirectParameters() -> [(name: String, parameter: Parameter)] {
        _wrapped.namedDirectParameters()
    }

    public override func namedDirectBuffers() -> [(name: String, buffer: Buffer)] {
        _wrapped.namedDirectBuffers()
    }

    /// Redraws the wrapped module's own parameters (its children and the adapter are reached
    /// through the tree).
    public func resetParameters(generator: inout RandomGenerator) {
        (_wrapped as? ParameterInitializing)?.resetParameters(generator: &generator)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        _wrapped.isTraining = isTraining    // the wrapped module is not in the tree itself
        return adapter(_wrapped.forward(x))
    }
}

extension Module {
    /// Inserts a ``BottleneckAdapter`` after each module in `paths` and freezes every other
    /// parameter (adapter tuning: the backbone stays fixed, each adapter adds about
    /// `2 * features * bottleneck` weights). The feature count is the module's output width;
    /// it is read from `Linear` layers, or pass `features` for other modules. Returns the adapters.
    ///
    /// ```swift
    /// let adapters = try model.addAdapters(after: ["blocks.0", "blocks.1"], bottleneck: 16, features: 256)
    /// try model.unfreeze(matching: "head")       // usually trained with them
    /// ```
    @discardableResult
    public func addAdapters(after paths: [String], bottleneck: Int, features: Int? = nil,
                            activation: @autoclosure () -> Module = GELU()) throws(SelectionError) -> [BottleneckAdapter] {
        var targets: [(String, Module, Int)] = []
        for path in paths {
            guard !path.isEmpty, let module = module(named: path) else {
                throw .noModule(path: path, examples: Array(namedModules().map(\.name).dropFirst().prefix(8)))
            }
            guard let width = features ?? (module as? Linear)?.outFeatures ?? ((module as? LoRALayer)?.original as? Linear)?.outFeatures else {
                throw .unsupportedModule(path: path, type: "\(type(of: module))", expected: "Linear (or pass features:)")
            }
            targets.append((path, module, width))
        }
        freeze()
        var adapters: [BottleneckAdapter] = []
        for (path, module, width) in targets {
            let adapter = BottleneckAdapter(features: width, bottleneck: bottleneck, activation: activation())
            try replaceModule(at: path, with: AdaptedModule(module, adapter: adapter))
            adapters.append(adapter)
        }
        return adapters
    }
}
