// Direct SGEMM for matrix-vector shapes (a few rows or a few columns of C) and tiny products,
// where packing would cost as much as the multiply itself: every element of the big operand
// is used only a few times, so it is read in place.
//
// Two SIMD primitives cover all four transpose combinations:
//   vectorTimesMatrix  out[j] = sum_p x[p] * M[p, j]   axpy form: M streamed row by row
//   matrixTimesVector  out[i] = sum_p M[i, p] * x[p]   dot products, 4 rows at a time
//
// A row of C is x = op(A)[i, :] times op(B); a column of C is op(A) times y = op(B)[:, j].
// Whichever operand is the vector is gathered into a contiguous buffer when it is strided.

/// The unpacked path for matrix-vector shaped products (internal).
enum GEMMDirect {
    /// At most this many rows (or columns) of C take the direct path (measured on Zen 3: with
    /// 4 rows the direct path still beats packing, with 6 it loses).
    static let maxVectors = 4
    /// Products up to this many multiply-adds (8 x 8 x 16) take the direct path: packing costs
    /// a few hundred nanoseconds, as much as the whole product (at 16 x 16 x 16 packing wins).
    static let maxTinyProduct = 8 * 8 * 16

    /// Whether `(m, n, k)` is small or matrix-vector shaped enough for the direct path.
    static func handles(m: Int, n: Int, k: Int) -> Bool {
        m <= maxVectors || n <= maxVectors || m * n * k <= maxTinyProduct
    }

    /// Products of at least this many multiply-adds split their long side across threads
    /// (a 576 x 1536 projection of one token is 885K; a 49152-word head 28M).
    static let parallelThreshold = 1 << 19

    /// Computes `problem` (m, n, k > 0) one row (or one column) of C at a time. With several
    /// threads, a large product's long side (the columns of C when it has few rows) is cut into
    /// runs of 16, one per thread: every element is computed by the same code with the same
    /// operands as on one thread (SIMD tails only at the end), so the bits do not depend on
    /// the thread count.
    static func run(_ p: GEMMProblem, threads: Int = 1) {
        let region = KernelProfile.begin()
        defer { KernelProfile.endProduct(region, m: p.m, n: p.n, k: p.k) }
        let byRows = p.m <= p.n
        let long = byRows ? p.n : p.m, unit = 16
        let parts = min(threads, long / (2 * unit))
        guard parts > 1, p.m * p.n * p.k >= Kernels.parallelThreshold(parallelThreshold) else {
            run(p, byRows: byRows)
            return
        }
        let size = (long / parts + unit - 1) / unit * unit
        Kernels.parallelFor(parts, threads: parts) { part in
            let start = part * size, count = min(long, start + size) - start
            guard count > 0 else { return }
            var q = p
            if byRows {
                q.n = count
                q.b = p.transB ? p.b + start * p.ldb : p.b + start
                q.c = p.c + start
            } else {
                q.m = count
                q.a = p.transA ? p.a + start : p.a + start * p.lda
                q.c = p.c + start * p.ldc
            }
            run(q, byRows: byRows)
        }
    }

