extension Tensor {
    /// 2-D convolution over NCHW input with weight `[out, in / groups, kh, kw]` (PyTorch's `F.conv2d`).
    ///
    /// ```swift
    /// let y = Tensor.conv2d(x, weight: w, bias: b, padding: (1, 1))
    /// ```
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil,
                              stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                              dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        Shape.check(x.rank == 4 && weight.rank == 4, op: "conv2d", shapes: [x.shape, weight.shape],
                    "expected input [N, C, H, W] and weight [out, in/groups, kh, kw]")
        Shape.check(stride.0 >= 1 && stride.1 >= 1, op: "conv2d", shapes: [x.shape, weight.shape],
                    "stride must be at least 1, got \(stride)")
        Shape.check(padding.0 >= 0 && padding.1 >= 0, op: "conv2d", shapes: [x.shape, weight.shape],
                    "padding must not be negative, got \(padding)")
        Shape.check(dilation.0 >= 1 && dilation.1 >= 1, op: "conv2d", shapes: [x.shape, weight.shape],
                    "dilation must be at least 1, got \(dilation)")
        Shape.check(groups >= 1 && x.shape[1] % groups == 0 && weight.shape[0] % groups == 0 && weight.shape[1] * groups == x.shape[1],
                    op: "conv2d", shapes: [x.shape, weight.shape],
                    "input channels \(x.shape[1]) do not match weight [*, \(weight.shape[1]), *, *] with groups \(groups)")
        let g = Conv2dGeometry(batch: x.shape[0], inChannels: x.shape[1], height: x.shape[2], width: x.shape[3],
                               outChannels: weight.shape[0], kernelHeight: weight.shape[2], kernelWidth: weight.shape[3],
                               stride: stride, padding: padding, dilation: dilation, groups: groups)
        Shape.check(g.outHeight > 0 && g.outWidth > 0, op: "conv2d", shapes: [x.shape, weight.shape],
                    "the kernel (with dilation and padding) is larger than the input")
        if let bias {
            Shape.check(bias.shape == [g.outChannels], op: "conv2d", shapes: [weight.shape, bias.shape], "bias must be [out]")
        }
        let xd = x.contiguousData(), wd = weight.contiguousData(), bd = bias?.contiguousData()
        let out = Tensor(uninitialized: [g.batch, g.outChannels, g.outHeight, g.outWidth])
        xd.withDataPointer { px in wd.withDataPointer { pw in out.withDataPointer { py in
            if let bd {
                bd.withDataPointer { pb in Kernels.conv2dForward(g, input: px, weight: pw, bias: pb, output: py, plan: .current(g)) }
            } else {
                Kernels.conv2dForward(g, input: px, weight: pw, bias: nil, output: py, plan: .current(g))
            }
        }}}
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return Tensor.record(out, op: "conv2d", inputs: inputs) { grad, needs in
            let gy = grad.contiguousData()
            var grads: [Tensor?] = [nil, nil, nil]
            if needs[0] {
                let dx = Tensor(uninitialized: xd.shape)
                gy.withDataPointer { pg in wd.withDataPointer { pw in dx.withDataPointer { pdx in
                    Kernels.conv2dBackwardInput(g, gradOutput: pg, weight: pw, gradInput: pdx, plan: .current(g))
                }}}
                grads[0] = dx
            }
            if needs[1] {
                let dw = Tensor(uninitialized: wd.shape)
                gy.withDataPointer { pg in xd.withDataPointer { px in dw.withDataPointer { pdw in
                    Kernels.conv2dBackwardWeight(g, input: px, gradOutput: pg, gradWeight: pdw, plan: .current(g))
                }}}
                grads[1] = dw
            }
            if needs.count > 2 && needs[2] {
                grads[2] = gy.reduceSum(to: [1, g.outChannels, 1, 1]).reshapedView([g.outChannels])
            }
            return grads
        }
    }
}

extension ConvPlan {
    /// The plan of the convolution ops: `Kernels.maxThreads` threads, and the flop threshold
    /// divided as a `Kernels.withMaxThreads(_:parallelThresholdsDividedBy:_:)` scope asks
    /// (the same plan as the public kernels' outside such a scope).
    static func current(_ g: Conv2dGeometry) -> ConvPlan {
        ConvPlan(g, threads: Kernels.maxThreads,
                 minParallelFlops: ConvPlan.minParallelFlops / Double(Kernels.parallelThresholdDivisor))
    }
}
