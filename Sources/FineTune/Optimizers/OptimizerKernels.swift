import Foundation
#if arch(x86_64) && canImport(_Builtin_intrinsics.intel)
import _Builtin_intrinsics.intel
#endif

/// Element-wise update loops of the optimizers, on raw pointers.
///
/// Every branch in a loop depends only on loop-invariant arguments, so the compiler unswitches
/// it and vectorises the body. The operation order follows PyTorch's single-tensor kernels.
enum OptimizerKernels {
    /// `w -= lr * (g + wd * w)`.
    static func sgd(w: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, count n: Int, lr: Float, weightDecay wd: Float) {
        let alpha = -lr
        Kernels.parallelChunks(n) { start, end in
            if wd != 0 {
                for i in start..<end { w[i] += alpha * (g[i] + wd * w[i]) }
            } else {
                for i in start..<end { w[i] += alpha * g[i] }
            }
        }
    }

    /// SGD with a momentum buffer (first step: `buf = d_p`), dampening and Nesterov.
    static func sgdMomentum(w: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, buffer b: UnsafeMutablePointer<Float>,
                            count n: Int, lr: Float, weightDecay wd: Float, momentum: Float, dampening: Float,
                            nesterov: Bool, firstStep: Bool) {
        let alpha = -lr, keep = 1 - dampening
        Kernels.parallelChunks(n) { start, end in
            for i in start..<end {
                var d = g[i]
                if wd != 0 { d += wd * w[i] }
                let buf = firstStep ? d : b[i] * momentum + keep * d
                b[i] = buf
                if nesterov { d += momentum * buf } else { d = buf }
                w[i] += alpha * d
            }
        }
    }

    /// Elements per SIMD step of the explicit vector loops.
    typealias Vector = SIMD8<Float>

    /// One Adam/AdamW update. `decay` is AdamW's `1 - lr * wd` (1 for Adam), `l2` Adam's coupled
    /// weight decay (0 for AdamW), `stepSize = lr / (1 - beta1^t)`.
    ///
    /// Written with SIMD vectors: a scalar `squareRoot()` compiles to a `sqrtf` call (errno
    /// semantics) that blocks auto-vectorisation. Vector and scalar lanes compute the same
    /// IEEE operations in the same order, so results do not depend on the position or the
    /// number of threads.
    static func adam(w: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
                     v: UnsafeMutablePointer<Float>, count n: Int, decay: Float, l2: Float, beta1: Float, beta2: Float,
                     eps: Float, stepSize: Float, biasCorrection2Sqrt bc2: Float) {
        if l2 != 0 {
            adamLoop(coupledDecay: true, w: w, g: g, m: m, v: v, count: n, decay: decay, l2: l2, beta1: beta1,
                     beta2: beta2, eps: eps, stepSize: stepSize, bc2: bc2)
        } else {
            adamLoop(coupledDecay: false, w: w, g: g, m: m, v: v, count: n, decay: decay, l2: 0, beta1: beta1,
                     beta2: beta2, eps: eps, stepSize: stepSize, bc2: bc2)
        }
    }

    @inline(__always)
    private static func adamLoop(coupledDecay: Bool, w: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>,
                                 m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count n: Int,
                                 decay: Float, l2: Float, beta1: Float, beta2: Float, eps: Float, stepSize: Float,
                                 bc2: Float) {
        let oneMinusBeta1 = 1 - beta1, oneMinusBeta2 = 1 - beta2, negStep = -stepSize
        Kernels.parallelChunks(n) { start, end in
            var i = start
            while i + Vector.scalarCount <= end {
                let wi = load(w + i)
                var gi = load(g + i)
                if coupledDecay { gi += l2 * wi }
                let mOld = load(m + i)
                let mi = mOld + oneMinusBeta1 * (gi - mOld)
                let vi = load(v + i) * beta2 + oneMinusBeta2 * gi * gi
                store(mi, to: m + i)
                store(vi, to: v + i)
                let denom = squareRoot(vi) / bc2 + eps
                store(wi * decay + negStep * mi / denom, to: w + i)
                i += Vector.scalarCount
            }
            while i < end {
                var gi = g[i]
                if coupledDecay { gi += l2 * w[i] }
                let mi = m[i] + oneMinusBeta1 * (gi - m[i])
                let vi = v[i] * beta2 + oneMinusBeta2 * gi * gi
                m[i] = mi
                v[i] = vi
                let denom = vi.squareRoot() / bc2 + eps
                w[i] = w[i] * decay + negStep * mi / denom
                i += 1
            }
        }
    }

    /// Lane-wise IEEE square root. On Linux, `Float.squareRoot()` compiles to a `sqrtf` call
    /// (errno semantics) that the compiler cannot vectorise, so x86-64 uses SSE's `sqrtps`
    /// (baseline x86-64; the same correctly rounded result).
    @inline(__always)
    static func squareRoot(_ x: Vector) -> Vector {
        #if arch(x86_64) && canImport(_Builtin_intrinsics.intel)
        return Vector(lowHalf: _mm_sqrt_ps(x.lowHalf), highHalf: _mm_sqrt_ps(x.highHalf))
        #else
        return x.squareRoot()
        #endif
    }

    @inline(__always)
    private static func load(_ p: UnsafePointer<Float>) -> Vector {
        UnsafeRawPointer(p).loadUnaligned(as: Vector.self)
    }

    @inline(__always)
    private static func load(_ p: UnsafeMutablePointer<Float>) -> Vector {
        UnsafeRawPointer(p).loadUnaligned(as: Vector.self)
    }

    @inline(__always)
    private static func store(_ x: Vector, to p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: x, as: Vector.self)
    }

    /// Sum of `|x|^p` in Double (`p` = 1 and 2 take fast paths), or the max of `|x|` for `p = inf`.
    static func normAccumulate(_ x: UnsafePointer<Float>, count n: Int, p: Float) -> Double {
        if p == .infinity {
            var m: Float = 0
            for i in 0..<n {
                let a = abs(x[i])
                m = a > m || a.isNaN ? a : m
            }
            return Double(m)
        }
        if p == 2 {
            // Eight independent Double accumulators (fixed order: deterministic).
            var acc = SIMD8<Double>()
            var i = 0
            while i + 8 <= n {
                let d = SIMD8<Double>(load(x + i))
                acc += d * d
                i += 8
            }
            var s = acc.sum()
            while i < n { let d = Double(x[i]); s += d * d; i += 1 }
            return s
        }
        var s: Double = 0
        if p == 1 {
            for i in 0..<n { s += Double(abs(x[i])) }
        } else {
            let pd = Double(p)
            for i in 0..<n { s += pow(Double(abs(x[i])), pd) }
        }
        return s
    }

    /// `x *= scale`.
    static func scale(_ x: UnsafeMutablePointer<Float>, count n: Int, by scale: Float) {
        for i in 0..<n { x[i] *= scale }
    }

    /// Clamps to `[-c, c]`; NaN stays NaN (as `torch.clamp`).
    static func clamp(_ x: UnsafeMutablePointer<Float>, count n: Int, limit c: Float) {
        for i in 0..<n {
            let v = x[i]
            x[i] = v < -c ? -c : (v > c ? c : v)
        }
    }
}
