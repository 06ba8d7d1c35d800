extension Kernels {
    /// Single-precision general matrix multiply on row-major matrices:
    /// `C = alpha * op(A) * op(B) + beta * C`, where `op(A)` is `m x k` and `op(B)` is `k x n`.
    ///
    /// With `transA`, `a` holds A as a `k x m` row-major matrix (leading dimension `lda`), and
    /// likewise for `transB` (`n x k`). When `beta == 0`, C is not read (NaNs in C are ignored).
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
        threads: Int = Kernels.maxThreads
    ) {
        // PLACEHOLDER naive implementation (replaced by the packed kernel).
        for i in 0..<m {
            for j in 0..<n {
                var s: Float = 0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += av * bv
                }
                c[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j])
            }
        }
    }
}
