/// A fully connected layer, `y = x W^T + b` (PyTorch's `nn.Linear`).
///
/// `weight` is `[out, in]`, initialised kaiming-uniform with `a = sqrt(5)` (that is
/// U(-1/sqrt(in), 1/sqrt(in))); `bias` is `[out]`, U(-1/sqrt(in), 1/sqrt(in)). The input is
/// `[..., in]`, the output `[..., out]`.
///
/// ```swift
/// let fc = Linear(512, 10)
/// let logits = fc(features)     // [N, 512] -> [N, 10]
/// ```
open class Linear: Module, ParameterInitializing {
    /// `[out, in]`. Assign another layer's parameter to tie weights.
    @Param public var weight: Parameter
    /// `[out]`, or nil for a layer without bias.
    @Param public var bias: Parameter?

    /// Input features (`weight.shape[1]`).
    public var inFeatures: Int { weight.shape[1] }
    /// Output features (`weight.shape[0]`).
    public var outFeatures: Int { weight.shape[0] }

    /// A layer mapping `inFeatures` to `outFeatures`, with PyTorch's default initialisation
    /// drawn from the global generator.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        precondition(inFeatures > 0 && outFeatures > 0, "Linear: feature counts must be positive, got \(inFeatures) and \(outFeatures)")
        weight = Parameter(Tensor.zeros([outFeatures, inFeatures]), role: .weight)
        self.bias = bias ? Parameter(Tensor.zeros([outFeatures]), role: .bias) : nil
        super.init()
        resetParameters()
    }

    /// A layer holding the given parameters (`weight` `[out, in]`, `bias` `[out]`), e.g.
    /// pretrained tensors or another layer's parameters (shared, not copied).
    ///
    /// ```swift
    /// let fc = Linear(weight: Parameter(w), bias: Parameter(b, role: .bias))
    /// ```
    public init(weight: Parameter, bias: Parameter?) {
        precondition(weight.shape.count == 2 && weight.shape.allSatisfy { $0 > 0 },
                     "Linear: weight must be [out, in], got \(weight.shape)")
        precondition(bias == nil || bias!.shape == [weight.shape[0]],
                     "Linear: bias must be [\(weight.shape[0])], got \(bias!.shape)")
        self.weight = weight
        self.bias = bias
        super.init()
    }

    /// Redraws `weight` (kaiming-uniform, `a = sqrt(5)`) and then `bias` (U(-1/sqrt(in), 1/sqrt(in))).
    open func resetParameters(generator: inout RandomGenerator) {
        let (w, b) = Initializer.pytorchDefault(weight: weight.shape, bias: bias != nil, generator: &generator)
        weight.value = w
        if let b { bias?.value = b }
    }

    open override func forward(_ x: Tensor) -> Tensor {
        linearForward(x)
    }

    /// `x W^T + b` with this layer's parameters (what subclasses such as ``LoRALinear`` build on).
    public final func linearForward(_ x: Tensor) -> Tensor {
        Shape.check(x.rank >= 1 && x.shape[x.rank - 1] == inFeatures, op: "Linear(\(inFeatures), \(outFeatures))",
                    shapes: [x.shape, weight.shape], "expected input [..., \(inFeatures)]")
        return Tensor.linear(x, weight: weight.value, bias: bias?.value)
    }
}

/// Returns its input unchanged (PyTorch's `nn.Identity`), e.g. to remove a head from a container.
///
/// ```swift
/// let model = Sequential(backbone, Linear(512, 10))
/// try model.replaceModule(at: "1", with: Identity())   // the model now returns the backbone's features
/// ```
///
/// A child declared with a concrete type (a `@Child var proj: Linear`) only takes that type:
/// replacing it with `Identity()` throws `SelectionError.incompatibleReplacement`. `ResNet.fc`
/// takes any module, as in torchvision (`resnet.fc = Identity()`).
public final class Identity: Module {
    /// An identity layer.
    public override init() { super.init() }

    public override func forward(_ x: Tensor) -> Tensor { x }
}

/// Flattens axes `startAxis...endAxis` into one (PyTorch's `nn.Flatten`): by default
/// `[N, C, H, W] -> [N, C*H*W]`.
///
/// ```swift
/// Flatten()(x)   // [8, 32, 2, 2] -> [8, 128]
/// ```
public final class Flatten: Module {
    /// First axis flattened (negative counts from the end).
    public let startAxis: Int
    /// Last axis flattened (negative counts from the end).
    public let endAxis: Int

    /// Flattens `startAxis...endAxis`.
    public init(startAxis: Int = 1, endAxis: Int = -1) {
        self.startAxis = startAxis
        self.endAxis = endAxis
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let s = startAxis < 0 ? startAxis + x.rank : startAxis, e = endAxis < 0 ? endAxis + x.rank : endAxis
        Shape.check(s >= 0 && e < x.rank && s <= e, op: "Flatten(startAxis: \(startAxis), endAxis: \(endAxis))",
                    shapes: [x.shape], "axes out of range for an input of rank \(x.rank)")
        return x.flattened(startAxis: s, endAxis: e)
    }
}

/// Inverted dropout (PyTorch's `nn.Dropout`): in training mode zeroes each element with
/// probability `p` and scales the others by `1 / (1 - p)`; the identity in evaluation mode.
/// Masks are drawn from the global generator (see ``RandomGenerator/seed(_:)``).
///
/// ```swift
/// let drop = Dropout(p: 0.1)
/// ```
public final class Dropout: Module {
    /// Probability of zeroing an element.
    public let p: Float

