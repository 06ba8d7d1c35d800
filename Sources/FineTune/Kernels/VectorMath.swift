#if arch(x86_64) && canImport(_Builtin_intrinsics.intel)
import _Builtin_intrinsics.intel
#endif

// Vectorized transcendental and activation kernels (exp, log, tanh, sigmoid, erf, GELU).
//
// Every kernel walks its input in `SIMD16<Float>` steps (two ymm registers on AVX2, one zmm
// on AVX-512, four q registers on NEON). The last `count % 16` elements are copied into a
// zero-padded vector and run through the *same* vector code, so results never depend on an
// element's position. Outputs may alias inputs exactly (in-place use); partial overlap is
// not supported.
//
// The shared building blocks live in `VectorMath` (internal); the public entry points are
// `Kernels.vExp`, `Kernels.vLog`, ... at the bottom of this file. Reductions are in
// VectorReductions.swift, BLAS-1 style arithmetic in VectorArithmetic.swift and the row-wise
// softmax / layer-norm kernels in RowKernels.swift.

/// SIMD building blocks shared by the vector kernels. Everything is `@inline(__always)` so the
/// loops in the public kernels compile to straight-line vector code with no calls. (Swift's
/// SIL inliner gives up on callers that grow too large, so each loop calls its vector body
/// from a single site; see `map`.)
enum VectorMath {
    typealias V = SIMD16<Float>
    typealias VI = SIMD16<Int32>
    typealias VU = SIMD16<UInt32>

    // MARK: Memory (the one unaligned load and store of the vector kernels)

    /// Loads `W.scalarCount` floats from `p` (no alignment requirement); `W` is inferred from
    /// the use or given with `as:` (GEMM and the optimizers use narrower vectors).
    @inline(__always)
    static func load<W: SIMD>(_ p: UnsafePointer<Float>, as _: W.Type = W.self) -> W where W.Scalar == Float {
        UnsafeRawPointer(p).loadUnaligned(as: W.self)
    }

