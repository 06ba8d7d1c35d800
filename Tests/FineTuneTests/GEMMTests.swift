import Foundation
import Testing
@testable import FineTune

// Tests for Kernels.sgemm (Kernels/GEMM*.swift): every path (packed with each micro-kernel,
// direct matrix-vector, degenerate shapes) against a Double-accumulation reference on odd
// shapes, all four transpose combinations, strided leading dimensions and alpha/beta values,
// plus bit-identical results for any thread count. Sizes stay small: tests run in debug builds.

// MARK: - Helpers

/// One GEMM call: shapes, transposes, scalars and extra leading-dimension padding.
struct SGEMMCase: CustomTestStringConvertible, Sendable {
    var m: Int, n: Int, k: Int
    var transA = false, transB = false
    var alpha: Float = 1, beta: Float = 0
    /// Extra elements at the end of every stored row of A, B and C.
    var pad = 0

    var lda: Int { (transA ? m : k) + pad }
    var ldb: Int { (transB ? k : n) + pad }
    var ldc: Int { n + pad }

    var testDescription: String {
        "\(m)x\(n)x\(k)\(transA ? " At" : "")\(transB ? " Bt" : "") alpha \(alpha) beta \(beta) pad \(pad)"
    }

    func with(transA: Bool, transB: Bool) -> SGEMMCase {
        var c = self
        c.transA = transA
        c.transB = transB
        return c
    }
}

/// Deterministic values in [-1, 1).
private func values(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 23) - 1
    }
}

/// Stored A, B and C for a case (never empty, so base addresses exist).
struct SGEMMOperands {
    var a: [Float], b: [Float], c: [Float]

    init(a: [Float], b: [Float], c: [Float]) { self.a = a; self.b = b; self.c = c }

    init(_ t: SGEMMCase, seed: UInt64 = 1, fillC: Float? = nil) {
        a = values(max(1, (t.transA ? t.k : t.m) * t.lda), seed: seed)
        b = values(max(1, (t.transB ? t.n : t.k) * t.ldb), seed: seed &+ 1)
        c = fillC.map { [Float](repeating: $0, count: max(1, t.m * t.ldc)) } ?? values(max(1, t.m * t.ldc), seed: seed &+ 2)
    }
}

/// Runs the case and returns C. `kernel == nil` goes through the public entry point; otherwise
/// the internal driver runs with that micro-kernel (`direct: false` forces packing,
/// `splitAlways` splits across threads whatever the size).
func runSGEMM(_ t: SGEMMCase, _ ops: SGEMMOperands, threads: Int = 1,
              kernel: GEMMKernelKind? = nil, direct: Bool = true, splitAlways: Bool = false,
              sharedRowTiles: Int = GEMM.minimumSharedRowTiles) -> [Float] {
    var c = ops.c
    ops.a.withUnsafeBufferPointer { a in
        ops.b.withUnsafeBufferPointer { b in
            c.withUnsafeMutableBufferPointer { c in
                if let kernel {
                    let problem = GEMMProblem(m: t.m, n: t.n, k: t.k, alpha: t.alpha, beta: t.beta,
                                              a: a.baseAddress!, lda: t.lda, transA: t.transA,
                                              b: b.baseAddress!, ldb: t.ldb, transB: t.transB,
                                              c: c.baseAddress!, ldc: t.ldc)
                    GEMM.run(problem, kernel: kernel, threads: threads, direct: direct,
                             parallelThreshold: splitAlways ? 0 : GEMM.parallelThreshold,
                             minimumSharedRowTiles: sharedRowTiles)
                } else {
                    Kernels.sgemm(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k,
                                  alpha: t.alpha, a: a.baseAddress!, lda: t.lda, b: b.baseAddress!, ldb: t.ldb,
                                  beta: t.beta, c: c.baseAddress!, ldc: t.ldc, threads: threads)
                }
            }
        }
    }
    return c
}

