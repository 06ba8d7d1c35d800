// Single-precision GEMM: the public entry point, the problem description and the split of
// large problems across threads.
//
// Paths, decided from the shape alone (never from the thread count, so results are identical
// for any number of threads):
//   * m, n == 0: nothing; k == 0 or alpha == 0: C = beta * C.
//   * matrix-vector shapes (at most 4 rows or columns of C) and tiny products: direct SIMD
//     loops, no packing (GEMMDirect.swift).
//   * everything else: the BLIS-style packed and blocked algorithm (GEMMBlocked.swift) with
//     the micro-kernel for this CPU (GEMMMicroKernel.swift). Large products run on several
//     threads: products with enough rows on a team that packs each block of op(B) together
//     and splits the rows of C (each thread packs its own rows of op(A)); others are cut into
//     one block of C per thread, each running the blocked algorithm with its own packing.
//
// The kernels are generic and `@inline(__always)` across these files, so full speed needs
// whole-module optimisation (SwiftPM release builds; `swiftc -O -wmo`), like the other
// kernels of this package.

extension Kernels {
    /// Single-precision general matrix multiply on row-major matrices:
    /// `C = alpha * op(A) * op(B) + beta * C`, where `op(A)` is `m x k` and `op(B)` is `k x n`.
    ///
    /// With `transA`, `a` holds A as a `k x m` row-major matrix (leading dimension `lda`), and
    /// likewise for `transB` (`n x k`). When `beta == 0`, C is not read (NaNs in C are ignored).
    /// When `k == 0` or `alpha == 0`, A and B are not read and C becomes `beta * C`.
    ///
    /// Large products run on up to `threads` threads; the result does not depend on `threads`
    /// (each element of C is always summed in the same order).
    ///
    /// ```swift
    /// // Y[batch x out] = X[batch x in] · W[out x in]^T
    /// Kernels.sgemm(transA: false, transB: true, m: batch, n: out, k: inFeatures,
    ///               alpha: 1, a: x, lda: inFeatures, b: w, ldb: inFeatures,
    ///               beta: 0, c: y, ldc: out)
    /// ```
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
        threads: Int = Kernels.maxThreads
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative dimension")
        precondition(ldc >= n && lda >= (transA ? m : k) && ldb >= (transB ? k : n), "sgemm: leading dimension too small")
        let problem = GEMMProblem(m: m, n: n, k: k, alpha: alpha, beta: beta,
                                  a: a, lda: lda, transA: transA, b: b, ldb: ldb, transB: transB, c: c, ldc: ldc)
        GEMM.run(problem, kernel: .active, threads: threads, parallelThreshold: Kernels.parallelThreshold(GEMM.parallelThreshold))
    }

    /// The register tile of the SGEMM micro-kernel this build runs on this CPU: `mr` rows by
    /// `nr` columns of C (for example 6 x 16 with AVX2, 12 x 32 with AVX-512).
    public static var microKernelShape: (mr: Int, nr: Int) { GEMMKernelKind.active.shape }
}

extension Kernels {
    /// `sgemm` whose op(B) and C are stored as equal runs of columns (``GEMMColumnSegments``):
    /// the samples of an NCHW batch side by side, `C[i] = op(A) · B[i]` for every sample `i` in
    /// one product, without copying them into one matrix. Same values as one `sgemm` on the
    /// gathered matrices (and as one per sample). `transB` must be false.
    static func sgemm(
        m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int, transA: Bool,
        b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
        segments: GEMMColumnSegments, threads: Int
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative dimension")
        precondition(segments.width > 0 && ldc >= min(n, segments.width) && ldb >= min(n, segments.width)
                     && lda >= (transA ? m : k), "sgemm: leading dimension too small")
        var problem = GEMMProblem(m: m, n: n, k: k, alpha: alpha, beta: beta,
                                  a: a, lda: lda, transA: transA, b: b, ldb: ldb, transB: false, c: c, ldc: ldc)
        problem.segments = segments
        GEMM.run(problem, kernel: .active, threads: threads, parallelThreshold: Kernels.parallelThreshold(GEMM.parallelThreshold))
    }
}

