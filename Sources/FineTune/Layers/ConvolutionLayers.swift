/// 2-D convolution over `[N, C, H, W]` input (PyTorch's `nn.Conv2d`, zero padding).
///
/// `weight` is `[out, in / groups, kh, kw]`, initialised kaiming-uniform with `a = sqrt(5)`;
/// `bias` is `[out]`, U(-1/sqrt(fanIn), 1/sqrt(fanIn)) with `fanIn = in / groups * kh * kw`.
///
/// ```swift
/// let conv = Conv2d(3, 16, kernelSize: 3, padding: 1)   // [N, 3, H, W] -> [N, 16, H, W]
/// ```
open class Conv2d: Module, ParameterInitializing {
    /// `[out, in / groups, kh, kw]`.
    public let weight: Parameter
    /// `[out]`, or nil.
    public let bias: Parameter?

    /// Input channels C.
    public let inChannels: Int
    /// Output channels.
    public let outChannels: Int
    /// `(height, width)` of the kernel.
    public let kernelSize: (Int, Int)
    /// `(height, width)` step between windows.
    public let stride: (Int, Int)
    /// Zeros added on each side, `(height, width)`.
    public let padding: (Int, Int)
    /// Spacing between kernel elements, `(height, width)`.
    public let dilation: (Int, Int)
    /// Channel groups: each output channel sees `inChannels / groups` inputs.
    public let groups: Int
    /// A frozen weight's transformed forms, kept between calls (3x3 convolutions the Winograd
    /// method takes: 16/9 of the weight's memory, twice once a gradient passes through; strided
    /// ones the indirect method takes: the weight's memory).
    let transformedWeights = TransformedWeightCache()

    /// Whether this layer keeps its frozen weight's transformed form between calls (default
    /// true): 16/9 of a 3x3 weight's memory for the Winograd method (twice once a gradient passes
    /// through), the weight's memory for a strided convolution's panels, for skipping the
    /// transform on every call. Setting it to false frees what is kept.
    ///
    /// ```swift
    /// for case let (_, conv as Conv2d) in model.namedModules() { conv.keepsTransformedWeights = false }
    /// ```
    public var keepsTransformedWeights = true {
        didSet { if !keepsTransformedWeights { transformedWeights.removeAll() } }
    }

    /// A convolution with `(height, width)` kernel, stride, padding and dilation.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                            padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = true) {
        precondition(inChannels > 0 && outChannels > 0, "Conv2d: channel counts must be positive")
        precondition(groups >= 1 && inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv2d: in (\(inChannels)) and out (\(outChannels)) channels must be divisible by groups (\(groups))")
        precondition(kernelSize.0 > 0 && kernelSize.1 > 0, "Conv2d: invalid kernel size \(kernelSize)")
        self.init(weight: Parameter(Tensor.zeros([outChannels, inChannels / groups, kernelSize.0, kernelSize.1]), role: .weight),
                  bias: bias ? Parameter(Tensor.zeros([outChannels]), role: .bias) : nil,
                  stride: stride, padding: padding, dilation: dilation, groups: groups)
        resetParameters()
    }

    /// A convolution holding the given parameters (`weight` `[out, in / groups, kh, kw]`,
    /// `bias` `[out]`), shared, not copied: pretrained tensors or another layer's parameters.
    public init(weight: Parameter, bias: Parameter?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                dilation: (Int, Int) = (1, 1), groups: Int = 1) {
        let s = weight.shape
        precondition(s.count == 4 && s.allSatisfy { $0 > 0 } && groups >= 1 && s[0] % groups == 0,
                     "Conv2d: weight must be [out, in / groups, kh, kw] with out divisible by groups, got \(s)")
        precondition(bias == nil || bias!.shape == [s[0]], "Conv2d: bias must be [\(s[0])], got \(bias!.shape)")
        precondition(stride.0 > 0 && stride.1 > 0 && dilation.0 > 0 && dilation.1 > 0 && padding.0 >= 0 && padding.1 >= 0,
                     "Conv2d: invalid stride, padding or dilation")
        inChannels = s[1] * groups
        outChannels = s[0]
        kernelSize = (s[2], s[3])
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.weight = weight
        self.bias = bias
        super.init()
    }