/// Checks `c` against a Double-accumulation reference: each element within
/// `(k + 2) * ulp * (|alpha| * sum_p |a_ip * b_pj| + |beta * c_ij|)`, and the padding columns
/// of C untouched (bit for bit).
private func expectMatchesReference(_ c: [Float], _ t: SGEMMCase, _ ops: SGEMMOperands,
                                   _ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    for i in 0..<t.m {
        for j in 0..<t.ldc {
            let index = i * t.ldc + j
            if j >= t.n {
                if c[index].bitPattern != ops.c[index].bitPattern {
                    Issue.record("\(t.testDescription) \(comment): padding C[\(i), \(j)] was written",
                                 sourceLocation: sourceLocation)
                    return
                }
                continue
            }
            var sum = 0.0, magnitude = 0.0
            for p in 0..<t.k {
                let a = Double(t.transA ? ops.a[p * t.lda + i] : ops.a[i * t.lda + p])
                let b = Double(t.transB ? ops.b[j * t.ldb + p] : ops.b[p * t.ldb + j])
                sum += a * b
                magnitude += abs(a * b)
            }
            let old = Double(ops.c[index])
            let expected = Double(t.alpha) * sum + (t.beta == 0 ? 0 : Double(t.beta) * old)
            let bound = Double(t.alpha.magnitude) * magnitude + (t.beta == 0 ? 0 : abs(Double(t.beta) * old))
            let tolerance = Double(t.k + 2) * Double(Float.ulpOfOne) * bound
            if !(abs(Double(c[index]) - expected) <= tolerance) {
                Issue.record("\(t.testDescription) \(comment): C[\(i), \(j)] = \(c[index]), expected \(expected) ± \(tolerance)",
                             sourceLocation: sourceLocation)
                return
            }
        }
    }
}

private let transposes = [(false, false), (false, true), (true, false), (true, true)]

/// For every transpose combination of `shape`: `body(case, operands, one-thread result)`, the
/// one-thread result checked against the reference first (what thread-count tests compare with).
private func forEachTransposeOnOneThread(_ shape: SGEMMCase, seed: UInt64, kernel: GEMMKernelKind,
                                         _ body: (SGEMMCase, SGEMMOperands, [Float]) -> Void) {
    for (transA, transB) in transposes {
        let t = shape.with(transA: transA, transB: transB)
        let ops = SGEMMOperands(t, seed: seed)
        let single = runSGEMM(t, ops, threads: 1, kernel: kernel)
        expectMatchesReference(single, t, ops)
        body(t, ops, single)
    }
}

/// Odd shapes: edges in every dimension, skinny, and more than one MC, KC and NC block.
private let packedShapes: [SGEMMCase] = [
    SGEMMCase(m: 1, n: 1, k: 1),
    SGEMMCase(m: 7, n: 17, k: 3, pad: 2),
    SGEMMCase(m: 17, n: 33, k: 7),
    SGEMMCase(m: 33, n: 65, k: 17, pad: 1),
    SGEMMCase(m: 65, n: 7, k: 129, alpha: 0.5, beta: -2),
    SGEMMCase(m: 1, n: 257, k: 3, beta: 1, pad: 3),
    SGEMMCase(m: 257, n: 3, k: 1),
    SGEMMCase(m: 150, n: 37, k: 300, alpha: -2, beta: 0.5, pad: 5),
    SGEMMCase(m: 13, n: 3100, k: 2, alpha: 0.5, beta: 1),
    SGEMMCase(m: 14, n: 35, k: 800, beta: 0.5, pad: 1),
    // Last row tiles of 4 and 8 rows (64 = 5 x 12 + 4; 128 in MC blocks of 72 and 56 = 4 x 12 + 8;
    // 44 = 3 x 12 + 8), which the 12 x 32 kernel multiplies with its own row kernels.
    SGEMMCase(m: 64, n: 70, k: 33, alpha: 0.5, beta: 1),
    SGEMMCase(m: 128, n: 96, k: 50, pad: 2),
    SGEMMCase(m: 44, n: 64, k: 19, beta: -1),
]

// MARK: - Tests

@Suite("SGEMM")
struct GEMMTests {
    /// The packed, blocked path with each compiled micro-kernel (all run correctly on any
    /// x86-64 or arm64 CPU, just not all at full speed), every transpose combination.
    @Test(arguments: GEMMKernelKind.allCases)
    func packedPathMatchesReference(kernel: GEMMKernelKind) {
        for shape in packedShapes {
            for (transA, transB) in transposes {
                let t = shape.with(transA: transA, transB: transB)
                let ops = SGEMMOperands(t)
                expectMatchesReference(runSGEMM(t, ops, kernel: kernel, direct: false), t, ops, "\(kernel)")
            }
        }
    }