    /// Stores all lanes of `v` at `p` (no alignment requirement).
    @inline(__always)
    static func store<W: SIMD>(_ v: W, _ p: UnsafeMutablePointer<Float>) where W.Scalar == Float {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: W.self)
    }

    /// Loads `n < 16` floats; the remaining lanes hold `pad`.
    @inline(__always)
    static func loadPartial(_ p: UnsafePointer<Float>, _ n: Int, pad: Float = 0) -> V {
        var v = V(repeating: pad)
        withUnsafeMutablePointer(to: &v) { UnsafeMutableRawPointer($0).copyMemory(from: p, byteCount: n * 4) }
        return v
    }

    /// Stores the first `n < 16` lanes of `v`.
    @inline(__always)
    static func storePartial(_ v: V, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
        var v = v
        withUnsafePointer(to: &v) { UnsafeMutableRawPointer(p).copyMemory(from: $0, byteCount: n * 4) }
    }

    // MARK: Arithmetic helpers

    /// `a * b + c`, fused where the target has FMA (the one FMA policy, in ``GEMMSIMD``).
    @inline(__always)
    static func fma(_ a: V, _ b: V, _ c: V) -> V {
        GEMMSIMD.multiplyAdd(a, b, c)
    }

    @inline(__always)
    static func fma(_ a: V, _ b: Float, _ c: V) -> V {
        fma(a, V(repeating: b), c)
    }

    @inline(__always)
    static func fma(_ a: V, _ b: V, _ c: Float) -> V {
        fma(a, b, V(repeating: c))
    }

    /// Lane-wise IEEE square root of 8 lanes. On Linux, `Float.squareRoot()` compiles to a
    /// `sqrtf` call (errno semantics) that the compiler cannot vectorise, so x86-64 uses SSE's
    /// `sqrtps` (baseline x86-64; the same correctly rounded result).
    @inline(__always)
    static func squareRoot(_ x: SIMD8<Float>) -> SIMD8<Float> {
        #if arch(x86_64) && canImport(_Builtin_intrinsics.intel)
        return SIMD8(lowHalf: _mm_sqrt_ps(x.lowHalf), highHalf: _mm_sqrt_ps(x.highHalf))
        #else
        return x.squareRoot()
        #endif
    }

    @inline(__always)
    static func bits(_ v: V) -> VU { unsafeBitCast(v, to: VU.self) }

    @inline(__always)
    static func float(_ u: VU) -> V { unsafeBitCast(u, to: V.self) }

    /// All-ones lanes where `mask` is true, zero elsewhere.
    @inline(__always)
    static func maskBits(_ mask: SIMDMask<VI>) -> VU { unsafeBitCast(mask, to: VU.self) }

    @inline(__always)
    static func abs(_ v: V) -> V { float(bits(v) & 0x7FFF_FFFF) }

    /// The sign bits of `v` (all other bits clear).
    @inline(__always)
    static func signBits(_ v: V) -> VU { bits(v) & 0x8000_0000 }

    /// Horizontal sum as a balanced tree (`SIMD16.sum()` is a strict left-to-right chain).
    @inline(__always)
    static func horizontalSum(_ v: V) -> Float {
        let a = v.lowHalf + v.highHalf
        let b = a.lowHalf + a.highHalf
        let c = b.lowHalf + b.highHalf
        return c[0] + c[1]
    }

    // MARK: exp

    /// exp(x), Cephes `expf` scheme: x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial
    /// for e^r, then scaling by 2^n built from exponent bits. The scale is applied as two
    /// factors 2^(n/2) * 2^(n - n/2) so that n in [-150, 128] works: overflow gives +inf and
    /// subnormal results are rounded once. Max error ~1 ulp.
    @inline(__always)
    static func exp(_ x0: V) -> V {
        // Clamp (NaN compares false and passes through to the result).
        var x = x0.replacing(with: 89, where: x0 .> 89)          // e^89 overflows: +inf
        x = x.replacing(with: -104, where: x .< -104)             // e^-104 < 2^-150: 0
        // n = round(x / ln2) via the 1.5 * 2^23 trick: the low mantissa bits of t hold n.
        let magic: Float = 12_582_912
        let t = fma(x, 1.442_695_040_888_963_4, V(repeating: magic))
        let n = t - magic
        var r = fma(n, -0.693_359_375, x)                          // ln2 high part (exact product)
        r = fma(n, 2.121_944_40e-4, r)                             // ln2 low part
        var p = V(repeating: 1.987_569_150_0e-4)
        p = fma(p, r, 1.398_199_950_7e-3)
        p = fma(p, r, 8.333_451_907_3e-3)
        p = fma(p, r, 4.166_579_589_4e-2)
        p = fma(p, r, 1.666_666_545_9e-1)
        p = fma(p, r, 5.000_000_120_1e-1)
        let y = fma(p, r * r, r) + 1
        // 2^n = 2^n1 * 2^n2 with n1 = floor(n/2), both factors normal floats.
        let ni = unsafeBitCast(bits(t) &- bits(V(repeating: magic)), to: VI.self)
        let n1 = ni &>> 1
        let n2 = ni &- n1
        // Bit casts, not `VU(truncatingIfNeeded:)`: that generic conversion stays a call.
        let s1 = float(unsafeBitCast((n1 &+ 127) &<< 23, to: VU.self))
        let s2 = float(unsafeBitCast((n2 &+ 127) &<< 23, to: VU.self))
        return y * s1 * s2
    }

    // MARK: log

    /// Natural log, Cephes `logf` scheme: x = m 2^e with m in [sqrt(1/2), sqrt(2)), a degree-9
    /// polynomial for log(1 + f), and e ln2 added in two parts. Subnormals are rescaled
    /// first. x < 0 and NaN give NaN, 0 gives -inf, +inf gives +inf.
    @inline(__always)
    static func log(_ x0: V) -> V {
        let tiny = x0 .< Float.leastNormalMagnitude
        let x = x0.replacing(with: x0 * 8_388_608, where: tiny)     // * 2^23
        let xb = bits(x)
        // Biased exponent field to float via the 2^23 trick (exact for 0...255).
        var e = float((xb &>> 23) | 0x4B00_0000) - (8_388_608 + 126)
        e = e.replacing(with: e - 23, where: tiny)
        var m = float((xb & 0x007F_FFFF) | 0x3F00_0000)             // mantissa in [0.5, 1)
        let small = m .< 0.707_106_781_186_547_524
        e = e.replacing(with: e - 1, where: small)
        m = (m - 1) + m.replacing(with: 0, where: .!small)          // f = 2m - 1 or m - 1
        let z = m * m
        var p = V(repeating: 7.037_683_629_2e-2)
        p = fma(p, m, -1.151_461_031_0e-1)
        p = fma(p, m, 1.167_699_874_0e-1)
        p = fma(p, m, -1.242_014_084_6e-1)
        p = fma(p, m, 1.424_932_278_7e-1)
        p = fma(p, m, -1.666_805_766_5e-1)
        p = fma(p, m, 2.000_071_476_5e-1)
        p = fma(p, m, -2.499_999_399_3e-1)
        p = fma(p, m, 3.333_333_117_4e-1)
        var y = p * m * z
        y = fma(e, -2.121_944_40e-4, y)
        y = fma(z, -0.5, y)
        var r = m + y
        r = fma(e, 0.693_359_375, r)
        r = r.replacing(with: .nan, where: .!(x0 .>= 0))               // negative or NaN
        r = r.replacing(with: -.infinity, where: x0 .== 0)
        r = r.replacing(with: .infinity, where: x0 .== .infinity)
        return r
    }

    // MARK: tanh, sigmoid

    /// tanh: odd polynomial for |x| < 0.625 (Cephes `tanhf`), else 1 - 2 / (e^(2|x|) + 1)
    /// with the sign of x restored. Saturates to ±1 without NaN.
    @inline(__always)
    static func tanh(_ x: V) -> V {
        let ax = abs(x)
        let z = x * x
        var p = V(repeating: -5.704_988_727_45e-3)
        p = fma(p, z, 2.063_908_879_54e-2)
        p = fma(p, z, -5.373_971_555_31e-2)
        p = fma(p, z, 1.333_144_220_36e-1)
        p = fma(p, z, -3.333_328_194_22e-1)
        let small = fma(p * z, x, x)
        let e = exp(ax + ax)
        let large = float(bits(1 - 2 / (e + 1)) | signBits(x))
        return large.replacing(with: small, where: ax .< 0.625)
    }

    /// Logistic sigmoid 1 / (1 + e^-x), evaluated as e/(1+e) with e = e^-|x| for x < 0 so
    /// that neither side overflows and tiny results keep full relative precision.
    @inline(__always)
    static func sigmoid(_ x: V) -> V {
        let e = exp(-abs(x))
        let numerator = e.replacing(with: 1, where: x .>= 0)
        return numerator / (1 + e)
    }

    // MARK: erf

    /// erf(x) as x P(x²) / Q(x²) on x clamped to [-4, 4] (the rational approximation used by
    /// XLA and Eigen for float erf); |error| < 1e-6 everywhere and small relative error near 0.
    @inline(__always)
    static func erf(_ x0: V) -> V {
        var x = x0.replacing(with: 4, where: x0 .> 4)
        x = x.replacing(with: -4, where: x .< -4)
        let x2 = x * x
        var p = V(repeating: -2.726_142_258_013_06e-10)
        p = fma(p, x2, 2.770_681_424_959_02e-08)
        p = fma(p, x2, -2.101_024_020_825_08e-06)
        p = fma(p, x2, -5.692_506_394_623_46e-05)
        p = fma(p, x2, -7.349_906_303_268_55e-04)
        p = fma(p, x2, -2.954_599_808_540_25e-03)
        p = fma(p, x2, -1.609_603_332_624_15e-02)
        var q = V(repeating: -1.456_607_184_649_96e-05)
        q = fma(q, x2, -2.133_740_552_789_05e-04)
        q = fma(q, x2, -1.682_826_974_382_03e-03)
        q = fma(q, x2, -7.373_329_167_204_68e-03)
        q = fma(q, x2, -1.426_473_905_141_89e-02)
        var r = x * p / q       // (not x * (p / q): LLVM then splits the vector code into scalar pieces)
        r = r.replacing(with: 1, where: r .> 1)
        r = r.replacing(with: -1, where: r .< -1)
        return r
    }

    // MARK: GELU

    static let sqrtHalf: Float = 0.707_106_781_186_547_524_4            // 1/√2
    static let invSqrt2Pi: Float = 0.398_942_280_401_432_677_9          // 1/√(2π)
    static let geluTanhScale: Float = 0.797_884_560_802_865_355_9       // √(2/π)
    static let geluTanhCubic: Float = 0.044_715

    /// Exact GELU x Φ(x) = 0.5 x (1 + erf(x/√2)); GELU(-inf) = 0 (not -inf * 0 = NaN).
    @inline(__always)
    static func geluExact(_ x: V) -> V {
        let y = 0.5 * x * (1 + erf(x * sqrtHalf))
        return y.replacing(with: 0, where: x .== -.infinity)
    }

    /// tanh-approximated GELU 0.5 x (1 + tanh(u)), u = √(2/π)(x + 0.044715 x³), evaluated as
    /// x · sigmoid(2u) (the same function; no cancellation in 1 + tanh for negative u).
    /// GELU(-inf) = 0 (not -inf * 0 = NaN).
    @inline(__always)
    static func geluTanh(_ x: V) -> V {
        let u = geluTanhScale * fma(geluTanhCubic * x, x * x, x)
        let y = x * sigmoid(u + u)
        return y.replacing(with: 0, where: x .== -.infinity)
    }

    /// d/dx of exact GELU: Φ(x) + x φ(x). |x| is clamped to 15, beyond which x φ(x)
    /// underflows to 0 in Float anyway (this keeps ±inf from producing inf * 0).
    @inline(__always)
    static func geluExactGrad(_ x0: V) -> V {
        var x = x0.replacing(with: 15, where: x0 .> 15)
        x = x.replacing(with: -15, where: x .< -15)
        let cdf = 0.5 * (1 + erf(x * sqrtHalf))
        let pdf = invSqrt2Pi * exp(-0.5 * x * x)
        return fma(x, pdf, cdf)
    }

    /// d/dx of tanh GELU: s + 2 x k (1 + 3c x²) s (1 - s) with s = sigmoid(2u), since
    /// 0.5(1 + tanh u) = s and 1 - tanh²u = 4 s (1 - s). s(1 - s) = e / (1 + e)², e = e^-|2u|.
    /// |x| is clamped to 20, where s(1 - s) has underflowed to 0 and the result is exactly 0 or 1.
    @inline(__always)
    static func geluTanhGrad(_ x0: V) -> V {
        var x = x0.replacing(with: 20, where: x0 .> 20)
        x = x.replacing(with: -20, where: x .< -20)
        let x2 = x * x
        let u = geluTanhScale * fma(geluTanhCubic * x, x2, x)
        let e = exp(-abs(u + u))
        let inv = 1 / (1 + e)
        let s = inv * e.replacing(with: 1, where: u .>= 0)
        let sOneMinusS = e * inv * inv
        let du = geluTanhScale * fma(x2, 3 * geluTanhCubic, V(repeating: 1))   // du/dx
        return fma(2 * x * du, sOneMinusS, s)
    }

    // MARK: Loop drivers

    /// y[i] = f(x[i]) in 16-lane steps. The last `count % 16` elements are staged through a
    /// zero-padded stack vector and handled by the same loop iteration code, so `f` (a closure
    /// literal, inlined away) has a single call site: the large vector code is inlined exactly
    /// once and the loop contains no calls.
    @inline(__always)
    static func map(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int,
                    _ f: (V) -> V) {
        let full = count & ~15, tail = count &- full
        var tailIn = tail > 0 ? loadPartial(x + full, tail) : V(), tailOut = V()
        withUnsafeMutablePointer(to: &tailIn) { tailIn in
            withUnsafeMutablePointer(to: &tailOut) { tailOut in
                let end = tail > 0 ? full &+ 16 : full
                var i = 0
                while i < end {
                    let inTail = i == full
                    let src = inTail ? UnsafeRawPointer(tailIn) : UnsafeRawPointer(x + i)
                    let dst = inTail ? UnsafeMutableRawPointer(tailOut) : UnsafeMutableRawPointer(y + i)
                    // Raw loads and stores here, not `load`/`store`: this body is inlined into large
                    // callers (SiLU), and the extra generic calls made the inliner leave `f` a call.
                    dst.storeBytes(of: f(src.loadUnaligned(as: V.self)), as: V.self)
                    i &+= 16
                }
            }
        }
        if tail > 0 { storePartial(tailOut, y + full, tail) }
    }

    /// y[i] = op(x[i]) for ops given in vector and scalar form as a value of a generic type, not
    /// a closure: 16-lane steps, then a scalar tail. For some closures passed to `map` (ReLU,
    /// negation, scaling), LLVM left a call per vector in the loop; a specialised op's
    /// `@inline(__always)` methods are always inlined.
    @inline(__always)
    static func lanes<Op: LaneOp>(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int, _ op: Op) {
        var i = 0
        while i &+ 16 <= count {
            store(op.vector(load(x + i)), y + i)
            i &+= 16
        }
        while i < count { y[i] = op.scalar(x[i]); i &+= 1 }
    }

    /// out[i] = Op(a[i], b[i]); see `lanes`.
    @inline(__always)
    static func lanes2<Op: LaneOp2>(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                                    _ count: Int, _ op: Op) {
        var i = 0
        while i &+ 16 <= count {
            store(op.vector(load(a + i), load(b + i)), out + i)
            i &+= 16
        }
        while i < count { out[i] = op.scalar(a[i], b[i]); i &+= 1 }
    }

    /// out[i] = Op(a[i], b) with the right operand one broadcast scalar; see `lanes`.
    @inline(__always)
    static func lanes2<Op: LaneOp2>(_ a: UnsafePointer<Float>, scalar b: Float, _ out: UnsafeMutablePointer<Float>,
                                    _ count: Int, _ op: Op) {
        let vb = V(repeating: b)
        var i = 0
        while i &+ 16 <= count {
            store(op.vector(load(a + i), vb), out + i)
            i &+= 16
        }
        while i < count { out[i] = op.scalar(a[i], b); i &+= 1 }
    }

    /// out[i] = Op(a, b[i]) with the left operand one broadcast scalar; see `lanes`.
    @inline(__always)
    static func lanes2<Op: LaneOp2>(scalar a: Float, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                                    _ count: Int, _ op: Op) {
        let va = V(repeating: a)
        var i = 0
        while i &+ 16 <= count {
            store(op.vector(va, load(b + i)), out + i)
            i &+= 16
        }
        while i < count { out[i] = op.scalar(a, b[i]); i &+= 1 }
    }

    /// out[i] = f(a[i], b[i]); same structure as `map`.
    @inline(__always)
    static func map2(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                     _ count: Int, _ f: (V, V) -> V) {
        let full = count & ~15, tail = count &- full
        var tailA = tail > 0 ? loadPartial(a + full, tail) : V()
        var tailB = tail > 0 ? loadPartial(b + full, tail) : V()
        var tailOut = V()
        withUnsafeMutablePointer(to: &tailA) { tailA in
            withUnsafeMutablePointer(to: &tailB) { tailB in
                withUnsafeMutablePointer(to: &tailOut) { tailOut in
                    let end = tail > 0 ? full &+ 16 : full
                    var i = 0
                    while i < end {
                        let inTail = i == full
                        let srcA = inTail ? UnsafeRawPointer(tailA) : UnsafeRawPointer(a + i)
                        let srcB = inTail ? UnsafeRawPointer(tailB) : UnsafeRawPointer(b + i)
                        let dst = inTail ? UnsafeMutableRawPointer(tailOut) : UnsafeMutableRawPointer(out + i)
                        // Raw loads and stores, as in `map`.
                        dst.storeBytes(of: f(srcA.loadUnaligned(as: V.self), srcB.loadUnaligned(as: V.self)),
                                       as: V.self)
                        i &+= 16
                    }
                }
            }
        }
        if tail > 0 { storePartial(tailOut, out + full, tail) }
    }
}

