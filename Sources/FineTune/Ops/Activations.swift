import Foundation

extension Tensor {
    /// `max(x, 0)`.
    public func relu() -> Tensor {
        let y = Tensor.vectorized(self, Kernels.relu)
        let x = contiguousData()
        return Tensor.record(y, op: "relu", inputs: [self]) { g, _ in
            [Tensor.vectorizedGradient(x, g) { Kernels.reluGrad(x: $0, gradOutput: $1, gradInput: $2, count: $3) }]
        }
    }

    /// `x` where positive, `slope * x` elsewhere.
    public func leakyRelu(slope: Float = 0.01) -> Tensor {
        pointwise("leakyRelu", { $0 > 0 ? $0 : slope * $0 }, derivative: { x, _ in x > 0 ? 1 : slope })
    }

    /// Gaussian error linear unit: exact `0.5 x (1 + erf(x / sqrt 2))`, or the tanh approximation.
    public func gelu(approximate: Bool = false) -> Tensor {
        let y = Tensor.vectorized(self) { Kernels.vGELU($0, $1, count: $2, approximate: approximate) }
        let x = contiguousData()
        return Tensor.record(y, op: "gelu", inputs: [self]) { g, _ in
            [Tensor.vectorizedGradient(x, g) {
                Kernels.vGELUGrad(x: $0, gradOutput: $1, gradInput: $2, count: $3, approximate: approximate)
            }]
        }
    }

    /// Logistic sigmoid `1 / (1 + e^-x)`.
    public func sigmoid() -> Tensor {
        let y = Tensor.vectorized(self, Kernels.vSigmoid)
        return Tensor.record(y, op: "sigmoid", inputs: [self]) { g, _ in
            [Tensor.zipMap(g, y, y) { g, y, _ in g * y * (1 - y) }]
        }
    }

    /// Sigmoid-weighted linear unit `x * sigmoid(x)` (PyTorch's `F.silu`, also called swish): the
    /// activation of LLaMA-style gated feed-forward blocks. One fused vector kernel each way.
    ///
    /// ```swift
    /// let hidden = gate(x).silu() * up(x)    // SwiGLU
    /// ```
    public func silu() -> Tensor {
        let y = Tensor.vectorized(self, Kernels.vSiLU)
        let x = contiguousData()
        return Tensor.record(y, op: "silu", inputs: [self]) { g, _ in
            [Tensor.vectorizedGradient(x, g) { Kernels.vSiLUGrad(x: $0, gradOutput: $1, gradInput: $2, count: $3) }]
        }
    }

    /// `log(1 + exp(beta x)) / beta`, and `x` itself where `beta x > threshold` (PyTorch's
    /// `F.softplus` with its defaults `beta = 1`, `threshold = 20`). The gradient is
    /// `sigmoid(beta x)` (1 above the threshold).
    public func softplus(beta: Float = 1, threshold: Float = 20) -> Tensor {
        pointwise("softplus", { x in
            let bx = beta * x
            return bx > threshold ? x : Foundation.log1p(Foundation.exp(bx)) / beta
        }, derivative: { x, _ in
            let bx = beta * x
            return bx > threshold ? 1 : 1 / (1 + Foundation.exp(-bx))
        })
    }

    /// Hyperbolic tangent.
    public func tanh() -> Tensor {
        let y = Tensor.vectorized(self, Kernels.vTanh)
        return Tensor.record(y, op: "tanh", inputs: [self]) { g, _ in
            [Tensor.zipMap(g, y, y) { g, y, _ in g * (1 - y * y) }]
        }
    }

    /// Softmax along `axis` (default: last).
    public func softmax(axis: Int = -1) -> Tensor {
        rowwise(axis: axis, op: "softmax", forward: Kernels.softmaxRows, backward: Kernels.softmaxRowsBackward)
    }

    /// `log(softmax(x))` along `axis`, computed stably.
    public func logSoftmax(axis: Int = -1) -> Tensor {
        rowwise(axis: axis, op: "logSoftmax", forward: Kernels.logSoftmaxRows, backward: Kernels.logSoftmaxRowsBackward)
    }

    /// The input gradient of an element-wise op from a pointer kernel `(x, gradOutput, gradInput,
    /// count)` over its saved contiguous input `x`, split across threads when large.
    static func vectorizedGradient(_ x: Tensor, _ g: Tensor,
                                   _ kernel: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)
        -> Tensor {
        let g = g.contiguousData(), dx = Tensor(uninitialized: x.shape)
        x.withDataPointer { px in g.withDataPointer { pg in dx.withDataPointer { pd in
            Kernels.parallelChunks(dx.count) { start, end in kernel(px + start, pg + start, pd + start, end - start) }
        }}}
        return dx
    }

    /// Runs a row kernel along `axis` (moved last when it is not), with its output-based backward.
    func rowwise(axis: Int, op: String,
                 forward: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void,
                 backward: @escaping (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void) -> Tensor {
        let a = Shape.axis(axis, rank: rank, op: op, shape: shape)
        if a != rank - 1 {
            // Move the axis last, apply, move it back (the views carry the gradient).
            return transposed(a, rank - 1).rowwise(axis: -1, op: op, forward: forward, backward: backward)
                .transposed(a, rank - 1)
        }
        let cols = Swift.max(shape.last ?? 1, 1), rows = count / cols
        let x = contiguousData()
        let y = Tensor(uninitialized: shape)
        x.withDataPointer { px in y.withDataPointer { py in forward(px, py, rows, cols) } }
        return Tensor.record(y, op: op, inputs: [self]) { g, _ in
            let g = g.contiguousData(), dx = Tensor(uninitialized: y.shape)
            y.withDataPointer { py in g.withDataPointer { pg in dx.withDataPointer { pd in
                backward(py, pg, pd, rows, cols)
            }}}
            return [dx]
        }
    }
}
