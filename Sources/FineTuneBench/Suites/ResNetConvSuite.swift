import FineTune

/// Every distinct convolution of torchvision's ResNet-18 and ResNet-50 at batch 8 on 224x224
/// images, forward and forward + backward, no bias (BatchNorm follows each one).
///
/// The list was enumerated with forward hooks on `torchvision.models.resnet18()` and
/// `resnet50()` (scripts/torch_bench.py derives the same names the same way). Case names:
///
///     <model>_<stage>_<k>x<k>[s2]_<channels>_<input size>_fwd | _fwd_bwd
///
/// `model` is `r18` for shapes that ResNet-18 has (ResNet-50 may share them) and `r50` for the
/// bottleneck-only ones; `stage` is `stem` or `l1`...`l4` (torchvision's `layerN` of the first
/// module with the shape); `s2` marks stride 2; `channels` is `512` when input and output
/// channels are equal, else `256to64`; the size is the input's height (= width). Example:
/// `r18_l4_3x3_512_7_fwd` is the 3x3, 512 -> 512 convolution on 7x7 inputs.
struct ResNetConvSuite: BenchSuite {
    let name = "resnet-convs"
    let summary = "Kernels.conv2d*: the 29 distinct convolutions of ResNet-18 and ResNet-50 (batch 8, 224x224 images), no bias"

    /// Heavy (about 60 cases of tens to hundreds of milliseconds): run it by name.
    var runsByDefault: Bool { false }

    static let batch = 8

    /// One distinct convolution and how often each model runs it per forward pass.
    struct Shape {
        var model: String, stage: String
        var inChannels: Int, outChannels: Int, kernel: Int, stride: Int
        /// Input height and width.
        var size: Int
        var resnet18: Int, resnet50: Int
        /// torchvision's name of the first module with this shape.
        var firstModule: String

        init(_ model: String, _ stage: String, _ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int, size: Int,
             resnet18: Int, resnet50: Int, first: String) {
            self.model = model; self.stage = stage
            self.inChannels = inChannels; self.outChannels = outChannels; self.kernel = kernel; self.stride = stride
            self.size = size; self.resnet18 = resnet18; self.resnet50 = resnet50; firstModule = first
        }

        var name: String {
            let channels = inChannels == outChannels ? "\(inChannels)" : "\(inChannels)to\(outChannels)"
            return "\(model)_\(stage)_\(kernel)x\(kernel)\(stride == 2 ? "s2" : "")_\(channels)_\(size)"
        }

        /// torchvision pads every ResNet convolution by `kernel / 2`.
        var geometry: Conv2dGeometry {
            Conv2dGeometry(batch: ResNetConvSuite.batch, inChannels: inChannels, height: size, width: size,
                           outChannels: outChannels, kernelHeight: kernel, kernelWidth: kernel,
                           stride: (stride, stride), padding: (kernel / 2, kernel / 2))
        }

        var uses: String {
            [("ResNet-18", resnet18), ("ResNet-50", resnet50)].filter { $0.1 > 0 }.map { "\($0.0) x\($0.1)" }
                .joined(separator: ", ")
        }
    }