// MARK: - Public kernels

extension Kernels {
    /// y = exp(x) elementwise (max error ~1 ulp; overflow gives +inf, underflow 0, NaN propagates).
    public static func vExp(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.map(x, y, count) { VectorMath.exp($0) }
    }

    /// y = log(x) elementwise (natural log; x < 0 gives NaN, ±0 gives -inf, +inf gives +inf).
    public static func vLog(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.map(x, y, count) { VectorMath.log($0) }
    }

    /// y = tanh(x) elementwise.
    public static func vTanh(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.map(x, y, count) { VectorMath.tanh($0) }
    }

    /// y = 1 / (1 + exp(-x)) elementwise, stable for any |x|.
    public static func vSigmoid(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.map(x, y, count) { VectorMath.sigmoid($0) }
    }

    /// y = erf(x) elementwise (absolute error < 1e-6).
    public static func vErf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.map(x, y, count) { VectorMath.erf($0) }
    }

    /// y = GELU(x): exact 0.5x(1 + erf(x/√2)), or with `approximate` the tanh form
    /// 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))) (PyTorch `approximate="tanh"`).
    public static func vGELU(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int,
                             approximate: Bool = false) {
        if approximate {
            VectorMath.geluTanhKernel(x, y, count)
        } else {
            VectorMath.geluExactKernel(x, y, count)
        }
    }

    /// gradInput = gradOutput * GELU'(x) for the exact or tanh-approximated GELU
    /// (`gradInput` may alias `x` or `gradOutput`).
    public static func vGELUGrad(x: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                 gradInput: UnsafeMutablePointer<Float>, count: Int, approximate: Bool = false) {
        if approximate {
            VectorMath.geluTanhGradKernel(x, gradOutput, gradInput, count)
        } else {
            VectorMath.geluExactGradKernel(x, gradOutput, gradInput, count)
        }
    }
}

