import FineTune

/// A ResNet-style 3x3 convolution (batch 32, 64 -> 64 channels, 32x32, padding 1, stride 1) and a
/// MobileNet-style depthwise 3x3 stride-2 convolution (batch 32, 64 channels, 32x32 -> 16x16).
struct ConvSuite: BenchSuite {
    let name = "conv"
    let summary = "Kernels.conv2d*: 3x3 conv, batch 32, 64->64 channels, 32x32, pad 1, stride 1; depthwise 3x3 stride 2"

    private let geometry = Conv2dGeometry(batch: 32, inChannels: 64, height: 32, width: 32,
                                          outChannels: 64, kernelHeight: 3, kernelWidth: 3,
                                          stride: (1, 1), padding: (1, 1))
    private let depthwise = Conv2dGeometry(batch: 32, inChannels: 64, height: 32, width: 32,
                                           outChannels: 64, kernelHeight: 3, kernelWidth: 3,
                                           stride: (2, 2), padding: (1, 1), groups: 64)

    func cases() -> [BenchCase] {
        let g = geometry, d = depthwise
        return [
            BenchCase(name: "conv3x3_fwd", detail: "conv2dForward with bias, \(g.shapeText)",
                      flops: g.forwardFlops, makeWorkload: { ConvWorkload(g, backward: false) }),
            BenchCase(name: "conv3x3_fwd_bwd", detail: "forward + conv2dBackwardInput + conv2dBackwardWeight (3x forward flops)",
                      flops: 3 * g.forwardFlops, makeWorkload: { ConvWorkload(g, backward: true) }),
            BenchCase(name: "dw3x3s2_fwd", detail: "depthwise (groups 64), stride 2, with bias, \(d.shapeText)",
                      flops: d.forwardFlops, makeWorkload: { ConvWorkload(d, backward: false) }),
            BenchCase(name: "dw3x3s2_fwd_bwd", detail: "depthwise stride 2: forward + both backward kernels (3x forward flops)",
                      flops: 3 * d.forwardFlops, makeWorkload: { ConvWorkload(d, backward: true) }),
        ]
    }

}

extension Conv2dGeometry {
    /// `[N x C x H x W] -> [N x C' x H' x W']`, for `--list`.
    var shapeText: String {
        "[\(batch)x\(inChannels)x\(height)x\(width)] -> [\(batch)x\(outChannels)x\(outHeight)x\(outWidth)]"
    }
}

/// Buffers for one convolution: forward only, or forward plus both backward kernels (the input
/// and weight gradients; a bias gradient is not computed).
final class ConvWorkload: Workload {
    private let g: Conv2dGeometry
    private let backward: Bool
    private let input: FloatBuffer, weight: FloatBuffer, output: FloatBuffer
    private let bias: FloatBuffer?
    private let gradOutput: FloatBuffer, gradInput: FloatBuffer, gradWeight: FloatBuffer

    /// `bias: false` for convolutions followed by BatchNorm (ResNet's).
    init(_ g: Conv2dGeometry, backward: Bool, bias hasBias: Bool = true) {
        self.g = g
        self.backward = backward
        let inputCount = g.batch * g.inChannels * g.height * g.width
        let outputCount = g.batch * g.outChannels * g.outHeight * g.outWidth
        let weightCount = g.outChannels * g.inChannelsPerGroup * g.kernelHeight * g.kernelWidth
        input = FloatBuffer(count: inputCount, seed: 11)
        weight = FloatBuffer(count: weightCount, seed: 12)
        bias = hasBias ? FloatBuffer(count: g.outChannels, seed: 13) : nil
        output = FloatBuffer(count: outputCount)
        // Backward buffers stay empty for the forward-only case.
        gradOutput = FloatBuffer(count: backward ? outputCount : 0, seed: 14)
        gradInput = FloatBuffer(count: backward ? inputCount : 0)
        gradWeight = FloatBuffer(count: backward ? weightCount : 0)
    }

    func run(threads: Int) {
        Kernels.maxThreads = threads    // for the kernels it calls without a thread count
        Kernels.conv2dForward(g, input: input.readOnly, weight: weight.readOnly, bias: bias?.readOnly,
                              output: output.pointer, threads: threads)
        guard backward else { return }
        Kernels.conv2dBackwardInput(g, gradOutput: gradOutput.readOnly, weight: weight.readOnly,
                                    gradInput: gradInput.pointer, threads: threads)
        Kernels.conv2dBackwardWeight(g, input: input.readOnly, gradOutput: gradOutput.readOnly,
                                     gradWeight: gradWeight.pointer, threads: threads)
    }

    func checksum() -> Double { output.sum() + gradInput.sum() + gradWeight.sum() }
}
