import Foundation

/// torchvision's `BasicBlock` (ResNet-18 and -34): two 3x3 convolutions with a residual
/// connection; the names (`conv1`, `bn1`, `conv2`, `bn2`, `downsample.0`, `downsample.1`) are
/// torchvision's. It is FineTune's ``ResidualBlock``.
public typealias BasicBlock = ResidualBlock

/// torchvision's `Bottleneck` (ResNet-50, -101, -152), v1.5: 1x1 reduce, 3x3 with the stride,
/// 1x1 expand to `planes * 4` channels, and a residual connection.
///
/// `relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`, with the shortcut
/// `downsample` (`Sequential(Conv2d 1x1 with stride, BatchNorm2d)`) when the shape changes.
///
/// ```swift
/// let block = Bottleneck(256, planes: 128, stride: 2)   // [N, 256, 56, 56] -> [N, 512, 28, 28]
/// ```
public final class Bottleneck: Module {
    /// Output channels are `planes * expansion`.
    public static let expansion = 4

    @Child public var conv1: Conv2d
    @Child public var bn1: BatchNorm2d
    @Child public var conv2: Conv2d
    @Child public var bn2: BatchNorm2d
    @Child public var conv3: Conv2d
    @Child public var bn3: BatchNorm2d
    @Child public var relu: ReLU
    @Child public var downsample: Sequential?

    public let inChannels: Int
    public let outChannels: Int
    public let stride: Int

    /// A block from `inChannels` to `planes * 4` channels, downsampling by `stride`; `width`
    /// is the inner width (torchvision's `planes * base_width / 64 * groups`; `planes` by default).
    public init(_ inChannels: Int, planes: Int, stride: Int = 1, width: Int? = nil) {
        precondition(inChannels > 0 && planes > 0 && stride >= 1, "Bottleneck: invalid channels or stride")
        let width = width ?? planes, out = planes * Bottleneck.expansion
        self.inChannels = inChannels
        outChannels = out
        self.stride = stride
        conv1 = Conv2d(inChannels, width, kernelSize: 1, bias: false)
        bn1 = BatchNorm2d(width)
        conv2 = Conv2d(width, width, kernelSize: 3, stride: stride, padding: 1, bias: false)
        bn2 = BatchNorm2d(width)
        conv3 = Conv2d(width, out, kernelSize: 1, bias: false)
        bn3 = BatchNorm2d(out)
        relu = ReLU()
        downsample = ResidualBlock.projectionShortcut(inChannels, out, stride: stride)
        super.init()
    }

    public override func forward(_ x: Tensor) -> Tensor {
        Shape.check(x.rank == 4 && x.shape[1] == inChannels, op: "Bottleneck(\(inChannels), \(outChannels), stride: \(stride))",
                    shapes: [x.shape, conv1.weight.shape], "expected input [N, \(inChannels), H, W]")
        let shortcut = downsample.map { $0(x) } ?? x
        let y = conv1(x, then: bn1, activation: relu)
        let z = conv2(y, then: bn2, activation: relu)
        return conv3(z, then: bn3, adding: shortcut, activation: relu)
    }
}

/// torchvision's ResNet (He et al. 2015) with torchvision's parameter names (`conv1`, `bn1`,
/// `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`), so torchvision's `.pth` state dicts load
/// strictly: ResNet-18 and -34 with ``BasicBlock``, -50, -101 and -152 with ``Bottleneck``.
///
/// ```swift
/// let model = try ResNet(depth: 18, classCount: 1000)
/// try model.load(from: PyTorchFile(contentsOf: URL(fileURLWithPath: "resnet18-f37072fd.pth")))
/// try model.replaceHead(classCount: 5)          // a new 5-class fc
/// try model.freeze(upTo: -2)                    // train layer4 and fc
/// ```
///
/// `baseWidth` scales every stage (64 in torchvision; smaller values build small test models
/// with the same structure and names).
public final class ResNet: Module, LayerGrouped {
    /// The block kinds.
    public enum Block: String, Sendable { case basic, bottleneck }

    @Child public var conv1: Conv2d
    @Child public var bn1: BatchNorm2d
    @Child public var relu: ReLU
    @Child public var maxpool: MaxPool2d
    @Child public var layer1: Sequential
    @Child public var layer2: Sequential
    @Child public var layer3: Sequential
    @Child public var layer4: Sequential
    @Child public var avgpool: AdaptiveAvgPool2d
    /// The classifier: `[N, featureCount] -> [N, classes]`, a `Linear` as built. Any module fits,
    /// as in torchvision: `model.fc = Identity()` makes the model return its pooled features
    /// `[N, featureCount]` (and drops `fc.*` from the state dict).
    @Child public var fc: Module

