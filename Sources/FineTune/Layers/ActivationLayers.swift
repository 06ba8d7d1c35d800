/// `max(x, 0)` (PyTorch's `nn.ReLU`).
///
/// ```swift
/// let mlp = Sequential(Linear(4, 8), ReLU(), Linear(8, 2))
/// ```
public final class ReLU: Module {
    /// A ReLU.
    public override init() { super.init() }
    public override func forward(_ x: Tensor) -> Tensor { x.relu() }
}

/// `x` where positive, `slope * x` elsewhere (PyTorch's `nn.LeakyReLU`, `negative_slope`).
public final class LeakyReLU: Module {
    /// Slope for negative inputs.
    public let slope: Float
    /// A leaky ReLU with this negative slope.
    public init(slope: Float = 0.01) {
        self.slope = slope
        super.init()
    }
    public override func forward(_ x: Tensor) -> Tensor { x.leakyRelu(slope: slope) }
}

/// Gaussian error linear unit (PyTorch's `nn.GELU`): exact with erf, or the tanh approximation
/// (`approximate='tanh'`).
public final class GELU: Module {
    /// Whether the tanh approximation is used.
    public let approximate: Bool
    /// A GELU, exact unless `approximate`.
    public init(approximate: Bool = false) {
        self.approximate = approximate
        super.init()
    }
    public override func forward(_ x: Tensor) -> Tensor { x.gelu(approximate: approximate) }
}

/// Hyperbolic tangent (PyTorch's `nn.Tanh`).
public final class Tanh: Module {
    /// A tanh.
    public override init() { super.init() }
    public override func forward(_ x: Tensor) -> Tensor { x.tanh() }
}

/// Logistic sigmoid (PyTorch's `nn.Sigmoid`).
public final class Sigmoid: Module {
    /// A sigmoid.
    public override init() { super.init() }
    public override func forward(_ x: Tensor) -> Tensor { x.sigmoid() }
}

/// `x * sigmoid(x)` (PyTorch's `nn.SiLU`, also called swish).
public final class SiLU: Module {
    /// A SiLU.
    public override init() { super.init() }
    public override func forward(_ x: Tensor) -> Tensor { x * x.sigmoid() }
}

/// Softmax along `axis` (PyTorch's `nn.Softmax(dim)`).
///
/// ```swift
/// let probabilities = Softmax(axis: -1)(logits)
/// ```
public final class Softmax: Module {
    /// The axis normalised over (negative counts from the end).
    public let axis: Int
    /// A softmax along `axis`.
    public init(axis: Int = -1) {
        self.axis = axis
        super.init()
    }
    public override func forward(_ x: Tensor) -> Tensor {
        checkAxis(axis, of: x, layer: "Softmax")
        return x.softmax(axis: axis)
    }
}

/// `log(softmax(x))` along `axis`, computed stably (PyTorch's `nn.LogSoftmax(dim)`).
public final class LogSoftmax: Module {
    /// The axis normalised over (negative counts from the end).
    public let axis: Int
    /// A log-softmax along `axis`.
    public init(axis: Int = -1) {
        self.axis = axis
        super.init()
    }
    public override func forward(_ x: Tensor) -> Tensor {
        checkAxis(axis, of: x, layer: "LogSoftmax")
        return x.logSoftmax(axis: axis)
    }
}

/// Stops with a shape error naming the layer when `axis` is outside `x`'s dimensions.
private func checkAxis(_ axis: Int, of x: Tensor, layer: String) {
    Shape.check(x.rank > 0 && axis >= -x.rank && axis < x.rank, op: "\(layer)(axis: \(axis))", shapes: [x.shape],
                "axis out of range for an input of rank \(x.rank)")
}