    /// Rows in a last tile of 2, 4 or 8 get the same bits as in a full tile: the first 64 (or 44)
    /// rows of a 72-row (48-row) product, whose tiles are all full, equal the 64-row (44-row) product.
    @Test(arguments: GEMMKernelKind.allCases)
    func partialRowTilesRoundAsFullTiles(kernel: GEMMKernelKind) {
        for (rows, padded) in [(64, 72), (44, 48)] {
            for (transA, transB) in transposes {
                let full = SGEMMCase(m: padded, n: 70, k: 29, alpha: 0.5, beta: 1).with(transA: transA, transB: transB)
                let ops = SGEMMOperands(full)
                var cut = full
                cut.m = rows
                // The first rows of op(A): a prefix of A, or of each stored row of A transposed.
                let cutA = transA ? (0..<full.k).flatMap { p in ops.a[(p * full.lda)..<(p * full.lda + rows)] }
                                  : Array(ops.a.prefix(rows * full.lda))
                let cutOps = SGEMMOperands(a: cutA, b: ops.b, c: Array(ops.c.prefix(rows * cut.ldc)))
                let whole = runSGEMM(full, ops, kernel: kernel, direct: false)
                let part = runSGEMM(cut, cutOps, kernel: kernel, direct: false)
                let same = zip(part, whole.prefix(rows * full.ldc)).allSatisfy { $0.bitPattern == $1.bitPattern }
                #expect(same, "\(kernel) \(rows) of \(padded) rows, transA \(transA) transB \(transB)")
            }
        }
    }

    /// A last column tile with at most half its columns valid runs the kernel's half-width
    /// variant where it has one (12 x 32: 12 x 16): the same bits as those columns computed in
    /// a full tile (the first 40 or 48 columns of a 64-column product equal the 40- or
    /// 48-column product; the 64-column one has no edge tile), and the reference's values.
    @Test(arguments: GEMMKernelKind.allCases)
    func halfWidthEdgeTilesRoundAsFullTiles(kernel: GEMMKernelKind) {
        for (columns, padded) in [(40, 64), (48, 64), (33, 64)] {
            for (transA, transB) in transposes {
                // Rows: full tiles, then an edge in both dimensions.
                for rows in [24, 29] {
                    let full = SGEMMCase(m: rows, n: padded, k: 37, alpha: 0.75, beta: -1).with(transA: transA, transB: transB)
                    let ops = SGEMMOperands(full)
                    var cut = full
                    cut.n = columns
                    // The first columns of op(B) and of C, stored with the cut product's leading dimensions.
                    let cutB = transB ? Array(ops.b.prefix(columns * full.ldb))
                                      : (0..<full.k).flatMap { p in ops.b[(p * full.ldb)..<(p * full.ldb + columns)] }
                    let cutC = (0..<rows).flatMap { i in ops.c[(i * full.ldc)..<(i * full.ldc + columns)] }
                    let cutOps = SGEMMOperands(a: ops.a, b: cutB, c: cutC)
                    let whole = runSGEMM(full, ops, kernel: kernel, direct: false)
                    let part = runSGEMM(cut, cutOps, kernel: kernel, direct: false)
                    expectMatchesReference(part, cut, cutOps, "\(kernel) \(columns) columns")
                    let wholePrefix = (0..<rows).flatMap { i in whole[(i * full.ldc)..<(i * full.ldc + columns)] }
                    #expect(sameBits(part, wholePrefix), "\(kernel) \(rows) x \(columns) of \(padded), transA \(transA) transB \(transB)")
                }
            }
        }
    }

    /// The shapes above reach past every kernel's cache blocks, so each kernel runs several MC,
    /// KC and NC blocks (later KC passes accumulate into C) whatever its block sizes.
    @Test(arguments: GEMMKernelKind.allCases)
    func packedShapesSpanSeveralBlocks(kernel: GEMMKernelKind) {
        let blocking = kernel.blocking
        #expect(packedShapes.contains { $0.m > blocking.mc })
        #expect(packedShapes.contains { $0.k > blocking.kc })
        #expect(packedShapes.contains { $0.n > blocking.nc })
    }