extension Kernels {
    /// `sgemm` whose depth is stored in segments (``GEMMDepthSegments``): `C = alpha * sum over
    /// segments i of op(A[i]) · op(B[i]) + beta * C` as one product, for a weight gradient over
    /// the samples of an NCHW batch without copying them into one matrix. Same values as one
    /// `sgemm` on the gathered matrices.
    static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
        depthSegments: GEMMDepthSegments, threads: Int
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative dimension")
        precondition(depthSegments.width > 0 && ldc >= n && lda >= (transA ? m : min(k, depthSegments.width))
                     && ldb >= (transB ? min(k, depthSegments.width) : n), "sgemm: leading dimension too small")
        var problem = GEMMProblem(m: m, n: n, k: k, alpha: alpha, beta: beta,
                                  a: a, lda: lda, transA: transA, b: b, ldb: ldb, transB: transB, c: c, ldc: ldc)
        problem.depthSegments = depthSegments
        GEMM.run(problem, kernel: .active, threads: threads, parallelThreshold: Kernels.parallelThreshold(GEMM.parallelThreshold))
    }
}

/// Columns of op(B) and C stored as equal segments at fixed distances instead of one matrix:
/// column `j` of the product is column `j % width` of segment `j / width`, whose columns of
/// op(B) start at `b + (j / width) * bStride` and of C at `c + (j / width) * cStride` (each
/// segment a matrix with the problem's `ldb` and `ldc`). For an NCHW batch, a segment is one
/// sample's plane. op(B) must not be transposed.
struct GEMMColumnSegments {
    /// Columns per segment.
    var width: Int
    /// Floats from one segment of op(B), and of C, to the next.
    var bStride: Int, cStride: Int
    /// The product's column 0 is this column of the layout (a block of C cut out of a larger
    /// product keeps its segments where they were).
    var origin = 0

    /// The segment of the product's column `column`, and the column within it.
    @inline(__always)
    func place(_ column: Int) -> (segment: Int, within: Int) {
        GEMMSegmentRuns.place(origin &+ column, width: width)
    }

    /// `segment * stride` for the segment of the product's column `column` (`stride`: `bStride`
    /// or `cStride`), and the column within it.
    @inline(__always)
    func locate(_ column: Int, stride: Int) -> (segmentOffset: Int, within: Int) {
        GEMMSegmentRuns.locate(origin &+ column, width: width, stride: stride)
    }

    /// Calls `body(first, count, segment, within)` for each run of `columns` (columns of the
    /// product) inside one segment, in order.
    @inline(__always)
    func forEachRun(_ columns: Range<Int>, _ body: (_ first: Int, _ count: Int, _ segment: Int, _ within: Int) -> Void) {
        GEMMSegmentRuns.forEach(columns, width: width, origin: origin, body)
    }
}

/// The depth of a product stored as equal segments at fixed distances: depth step `p` is step
/// `p % width` of segment `p / width`, whose op(A) starts at `a + (p / width) * aStride` and
/// op(B) at `b + (p / width) * bStride` (each segment with the problem's `lda` and `ldb`). For
/// an NCHW batch, a weight gradient `dW = sum over samples of dY[i] · X[i]^T` is one product
/// whose depth runs over the samples' planes.
struct GEMMDepthSegments {
    /// Depth steps per segment.
    var width: Int
    /// Floats from one segment of op(A), and of op(B), to the next.
    var aStride: Int, bStride: Int

    /// `segment * stride` for the segment of depth step `depth` (`stride`: `aStride` or
    /// `bStride`), and the step within it.
    @inline(__always)
    func locate(_ depth: Int, stride: Int) -> (segmentOffset: Int, within: Int) {
        GEMMSegmentRuns.locate(depth, width: width, stride: stride)
    }

    /// Calls `body(first, count, segment, within)` for each run of `depths` inside one segment.
    @inline(__always)
    func forEachRun(_ depths: Range<Int>, _ body: (_ first: Int, _ count: Int, _ segment: Int, _ within: Int) -> Void) {
        GEMMSegmentRuns.forEach(depths, width: width, origin: 0, body)
    }
}

/// Index arithmetic shared by column and depth segments.
enum GEMMSegmentRuns {
    /// The segment of `index` (counted from the layout's start) and the index within it.
    @inline(__always)
    static func place(_ index: Int, width: Int) -> (segment: Int, within: Int) {
        let segment = index / width
        return (segment, index &- segment &* width)
    }

    /// `segment * stride` for the segment of `index`, and the index within it: where a layout
    /// whose segments lie `stride` floats apart puts `index`.
    @inline(__always)
    static func locate(_ index: Int, width: Int, stride: Int) -> (segmentOffset: Int, within: Int) {
        let (segment, within) = place(index, width: width)
        return (segment &* stride, within)
    }

    /// Calls `body(first, count, segment, within)` for each run of `range` (counted from `origin`
    /// in the layout) inside one segment, in order.
    @inline(__always)
    static func forEach(_ range: Range<Int>, width: Int, origin: Int,
                        _ body: (_ first: Int, _ count: Int, _ segment: Int, _ within: Int) -> Void) {
        var index = range.lowerBound
        guard index < range.upperBound else { return }
        var (segment, within) = place(origin &+ index, width: width)
        while index < range.upperBound {
            let count = Swift.min(range.upperBound &- index, width &- within)
            body(index, count, segment, within)
            index &+= count
            segment &+= 1
            within = 0
        }
    }
}

