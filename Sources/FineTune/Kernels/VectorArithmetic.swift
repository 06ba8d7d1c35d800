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

    /// out = a * b.
    public static func mul(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                           count: Int) {
        VectorMath.lanes2(a, b, out, count, MultiplyOp())
    }

    // MARK: Scalar elementwise

    /// out = x + scalar.
    public static func addScalar(_ x: UnsafePointer<Float>, _ scalar: Float, _ out: UnsafeMutablePointer<Float>,
                                 count: Int) {
        VectorMath.lanes(x, out, count, AddScalarOp(value: scalar))
    }

    // MARK: Activations

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

/// max(x, 0) with NaN kept: clears the lanes where x < 0.
struct ReLUOp: LaneOp {
    @inline(__always) func vector(_ v: VectorMath.V) -> VectorMath.V {
        VectorMath.float(VectorMath.bits(v) & ~VectorMath.maskBits(v .< 0))
    }
    @inline(__always) func scalar(_ x: Float) -> Float { x < 0 ? 0 : x }
}

/// x > 0 ? g : 0.
struct ReLUGradOp: LaneOp2 {
    @inline(__always) func vector(_ x: VectorMath.V, _ g: VectorMath.V) -> VectorMath.V {
        VectorMath.float(VectorMath.bits(g) & VectorMath.maskBits(x .> 0))
    }
    @inline(__always) func scalar(_ x: Float, _ g: Float) -> Float { x > 0 ? g : 0 }
}

/// alpha * x.
struct ScaleOp: LaneOp {
    let alpha: Float
    @inline(__always) func vector(_ v: VectorMath.V) -> VectorMath.V { v * alpha }
    @inline(__always) func scalar(_ x: Float) -> Float { x * alpha }
}

// The arithmetic lane ops, shared by these kernels, the broadcasting rows of binary tensor ops
// (`Broadcasting.binary`) and the optimizers. Lane ops rather than closures: a closure form was
// left as a call per vector where it was inlined.

/// a + b.
struct AddOp: LaneOp2 {
    @inline(__always) func vector(_ a: VectorMath.V, _ b: VectorMath.V) -> VectorMath.V { a + b }
    @inline(__always) func scalar(_ a: Float, _ b: Float) -> Float { a + b }
}

/// a - b.
struct SubtractOp: LaneOp2 {
    @inline(__always) func vector(_ a: VectorMath.V, _ b: VectorMath.V) -> VectorMath.V { a - b }
    @inline(__always) func scalar(_ a: Float, _ b: Float) -> Float { a - b }
}

/// a * b.
struct MultiplyOp: LaneOp2 {
    @inline(__always) func vector(_ a: VectorMath.V, _ b: VectorMath.V) -> VectorMath.V { a * b }
    @inline(__always) func scalar(_ a: Float, _ b: Float) -> Float { a * b }
}

/// a / b (IEEE division, not multiplication by a reciprocal).
struct DivideOp: LaneOp2 {
    @inline(__always) func vector(_ a: VectorMath.V, _ b: VectorMath.V) -> VectorMath.V { a / b }
    @inline(__always) func scalar(_ a: Float, _ b: Float) -> Float { a / b }
}

/// x + scalar.
struct AddScalarOp: LaneOp {
    let value: Float
    @inline(__always) func vector(_ v: VectorMath.V) -> VectorMath.V { v + value }
    @inline(__always) func scalar(_ x: Float) -> Float { x + value }
}