    /// The public entry point on shapes that pick each path: direct (a few rows or columns,
    /// tiny), packed, and sizes that span several cache blocks.
    @Test(arguments: [
        SGEMMCase(m: 1, n: 257, k: 3),
        SGEMMCase(m: 1, n: 10, k: 70, pad: 1),
        SGEMMCase(m: 2, n: 65, k: 257, alpha: 0.5, beta: 1),
        SGEMMCase(m: 4, n: 300, k: 17, pad: 3),
        SGEMMCase(m: 257, n: 1, k: 65, beta: -2),
        SGEMMCase(m: 65, n: 4, k: 33, pad: 2),
        SGEMMCase(m: 3, n: 3, k: 3),
        SGEMMCase(m: 8, n: 8, k: 8, alpha: -2, beta: 0.5),
        SGEMMCase(m: 33, n: 7, k: 33),
        SGEMMCase(m: 65, n: 7, k: 129, pad: 1),
        SGEMMCase(m: 97, n: 200, k: 270, alpha: 0.5, beta: 0.5, pad: 4),
    ])
    func publicEntryMatchesReference(shape: SGEMMCase) {
        for (transA, transB) in transposes {
            let t = shape.with(transA: transA, transB: transB)
            let ops = SGEMMOperands(t)
            expectMatchesReference(runSGEMM(t, ops), t, ops)
        }
    }

    /// The direct path splits a large product's long side across threads: the same bits on 1, 2
    /// and 3 threads, within the reference's bound, padding untouched; strided, every transpose,
    /// few rows (the columns split) and few columns (the rows split), lengths that are not
    /// multiples of the 16-element runs. The size threshold is lowered so these shapes split.
    @Test(arguments: [SGEMMCase(m: 1, n: 1000, k: 37, pad: 3), SGEMMCase(m: 3, n: 517, k: 64, alpha: 0.5, beta: 1, pad: 1),
                      SGEMMCase(m: 4, n: 131, k: 9), SGEMMCase(m: 999, n: 2, k: 40, beta: -2, pad: 2),
                      SGEMMCase(m: 70, n: 4, k: 33)])
    func directPathSplitsAcrossThreads(shape: SGEMMCase) {
        for (transA, transB) in transposes {
            let t = shape.with(transA: transA, transB: transB)
            let ops = SGEMMOperands(t, seed: 11)
            let one = runSGEMM(t, ops, threads: 1)
            expectMatchesReference(one, t, ops)
            for threads in [2, 3] {
                let split = Kernels.withMaxThreads(threads, parallelThresholdsDividedBy: 1 << 20) { runSGEMM(t, ops, threads: threads) }
                #expect(split.map(\.bitPattern) == one.map(\.bitPattern), "\(t.testDescription) on \(threads) threads")
            }
        }
    }

    /// alpha and beta in {0, 1, 0.5, -2} on a strided packed shape and a strided direct shape.
    @Test(arguments: [SGEMMCase(m: 19, n: 37, k: 23, pad: 3), SGEMMCase(m: 3, n: 37, k: 23, pad: 3)])
    func alphaBeta(shape: SGEMMCase) {
        for alpha: Float in [0, 1, 0.5, -2] {
            for beta: Float in [0, 1, 0.5, -2] {
                for (transA, transB) in transposes {
                    var t = shape.with(transA: transA, transB: transB)
                    t.alpha = alpha
                    t.beta = beta
                    let ops = SGEMMOperands(t, seed: 7)
                    expectMatchesReference(runSGEMM(t, ops), t, ops)
                }
            }
        }
    }

    /// With beta == 0, C is never read: NaNs in C must not reach the result (and the NaN
    /// padding stays as it was).
    @Test(arguments: [SGEMMCase(m: 40, n: 50, k: 30, pad: 2), SGEMMCase(m: 2, n: 50, k: 30, pad: 2),
                      SGEMMCase(m: 50, n: 3, k: 30, pad: 2), SGEMMCase(m: 5, n: 5, k: 5, pad: 2)])
    func betaZeroIgnoresNaNInC(shape: SGEMMCase) {
        for (transA, transB) in transposes {
            let t = shape.with(transA: transA, transB: transB)
            let ops = SGEMMOperands(t, fillC: .nan)
            let c = runSGEMM(t, ops)
            expectMatchesReference(c, t, ops)
            #expect((0..<t.m).allSatisfy { i in (0..<t.n).allSatisfy { !c[i * t.ldc + $0].isNaN } })
        }
    }

