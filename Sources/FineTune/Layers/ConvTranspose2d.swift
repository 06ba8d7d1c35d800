/// 2-D transposed convolution over `[N, C, H, W]` input (PyTorch's `nn.ConvTranspose2d`), the
/// learned upsampling of decoders and U-Nets.
///
/// `weight` is `[in, out / groups, kh, kw]` (PyTorch's layout, in before out), initialised as
/// PyTorch does: kaiming-uniform with `a = sqrt(5)` and `fanIn = out / groups * kh * kw`;
/// `bias` is `[out]`, U(-1/sqrt(fanIn), 1/sqrt(fanIn)). The output is
/// `(H - 1) * stride - 2 * padding + dilation * (kh - 1) + outputPadding + 1` high, likewise wide.
///
/// ```swift
/// let up = ConvTranspose2d(64, 32, kernelSize: 4, stride: 2, padding: 1)   // [N, 64, H, W] -> [N, 32, 2H, 2W]
/// ```
public final class ConvTranspose2d: Module, ParameterInitializing {
    /// `[in, out / groups, kh, kw]`.
    public let weight: Parameter
    /// `[out]`, or nil.
    public let bias: Parameter?

    /// Input channels C.
    public let inChannels: Int
    /// Output channels.
    public let outChannels: Int
    /// `(height, width)` of the kernel.
    public let kernelSize: (Int, Int)
    /// `(height, width)` upsampling step.
    public let stride: (Int, Int)
    /// Rows/columns removed from each side of the full output, `(height, width)`.
    public let padding: (Int, Int)
    /// Rows/columns added at the bottom/right, `(height, width)`; below the stride.
    public let outputPadding: (Int, Int)
    /// Spacing between kernel elements, `(height, width)`.
    public let dilation: (Int, Int)
    /// Channel groups.
    public let groups: Int

    /// A transposed convolution with `(height, width)` kernel, stride, padding, output padding and dilation.
    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0), outputPadding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1),
                groups: Int = 1, bias: Bool = true) {
        precondition(inChannels > 0 && outChannels > 0, "ConvTranspose2d: channel counts must be positive")
        precondition(groups >= 1 && inChannels % groups == 0 && outChannels % groups == 0,
                     "ConvTranspose2d: in (\(inChannels)) and out (\(outChannels)) channels must be divisible by groups (\(groups))")
        precondition(kernelSize.0 > 0 && kernelSize.1 > 0 && stride.0 > 0 && stride.1 > 0 && dilation.0 > 0 && dilation.1 > 0
                     && padding.0 >= 0 && padding.1 >= 0 && outputPadding.0 >= 0 && outputPadding.1 >= 0
                     && outputPadding.0 < stride.0 && outputPadding.1 < stride.1,
                     "ConvTranspose2d: invalid kernel size, stride, padding, dilation or output padding (below the stride)")
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.outputPadding = outputPadding
        self.dilation = dilation
        self.groups = groups
        weight = Parameter(Tensor.zeros([inChannels, outChannels / groups, kernelSize.0, kernelSize.1]), role: .weight)
        self.bias = bias ? Parameter(Tensor.zeros([outChannels]), role: .bias) : nil
        super.init()
        resetParameters()
    }

    /// A transposed convolution with square kernel, stride, padding, output padding and dilation.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            outputPadding: Int = 0, dilation: Int = 1, groups: Int = 1, bias: Bool = true) {
        self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                  padding: (padding, padding), outputPadding: (outputPadding, outputPadding), dilation: (dilation, dilation),
                  groups: groups, bias: bias)
    }

    /// Redraws `weight` and then `bias` with PyTorch's defaults (see the type's documentation).
    public func resetParameters(generator: inout RandomGenerator) {
        // Not `pytorchDefault`'s bias: that one is sized by the weight's first axis, here the input channels.
        weight.value = Initializer.pytorchDefault(weight: weight.shape, bias: false, generator: &generator).weight
        if let bias {
            let bound = 1 / Float(Initializer.fans(weight.shape).fanIn).squareRoot()
            bias.value = Tensor.randomUniform(bias.shape, low: -bound, high: bound, generator: &generator)
        }
    }

    public override func forward(_ x: Tensor) -> Tensor {
        Shape.check(x.rank == 4 && x.shape[1] == inChannels, op: "ConvTranspose2d(\(inChannels), \(outChannels), kernelSize: \(LayerFormat.size(kernelSize)))",
                    shapes: [x.shape, weight.shape], "expected input [N, \(inChannels), H, W]")
        return Tensor.convTranspose2d(x, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
                                      outputPadding: outputPadding, dilation: dilation, groups: groups)
    }
}