    /// In torchvision's forward order: ResNet-18's, then the shapes only ResNet-50 has.
    static let shapes: [Shape] = [
        .init("r18", "stem", 3, 64, kernel: 7, stride: 2, size: 224, resnet18: 1, resnet50: 1, first: "conv1"),
        .init("r18", "l1", 64, 64, kernel: 3, stride: 1, size: 56, resnet18: 4, resnet50: 3, first: "layer1.0.conv1"),
        .init("r18", "l2", 64, 128, kernel: 3, stride: 2, size: 56, resnet18: 1, resnet50: 0, first: "layer2.0.conv1"),
        .init("r18", "l2", 128, 128, kernel: 3, stride: 1, size: 28, resnet18: 3, resnet50: 3, first: "layer2.0.conv2"),
        .init("r18", "l2", 64, 128, kernel: 1, stride: 2, size: 56, resnet18: 1, resnet50: 0, first: "layer2.0.downsample.0"),
        .init("r18", "l3", 128, 256, kernel: 3, stride: 2, size: 28, resnet18: 1, resnet50: 0, first: "layer3.0.conv1"),
        .init("r18", "l3", 256, 256, kernel: 3, stride: 1, size: 14, resnet18: 3, resnet50: 5, first: "layer3.0.conv2"),
        .init("r18", "l3", 128, 256, kernel: 1, stride: 2, size: 28, resnet18: 1, resnet50: 0, first: "layer3.0.downsample.0"),
        .init("r18", "l4", 256, 512, kernel: 3, stride: 2, size: 14, resnet18: 1, resnet50: 0, first: "layer4.0.conv1"),
        .init("r18", "l4", 512, 512, kernel: 3, stride: 1, size: 7, resnet18: 3, resnet50: 2, first: "layer4.0.conv2"),
        .init("r18", "l4", 256, 512, kernel: 1, stride: 2, size: 14, resnet18: 1, resnet50: 0, first: "layer4.0.downsample.0"),
        .init("r50", "l1", 64, 64, kernel: 1, stride: 1, size: 56, resnet18: 0, resnet50: 1, first: "layer1.0.conv1"),
        .init("r50", "l1", 64, 256, kernel: 1, stride: 1, size: 56, resnet18: 0, resnet50: 4, first: "layer1.0.conv3"),
        .init("r50", "l1", 256, 64, kernel: 1, stride: 1, size: 56, resnet18: 0, resnet50: 2, first: "layer1.1.conv1"),
        .init("r50", "l2", 256, 128, kernel: 1, stride: 1, size: 56, resnet18: 0, resnet50: 1, first: "layer2.0.conv1"),
        .init("r50", "l2", 128, 128, kernel: 3, stride: 2, size: 56, resnet18: 0, resnet50: 1, first: "layer2.0.conv2"),
        .init("r50", "l2", 128, 512, kernel: 1, stride: 1, size: 28, resnet18: 0, resnet50: 4, first: "layer2.0.conv3"),
        .init("r50", "l2", 256, 512, kernel: 1, stride: 2, size: 56, resnet18: 0, resnet50: 1, first: "layer2.0.downsample.0"),
        .init("r50", "l2", 512, 128, kernel: 1, stride: 1, size: 28, resnet18: 0, resnet50: 3, first: "layer2.1.conv1"),
        .init("r50", "l3", 512, 256, kernel: 1, stride: 1, size: 28, resnet18: 0, resnet50: 1, first: "layer3.0.conv1"),
        .init("r50", "l3", 256, 256, kernel: 3, stride: 2, size: 28, resnet18: 0, resnet50: 1, first: "layer3.0.conv2"),
        .init("r50", "l3", 256, 1024, kernel: 1, stride: 1, size: 14, resnet18: 0, resnet50: 6, first: "layer3.0.conv3"),
        .init("r50", "l3", 512, 1024, kernel: 1, stride: 2, size: 28, resnet18: 0, resnet50: 1, first: "layer3.0.downsample.0"),
        .init("r50", "l3", 1024, 256, kernel: 1, stride: 1, size: 14, resnet18: 0, resnet50: 5, first: "layer3.1.conv1"),
        .init("r50", "l4", 1024, 512, kernel: 1, stride: 1, size: 14, resnet18: 0, resnet50: 1, first: "layer4.0.conv1"),
        .init("r50", "l4", 512, 512, kernel: 3, stride: 2, size: 14, resnet18: 0, resnet50: 1, first: "layer4.0.conv2"),
        .init("r50", "l4", 512, 2048, kernel: 1, stride: 1, size: 7, resnet18: 0, resnet50: 3, first: "layer4.0.conv3"),
        .init("r50", "l4", 1024, 2048, kernel: 1, stride: 2, size: 14, resnet18: 0, resnet50: 1, first: "layer4.0.downsample.0"),
        .init("r50", "l4", 2048, 512, kernel: 1, stride: 1, size: 7, resnet18: 0, resnet50: 2, first: "layer4.1.conv1"),
    ]

    func cases() -> [BenchCase] {
        Self.shapes.flatMap { shape -> [BenchCase] in
            let g = shape.geometry
            let detail = "\(g.shapeText), as \(shape.firstModule) (\(shape.uses) per forward)"
            return [
                BenchCase(name: shape.name + "_fwd", detail: detail, flops: g.forwardFlops) {
                    ConvWorkload(g, backward: false, bias: false)
                },
                BenchCase(name: shape.name + "_fwd_bwd", detail: "the same, forward + input and weight gradients (3x forward flops)",
                          flops: 3 * g.forwardFlops) {
                    ConvWorkload(g, backward: true, bias: false)
                },
            ]
        }
    }
}