    /// An infinity in B gives infinities (not NaN) in its column of C when everything else is
    /// positive: no path multiplies real data by padding zeros.
    @Test(arguments: [SGEMMCase(m: 1, n: 37, k: 7), SGEMMCase(m: 37, n: 2, k: 7), SGEMMCase(m: 33, n: 40, k: 7),
                      SGEMMCase(m: 3, n: 3, k: 5)])
    func infinityStaysInfinite(shape: SGEMMCase) {
        for (transA, transB) in transposes {
            let t = shape.with(transA: transA, transB: transB)
            var ops = SGEMMOperands(t)
            ops.a = ops.a.map { abs($0) + 0.5 }
            ops.b = ops.b.map { abs($0) + 0.5 }
            let column = t.n - 1, depth = t.k - 1
            ops.b[t.transB ? column * t.ldb + depth : depth * t.ldb + column] = .infinity
            let c = runSGEMM(t, ops)
            for i in 0..<t.m {
                for j in 0..<t.n {
                    let value = c[i * t.ldc + j]
                    #expect(j == column ? value == .infinity : value.isFinite, "\(t.testDescription): C[\(i), \(j)] = \(value)")
                }
            }
        }
    }

    /// k == 0 and alpha == 0 give `beta * C` without reading A or B; m == 0 or n == 0 do nothing.
    @Test func degenerateShapes() {
        for beta: Float in [0, 1, 0.5] {
            var t = SGEMMCase(m: 9, n: 21, k: 0, beta: beta, pad: 1)
            let ops = SGEMMOperands(t, fillC: beta == 0 ? .nan : 3)
            let c = runSGEMM(t, ops)
            #expect((0..<t.m).allSatisfy { i in (0..<t.n).allSatisfy { c[i * t.ldc + $0] == 3 * beta } })
            expectMatchesReference(c, t, ops)

            // alpha == 0: NaNs in A and B are not read.
            t.k = 13
            t.alpha = 0
            var nanOps = SGEMMOperands(t, fillC: 3)
            nanOps.a = nanOps.a.map { _ in .nan }
            nanOps.b = nanOps.b.map { _ in .nan }
            let scaled = runSGEMM(t, nanOps)
            #expect((0..<t.m).allSatisfy { i in (0..<t.n).allSatisfy { scaled[i * t.ldc + $0] == 3 * beta } })
        }
        for (m, n) in [(0, 5), (5, 0), (0, 0)] {
            let t = SGEMMCase(m: m, n: n, k: 4, beta: 1, pad: 2)
            let ops = SGEMMOperands(t)
            #expect(runSGEMM(t, ops) == ops.c)
        }
    }

    /// Split across threads (below the size where that pays off, to keep the test fast):
    /// 1, 2, 3 and 4 threads give identical bits (no split of k, each element summed in the same
    /// order), for every transpose combination and micro-kernel. The public entry point splits
    /// large products the same way.
    @Test(arguments: GEMMKernelKind.allCases)
    func threadCountDoesNotChangeResult(kernel: GEMMKernelKind) {
        let shape = SGEMMCase(m: 61, n: 90, k: 50, alpha: 0.5, beta: -2, pad: 3)
        let grid = GEMM.threadGrid(m: shape.m, n: shape.n, k: shape.k, threads: 2, tile: kernel.shape,
                                   parallelThreshold: 0)
        #expect(grid.rows * grid.columns == 2)
        let large = GEMM.threadGrid(m: 1024, n: 1024, k: 1024, threads: 2, tile: kernel.shape)
        #expect(large.rows * large.columns == 2)
        forEachTransposeOnOneThread(shape, seed: 3, kernel: kernel) { t, ops, single in
            for threads in 2...4 {
                let multi = runSGEMM(t, ops, threads: threads, kernel: kernel, splitAlways: true)
                #expect(multi.map(\.bitPattern) == single.map(\.bitPattern), "\(t.testDescription), \(threads) threads")
            }
        }
    }

