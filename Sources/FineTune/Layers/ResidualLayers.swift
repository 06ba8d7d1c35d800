/// ResNet's basic block (torchvision's `BasicBlock`): `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`
/// with 3x3 convolutions without bias. The shortcut is the identity, or `downsample`
/// (`Sequential(Conv2d 1x1 with stride, BatchNorm2d)`) when the stride or channel count changes.
///
/// State-dict keys match torchvision: `conv1.weight`, `bn1.*`, `conv2.weight`, `bn2.*`,
/// `downsample.0.weight`, `downsample.1.*`.
///
/// ```swift
/// let block = ResidualBlock(64, 128, stride: 2)   // [N, 64, 32, 32] -> [N, 128, 16, 16]
/// ```
public final class ResidualBlock: Module {
    /// 3x3, stride `stride`, no bias.
    @Child public var conv1: Conv2d
    @Child public var bn1: BatchNorm2d
    @Child public var relu: ReLU
    /// 3x3, stride 1, no bias.
    @Child public var conv2: Conv2d
    @Child public var bn2: BatchNorm2d
    /// The projection shortcut, nil when the block keeps the shape.
    @Child public var downsample: Sequential?

    /// Input channels.
    public let inChannels: Int
    /// Output channels.
    public let outChannels: Int
    /// Spatial downsampling factor of `conv1` and the shortcut.
    public let stride: Int

    /// A block from `inChannels` to `outChannels`, downsampling by `stride`.
    public init(_ inChannels: Int, _ outChannels: Int, stride: Int = 1) {
        precondition(stride >= 1, "ResidualBlock: stride must be positive, got \(stride)")
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.stride = stride
        conv1 = Conv2d(inChannels, outChannels, kernelSize: 3, stride: stride, padding: 1, bias: false)
        bn1 = BatchNorm2d(outChannels)
        relu = ReLU()
        conv2 = Conv2d(outChannels, outChannels, kernelSize: 3, padding: 1, bias: false)
        bn2 = BatchNorm2d(outChannels)
        downsample = ResidualBlock.projectionShortcut(inChannels, outChannels, stride: stride)
        super.init()
    }

    /// torchvision's `downsample`: `Sequential(Conv2d 1x1 with stride, BatchNorm2d)` when the
    /// stride or the channel count changes, nil (the identity) otherwise. Bottleneck blocks use it too.
    public static func projectionShortcut(_ inChannels: Int, _ outChannels: Int, stride: Int) -> Sequential? {
        guard stride != 1 || inChannels != outChannels else { return nil }
        return Sequential(Conv2d(inChannels, outChannels, kernelSize: 1, stride: stride, bias: false), BatchNorm2d(outChannels))
    }

    public override func forward(_ x: Tensor) -> Tensor {
        Shape.check(x.rank == 4 && x.shape[1] == inChannels, op: "ResidualBlock(\(inChannels), \(outChannels), stride: \(stride))",
                    shapes: [x.shape, conv1.weight.shape], "expected input [N, \(inChannels), H, W]")
        let shortcut = downsample.map { $0(x) } ?? x
        let y = conv1(x, then: bn1, activation: relu)
        return conv2(y, then: bn2, adding: shortcut, activation: relu)
    }
}