    /// One row of C at a time (`byRows`), or one column.
    private static func run(_ p: GEMMProblem, byRows: Bool) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: p.k + max(p.m, p.n)) { scratch in
            let vector = scratch.baseAddress!, out = vector + p.k
            if byRows {
                // C[i, :] = op(A)[i, :] · op(B)
                for i in 0..<p.m {
                    let x = p.transA ? gather(p.a + i, stride: p.lda, count: p.k, into: vector) : p.a + i * p.lda
                    if p.transB {
                        matrixTimesVector(p.b, ld: p.ldb, rows: p.n, depth: p.k, x: x, out: out)
                    } else {
                        vectorTimesMatrix(x, depth: p.k, p.b, ld: p.ldb, columns: p.n, out: out)
                    }
                    let cRow = p.c + i * p.ldc
                    for j in 0..<p.n { cRow[j] = GEMMSIMD.combine(out[j], cRow[j], alpha: p.alpha, beta: p.beta) }
                }
            } else {
                // C[:, j] = op(A) · op(B)[:, j]
                for j in 0..<p.n {
                    let y = p.transB ? p.b + j * p.ldb : gather(p.b + j, stride: p.ldb, count: p.k, into: vector)
                    if p.transA {
                        vectorTimesMatrix(y, depth: p.k, p.a, ld: p.lda, columns: p.m, out: out)
                    } else {
                        matrixTimesVector(p.a, ld: p.lda, rows: p.m, depth: p.k, x: y, out: out)
                    }
                    for i in 0..<p.m {
                        let cij = p.c + i * p.ldc + j
                        cij.pointee = GEMMSIMD.combine(out[i], cij.pointee, alpha: p.alpha, beta: p.beta)
                    }
                }
            }
        }
    }

    /// Copies `count` floats spaced `stride` apart into `buffer`.
    static func gather(_ src: UnsafePointer<Float>, stride: Int, count: Int,
                       into buffer: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        for p in 0..<count { buffer[p] = src[p &* stride] }
        return UnsafePointer(buffer)
    }

    // MARK: Primitives

    /// `out[j] = sum_p x[p] * m[p * ld + j]` for `j < columns`.
    ///
    /// Walks `m` row by row, four rows per sweep over `out` (which holds the running sums and
    /// stays in L1/L2), so a large `m` streams through memory in address order.
    static func vectorTimesMatrix(_ x: UnsafePointer<Float>, depth: Int, _ m: UnsafePointer<Float>, ld: Int,
                                  columns: Int, out: UnsafeMutablePointer<Float>) {
        out.update(repeating: 0, count: columns)
        var p = 0
        while p &+ 4 <= depth {
            accumulateRows(4, x + p, m + p &* ld, ld: ld, columns: columns, out: out)
            p &+= 4
        }
        while p < depth {
            accumulateRows(1, x + p, m + p &* ld, ld: ld, columns: columns, out: out)
            p &+= 1
        }
    }

    /// `out[j] += x[0] * m[j] + ... + x[rows - 1] * m[(rows - 1) * ld + j]` for `j < columns`
    /// (`rows` is 1 or 4, a constant at each call site).
    @inline(__always)
    static func accumulateRows(_ rows: Int, _ x: UnsafePointer<Float>, _ m: UnsafePointer<Float>, ld: Int,
                               columns: Int, out: UnsafeMutablePointer<Float>) {
        let r0 = m, r1 = m + ld, r2 = m + 2 &* ld, r3 = m + 3 &* ld
        @inline(__always) func update<W: SIMD>(_: W.Type, _ j: Int) where W.Scalar == Float {
            var s = VectorMath.load(out + j, as: W.self)
            s = GEMMSIMD.multiplyAdd(W(repeating: x[0]), VectorMath.load(r0 + j, as: W.self), s)
            if rows == 4 {
                s = GEMMSIMD.multiplyAdd(W(repeating: x[1]), VectorMath.load(r1 + j, as: W.self), s)
                s = GEMMSIMD.multiplyAdd(W(repeating: x[2]), VectorMath.load(r2 + j, as: W.self), s)
                s = GEMMSIMD.multiplyAdd(W(repeating: x[3]), VectorMath.load(r3 + j, as: W.self), s)
            }
            VectorMath.store(s, out + j)
        }
        var j = 0
        while j &+ 16 <= columns {
            update(SIMD16<Float>.self, j)
            j &+= 16
        }
        if j &+ 8 <= columns {
            update(SIMD8<Float>.self, j)
            j &+= 8
        }
        if j &+ 4 <= columns {
            update(SIMD4<Float>.self, j)
            j &+= 4
        }
        while j < columns {
            var s = out[j] + x[0] * r0[j]
            if rows == 4 { s = s + x[1] * r1[j] + x[2] * r2[j] + x[3] * r3[j] }
            out[j] = s
            j &+= 1
        }
    }

    /// `out[i] = sum_p m[i * ld + p] * x[p]` for `i < rows`.
    static func matrixTimesVector(_ m: UnsafePointer<Float>, ld: Int, rows: Int, depth: Int,
                                  x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        var i = 0
        while i &+ 4 <= rows {
            let r = m + i &* ld
            dots(r, r + ld, r + 2 &* ld, r + 3 &* ld, x, depth: depth, out: out + i)
            i &+= 4
        }
        while i < rows {
            let r = m + i &* ld
            // One row: repeat it so the same code (and rounding) serves.
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 4) { four in
                dots(r, r, r, r, x, depth: depth, out: four.baseAddress!)
                out[i] = four[0]
            }
            i &+= 1
        }
    }

    /// Four dot products of rows `r0...r3` with `x`: 16 lanes at a time, a fixed-order
    /// horizontal sum, plus the last `depth % 16` products summed one by one.
    @inline(__always)
    static func dots(_ r0: UnsafePointer<Float>, _ r1: UnsafePointer<Float>, _ r2: UnsafePointer<Float>,
                     _ r3: UnsafePointer<Float>, _ x: UnsafePointer<Float>, depth: Int,
                     out: UnsafeMutablePointer<Float>) {
        typealias V = SIMD16<Float>
        var s0 = V(), s1 = V(), s2 = V(), s3 = V()
        var p = 0
        while p &+ 16 <= depth {
            let xv = VectorMath.load(x + p, as: V.self)
            s0 = GEMMSIMD.multiplyAdd(VectorMath.load(r0 + p, as: V.self), xv, s0)
            s1 = GEMMSIMD.multiplyAdd(VectorMath.load(r1 + p, as: V.self), xv, s1)
            s2 = GEMMSIMD.multiplyAdd(VectorMath.load(r2 + p, as: V.self), xv, s2)
            s3 = GEMMSIMD.multiplyAdd(VectorMath.load(r3 + p, as: V.self), xv, s3)
            p &+= 16
        }
        var t0: Float = 0, t1: Float = 0, t2: Float = 0, t3: Float = 0
        while p < depth {
            let xp = x[p]
            t0 += r0[p] * xp
            t1 += r1[p] * xp
            t2 += r2[p] * xp
            t3 += r3[p] * xp
            p &+= 1
        }
        out[0] = GEMMSIMD.sum(s0) + t0
        out[1] = GEMMSIMD.sum(s1) + t1
        out[2] = GEMMSIMD.sum(s2) + t2
        out[3] = GEMMSIMD.sum(s3) + t3
    }
}