    /// Dropout with probability `p` in `[0, 1]`.
    public init(p: Float = 0.5) {
        precondition(p >= 0 && p <= 1, "Dropout: p must be in [0, 1], got \(p)")
        self.p = p
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        guard isTraining && p > 0 else { return x }
        if p == 1 { return x * Tensor.zeros(x.shape) }
        return x.dropout(p: p, training: true)
    }
}

/// A lookup table of `count` vectors of size `dim` (PyTorch's `nn.Embedding`), initialised N(0, 1).
///
/// With `paddingIndex` (PyTorch's `padding_idx`; negative counts from the end) that row starts
/// at zero and never receives a gradient, so padding tokens keep a zero vector: what BERT and
/// DistilBERT checkpoints rely on.
///
/// ```swift
/// let embed = Embedding(1000, 64)
/// let e = embed([3, 14, 15, 92], shape: [2, 2])   // [2, 2, 64]
/// let words = Embedding(30522, 768, paddingIndex: 0)
/// ```
open class Embedding: Module, ParameterInitializing {
    /// `[count, dim]`. Assign another layer's parameter to tie weights.
    @Param public var weight: Parameter

    /// Number of vectors (`weight.shape[0]`).
    public var count: Int { weight.shape[0] }
    /// Size of each vector (`weight.shape[1]`).
    public var dim: Int { weight.shape[1] }
    /// The row that stays zero and gets no gradient (in `0..<count`), or nil.
    public let paddingIndex: Int?

    /// A table of `count` vectors of size `dim`, drawn N(0, 1) from the global generator (the
    /// `paddingIndex` row zeroed).
    public init(_ count: Int, _ dim: Int, paddingIndex: Int? = nil) {
        precondition(count > 0 && dim > 0, "Embedding: sizes must be positive, got \(count) and \(dim)")
        if let paddingIndex {
            precondition(paddingIndex >= -count && paddingIndex < count, "Embedding: paddingIndex \(paddingIndex) out of range for \(count) rows")
        }
        self.paddingIndex = paddingIndex.map { $0 < 0 ? $0 + count : $0 }
        weight = Parameter(Tensor.zeros([count, dim]), role: .embedding)
        super.init()
        resetParameters()
    }

    /// A table holding the given parameter (`[count, dim]`), e.g. pretrained vectors or
    /// another layer's parameter (shared, not copied). The `paddingIndex` row keeps its values
    /// (as PyTorch's `from_pretrained`) but gets no gradient.
    public init(weight: Parameter, paddingIndex: Int? = nil) {
        precondition(weight.shape.count == 2 && weight.shape.allSatisfy { $0 > 0 },
                     "Embedding: weight must be [count, dim], got \(weight.shape)")
        let count = weight.shape[0]
        if let paddingIndex {
            precondition(paddingIndex >= -count && paddingIndex < count, "Embedding: paddingIndex \(paddingIndex) out of range for \(count) rows")
        }
        self.paddingIndex = paddingIndex.map { $0 < 0 ? $0 + count : $0 }
        self.weight = weight
        super.init()
    }

    /// Redraws `weight` from N(0, 1), then zeroes the `paddingIndex` row (as PyTorch).
    open func resetParameters(generator: inout RandomGenerator) {
        var table = Tensor.randomNormal(weight.shape, generator: &generator)
        if let paddingIndex {
            let dim = self.dim
            table.withUnsafeMutableBufferPointer { $0[(paddingIndex * dim)..<((paddingIndex + 1) * dim)].update(repeating: 0) }
        }
        weight.value = table
    }

    /// The vectors at `indices`, shaped `shape + [dim]` (`shape` defaults to `[indices.count]`).
    public func callAsFunction(_ indices: [Int], shape: [Int]? = nil) -> Tensor {
        completeCall(lookup(indices, shape: shape ?? [indices.count]))
    }

    /// The vectors at `indices` (checked), shaped `shape + [dim]`: the computation behind both
    /// call forms, which subclasses such as ``LoRAEmbedding`` extend.
    open func lookup(_ indices: [Int], shape: [Int]) -> Tensor {
        let name = "Embedding(\(count), \(dim))"
        Shape.check(shape.reduce(1, *) == indices.count, op: name, shapes: [shape, weight.shape],
                    "index shape holds \(shape.reduce(1, *)) elements but \(indices.count) indices were given")
        if let bad = indices.first(where: { $0 < 0 || $0 >= count }) {
            // A data error: a training loop records it (and the lookup goes on with index 0);
            // without one it stops the process, naming the layer and the index.
            DataIssueRecorder.report(.indexOutOfRange(layer: name, index: bad, count: count))
            let clamped = indices.map { $0 < 0 || $0 >= count ? 0 : $0 }
            return Tensor.embedding(clamped, shape: shape, weight: weight.value, paddingIndex: paddingIndex)
        }
        return Tensor.embedding(indices, shape: shape, weight: weight.value, paddingIndex: paddingIndex)
    }

    /// Looks up a tensor of indices stored as integer-valued floats: `[...] -> [..., dim]`.
    public override func forward(_ x: Tensor) -> Tensor {
        lookup(indices(x), shape: x.shape)
    }

    /// The integer indices held in a tensor of integer-valued floats.
    func indices(_ x: Tensor) -> [Int] {
        let values = x.scalars
        var indices = [Int]()
        indices.reserveCapacity(values.count)
        for v in values {
            Shape.check(v.isFinite && v.rounded() == v, op: "Embedding(\(count), \(dim))", shapes: [x.shape, weight.shape],
                        "indices must be integers, got \(v)")
            indices.append(Int(v))
        }
        return indices
    }
}
