import Testing
@testable import FineTune

// Column-segmented SGEMM (GEMMColumnSegments): op(B) and C stored as equal runs of columns at
// fixed distances, as the samples of an NCHW batch are. The segmented product must give, bit for
// bit, what one unsegmented product per segment gives, on every path (packed with each
// micro-kernel, direct, threads sharing packing or splitting C), and write nothing between the
// segments.

/// One segmented product: `segments` runs of `width` columns; each segment of B is a `k x width`
/// matrix with leading dimension `width + pad`, each segment of C `m x width` likewise, with
/// `gap` unused floats after every segment.
private struct SegmentCase: CustomTestStringConvertible, Sendable {
    var m: Int, k: Int, width: Int, segments: Int
    var transA = false
    var alpha: Float = 1, beta: Float = 0
    var pad = 0, gap = 0

    var ld: Int { width + pad }
    var bStride: Int { k * ld + gap }
    var cStride: Int { m * ld + gap }
    var n: Int { width * segments }
    var lda: Int { (transA ? m : k) + 1 }

    var testDescription: String {
        "\(m)x(\(segments)x\(width))x\(k)\(transA ? " At" : "") alpha \(alpha) beta \(beta) pad \(pad) gap \(gap)"
    }
}

private func values(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 23) - 1
    }
}

private func sameBits(_ lhs: [Float], _ rhs: [Float]) -> Bool { lhs.map(\.bitPattern) == rhs.map(\.bitPattern) }

/// C after the segmented product (`segmented: true`) or after one unsegmented product per segment.
private func run(_ t: SegmentCase, a: [Float], b: [Float], c: [Float], kernel: GEMMKernelKind, segmented: Bool,
                 threads: Int = 1, direct: Bool = true, splitAlways: Bool = false,
                 sharedRowTiles: Int = GEMM.minimumSharedRowTiles) -> [Float] {
    var c = c
    a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            c.withUnsafeMutableBufferPointer { c in
                func product(n: Int, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>) -> GEMMProblem {
                    GEMMProblem(m: t.m, n: n, k: t.k, alpha: t.alpha, beta: t.beta, a: a.baseAddress!, lda: t.lda,
                                transA: t.transA, b: b, ldb: t.ld, transB: false, c: c, ldc: t.ld)
                }
                if segmented {
                    var problem = product(n: t.n, b: b.baseAddress!, c: c.baseAddress!)
                    problem.segments = GEMMColumnSegments(width: t.width, bStride: t.bStride, cStride: t.cStride)
                    GEMM.run(problem, kernel: kernel, threads: threads, direct: direct,
                             parallelThreshold: splitAlways ? 0 : GEMM.parallelThreshold, minimumSharedRowTiles: sharedRowTiles)
                } else {
                    for s in 0..<t.segments {
                        GEMM.run(product(n: t.width, b: b.baseAddress! + s * t.bStride, c: c.baseAddress! + s * t.cStride),
                                 kernel: kernel, threads: 1, direct: direct)
                    }
                }
            }
        }
    }
    return c
}

@Suite("SGEMM on column segments")
struct GEMMSegmentTests {
    private static let cases: [SegmentCase] = [
        SegmentCase(m: 13, k: 7, width: 1, segments: 40),                       // every tile spans many segments
        SegmentCase(m: 24, k: 40, width: 5, segments: 9, alpha: 0.5, beta: -2, pad: 2, gap: 3),
        SegmentCase(m: 25, k: 9, width: 31, segments: 4, beta: 1, gap: 1),
        SegmentCase(m: 12, k: 16, width: 32, segments: 3, pad: 1),              // segments on panel boundaries
        SegmentCase(m: 37, k: 11, width: 33, segments: 3, alpha: -1, beta: 0.5),
        SegmentCase(m: 26, k: 20, width: 49, segments: 5, pad: 3, gap: 5),      // 7x7 planes
        SegmentCase(m: 3, k: 5, width: 49, segments: 2),                        // direct path (3 rows)
        SegmentCase(m: 14, k: 6, width: 100, segments: 2, beta: 1),
    ]

