extension Tensor {
    /// 1-D convolution over `[N, C, L]` input with weight `[out, in / groups, k]` (PyTorch's
    /// `F.conv1d`, zero padding; an unbatched `[C, L]` input gives `[out, L']`). It runs as a
    /// 2-D convolution of height 1 on the same kernels, so it has their speed and threading.
    ///
    /// ```swift
    /// let y = Tensor.conv1d(audio, weight: w, bias: b, stride: 2, padding: 1)   // [N, 16, 100] -> [N, out, 50]
    /// ```
    public static func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0,
                              dilation: Int = 1, groups: Int = 1) -> Tensor {
        if x.rank == 2 {
            return conv1d(x.unsqueezed(axis: 0), weight: weight, bias: bias, stride: stride, padding: padding,
                          dilation: dilation, groups: groups).squeezed(axis: 0)
        }
        Shape.check(x.rank == 3 && weight.rank == 3, op: "conv1d", shapes: [x.shape, weight.shape],
                    "expected input [N, C, L] and weight [out, in/groups, k]")
        return conv2d(x.unsqueezed(axis: 2), weight: weight.unsqueezed(axis: 2), bias: bias, stride: (1, stride),
                      padding: (0, padding), dilation: (1, dilation), groups: groups).squeezed(axis: 2)
    }
}