/// One call `C = alpha * op(A) * op(B) + beta * C`: shapes, operands and scalars.
struct GEMMProblem {
    var m: Int, n: Int, k: Int
    var alpha: Float, beta: Float
    var a: UnsafePointer<Float>, lda: Int, transA: Bool
    var b: UnsafePointer<Float>, ldb: Int, transB: Bool
    var c: UnsafeMutablePointer<Float>, ldc: Int
    /// op(B) and C stored as segments of columns (nil: one matrix each).
    var segments: GEMMColumnSegments? = nil
    /// op(A) and op(B) stored as segments of the depth (nil: one matrix each). Not together
    /// with `segments`.
    var depthSegments: GEMMDepthSegments? = nil

    /// Address of op(A)[row, depth].
    @inline(__always)
    func aPointer(row: Int, depth: Int) -> UnsafePointer<Float> {
        var base = a, depth = depth
        if let depthSegments {
            let at = depthSegments.locate(depth, stride: depthSegments.aStride)
            base += at.segmentOffset
            depth = at.within
        }
        return transA ? base + depth * lda + row : base + row * lda + depth
    }

    /// Address of op(B)[depth, column].
    @inline(__always)
    func bPointer(depth: Int, column: Int) -> UnsafePointer<Float> {
        var base = b, column = column, depth = depth
        if let segments {
            let at = segments.locate(column, stride: segments.bStride)
            base += at.segmentOffset
            column = at.within
        }
        if let depthSegments {
            let at = depthSegments.locate(depth, stride: depthSegments.bStride)
            base += at.segmentOffset
            depth = at.within
        }
        return transB ? base + column * ldb + depth : base + depth * ldb + column
    }

    /// Address of C[row, column].
    @inline(__always)
    func cPointer(row: Int, column: Int) -> UnsafeMutablePointer<Float> {
        guard let segments else { return c + row * ldc + column }
        let at = segments.locate(column, stride: segments.cStride)
        return c + at.segmentOffset + row * ldc + at.within
    }

    /// The same product restricted to the block `C[rows, columns]` (full depth).
    func block(rows: Range<Int>, columns: Range<Int>) -> GEMMProblem {
        var block = self
        block.m = rows.count
        block.n = columns.count
        block.a = aPointer(row: rows.lowerBound, depth: 0)
        if segments != nil {
            block.segments!.origin += columns.lowerBound
            block.c = c + rows.lowerBound * ldc
        } else {
            block.b = bPointer(depth: 0, column: columns.lowerBound)
            block.c = c + rows.lowerBound * ldc + columns.lowerBound
        }
        return block
    }

    /// The product as one problem per run of columns inside a segment, none of them segmented
    /// (itself when it has no segments).
    func unsegmentedParts() -> [GEMMProblem] {
        guard let segments else { return [self] }
        var parts: [GEMMProblem] = []
        segments.forEachRun(0..<n) { first, count, _, _ in
            var part = self
            part.segments = nil
            part.n = count
            part.b = bPointer(depth: 0, column: first)
            part.c = cPointer(row: 0, column: first)
            parts.append(part)
        }
        return parts
    }

    /// `C = beta * C` (C only written when `beta == 0`).
    func scaleC() {
        for part in unsegmentedParts() {
            for i in 0..<part.m {
                let row = part.c + i * part.ldc
                if beta == 0 {
                    row.update(repeating: 0, count: part.n)
                } else if beta != 1 {
                    for j in 0..<part.n { row[j] *= beta }
                }
            }
        }
    }
}

/// Path selection and threading for `Kernels.sgemm` (internal).
enum GEMM {
    /// Products with fewer multiply-adds than this run on one thread. Measured on the 2-core
    /// Zen 3 VM this was tuned on, where the second thread starts ~80 µs after the first: a
    /// 192^3 product (~80 µs on one core) is where two threads start to win.
    static let parallelThreshold = 192 * 192 * 192

    /// A product split across threads shares its packed B blocks (``sharesPacking(m:threads:tile:minimumRowTiles:)``)
    /// when C has at least this many MR-row tiles per thread: the members then get near-equal rows.
    static let minimumSharedRowTiles = 8