    /// Each case, with A as stored and transposed, on every micro-kernel, forced through the
    /// packed path (and through the routing, where it routes both sides alike): the segmented product's C equals the
    /// per-segment products' C bit for bit, gaps and padding included.
    @Test(arguments: GEMMKernelKind.allCases)
    func matchesOneProductPerSegment(kernel: GEMMKernelKind) {
        for base in Self.cases {
            for transA in [false, true] {
                var t = base
                t.transA = transA
                let a = values((transA ? t.k : t.m) * t.lda, seed: 1)
                let b = values(t.segments * t.bStride, seed: 2)
                let c = values(t.segments * t.cStride, seed: 3)
                // The routing compared only where both sides take the same path.
                let sameRoute = GEMMDirect.handles(m: t.m, n: t.width, k: t.k) == GEMMDirect.handles(m: t.m, n: t.n, k: t.k)
                for direct in sameRoute ? [false, true] : [false] {
                    let expected = run(t, a: a, b: b, c: c, kernel: kernel, segmented: false, direct: direct)
                    let got = run(t, a: a, b: b, c: c, kernel: kernel, segmented: true, direct: direct)
                    #expect(sameBits(got, expected), "\(t.testDescription) direct \(direct)")
                    #expect(expected != c, "\(t.testDescription): the product wrote nothing")
                }
            }
        }
    }

    /// Split across 2 and 3 threads (blocks of C cut inside segments, or a team sharing the
    /// packed B), the segmented product keeps the one-thread bits.
    @Test(arguments: GEMMKernelKind.allCases)
    func threadsKeepTheBits(kernel: GEMMKernelKind) {
        for t in [SegmentCase(m: 61, k: 30, width: 49, segments: 4, alpha: 0.5, beta: -2, pad: 3, gap: 2),
                  SegmentCase(m: 13, k: 9, width: 7, segments: 20, pad: 1)] {
            let a = values(t.m * t.lda, seed: 4), b = values(t.segments * t.bStride, seed: 5)
            let c = values(t.segments * t.cStride, seed: 6)
            let single = run(t, a: a, b: b, c: c, kernel: kernel, segmented: false, direct: false)
            for threads in 2...3 {
                for shared in [0, Int.max] {
                    let got = run(t, a: a, b: b, c: c, kernel: kernel, segmented: true, threads: threads,
                                  direct: false, splitAlways: true, sharedRowTiles: shared)
                    #expect(sameBits(got, single),
                            "\(t.testDescription), \(threads) threads, shared rows \(shared)")
                }
            }
        }
    }

    /// Several KC passes and NC blocks: a depth past the kernel's KC, and more columns than NC.
    @Test func deepAndWideProducts() {
        let kernel = GEMMKernelKind.active, blocking = kernel.blocking
        for t in [SegmentCase(m: 14, k: blocking.kc + 5, width: 45, segments: 2, beta: 1, gap: 1),
                  SegmentCase(m: 5, k: 3, width: blocking.nc / 3 + 7, segments: 4, pad: 2)] {
            let a = values(t.m * t.lda, seed: 7), b = values(t.segments * t.bStride, seed: 8)
            let c = values(t.segments * t.cStride, seed: 9)
            let expected = run(t, a: a, b: b, c: c, kernel: kernel, segmented: false, direct: false)
            let got = run(t, a: a, b: b, c: c, kernel: kernel, segmented: true, direct: false)
            #expect(sameBits(got, expected), "\(t.testDescription)")
        }
    }

    /// Runs of columns inside one segment, from a column offset (a block of C cut mid-segment).
    @Test func runsFollowTheSegments() {
        let segments = GEMMColumnSegments(width: 5, bStride: 100, cStride: 70, origin: 3)
        var runs: [[Int]] = []
        segments.forEachRun(0..<9) { first, count, segment, within in runs.append([first, count, segment, within]) }
        #expect(runs == [[0, 2, 0, 3], [2, 5, 1, 0], [7, 2, 2, 0]])
        #expect(segments.place(7) == (segment: 2, within: 0))
        var none = 0
        segments.forEachRun(4..<4) { _, _, _, _ in none += 1 }
        #expect(none == 0)
    }
}

// MARK: - Depth segments

/// A product whose depth is `segments` runs of `width` steps: segment `s` of op(A) is an
/// `m x width` matrix (stored transposed with `transA`) at `s * aStride`, of op(B) a `width x n`
/// one at `s * bStride`, each with `pad` extra floats per stored row and `gap` after it.
private struct DepthCase: CustomTestStringConvertible, Sendable {
    var m: Int, n: Int, width: Int, segments: Int
    var transA = false, transB = false
    var alpha: Float = 1, beta: Float = 0
    var pad = 0, gap = 0