extension VectorMath {
    // One loop per function: each inlines its (large) vector body exactly once.

    @inline(never)
    static func geluExactKernel(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        map(x, y, count) { geluExact($0) }
    }

    @inline(never)
    static func geluTanhKernel(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        map(x, y, count) { geluTanh($0) }
    }

    @inline(never)
    static func geluExactGradKernel(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                    _ out: UnsafeMutablePointer<Float>, _ count: Int) {
        map2(x, g, out, count) { geluExactGrad($0) * $1 }
    }

    @inline(never)
    static func geluTanhGradKernel(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                   _ out: UnsafeMutablePointer<Float>, _ count: Int) {
        map2(x, g, out, count) { geluTanhGrad($0) * $1 }
    }
}

/// An element-wise op on 16 lanes (for drivers that pad their tail, like `mapSum`).
protocol VectorOp {
    func vector(_ v: VectorMath.V) -> VectorMath.V
}

/// An element-wise op in 16-lane and scalar form (the same arithmetic) for `VectorMath.lanes`.
protocol LaneOp: VectorOp {
    func scalar(_ x: Float) -> Float
}

/// A two-input element-wise op for `VectorMath.lanes2`.
protocol LaneOp2 {
    func vector(_ a: VectorMath.V, _ b: VectorMath.V) -> VectorMath.V
    func scalar(_ a: Float, _ b: Float) -> Float
}
