/// 1-D convolution over `[N, C, L]` input (PyTorch's `nn.Conv1d`, zero padding): audio,
/// sequences, and GPT-2-style blocks written with 1-wide convolutions.
///
/// `weight` is `[out, in / groups, k]`, initialised kaiming-uniform with `a = sqrt(5)`; `bias`
/// is `[out]`, U(-1/sqrt(fanIn), 1/sqrt(fanIn)) with `fanIn = in / groups * k`, as in PyTorch.
///
/// ```swift
/// let conv = Conv1d(16, 32, kernelSize: 5, padding: 2)   // [N, 16, L] -> [N, 32, L]
/// ```
public final class Conv1d: Module, ParameterInitializing {
    /// `[out, in / groups, k]`.
    public let weight: Parameter
    /// `[out]`, or nil.
    public let bias: Parameter?

    /// Input channels C.
    public let inChannels: Int
    /// Output channels.
    public let outChannels: Int
    /// Width of the kernel.
    public let kernelSize: Int
    /// Step between windows.
    public let stride: Int
    /// Zeros added on each side.
    public let padding: Int
    /// Spacing between kernel elements.
    public let dilation: Int
    /// Channel groups: each output channel sees `inChannels / groups` inputs.
    public let groups: Int

    /// A convolution of `kernelSize` taps.
    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1, bias: Bool = true) {
        precondition(inChannels > 0 && outChannels > 0, "Conv1d: channel counts must be positive")
        precondition(groups >= 1 && inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv1d: in (\(inChannels)) and out (\(outChannels)) channels must be divisible by groups (\(groups))")
        precondition(kernelSize > 0 && stride > 0 && dilation > 0 && padding >= 0,
                     "Conv1d: invalid kernel size, stride, padding or dilation")
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        weight = Parameter(Tensor.zeros([outChannels, inChannels / groups, kernelSize]), role: .weight)
        self.bias = bias ? Parameter(Tensor.zeros([outChannels]), role: .bias) : nil
        super.init()
        resetParameters()
    }

    /// Redraws `weight` (kaiming-uniform, `a = sqrt(5)`) and then `bias` (U(-1/sqrt(fanIn), 1/sqrt(fanIn))).
    public func resetParameters(generator: inout RandomGenerator) {
        let (w, b) = Initializer.pytorchDefault(weight: weight.shape, bias: bias != nil, generator: &generator)
        weight.value = w
        if let b { bias?.value = b }
    }

    var name: String { "Conv1d(\(inChannels), \(outChannels), kernelSize: \(kernelSize))" }

    public override func forward(_ x: Tensor) -> Tensor {
        Shape.check((x.rank == 3 || x.rank == 2) && x.shape[x.rank - 2] == inChannels, op: name, shapes: [x.shape, weight.shape],
                    "expected input [N, \(inChannels), L] or [\(inChannels), L]")
        Shape.check(x.shape[x.rank - 1] + 2 * padding >= (kernelSize - 1) * dilation + 1, op: name, shapes: [x.shape, weight.shape],
                    "the input (length \(x.shape[x.rank - 1]) padded by \(padding)) is shorter than the kernel")
        return Tensor.conv1d(x, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
                             dilation: dilation, groups: groups)
    }
}
