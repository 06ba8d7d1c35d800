import Foundation

// Pointwise math: forward and the derivative rule side by side.

extension Tensor {
    /// A pointwise op `y = f(x)` whose gradient is `g * df(x, y)`.
    @inline(__always)
    func pointwise(_ op: String, _ f: (Float) -> Float,
                   derivative: @escaping (_ x: Float, _ y: Float) -> Float) -> Tensor {
        let y = Broadcasting.unary(self, f)
        let x = contiguousData()
        return Tensor.record(y, op: op, inputs: [self]) { g, _ in
            [Tensor.zipMap(g, x, y) { g, x, y in g * derivative(x, y) }]
        }
    }

    /// `f(a[i], b[i], c[i])` over three tensors of one shape (any layout).
    @inline(__always)
    static func zipMap(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: (Float, Float, Float) -> Float) -> Tensor {
        let a = a.contiguousData(), b = b.contiguousData(), c = c.contiguousData()
        let out = Tensor(uninitialized: a.shape)
        a.withDataPointer { pa in b.withDataPointer { pb in c.withDataPointer { pc in out.withDataPointer { po in
            for i in 0..<out.count { po[i] = f(pa[i], pb[i], pc[i]) }
        }}}}
        return out
    }

    /// `e^x`.
    public func exp() -> Tensor {
        let y = Tensor.vectorized(self, Kernels.vExp)
        return Tensor.record(y, op: "exp", inputs: [self]) { g, _ in [g * y] }
    }

    /// Natural logarithm.
    public func log() -> Tensor {
        let y = Tensor.vectorized(self, Kernels.vLog)
        let x = contiguousData()
        return Tensor.record(y, op: "log", inputs: [self]) { g, _ in [g / x] }
    }

    /// Square root.
    public func sqrt() -> Tensor {
        pointwise("sqrt", { $0.squareRoot() }, derivative: { _, y in 0.5 / y })
    }

    /// `x^p` for a constant exponent. As in PyTorch, `p = 0` has gradient 0 everywhere (also at
    /// `x = 0`, where `p x^(p-1)` would be `0 * inf`).
    public func pow(_ p: Float) -> Tensor {
        if p == 2 { return pointwise("pow", { $0 * $0 }, derivative: { x, _ in 2 * x }) }
        return pointwise("pow", { Foundation.pow($0, p) }, derivative: { x, _ in Tensor.powBaseDerivative(x, p) })
    }

    /// `self^exponent` elementwise with broadcasting (both differentiable).
    ///
    /// At base 0 the gradients are masked as in PyTorch: the base gradient is 0 where the exponent
    /// is 0, and the exponent gradient `x^p log x` is 0 where `x = 0` and `p >= 0` (not NaN).
    public func pow(_ exponent: Tensor) -> Tensor {
        let y = Broadcasting.binary(self, exponent, op: "pow") { Foundation.pow($0, $1) }
        let a = detached(), b = exponent.detached()
        return Tensor.record(y, op: "pow", inputs: [self, exponent]) { g, needs in
            let da = needs[0] ? g * Broadcasting.binary(a, b, op: "pow", Tensor.powBaseDerivative) : nil
            let db = needs[1] ? g * Tensor.zipMap(y, a.expanded(to: y.shape), b.expanded(to: y.shape)) { y, x, p in
                x == 0 && p >= 0 ? 0 : y * Foundation.log(x)
            } : nil
            return [da, db]
        }
    }

    /// `d(x^p)/dx = p x^(p-1)`, and 0 for `p = 0` (PyTorch's mask).
    @inline(__always)
    static func powBaseDerivative(_ x: Float, _ p: Float) -> Float {
        p == 0 ? 0 : p * Foundation.pow(x, p - 1)
    }

    /// `|x|` (gradient 0 at 0, as PyTorch's sign).
    public func abs() -> Tensor {
        pointwise("abs", { Swift.abs($0) }, derivative: { x, _ in x > 0 ? 1 : (x < 0 ? -1 : 0) })
    }

    /// Clamps into `[min, max]` (either bound optional); gradient passes where not clamped.
    public func clamped(min lo: Float? = nil, max hi: Float? = nil) -> Tensor {
        let lower = lo ?? -.infinity, upper = hi ?? .infinity
        return pointwise("clamp", { Swift.min(Swift.max($0, lower), upper) },
                         derivative: { x, _ in x >= lower && x <= upper ? 1 : 0 })
    }

    /// `1 / sqrt(x)` (PyTorch's `rsqrt`); the gradient is `-0.5 x^(-3/2)`.
    public func rsqrt() -> Tensor {
        pointwise("rsqrt", { 1 / $0.squareRoot() }, derivative: { _, y in -0.5 * y * y * y })
    }

    /// The error function `erf(x)` (vector kernel, absolute error < 1e-6); the gradient is
    /// `2 / sqrt(pi) * exp(-x^2)`.
    public func erf() -> Tensor {
        let y = Tensor.vectorized(self, Kernels.vErf)
        let x = contiguousData()
        return Tensor.record(y, op: "erf", inputs: [self]) { g, _ in
            [Tensor.zipMap(g, x, x) { g, x, _ in g * 1.128_379_167_095_512_6 * Foundation.exp(-x * x) }]
        }
    }

    /// Applies a pointer kernel `(x, y, count)` to a contiguous copy of `x`.
    static func vectorized(_ x: Tensor, _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
        let src = x.contiguousData()
        let out = Tensor(uninitialized: x.shape)
        src.withDataPointer { px in out.withDataPointer { po in
            Kernels.parallelChunks(out.count) { start, end in kernel(px + start, po + start, end - start) }
        }}
        return out
    }
}