    /// A convolution with square kernel, stride, padding and dilation.
    ///
    /// ```swift
    /// Conv2d(64, 128, kernelSize: 3, stride: 2, padding: 1, bias: false)
    /// ```
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1,
                            padding: Int = 0, dilation: Int = 1, groups: Int = 1, bias: Bool = true) {
        self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                  padding: (padding, padding), dilation: (dilation, dilation), groups: groups, bias: bias)
    }

    /// Redraws `weight` (kaiming-uniform, `a = sqrt(5)`) and then `bias` (U(-1/sqrt(fanIn), 1/sqrt(fanIn))).
    open func resetParameters(generator: inout RandomGenerator) {
        let (w, b) = Initializer.pytorchDefault(weight: weight.shape, bias: bias != nil, generator: &generator)
        weight.value = w
        if let b { bias?.value = b }
    }

    var name: String {
        var s = "Conv2d(\(inChannels), \(outChannels), kernelSize: \(LayerFormat.size(kernelSize))"
        if stride != (1, 1) { s += ", stride: \(LayerFormat.size(stride))" }
        if padding != (0, 0) { s += ", padding: \(LayerFormat.size(padding))" }
        if dilation != (1, 1) { s += ", dilation: \(LayerFormat.size(dilation))" }
        if groups != 1 { s += ", groups: \(groups)" }
        return s + ")"
    }

    open override func forward(_ x: Tensor) -> Tensor {
        convolutionForward(x)
    }

    /// The convolution with this layer's parameters (what subclasses such as ``LoRAConv2d`` build on).
    public final func convolutionForward(_ x: Tensor) -> Tensor {
        Shape.check(x.rank == 4 && x.shape[1] == inChannels, op: name, shapes: [x.shape, weight.shape],
                    "expected input [N, \(inChannels), H, W]")
        let effective = ((kernelSize.0 - 1) * dilation.0 + 1, (kernelSize.1 - 1) * dilation.1 + 1)
        Shape.check(x.shape[2] + 2 * padding.0 >= effective.0 && x.shape[3] + 2 * padding.1 >= effective.1,
                    op: name, shapes: [x.shape, weight.shape],
                    "the input (\(x.shape[2])x\(x.shape[3]) padded by \(LayerFormat.size(padding))) is smaller than the kernel")
        return Tensor.conv2d(x, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
                             dilation: dilation, groups: groups,
                             weightCache: keepsTransformedWeights ? transformedWeights : nil)
    }

    /// `activation(norm(self(x)) + residual)`: the convolution, batch norm, an optional residual
    /// and an optional ReLU, as in a ResNet block (`relu(bn1(conv1(x)))`, `relu(bn3(conv3(z)) + shortcut)`).
    ///
    /// Where `norm` normalises with its running statistics (evaluation mode, or a frozen layer) and
    /// its weight and bias take no gradient, the four run as one op: the convolution kernel
    /// applies the batch norm, the residual and ReLU to its output while it is still in cache,
    /// where the separate modules take three more passes over memory. Otherwise (batch
    /// statistics, a trainable batch norm, a subclass such as ``LoRAConv2d``, a residual of another
    /// shape) the convolution runs on its own and the batch norm, residual and ReLU as one op
    /// after it, each way. Values and gradients are bit-identical to the separate modules, which
    /// run as such only when one of them has an adapter or ``Module/summary(input:)`` records shapes.
    ///
    /// ```swift
    /// let y = conv1(x, then: bn1, activation: relu)                     // relu(bn1(conv1(x)))
    /// let z = conv3(y, then: bn3, adding: shortcut, activation: relu)   // relu(bn3(conv3(y)) + shortcut)
    /// ```
    public final func callAsFunction(_ x: Tensor, then norm: BatchNorm2d, adding residual: Tensor? = nil,
                                     activation: ReLU? = nil) -> Tensor {
        let plain = norm.outputAdapter == nil && activation?.outputAdapter == nil && ShapeRecorder.current == nil
        func separately() -> Tensor {
            // The batch norm, residual and ReLU still share one op where no module must see its own call.
            guard plain else {
                var y = norm(self(x))
                if let residual { y = y + residual }
                return activation.map { $0(y) } ?? y
            }
            return norm.normalize(self(x), adding: residual, relu: activation != nil)
        }
        guard plain, type(of: self) == Conv2d.self, outputAdapter == nil,
              norm.effectiveStatistics == .running, let mean = norm.runningMean?.value, let variance = norm.runningVar?.value,
              !Tensor.willRecord(inputs: [norm.weight?.value, norm.bias?.value].compactMap { $0 }),
              x.rank == 4, x.shape[1] == inChannels else { return separately() }
        let fused = FixedBatchNormEpilogue(mean: mean, variance: variance, weight: norm.weight?.value, bias: norm.bias?.value,
                                           eps: norm.eps, residual: residual, relu: activation != nil)
        let g = Conv2dGeometry(input: x.shape, weight: weight.shape, stride: stride, padding: padding, dilation: dilation,
                               groups: groups)
        let outShape = [g.batch, g.outChannels, g.outHeight, g.outWidth]
        guard outShape[2] > 0, outShape[3] > 0, residual.map({ $0.shape == outShape }) ?? true,
              norm.features == outChannels else { return separately() }
        return Tensor.conv2d(x, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
                             dilation: dilation, groups: groups, then: fused,
                             weightCache: keepsTransformedWeights ? transformedWeights : nil)
    }
}