    /// Threads sharing the packed B blocks (GEMMBlocked.runShared) give the bits of one thread
    /// and of one block of C per thread, on 2 and 3 threads: edges in every dimension, a member
    /// with no rows (5 rows on 3 threads), several KC passes and several NC blocks (the barrier
    /// reused), every transpose combination and micro-kernel. The team path is run directly
    /// (retried while other tests hold the worker pool), so a fallback cannot hide it.
    @Test(arguments: GEMMKernelKind.allCases)
    func sharedPackingMatchesOneThread(kernel: GEMMKernelKind) {
        let blocking = kernel.blocking
        let shapes = [SGEMMCase(m: 61, n: 90, k: 50, alpha: 0.5, beta: -2, pad: 3),
                      SGEMMCase(m: 5, n: 70, k: 40, beta: 1),
                      SGEMMCase(m: 40, n: 37, k: blocking.kc + 37, alpha: -1, beta: 0.5, pad: 1),
                      SGEMMCase(m: 13, n: blocking.nc + 37, k: 9)]
        for shape in shapes {
            forEachTransposeOnOneThread(shape, seed: 5, kernel: kernel) { t, ops, single in
                for threads in 2...3 {
                    let label = "\(t.testDescription), \(threads) threads"
                    let shared = runShared(t, ops, threads: threads, kernel: kernel)
                    #expect(shared != nil, "the worker pool stayed busy: \(label)")
                    #expect(shared.map { sameBits($0, single) } ?? true, "team: \(label)")
                    let viaRun = runSGEMM(t, ops, threads: threads, kernel: kernel, splitAlways: true, sharedRowTiles: 0)
                    #expect(sameBits(viaRun, single), "GEMM.run sharing: \(label)")
                    let blocks = runSGEMM(t, ops, threads: threads, kernel: kernel, splitAlways: true, sharedRowTiles: .max)
                    #expect(sameBits(blocks, single), "GEMM.run blocks: \(label)")
                }
            }
        }
    }

    /// Packed blocks of 64 KiB and more go back to the scratch pool and are reused (a fresh one
    /// costs a page fault per 4 KiB on every call), and a reused block's old contents never
    /// reach C: a block left full of NaNs by an earlier call, taken again by products whose
    /// packed B needs exactly that much (edge panels in n and k, every transpose), still gives
    /// the reference. Other tests share the pool, so the first check retries a few times.
    @Test(arguments: GEMMKernelKind.allCases)
    func packedBlocksComeFromThePool(kernel: GEMMKernelKind) {
        let floats = GEMMScratch.pooledFloats + 123
        var kept = false
        for _ in 0..<20 where !kept {
            let scratch = GEMMScratch(floats: floats)
            scratch.deallocate()
            kept = ScratchPool.keeps(scratch.floats)
        }
        #expect(kept, "a pooled packed block was freed instead of kept")
        let small = GEMMScratch(floats: 64)
        small.deallocate()
        #expect(!ScratchPool.keeps(small.floats))

        // One KC and one NC block: the packed B block is exactly n (rounded up to panels) x k.
        let shape = SGEMMCase(m: 2 * kernel.shape.mr + 5, n: 40 * kernel.shape.nr + 7, k: 83, alpha: 0.5, beta: -1, pad: 2)
        let blockFloats = GEMMBlocking.roundUp(shape.n, to: kernel.shape.nr) * shape.k
        #expect(blockFloats >= GEMMScratch.pooledFloats && shape.k <= kernel.blocking.kc && shape.n <= kernel.blocking.nc)
        for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
            let t = shape.with(transA: transA, transB: transB)
            let ops = SGEMMOperands(t, seed: 17)
            let poisoned = ScratchPool.take(blockFloats)
            poisoned.pointer.initialize(repeating: .nan, count: poisoned.capacity)
            ScratchPool.give(poisoned)
            expectMatchesReference(runSGEMM(t, ops, kernel: kernel), t, ops, "after a NaN-filled pooled block")
        }
    }

    /// Tall products share packing, short ones keep one block of C per thread; BERT-base's
    /// 1024-token products on 2 threads share.
    @Test func sharedPackingNeedsRowsForEveryThread() {
        let tile = (mr: 12, nr: 32)
        #expect(GEMM.sharesPacking(m: 1024, threads: 2, tile: tile))
        #expect(GEMM.sharesPacking(m: 16 * 12, threads: 2, tile: tile))
        #expect(!GEMM.sharesPacking(m: 15 * 12, threads: 2, tile: tile))
        #expect(!GEMM.sharesPacking(m: 64, threads: 2, tile: tile))
        #expect(GEMM.sharesPacking(m: 1, threads: 3, tile: tile, minimumRowTiles: 0))
    }

    /// Thread blocks cover C exactly, cut on tile boundaries.
    @Test func threadPartsCoverC() {
        for (total, parts, granule) in [(131, 2, 6), (150, 3, 16), (5, 4, 6), (1024, 2, 16)] {
            let ranges = (0..<parts).map { GEMM.part(total, parts: parts, index: $0, granule: granule) }
            #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == total)
            for (lhs, rhs) in zip(ranges, ranges.dropFirst()) {
                #expect(lhs.upperBound == rhs.lowerBound)
                #expect(lhs.upperBound % granule == 0 || lhs.upperBound == total)
            }
        }
    }

    /// The tiles of a B micro-panel prefetch the next panel in equal slices that cover it with
    /// the smallest step: no line left to the first tile that uses it, none asked for twice
    /// by more than one step's worth.
    @Test func prefetchSlicesCoverTheNextPanel() {
        for (tiles, depth, width) in [(10, 768, 32), (1, 768, 32), (9, 512, 32), (3, 37, 32), (20, 384, 16),
                                      (7, 1, 8), (11, 255, 16)] {
            let bytes = width * depth * MemoryLayout<Float>.stride
            let step = GEMMPrefetch.panelShareStep(tiles: tiles, depth: depth, panelFloats: width * depth)
            #expect(tiles * step * depth >= bytes, "tiles \(tiles) depth \(depth): slices end before the panel")
            #expect(tiles * (step - 1) * depth < bytes, "tiles \(tiles) depth \(depth): step \(step) is not the smallest")
        }
    }

    /// Each full tile of a block asks for the lines of the full tile that the loops reach next:
    /// walking the block as GEMMBlocked.macroKernel does, every full tile but the first is asked
    /// for by the full tile just before it, and only full tiles inside the block are asked for.
    @Test func nextTileRequestsFollowTheLoopOrder() {
        for (mc, nc, mr, nr) in [(120, 3072, 12, 32), (64, 200, 12, 32), (12, 32, 12, 32), (11, 64, 12, 32),
                                 (130, 70, 6, 16), (36, 8, 6, 8), (24, 31, 12, 32)] {
            let ldc = nc + 5
            var fullTiles: [Int] = []                 // offsets of the full tiles in loop order
            for column in stride(from: 0, to: nc, by: nr) where column + nr <= nc {
                for row in stride(from: 0, to: mc, by: mr) where row + mr <= mc { fullTiles.append(row * ldc + column) }
            }
            for (index, tile) in fullTiles.enumerated() {
                let row = tile / ldc, column = tile % ldc
                let next = GEMMPrefetch.nextFullTile(row: row, column: column, mc: mc, nc: nc, mr: mr, nr: nr, ldc: ldc)
                let expected = index + 1 < fullTiles.count ? fullTiles[index + 1] : nil
                #expect(next == expected, "block \(mc) x \(nc), tile at row \(row) column \(column)")
            }
        }
    }

    /// The reported path names the active micro-kernel's tile.
    @Test func simdPathNamesTheTile() {
        let (mr, nr) = Kernels.microKernelShape
        #expect(Kernels.simdPath.contains("\(mr)x\(nr)"))
        #expect(GEMMKernelKind.allCases.contains { $0.shape == (mr, nr) })
    }
}

