// SiLU (swish) and its derivative as vector kernels, on the sigmoid of VectorMath.swift.

extension Kernels {
    /// y = x * sigmoid(x) elementwise (`y` may alias `x`).
    public static func vSiLU(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.map(x, y, count) { $0 * VectorMath.sigmoid($0) }
    }

    /// gradInput = gradOutput * SiLU'(x) with SiLU'(x) = s (1 + x (1 - s)), s = sigmoid(x).
    /// (`gradInput` may alias `x` or `gradOutput`.)
    public static func vSiLUGrad(x: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                 gradInput: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.siluGradKernel(x, gradOutput, gradInput, count)
    }
}

extension VectorMath {
    /// SiLU'(x) = s (1 + x (1 - s)), s = sigmoid(x). |x| is clamped to 110, where the result is
    /// exactly 0 or 1 in Float, so infinities give 0 or 1 rather than NaN.
    @inline(__always)
    static func siluGrad(_ x0: V) -> V {
        var x = x0.replacing(with: 110, where: x0 .> 110)
        x = x.replacing(with: -110, where: x .< -110)
        let s = sigmoid(x)
        return s * fma(x, 1 - s, V(repeating: 1))
    }

    /// SiLU'(x) * g (one loop, the vector body inlined once; see `map2`).
    @inline(never)
    static func siluGradKernel(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                               _ count: Int) {
        map2(x, g, out, count) { siluGrad($0) * $1 }
    }
}
