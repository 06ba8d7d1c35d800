extension Tensor {
    /// 2-D transposed convolution over NCHW input with weight `[in, out / groups, kh, kw]`
    /// (PyTorch's `F.conv_transpose2d`, its weight layout included): the gradient of `conv2d`
    /// with respect to its input, used to upsample (decoders, U-Nets). The output size is
    /// `(H - 1) * stride - 2 * padding + dilation * (kh - 1) + outputPadding + 1`, likewise for W.
    ///
    /// `outputPadding` adds rows/columns at the bottom/right that only the bias reaches (to pick
    /// one of the sizes a strided convolution maps to the same output); it must be smaller than
    /// the stride. (PyTorch also accepts an `outputPadding` below the dilation only.)
    ///
    /// ```swift
    /// let up = Tensor.convTranspose2d(x, weight: w, stride: (2, 2), padding: (1, 1), outputPadding: (1, 1))  // 2x upsampling, k = 3
    /// ```
    public static func convTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1),
                                       padding: (Int, Int) = (0, 0), outputPadding: (Int, Int) = (0, 0),
                                       dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        let op = "convTranspose2d"
        Shape.check(x.rank == 4 && weight.rank == 4, op: op, shapes: [x.shape, weight.shape],
                    "expected input [N, C, H, W] and weight [in, out/groups, kh, kw]")
        Shape.check(groups >= 1 && weight.shape[0] == x.shape[1] && x.shape[1] % groups == 0, op: op,
                    shapes: [x.shape, weight.shape], "input channels \(x.shape[1]) do not match weight [\(weight.shape[0]), ...] with groups \(groups)")
        Shape.check(stride.0 > 0 && stride.1 > 0 && dilation.0 > 0 && dilation.1 > 0 && padding.0 >= 0 && padding.1 >= 0
                    && outputPadding.0 >= 0 && outputPadding.1 >= 0 && outputPadding.0 < stride.0 && outputPadding.1 < stride.1,
                    op: op, shapes: [x.shape, weight.shape], "invalid stride, padding, dilation or outputPadding (which must be below the stride)")
        let (n, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let (kh, kw) = (weight.shape[2], weight.shape[3]), outChannels = weight.shape[1] * groups
        let outHeight = (h - 1) * stride.0 - 2 * padding.0 + dilation.0 * (kh - 1) + outputPadding.0 + 1
        let outWidth = (w - 1) * stride.1 - 2 * padding.1 + dilation.1 * (kw - 1) + outputPadding.1 + 1
        Shape.check(outHeight > 0 && outWidth > 0, op: op, shapes: [x.shape, weight.shape], "the padding leaves no output")
        if let bias {
            Shape.check(bias.shape == [outChannels], op: op, shapes: [weight.shape, bias.shape], "bias must be [out] = [\(outChannels)]")
        }
        // The convolution this one transposes: output [N, Cout, outHeight, outWidth] -> input [N, Cin, H, W].
        let g = Conv2dGeometry(batch: n, inChannels: outChannels, height: outHeight, width: outWidth,
                               outChannels: x.shape[1], kernelHeight: kh, kernelWidth: kw,
                               stride: stride, padding: padding, dilation: dilation, groups: groups)
        precondition(g.outHeight == h && g.outWidth == w, "\(op): geometry mismatch \(g) for input \(x.shape)")
        let xd = x.contiguousData(), wd = weight.contiguousData(), bd = bias?.contiguousData()
        let out = Tensor(uninitialized: [n, outChannels, outHeight, outWidth])
        xd.withDataPointer { px in wd.withDataPointer { pw in out.withDataPointer { py in
            Kernels.conv2dBackwardInput(g, gradOutput: px, weight: pw, gradInput: py)
            if let bd {
                let plane = outHeight * outWidth
                bd.withDataPointer { pb in
                    for i in 0..<(n * outChannels) { Kernels.addScalar(py + i * plane, pb[i % outChannels], py + i * plane, count: plane) }
                }
            }
        }}}
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return record(out, op: op, inputs: inputs) { grad, needs in
            let gy = grad.contiguousData()
            var grads: [Tensor?] = [nil, nil, nil]
            if needs[0] {
                let dx = Tensor(uninitialized: xd.shape)
                gy.withDataPointer { pg in wd.withDataPointer { pw in dx.withDataPointer { pdx in
                    Kernels.conv2dForward(g, input: pg, weight: pw, bias: nil, output: pdx)
                }}}
                grads[0] = dx
            }
            if needs[1] {
                let dw = Tensor(uninitialized: wd.shape)
                gy.withDataPointer { pg in xd.withDataPointer { px in dw.withDataPointer { pdw in
                    Kernels.conv2dBackwardWeight(g, input: pg, gradOutput: px, gradWeight: pdw)
                }}}
                grads[1] = dw
            }
            if needs.count > 2 && needs[2] {
                grads[2] = gy.reduceSum(to: [1, outChannels, 1, 1]).reshapedView([outChannels])
            }
            return grads
        }
    }
}