    /// Blocks per stage.
    public let blockCounts: [Int]
    public let block: Block
    /// Channels of the stem; stage `i` has `baseWidth * 2^i` planes.
    public let baseWidth: Int

    /// Width of the features the classifier sees (512 for ResNet-18/34, 2048 for ResNet-50+).
    public let featureCount: Int

    /// A ResNet of the given `depth` (18, 34, 50, 101 or 152) with a `classCount`-way classifier.
    /// Throws ``ModelError/unsupportedDepth(_:supported:)`` for other depths.
    public convenience init(depth: Int, classCount: Int = 1000, baseWidth: Int = 64) throws(ModelError) {
        let layouts: [Int: (Block, [Int])] = [
            18: (.basic, [2, 2, 2, 2]), 34: (.basic, [3, 4, 6, 3]), 50: (.bottleneck, [3, 4, 6, 3]),
            101: (.bottleneck, [3, 4, 23, 3]), 152: (.bottleneck, [3, 8, 36, 3]),
        ]
        guard let (block, counts) = layouts[depth] else { throw .unsupportedDepth(depth, supported: layouts.keys.sorted()) }
        self.init(block: block, blockCounts: counts, classCount: classCount, baseWidth: baseWidth)
    }

    /// A ResNet with `blockCounts[i]` blocks in stage `i` (torchvision's `ResNet(block, layers)`).
    public init(block: Block, blockCounts: [Int], classCount: Int = 1000, baseWidth: Int = 64) {
        precondition(blockCounts.count == 4 && blockCounts.allSatisfy { $0 > 0 } && classCount > 0 && baseWidth > 0,
                     "ResNet: four positive block counts, a positive class count and base width")
        self.blockCounts = blockCounts
        self.block = block
        self.baseWidth = baseWidth
        conv1 = Conv2d(3, baseWidth, kernelSize: 7, stride: 2, padding: 3, bias: false)
        bn1 = BatchNorm2d(baseWidth)
        relu = ReLU()
        maxpool = MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
        var channels = baseWidth
        var stages: [Sequential] = []
        for (i, count) in blockCounts.enumerated() {
            let planes = baseWidth << i
            var blocks: [Module] = []
            for j in 0..<count {
                let stride = j == 0 && i > 0 ? 2 : 1
                switch block {
                case .basic:
                    blocks.append(BasicBlock(channels, planes, stride: stride))
                    channels = planes
                case .bottleneck:
                    blocks.append(Bottleneck(channels, planes: planes, stride: stride))
                    channels = planes * Bottleneck.expansion
                }
            }
            stages.append(Sequential(blocks))
        }
        layer1 = stages[0]; layer2 = stages[1]; layer3 = stages[2]; layer4 = stages[3]
        avgpool = AdaptiveAvgPool2d(1)
        featureCount = channels
        fc = Linear(channels, classCount)
        super.init()
        ResNet.initializeAsTorchvision(self)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        fc(features(x).flattened(startAxis: 1, endAxis: 3))
    }

    /// The pooled features before the classifier, `[N, featureCount, 1, 1]`.
    public func features(_ x: Tensor) -> Tensor {
        Shape.check(x.rank == 4 && x.shape[1] == 3, op: "ResNet", shapes: [x.shape, conv1.weight.shape],
                    "expected images [N, 3, H, W]")
        let stem = maxpool(conv1(x, then: bn1, activation: relu))
        return avgpool(layer4(layer3(layer2(layer1(stem)))))
    }

    /// Replaces the classifier with a new `classCount`-way `Linear` (PyTorch's
    /// `model.fc = nn.Linear(model.fc.in_features, classes)`), trainable and freshly initialised.
    @discardableResult
    public func replaceHead(classCount: Int) throws(SelectionError) -> Linear {
        let head = Linear(featureCount, classCount)
        try replaceModule(at: "fc", with: head)
        return head
    }

    /// Layer groups for ``Module/freeze(upTo:trainBatchNorm:)``, discriminative rates and gradual
    /// unfreezing, input first: the stem (`conv1`, `bn1`), `layer1` ... `layer4`, and `fc`.
    public var layerGroups: [[String]] { [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"], ["fc"]] }

    /// torchvision's initialisation: convolutions Kaiming-normal (fan-out, ReLU gain), BatchNorm
    /// weight 1 and bias 0, `fc` as `nn.Linear`.
    static func initializeAsTorchvision(_ model: Module) {
        RandomGenerator.withGlobal { generator in
            for (_, module) in model.namedModules() {
                guard let conv = module as? Conv2d else { continue }
                let fanOut = conv.weight.shape[0] * conv.weight.shape[2] * conv.weight.shape[3]
                let std = (2 / Float(fanOut)).squareRoot()
                conv.weight.value = Tensor.randomNormal(conv.weight.shape, std: std, generator: &generator)
            }
        }
    }
}
