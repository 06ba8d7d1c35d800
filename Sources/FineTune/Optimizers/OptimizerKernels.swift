import Foundation

/// Element-wise update loops of the optimizers, on raw pointers (vector loads, stores and square
/// roots from `VectorMath`, scaling from `Kernels.scale`).
///
/// Every branch in a loop depends only on loop-invariant arguments, so the compiler unswitches
/// it and vectorises the body. The operation order follows PyTorch's single-tensor kernels.
enum OptimizerKernels {
    /// `w -= lr * (g + wd * w)`.
    static func sgd(w: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, count n: Int, lr: Float, weightDecay wd: Float) {
        let alpha = -lr
        Kernels.parallelChunks(n, category: .optimizer) { start, end in
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
        Kernels.parallelChunks(n, category: .optimizer) { start, end in
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
    private typealias Lanes = VectorMath

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
        Kernels.parallelChunks(n, category: .optimizer) { start, end in
            var i = start
            while i + Vector.scalarCount <= end {
                let wi = Lanes.load(w + i, as: Vector.self)
                var gi = Lanes.load(g + i, as: Vector.self)
                if coupledDecay { gi += l2 * wi }
                let mOld = Lanes.load(m + i, as: Vector.self)
                let mi = mOld + oneMinusBeta1 * (gi - mOld)
                let vi = Lanes.load(v + i, as: Vector.self) * beta2 + oneMinusBeta2 * gi * gi
                Lanes.store(mi, m + i)
                Lanes.store(vi, v + i)
                let denom = Lanes.squareRoot(vi) / bc2 + eps
                Lanes.store(wi * decay + negStep * mi / denom, w + i)
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

    /// Sum of `|x|^p` in Double (`p` = 1 and 2 take fast paths), or the max of `|x|` for `p = inf`.
    static func normAccumulate(_ x: UnsafePointer<Float>, count n: Int, p: Float) -> Double {
        KernelProfile.measure(.optimizer) { normAccumulateUnmeasured(x, count: n, p: p) }
    }

    private static func normAccumulateUnmeasured(_ x: UnsafePointer<Float>, count n: Int, p: Float) -> Double {
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
                let d = SIMD8<Double>(Lanes.load(x + i, as: Vector.self))
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

    /// Clamps to `[-c, c]`; NaN stays NaN (as `torch.clamp`).
    static func clamp(_ x: UnsafeMutablePointer<Float>, count n: Int, limit c: Float) {
        KernelProfile.measure(.optimizer) {
            for i in 0..<n {
                let v = x[i]
                x[i] = v < -c ? -c : (v > c ? c : v)
            }
        }
    }
}