    /// Computes `problem` with micro-kernel `kernel` on up to `threads` threads. Tests use
    /// `direct: false` to force the packed path for any shape, `parallelThreshold` to split
    /// small products across threads and `minimumSharedRowTiles` to pick how they are split
    /// (0: always a team sharing the packed B; `Int.max`: always one block of C per thread).
    static func run(_ problem: GEMMProblem, kernel: GEMMKernelKind, threads: Int, direct: Bool = true,
                    parallelThreshold: Int = GEMM.parallelThreshold,
                    minimumSharedRowTiles: Int = GEMM.minimumSharedRowTiles) {
        let (m, n, k) = (problem.m, problem.n, problem.k)
        if m == 0 || n == 0 { return }
        if k == 0 || problem.alpha == 0 {
            problem.scaleC()
            return
        }
        // (The direct loops read one matrix per operand: products over depth segments are packed.)
        if direct && problem.depthSegments == nil && GEMMDirect.handles(m: m, n: n, k: k) {
            for part in problem.unsegmentedParts() { GEMMDirect.run(part, threads: threads) }
            return
        }
        let grid = threadGrid(m: m, n: n, k: k, threads: threads, tile: kernel.shape, parallelThreshold: parallelThreshold)
        let team = grid.rows * grid.columns
        if team == 1 {
            kernel.runBlocked(problem)
            return
        }
        // Tall enough: the threads pack each B block together and split its rows (nothing is
        // packed twice). Needs all of them at once, which only the worker pool promises.
        if sharesPacking(m: m, threads: team, tile: kernel.shape, minimumRowTiles: minimumSharedRowTiles),
           kernel.runShared(problem, threads: team) {
            return
        }
        // One block of C per thread, cut on tile boundaries; each block runs the complete
        // blocked algorithm (its own packing), so there is no synchronisation inside.
        let tile = kernel.shape
        Kernels.parallelFor(team, threads: threads) { index in
            let rows = part(m, parts: grid.rows, index: index / grid.columns, granule: tile.mr)
            let columns = part(n, parts: grid.columns, index: index % grid.columns, granule: tile.nr)
            if !rows.isEmpty && !columns.isEmpty {
                kernel.runBlocked(problem.block(rows: rows, columns: columns))
            }
        }
    }

    /// Whether `threads` threads computing an `m`-row product share its packed B blocks and
    /// split its rows (``GEMMBlocked/runShared(_:threads:)``) rather than each computing a
    /// block of C from its own packing: when there are at least `minimumRowTiles` MR-row tiles
    /// per thread, so the rows split evenly (within one tile of 8).
    ///
    /// Packing a block of op(A) or op(B) once instead of once per thread matters on two
    /// threads: in BERT-base's training step on 2 threads, with one block of C per thread, the
    /// packing took 40-60% more CPU time than on one thread.
    static func sharesPacking(m: Int, threads: Int, tile: (mr: Int, nr: Int),
                              minimumRowTiles: Int = GEMM.minimumSharedRowTiles) -> Bool {
        (m + tile.mr - 1) / tile.mr / threads >= minimumRowTiles
    }

    /// How to cut C across threads: `rows x columns` blocks, one per thread ((1, 1): one
    /// thread). `rows * columns` is also the size of a shared-packing team.
    ///
    /// A block packs all of op(A) for its rows and all of op(B) for its columns, so splitting
    /// the columns repacks A once per column block and vice versa. The grid minimises that
    /// packing, `m / rows + n / columns` per unit of depth, keeping at least one tile per block.
    static func threadGrid(m: Int, n: Int, k: Int, threads: Int, tile: (mr: Int, nr: Int),
                           parallelThreshold: Int = GEMM.parallelThreshold) -> (rows: Int, columns: Int) {
        guard threads > 1, m * n * k >= parallelThreshold else { return (1, 1) }
        let rowTiles = (m + tile.mr - 1) / tile.mr, columnTiles = (n + tile.nr - 1) / tile.nr
        var best = (rows: 1, columns: 1), bestCost = Double.infinity
        for rows in 1...threads where threads % rows == 0 {
            let columns = threads / rows
            guard rows <= rowTiles, columns <= columnTiles else { continue }
            let cost = Double(m) / Double(rows) + Double(n) / Double(columns)
            if cost < bestCost { (best, bestCost) = ((rows, columns), cost) }
        }
        return best
    }

    /// Part `index` of `parts` near-equal ranges covering `0..<total`, cut at multiples of
    /// `granule`.
    static func part(_ total: Int, parts: Int, index: Int, granule: Int) -> Range<Int> {
        let units = (total + granule - 1) / granule
        let lower = min(total, units * index / parts * granule)
        let upper = min(total, units * (index + 1) / parts * granule)
        return lower..<upper
    }
}