    var k: Int { width * segments }
    var lda: Int { (transA ? m : width) + pad }
    var ldb: Int { (transB ? width : n) + pad }
    var aStride: Int { (transA ? width : m) * lda + gap }
    var bStride: Int { (transB ? n : width) * ldb + gap }

    var testDescription: String {
        "\(m)x\(n)x(\(segments)x\(width))\(transA ? " At" : "")\(transB ? " Bt" : "") alpha \(alpha) beta \(beta)"
    }

    /// op(A) and op(B) gathered into one `m x k` and one `k x n` row-major matrix.
    func gathered(a: [Float], b: [Float]) -> (a: [Float], b: [Float]) {
        var ga = [Float](repeating: 0, count: m * k), gb = [Float](repeating: 0, count: k * n)
        for s in 0..<segments {
            for p in 0..<width {
                for i in 0..<m { ga[i * k + s * width + p] = a[s * aStride + (transA ? p * lda + i : i * lda + p)] }
                for j in 0..<n { gb[(s * width + p) * n + j] = b[s * bStride + (transB ? j * ldb + p : p * ldb + j)] }
            }
        }
        return (ga, gb)
    }
}

/// C after the depth-segmented product, or (`gathered: true`) after one product on the gathered
/// operands; always the packed path.
private func run(_ t: DepthCase, a: [Float], b: [Float], c: [Float], kernel: GEMMKernelKind, gathered: Bool,
                 threads: Int = 1, sharedRowTiles: Int = GEMM.minimumSharedRowTiles) -> [Float] {
    var c = c
    let (ga, gb) = gathered ? t.gathered(a: a, b: b) : (a, b)
    ga.withUnsafeBufferPointer { a in
        gb.withUnsafeBufferPointer { b in
            c.withUnsafeMutableBufferPointer { c in
                var problem = GEMMProblem(m: t.m, n: t.n, k: t.k, alpha: t.alpha, beta: t.beta,
                                          a: a.baseAddress!, lda: gathered ? t.k : t.lda, transA: gathered ? false : t.transA,
                                          b: b.baseAddress!, ldb: gathered ? t.n : t.ldb, transB: gathered ? false : t.transB,
                                          c: c.baseAddress!, ldc: t.n)
                if !gathered { problem.depthSegments = GEMMDepthSegments(width: t.width, aStride: t.aStride, bStride: t.bStride) }
                GEMM.run(problem, kernel: kernel, threads: threads, direct: false,
                         parallelThreshold: threads > 1 ? 0 : GEMM.parallelThreshold, minimumSharedRowTiles: sharedRowTiles)
            }
        }
    }
    return c
}

extension GEMMSegmentTests {
    /// Depth segments give the bits of one product on the gathered operands: every transpose
    /// combination and micro-kernel, runs shorter than a packing step, runs across KC passes,
    /// and on 2 and 3 threads (a team sharing packing, and blocks of C).
    @Test(arguments: GEMMKernelKind.allCases)
    func depthSegmentsMatchTheGatheredProduct(kernel: GEMMKernelKind) {
        let kc = kernel.blocking.kc
        let shapes = [DepthCase(m: 13, n: 37, width: 1, segments: 9, alpha: 0.5, beta: -2, pad: 1),
                      DepthCase(m: 25, n: 40, width: 17, segments: 3, pad: 2, gap: 3),
                      DepthCase(m: 12, n: 32, width: 16, segments: 4, beta: 1),
                      DepthCase(m: 30, n: 19, width: 49, segments: 4, gap: 1),
                      DepthCase(m: 7, n: 9, width: kc / 2 + 3, segments: 3)]       // runs across KC passes
        for shape in shapes {
            for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
                var t = shape
                t.transA = transA
                t.transB = transB
                let a = values(t.segments * t.aStride, seed: 11), b = values(t.segments * t.bStride, seed: 12)
                let c = values(t.m * t.n, seed: 13)
                let expected = run(t, a: a, b: b, c: c, kernel: kernel, gathered: true)
                #expect(expected != c, "\(t.testDescription): the product wrote nothing")
                #expect(sameBits(run(t, a: a, b: b, c: c, kernel: kernel, gathered: false), expected), "\(t.testDescription)")
                for threads in 2...3 {
                    for shared in [0, Int.max] {
                        let got = run(t, a: a, b: b, c: c, kernel: kernel, gathered: false, threads: threads, sharedRowTiles: shared)
                        #expect(sameBits(got, expected), "\(t.testDescription), \(threads) threads, shared rows \(shared)")
                    }
                }
            }
        }
    }
}
