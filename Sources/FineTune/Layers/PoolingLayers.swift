/// Max pooling over `[N, C, H, W]` input (PyTorch's `nn.MaxPool2d`); `stride` defaults to the kernel size.
/// `dilation` spaces the window's elements; `ceilMode` keeps a last partial window (PyTorch's
/// `ceil_mode`, as in GoogLeNet and some ResNet variants).
///
/// ```swift
/// MaxPool2d(kernelSize: 2)(x)                              // [N, C, 8, 8] -> [N, C, 4, 4]
/// MaxPool2d(kernelSize: 3, stride: 2, ceilMode: true)(x)   // [N, C, 8, 8] -> [N, C, 4, 4]
/// ```
public final class MaxPool2d: Module {
    /// `(height, width)` of the window.
    public let kernelSize: (Int, Int)
    /// `(height, width)` step between windows.
    public let stride: (Int, Int)
    /// Implicit padding on each side, `(height, width)`.
    public let padding: (Int, Int)
    /// Spacing between window elements, `(height, width)`.
    public let dilation: (Int, Int)
    /// Whether a last partial window counts (output sizes rounded up).
    public let ceilMode: Bool

    /// Max pooling with a `(height, width)` window.
    public init(kernelSize: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                dilation: (Int, Int) = (1, 1), ceilMode: Bool = false) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
        self.dilation = dilation
        self.ceilMode = ceilMode
        super.init()
    }

    /// Max pooling with a square window.
    public convenience init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, dilation: Int = 1, ceilMode: Bool = false) {
        self.init(kernelSize: (kernelSize, kernelSize), stride: stride.map { ($0, $0) }, padding: (padding, padding),
                  dilation: (dilation, dilation), ceilMode: ceilMode)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let effective = ((kernelSize.0 - 1) * dilation.0 + 1, (kernelSize.1 - 1) * dilation.1 + 1)
        PoolingCheck.input(x, name: "MaxPool2d(kernelSize: \(LayerFormat.size(kernelSize)))", effective, padding)
        return x.maxPool2d(kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation, ceilMode: ceilMode)
    }
}

/// Average pooling over `[N, C, H, W]` input (PyTorch's `nn.AvgPool2d`); `stride` defaults to
/// the kernel size; padded zeros count in the divisor unless `countIncludePad` is false.
/// `ceilMode` keeps a last partial window, whose divisor counts only its part inside the padded
/// input (PyTorch's rule; ResNet-D downsampling uses `AvgPool2d(kernelSize: 2, ceilMode: true,
/// countIncludePad: false)`).
///
/// ```swift
/// AvgPool2d(kernelSize: 2)(x)   // [N, C, 8, 8] -> [N, C, 4, 4]
/// ```
public final class AvgPool2d: Module {
    /// `(height, width)` of the window.
    public let kernelSize: (Int, Int)
    /// `(height, width)` step between windows.
    public let stride: (Int, Int)
    /// Implicit padding on each side, `(height, width)`.
    public let padding: (Int, Int)
    /// Whether a last partial window counts (output sizes rounded up).
    public let ceilMode: Bool
    /// Whether padded zeros count in the divisor.
    public let countIncludePad: Bool

    /// Average pooling with a `(height, width)` window.
    public init(kernelSize: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                ceilMode: Bool = false, countIncludePad: Bool = true) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
        self.ceilMode = ceilMode
        self.countIncludePad = countIncludePad
        super.init()
    }

    /// Average pooling with a square window.
    public convenience init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, ceilMode: Bool = false,
                            countIncludePad: Bool = true) {
        self.init(kernelSize: (kernelSize, kernelSize), stride: stride.map { ($0, $0) }, padding: (padding, padding),
                  ceilMode: ceilMode, countIncludePad: countIncludePad)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        PoolingCheck.input(x, name: "AvgPool2d(kernelSize: \(LayerFormat.size(kernelSize)))", kernelSize, padding)
        return x.avgPool2d(kernelSize: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode, countIncludePad: countIncludePad)
    }
}

/// Average pooling to a fixed output size whatever the input size (PyTorch's `nn.AdaptiveAvgPool2d`).
///
/// ```swift
/// AdaptiveAvgPool2d(1)(x)       // [N, C, H, W] -> [N, C, 1, 1]
/// ```
public final class AdaptiveAvgPool2d: Module {
    /// `(height, width)` of the output.
    public let outputSize: (Int, Int)

    /// Pools to `(height, width)`.
    public init(_ outputSize: (Int, Int)) {
        precondition(outputSize.0 > 0 && outputSize.1 > 0, "AdaptiveAvgPool2d: output size must be positive")
        self.outputSize = outputSize
        super.init()
    }

    /// Pools to `size x size`.
    public convenience init(_ outputSize: Int) { self.init((outputSize, outputSize)) }

    public override func forward(_ x: Tensor) -> Tensor {
        Shape.check(x.rank == 4, op: "AdaptiveAvgPool2d(\(LayerFormat.size(outputSize)))", shapes: [x.shape],
                    "expected input [N, C, H, W]")
        return x.adaptiveAvgPool2d(outputSize)
    }
}

/// Mean over the spatial axes: `[N, C, H, W] -> [N, C]` (`AdaptiveAvgPool2d(1)` then `Flatten()`).
///
/// ```swift
/// let features = GlobalAvgPool2d()(featureMaps)   // [N, 512, 7, 7] -> [N, 512]
/// ```
public final class GlobalAvgPool2d: Module {
    /// A global average pool.
    public override init() { super.init() }

    public override func forward(_ x: Tensor) -> Tensor {
        Shape.check(x.rank == 4, op: "GlobalAvgPool2d", shapes: [x.shape], "expected input [N, C, H, W]")
        return x.globalAvgPool2d()
    }
}

enum PoolingCheck {
    static func input(_ x: Tensor, name: String, _ kernel: (Int, Int), _ padding: (Int, Int)) {
        Shape.check(x.rank == 4, op: name, shapes: [x.shape], "expected input [N, C, H, W]")
        Shape.check(x.shape[2] + 2 * padding.0 >= kernel.0 && x.shape[3] + 2 * padding.1 >= kernel.1, op: name,
                    shapes: [x.shape], "the window \(LayerFormat.size(kernel)) does not fit the input")
    }
}