/// Whether two results are the same bit for bit.
private func sameBits(_ lhs: [Float], _ rhs: [Float]) -> Bool { lhs.map(\.bitPattern) == rhs.map(\.bitPattern) }

/// `C` from `kernel.runShared` on `threads` threads, retried while the worker pool is busy (other
/// tests running) for up to a minute; nil if it never got the pool.
private func runShared(_ t: SGEMMCase, _ ops: SGEMMOperands, threads: Int, kernel: GEMMKernelKind) -> [Float]? {
    var c = ops.c
    let ran = ops.a.withUnsafeBufferPointer { a in
        ops.b.withUnsafeBufferPointer { b in
            c.withUnsafeMutableBufferPointer { c in
                let problem = GEMMProblem(m: t.m, n: t.n, k: t.k, alpha: t.alpha, beta: t.beta,
                                          a: a.baseAddress!, lda: t.lda, transA: t.transA,
                                          b: b.baseAddress!, ldb: t.ldb, transB: t.transB,
                                          c: c.baseAddress!, ldc: t.ldc)
                let clock = ContinuousClock(), deadline = clock.now + .seconds(60)
                while clock.now < deadline {
                    if kernel.runShared(problem, threads: threads) { return true }
                    Thread.sleep(forTimeInterval: 0.0002)
                }
                return false
            }
        }
    }
    return ran ? c : nil
}
