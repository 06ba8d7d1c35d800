// The blocked SGEMM on one thread: the five loops of BLIS around a micro-kernel.
//
//   loop 5  jc: NC columns of C and op(B)          (B block lives in L3)
//   loop 4  pc: KC steps of the depth              -> pack op(B)[pc, jc] into NR-wide panels
//   loop 3  ic: MC rows of C and op(A)             -> pack op(A)[ic, pc] into MR-tall panels
//   loop 2  jr: NR columns                         (one B micro-panel, in L1)
//   loop 1  ir: MR rows                            (one A micro-panel)
//           micro-kernel: C[MR x NR] += A panel · B panel, C kept in registers
//
// The first KC pass applies the caller's beta, later passes accumulate (beta = 1). Tiles cut
// by the edge of C run the same kernel into a small buffer and copy the valid part out, with
// the same rounding as full tiles; a kernel may instead take a few whole rows itself
// (`multiplyRows`, the same operations per row).
//
// Every element of C is computed by the same sequence of operations whatever the block sizes
// MC and NC, so splitting C across threads (GEMM.swift) does not change the result. KC
// depends only on k.

/// Cache block sizes of the blocked algorithm.
struct GEMMBlocking {
    /// Rows of op(A) packed at a time (a multiple of MR; the A block lives in L2).
    var mc: Int
    /// Depth packed at a time (the B micro-panel, `kc x NR`, lives in L1).
    var kc: Int
    /// Columns of op(B) packed at a time (a multiple of NR; the B block lives in L3).
    var nc: Int

    /// Splits `total` into equal blocks of at most `limit`, each rounded up to a multiple of
    /// `granule`: 784 with limit 256 is four blocks of 196 rather than 256, 256, 256, 16.
    static func balanced(_ total: Int, limit: Int, granule: Int) -> Int {
        let blocks = (total + limit - 1) / limit
        return roundUp((total + blocks - 1) / blocks, to: granule)
    }

    /// The smallest multiple of `multiple` that is `>= value`.
    static func roundUp(_ value: Int, to multiple: Int) -> Int {
        (value + multiple - 1) / multiple * multiple
    }
}

/// The five-loop blocked SGEMM with micro-kernel `Kernel`, single-threaded.
enum GEMMBlocked<Kernel: GEMMMicroKernel> {
    /// Computes `problem` (m, n, k > 0) on the calling thread.
    static func run(_ problem: GEMMProblem) {
        let mr = Kernel.mr, nr = Kernel.nr
        let (m, n, k) = (problem.m, problem.n, problem.k)
        let blocking = Kernel.blocking
        let kcMax = GEMMBlocking.balanced(k, limit: blocking.kc, granule: 1)
        let mcMax = GEMMBlocking.balanced(m, limit: blocking.mc, granule: mr)
        let ncMax = GEMMBlocking.balanced(n, limit: blocking.nc, granule: nr)

        // Scratch for the whole call, one allocation with each part 64-byte aligned: the packed
        // A block, the packed B block, and a tile for the edges of C.
        let aFloats = GEMMBlocking.roundUp(mcMax * kcMax, to: 16), bFloats = GEMMBlocking.roundUp(ncMax * kcMax, to: 16)
        let floats = aFloats + bFloats + mr * nr
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: floats * MemoryLayout<Float>.stride, alignment: 64)
        defer { scratch.deallocate() }
        let aPacked = scratch.bindMemory(to: Float.self, capacity: floats)
        let bPacked = aPacked + aFloats, edgeTile = bPacked + bFloats
        for jc in stride(from: 0, to: n, by: ncMax) {                         // loop 5
            let nc = min(ncMax, n - jc)
            for pc in stride(from: 0, to: k, by: kcMax) {                     // loop 4
                let kc = min(kcMax, k - pc)
                let packingB = KernelProfile.begin()
                GEMMPacking.packB(Kernel.self, kc: kc, nc: nc, b: problem.bPointer(depth: pc, column: jc),
                                  ldb: problem.ldb, transB: problem.transB, into: bPacked)
                KernelProfile.end(packingB, .packing)
                let beta = pc == 0 ? problem.beta : 1
                for ic in stride(from: 0, to: m, by: mcMax) {                 // loop 3
                    let mc = min(mcMax, m - ic)
                    let packingA = KernelProfile.begin()
                    GEMMPacking.packA(Kernel.self, mc: mc, kc: kc, a: problem.aPointer(row: ic, depth: pc),
                                      lda: problem.lda, transA: problem.transA, into: aPacked)
                    KernelProfile.end(packingA, .packing)
                    let multiplying = KernelProfile.begin()
                    macroKernel(mc: mc, nc: nc, kc: kc, a: aPacked, b: bPacked,
                                alpha: problem.alpha, beta: beta,
                                c: problem.c + ic * problem.ldc + jc, ldc: problem.ldc, edgeTile: edgeTile)
                    KernelProfile.endProduct(multiplying, m: mc, n: nc, k: kc)
                }
            }
        }
    }

    /// Loops 2 and 1: every MR x NR tile of the `mc x nc` block of C at `c`.
    @inline(__always)
    static func macroKernel(
        mc: Int, nc: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
        edgeTile: UnsafeMutablePointer<Float>
    ) {
        let mr = Kernel.mr, nr = Kernel.nr
        for jr in stride(from: 0, to: nc, by: nr) {                               // loop 2
            let columns = min(nr, nc &- jr)
            let bPanel = b + jr &* kc
            for ir in stride(from: 0, to: mc, by: mr) {                           // loop 1
                let rows = min(mr, mc &- ir)
                let aPanel = a + ir &* kc
                let cTile = c + (ir &* ldc &+ jr)
                if rows == mr && columns == nr {
                    Kernel.multiply(depth: kc, a: aPanel, b: bPanel, alpha: alpha, beta: beta, c: cTile, ldc: ldc)
                } else if columns == nr,
                          Kernel.multiplyRows(rows, depth: kc, a: aPanel, b: bPanel, alpha: alpha, beta: beta, c: cTile, ldc: ldc) {
                    // The last rows of C with a kernel of their own.
                } else {
                    // Edge of C: the raw products go to the buffer, then the valid part is
                    // combined into C exactly as `GEMMSIMD.update` does for full tiles.
                    Kernel.multiply(depth: kc, a: aPanel, b: bPanel, alpha: 1, beta: 0, c: edgeTile, ldc: nr)
                    for r in 0..<rows {
                        let t = edgeTile + r &* nr, cRow = cTile + r &* ldc
                        for j in 0..<columns {
                            cRow[j] = GEMMSIMD.combine(t[j], cRow[j], alpha: alpha, beta: beta)
                        }
                    }
                }
            }
        }
    }
}
