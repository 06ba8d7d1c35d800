// BLAS-1 style and elementwise arithmetic kernels (SIMD16 loops from VectorMath.swift).
// Outputs may alias inputs exactly (in-place); partial overlap is not supported.

extension Kernels {
    // MARK: BLAS-1

    /// y += alpha * x.
    public static func axpy(alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.map2(x, y, y, count) { VectorMath.fma($0, alpha, $1) }
    }

    /// x *= alpha, in place.
    public static func scale(_ alpha: Float, _ x: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.lanes(x, x, count, ScaleOp(alpha: alpha))
    }

    // MARK: Binary elementwise

    /// out = a + b.
    public static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                           count: Int) {
        VectorMath.lanes2(a, b, out, count, AddOp())
    }

    /// out = a - b.
    public static func sub(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                           count: Int) {
        VectorMath.map2(a, b, out, count) { $0 - $1 }
    }

    /// out = a * b.
    public static func mul(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                           count: Int) {
        VectorMath.lanes2(a, b, out, count, MultiplyOp())
    }

    /// out = a / b (IEEE division, not multiplication by a reciprocal).
    public static func div(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                           count: Int) {
        VectorMath.map2(a, b, out, count) { $0 / $1 }
    }

    // MARK: Scalar elementwise

    /// out = x + scalar.
    public static func addScalar(_ x: UnsafePointer<Float>, _ scalar: Float, _ out: UnsafeMutablePointer<Float>,
                                 count: Int) {
        VectorMath.lanes(x, out, count, AddScalarOp(value: scalar))
    }

    /// out = x - scalar.
    public static func subScalar(_ x: UnsafePointer<Float>, _ scalar: Float, _ out: UnsafeMutablePointer<Float>,
                                 count: Int) {
        VectorMath.map(x, out, count) { $0 - scalar }
    }

    /// out = scalar - x.
    public static func rsubScalar(_ x: UnsafePointer<Float>, _ scalar: Float, _ out: UnsafeMutablePointer<Float>,
                                  count: Int) {
        VectorMath.map(x, out, count) { scalar - $0 }
    }

    /// out = x * scalar.
    public static func mulScalar(_ x: UnsafePointer<Float>, _ scalar: Float, _ out: UnsafeMutablePointer<Float>,
                                 count: Int) {
        VectorMath.map(x, out, count) { $0 * scalar }
    }

    /// out = x / scalar (IEEE division per element).
    public static func divScalar(_ x: UnsafePointer<Float>, _ scalar: Float, _ out: UnsafeMutablePointer<Float>,
                                 count: Int) {
        VectorMath.map(x, out, count) { $0 / scalar }
    }

    // MARK: Unary elementwise

    /// out = -x (flips the sign bit, so -(0) = -0 as with scalar negation).
    public static func vNeg(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        // Not `-$0`: the stdlib's SIMD negation is `0 - x`, which maps 0 to +0.
        VectorMath.lanes(x, out, count, NegateOp())
    }

    /// out = x * x.
    public static func vSquare(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.map(x, out, count) { $0 * $0 }
    }

    /// out = max(x, 0); NaN stays NaN.
    public static func relu(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        // Bit-select rather than `replacing(with:where:)`, whose lane loop LLVM re-vectorizes with
        // needless 128-bit splits here.
        VectorMath.lanes(x, out, count, ReLUOp())
    }

    /// gradInput = x > 0 ? gradOutput : 0 (`gradInput` may alias either input).
    public static func reluGrad(x: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                gradInput: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.lanes2(x, gradOutput, gradInput, count, ReLUGradOp())
    }
}

/// -x by flipping the sign bit (0 -> -0, as PyTorch).
private struct NegateOp: LaneOp {
    @inline(__always) func vector(_ v: VectorMath.V) -> VectorMath.V { VectorMath.float(VectorMath.bits(v) ^ 0x8000_0000) }
    @inline(__always) func scalar(_ x: Float) -> Float { -x }
}

/// max(x, 0) with NaN kept: clears the lanes where x < 0.
private struct ReLUOp: LaneOp {
    @inline(__always) func vector(_ v: VectorMath.V) -> VectorMath.V {
        VectorMath.float(VectorMath.bits(v) & ~VectorMath.maskBits(v .< 0))
    }
    @inline(__always) func scalar(_ x: Float) -> Float { x < 0 ? 0 : x }
}

/// x > 0 ? g : 0.
private struct ReLUGradOp: LaneOp2 {
    @inline(__always) func vector(_ x: VectorMath.V, _ g: VectorMath.V) -> VectorMath.V {
        VectorMath.float(VectorMath.bits(g) & VectorMath.maskBits(x .> 0))
    }
    @inline(__always) func scalar(_ x: Float, _ g: Float) -> Float { x > 0 ? g : 0 }
}

/// alpha * x.
private struct ScaleOp: LaneOp {
    let alpha: Float
    @inline(__always) func vector(_ v: VectorMath.V) -> VectorMath.V { v * alpha }
    @inline(__always) func scalar(_ x: Float) -> Float { x * alpha }
}

/// a + b (a lane op: called from the attention and normalisation kernels, the closure form was
/// left as a call per vector where it was inlined).
private struct AddOp: LaneOp2 {
    @inline(__always) func vector(_ a: VectorMath.V, _ b: VectorMath.V) -> VectorMath.V { a + b }
    @inline(__always) func scalar(_ a: Float, _ b: Float) -> Float { a + b }
}

/// a * b.
private struct MultiplyOp: LaneOp2 {
    @inline(__always) func vector(_ a: VectorMath.V, _ b: VectorMath.V) -> VectorMath.V { a * b }
    @inline(__always) func scalar(_ a: Float, _ b: Float) -> Float { a * b }
}

/// x + scalar.
private struct AddScalarOp: LaneOp {
    let value: Float
    @inline(__always) func vector(_ v: VectorMath.V) -> VectorMath.V { v + value }
    @inline(__always) func scalar(_ x: Float) -> Float { x + value }
}
