/// A bottleneck adapter (Houlsby et al. 2019): a small residual MLP over the last dimension,
///
/// ```text
/// y = h + up(activation(down(h)))      down: features -> bottleneck, up: bottleneck -> features
/// ```
///
/// with `up` initialised to zero, so a freshly inserted adapter is the identity and training
/// starts from the pretrained function. Insert one after any layer with
/// ``Module/addAdapters(after:bottleneck:features:activation:)``.
public final class BottleneckAdapter: Module, ParameterInitializing {
    /// features -> bottleneck (key `down`).
    @Child public var down: Linear
    /// bottleneck -> features, zero-initialised (key `up`).
    @Child public var up: Linear
    /// The nonlinearity between them (GELU by default).
    @Child public var activation: Module

    public init(features: Int, bottleneck: Int, activation: Module = GELU()) {
        down = Linear(features, bottleneck)
        let up = Linear(bottleneck, features)
        up.weight.value = Tensor.zeros(up.weight.shape)
        up.bias?.value = Tensor.zeros(up.bias!.shape)
        self.up = up
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

extension Module {
    /// Inserts a ``BottleneckAdapter`` after each module in `paths` and freezes every other
    /// parameter (adapter tuning: the backbone stays fixed, each adapter adds about
    /// `2 * features * bottleneck` weights). The feature count is the module's output width;
    /// it is read from `Linear` layers (LoRA ones included) and `MultiHeadAttention`, or pass
    /// `features` for other modules. Returns the adapters.
    ///
    /// The adapter becomes the module's ``Module/outputAdapter`` (the child `adapter`, so its
    /// weights are `<path>.adapter.down.weight`, ...): every call of the module, with any
    /// arguments, passes its output through the adapter, and the module keeps its own names,
    /// so pretrained checkpoints still load.
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
            guard module.outputAdapter == nil else {
                throw .unsupportedModule(path: path, type: "\(type(of: module)) with an adapter", expected: "a module without an adapter")
            }
            guard let width = features ?? (module as? Linear)?.outFeatures ?? (module as? MultiHeadAttention)?.embedDim else {
                throw .unsupportedModule(path: path, type: "\(type(of: module))", expected: "Linear or MultiHeadAttention (or pass features:)")
            }
            targets.append((path, module, width))
        }
        freeze()
        var adapters: [BottleneckAdapter] = []
        for (_, module, width) in targets {
            let adapter = BottleneckAdapter(features: width, bottleneck: bottleneck, activation: activation())
            module.attachOutputAdapter(adapter)
            adapters.append(adapter)
        }
        return adapters
    }
}
