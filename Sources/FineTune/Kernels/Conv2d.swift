/// The shape of a 2-D convolution over NCHW input with OIHW weights (PyTorch layout).
public struct Conv2dGeometry: Hashable, Sendable {
    public var batch: Int, inChannels: Int, height: Int, width: Int
    public var outChannels: Int, kernelHeight: Int, kernelWidth: Int
    public var strideH: Int, strideW: Int, padH: Int, padW: Int
    public var dilationH: Int, dilationW: Int, groups: Int

    public init(batch: Int, inChannels: Int, height: Int, width: Int,
                outChannels: Int, kernelHeight: Int, kernelWidth: Int,
                stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                dilation: (Int, Int) = (1, 1), groups: Int = 1) {
        self.batch = batch; self.inChannels = inChannels; self.height = height; self.width = width
        self.outChannels = outChannels; self.kernelHeight = kernelHeight; self.kernelWidth = kernelWidth
        self.strideH = stride.0; self.strideW = stride.1; self.padH = padding.0; self.padW = padding.1
        self.dilationH = dilation.0; self.dilationW = dilation.1; self.groups = groups
    }

    public var outHeight: Int { (height + 2 * padH - dilationH * (kernelHeight - 1) - 1) / strideH + 1 }
    public var outWidth: Int { (width + 2 * padW - dilationW * (kernelWidth - 1) - 1) / strideW + 1 }
    /// Input channels seen by one output channel.
    public var inChannelsPerGroup: Int { inChannels / groups }
    public var outChannelsPerGroup: Int { outChannels / groups }
    /// Multiply-adds of the forward pass times two.
    public var forwardFlops: Double {
        2 * Double(batch * outChannels * outHeight * outWidth * inChannelsPerGroup * kernelHeight * kernelWidth)
    }
}

extension Kernels {
    /// `output[N, Cout, OH, OW] = conv(input[N, Cin, H, W], weight[Cout, Cin/groups, KH, KW]) + bias`.
    public static func conv2dForward(_ g: Conv2dGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                     bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                                     threads: Int = Kernels.maxThreads) {
        // PLACEHOLDER naive implementation.
        let oh = g.outHeight, ow = g.outWidth, cpg = g.inChannelsPerGroup, opg = g.outChannelsPerGroup
        for n in 0..<g.batch { for co in 0..<g.outChannels {
            let grp = co / opg
            for y in 0..<oh { for x in 0..<ow {
                var s: Float = bias?[co] ?? 0
                for ci in 0..<cpg { for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
                    let iy = y * g.strideH - g.padH + ky * g.dilationH, ix = x * g.strideW - g.padW + kx * g.dilationW
                    if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                    let c = grp * cpg + ci
                    s += input[((n * g.inChannels + c) * g.height + iy) * g.width + ix]
                        * weight[((co * cpg + ci) * g.kernelHeight + ky) * g.kernelWidth + kx]
                }}}
                output[((n * g.outChannels + co) * oh + y) * ow + x] = s
            }}
        }}
    }

    /// `gradInput = d(output)/d(input)^T · gradOutput` (overwrites `gradInput`).
    public static func conv2dBackwardInput(_ g: Conv2dGeometry, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                           gradInput: UnsafeMutablePointer<Float>, threads: Int = Kernels.maxThreads) {
        let oh = g.outHeight, ow = g.outWidth, cpg = g.inChannelsPerGroup, opg = g.outChannelsPerGroup
        gradInput.update(repeating: 0, count: g.batch * g.inChannels * g.height * g.width)
        for n in 0..<g.batch { for co in 0..<g.outChannels {
            let grp = co / opg
            for y in 0..<oh { for x in 0..<ow {
                let go = gradOutput[((n * g.outChannels + co) * oh + y) * ow + x]
                for ci in 0..<cpg { for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
                    let iy = y * g.strideH - g.padH + ky * g.dilationH, ix = x * g.strideW - g.padW + kx * g.dilationW
                    if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                    let c = grp * cpg + ci
                    gradInput[((n * g.inChannels + c) * g.height + iy) * g.width + ix] +=
                        go * weight[((co * cpg + ci) * g.kernelHeight + ky) * g.kernelWidth + kx]
                }}}
            }}
        }}
    }

    /// `gradWeight = d(output)/d(weight)^T · gradOutput` (overwrites `gradWeight`).
    public static func conv2dBackwardWeight(_ g: Conv2dGeometry, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                            gradWeight: UnsafeMutablePointer<Float>, threads: Int = Kernels.maxThreads) {
        let oh = g.outHeight, ow = g.outWidth, cpg = g.inChannelsPerGroup, opg = g.outChannelsPerGroup
        gradWeight.update(repeating: 0, count: g.outChannels * cpg * g.kernelHeight * g.kernelWidth)
        for n in 0..<g.batch { for co in 0..<g.outChannels {
            let grp = co / opg
            for y in 0..<oh { for x in 0..<ow {
                let go = gradOutput[((n * g.outChannels + co) * oh + y) * ow + x]
                for ci in 0..<cpg { for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
                    let iy = y * g.strideH - g.padH + ky * g.dilationH, ix = x * g.strideW - g.padW + kx * g.dilationW
                    if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                    let c = grp * cpg + ci
                    gradWeight[((co * cpg + ci) * g.kernelHeight + ky) * g.kernelWidth + kx] +=
                        go * input[((n * g.inChannels + c) * g.height + iy) * g.width + ix]
                }}}
            }}
        }}
    }
}
