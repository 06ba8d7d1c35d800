extension Tensor {
    /// Max pooling over NCHW input (`stride` defaults to the kernel size, as in PyTorch).
    /// `dilation` spaces the window's elements; `ceilMode` keeps a last partial window (PyTorch's
    /// `ceil_mode`, with its rule that a window must start inside the input or its left padding).
    ///
    /// ```swift
    /// x.maxPool2d(kernelSize: (3, 3), stride: (2, 2), ceilMode: true)   // [N, C, 8, 8] -> [N, C, 4, 4] (floor: 3x3)
    /// ```
    public func maxPool2d(kernelSize kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                          dilation: (Int, Int) = (1, 1), ceilMode: Bool = false) -> Tensor {
        let g = poolGeometry("maxPool2d", kernel: kernel, stride: stride ?? kernel, padding: padding, dilation: dilation,
                             ceilMode: ceilMode)
        let x = contiguousData()
        let out = Tensor(uninitialized: [shape[0], shape[1], g.outHeight, g.outWidth])
        // The winners' indices are only needed by the backward rule: a frozen or no-grad input skips them.
        let owner = Tensor.willRecord(inputs: [self])
            ? IndexBuffer(count: out.count) : nil
        x.withDataPointer { px in out.withDataPointer { py in
            Kernels.maxPool2dForward(g, input: px, output: py, indices: owner?.pointer)
        }}
        guard let owner else { return out }
        let inputShape = shape
        return Tensor.record(out, op: "maxPool2d", inputs: [self]) { grad, _ in
            let gy = grad.contiguousData(), dx = Tensor(uninitialized: inputShape)
            gy.withDataPointer { pg in dx.withDataPointer { pdx in
                Kernels.maxPool2dBackward(g, gradOutput: pg, indices: owner.pointer, gradInput: pdx)
            }}
            return [dx]
        }
    }

    /// Average pooling over NCHW input; padded zeros count in the divisor unless `countIncludePad` is false.
    /// `ceilMode` keeps a last partial window; its divisor counts only the part inside the
    /// padded input (PyTorch's rule).
    public func avgPool2d(kernelSize kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                          ceilMode: Bool = false, countIncludePad: Bool = true) -> Tensor {
        let g = poolGeometry("avgPool2d", kernel: kernel, stride: stride ?? kernel, padding: padding, dilation: (1, 1),
                             ceilMode: ceilMode)
        let x = contiguousData()
        let out = Tensor(uninitialized: [shape[0], shape[1], g.outHeight, g.outWidth])
        x.withDataPointer { px in out.withDataPointer { py in
            Kernels.avgPool2dForward(g, countIncludePad: countIncludePad, input: px, output: py)
        }}
        let inputShape = shape
        return Tensor.record(out, op: "avgPool2d", inputs: [self]) { grad, _ in
            let gy = grad.contiguousData(), dx = Tensor(uninitialized: inputShape)
            gy.withDataPointer { pg in dx.withDataPointer { pdx in
                Kernels.avgPool2dBackward(g, countIncludePad: countIncludePad, gradOutput: pg, gradInput: pdx)
            }}
            return [dx]
        }
    }

    /// Adaptive average pooling of NCHW input to `outputSize` (PyTorch's window rule).
    public func adaptiveAvgPool2d(_ outputSize: (Int, Int)) -> Tensor {
        Shape.check(rank == 4, op: "adaptiveAvgPool2d", shapes: [shape], "expected [N, C, H, W]")
        let (oh, ow) = outputSize, planes = shape[0] * shape[1], h = shape[2], w = shape[3]
        Shape.check(oh > 0 && ow > 0, op: "adaptiveAvgPool2d", shapes: [shape, [oh, ow]], "output size must be positive")
        let x = contiguousData()
        let out = Tensor(uninitialized: [shape[0], shape[1], oh, ow])
        x.withDataPointer { px in out.withDataPointer { py in
            Kernels.adaptiveAvgPool2dForward(planes: planes, height: h, width: w, outHeight: oh, outWidth: ow, input: px, output: py)
        }}
        let inputShape = shape
        return Tensor.record(out, op: "adaptiveAvgPool2d", inputs: [self]) { grad, _ in
            let gy = grad.contiguousData(), dx = Tensor(uninitialized: inputShape)
            gy.withDataPointer { pg in dx.withDataPointer { pdx in
                Kernels.adaptiveAvgPool2dBackward(planes: planes, height: h, width: w, outHeight: oh, outWidth: ow,
                                                  gradOutput: pg, gradInput: pdx)
            }}
            return [dx]
        }
    }

    /// Global average pooling: `[N, C, H, W] -> [N, C]`.
    public func globalAvgPool2d() -> Tensor {
        Shape.check(rank == 4, op: "globalAvgPool2d", shapes: [shape], "expected [N, C, H, W]")
        return mean(axes: [2, 3])
    }

    private func poolGeometry(_ op: String, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)) -> Pool2dGeometry {
        Shape.check(rank == 4, op: op, shapes: [shape], "expected [N, C, H, W]")
        Shape.check(kernel.0 >= 1 && kernel.1 >= 1, op: op, shapes: [shape], "kernel must be at least 1, got \(kernel)")
        Shape.check(stride.0 >= 1 && stride.1 >= 1, op: op, shapes: [shape], "stride must be at least 1, got \(stride)")
        Shape.check(padding.0 >= 0 && padding.1 >= 0, op: op, shapes: [shape], "padding must not be negative, got \(padding)")
        Shape.check(padding.0 * 2 <= kernel.0 && padding.1 * 2 <= kernel.1, op: op, shapes: [shape],
                    "padding must be at most half the kernel size")
        let g = Pool2dGeometry(planes: shape[0] * shape[1], height: shape[2], width: shape[3],
                               kernel: kernel, stride: stride, padding: padding)
        Shape.check(g.outHeight > 0 && g.outWidth > 0, op: op, shapes: [shape],
                    "kernel \(kernel) with padding \(padding) does not fit the input")
        return g
    }

    /// The checked geometry with spaced window elements and ceil mode (a dilated window is
    /// larger, so it is checked again).
    private func poolGeometry(_ op: String, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int),
                              dilation: (Int, Int), ceilMode: Bool) -> Pool2dGeometry {
        var g = poolGeometry(op, kernel: kernel, stride: stride, padding: padding)
        Shape.check(dilation.0 > 0 && dilation.1 > 0, op: op, shapes: [shape], "dilation must be positive, got \(dilation)")
        (g.dilationH, g.dilationW, g.ceilMode) = (dilation.0, dilation.1, ceilMode)
        Shape.check(g.outHeight > 0 && g.outWidth > 0, op: op, shapes: [shape],
                    "kernel \(kernel) with dilation \(dilation) and padding \(padding) does not fit the input")
        return g
    }
}

/// Owns the argmax indices that a max backward rule needs (max pooling, `max(axis:)`).
final class IndexBuffer {
    let pointer: UnsafeMutablePointer<Int32>
    init(_ pointer: UnsafeMutablePointer<Int32>) { self.pointer = pointer }
    /// Room for `count` indices, uninitialized.
    convenience init(count: Int) { self.init(UnsafeMutablePointer<Int32>.allocate(capacity: Swift.max(count, 1))) }
    deinit { pointer.deallocate() }
}
