// The blocked SGEMM: the five loops of BLIS around a micro-kernel, on one thread or on a team
// of threads sharing the packed B block.
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
// (`multiplyRows`, the same operations per row), or compute only the left half of a tile whose
// valid columns all lie there (`multiplyLeftHalf`, the same operations per element).
//
// Every element of C is computed by the same sequence of operations whatever the block sizes
// MC and NC, so splitting C across threads (GEMM.swift) does not change the result. KC
// depends only on k.
//
// On a team (runShared), loop 4's packing of op(B) is split into shares of NR panels, one per
// thread, followed by a barrier; loop 3 is split into one range of MR-row tiles per thread,
// each packing its own A blocks; a second barrier keeps the B block until every thread is
// done with it. The threads together pack what one thread packs (with one block of C per
// thread, every thread packs all of op(A) or all of op(B)).

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

/// The five-loop blocked SGEMM with micro-kernel `Kernel`: on one thread (``run(_:)``), or on a
/// team of threads that share each packed block of op(B) (``runShared(_:threads:)``).
enum GEMMBlocked<Kernel: GEMMMicroKernel> {
    /// The block sizes for `problem`: KC, MC and NC balanced over k, m and n.
    static func blocks(_ problem: GEMMProblem) -> (kc: Int, mc: Int, nc: Int) {
        let blocking = Kernel.blocking
        return (GEMMBlocking.balanced(problem.k, limit: blocking.kc, granule: 1),
                GEMMBlocking.balanced(problem.m, limit: blocking.mc, granule: Kernel.mr),
                GEMMBlocking.balanced(problem.n, limit: blocking.nc, granule: Kernel.nr))
    }

    /// Computes `problem` (m, n, k > 0) on the calling thread.
    static func run(_ problem: GEMMProblem) {
        let (kcMax, mcMax, ncMax) = blocks(problem)
        let bPacked = GEMMScratch(floats: ncMax * kcMax)
        defer { bPacked.deallocate() }
        let rows = RowBlockWorker(mcMax: mcMax, kcMax: kcMax)
        defer { rows.deallocate() }
        for jc in stride(from: 0, to: problem.n, by: ncMax) {                 // loop 5
            let nc = min(ncMax, problem.n - jc)
            for pc in stride(from: 0, to: problem.k, by: kcMax) {             // loop 4
                let kc = min(kcMax, problem.k - pc)
                packB(problem, panels: 0..<(nc + Kernel.nr - 1) / Kernel.nr, jc: jc, nc: nc, pc: pc, kc: kc,
                      into: bPacked.floats)
                rows.multiply(problem, rows: 0..<problem.m, jc: jc, nc: nc, pc: pc, kc: kc, bPacked: bPacked.floats)
            }
        }
    }

    /// Computes `problem` (m, n, k > 0) on `threads` threads at once that share the packed
    /// blocks of op(B) (``runMember(_:team:member:)``). Returns false, having done nothing, when
    /// the worker pool cannot give it `threads` threads together (it is busy).
    static func runShared(_ problem: GEMMProblem, threads: Int) -> Bool {
        let (kcMax, _, ncMax) = blocks(problem)
        let bPacked = GEMMScratch(floats: ncMax * kcMax)
        defer { bPacked.deallocate() }
        let team = GEMMTeam(size: threads, bPacked: bPacked.floats)
        return WorkerPool.shared.runTogether(threads) { member in runMember(problem, team: team, member: member) }
    }

    /// Computes `problem` as thread `member` of `team`: runs on `team.size` threads at once
    /// (a barrier waits for all of them), each with its own `member` index.
    ///
    /// For every (jc, pc) block the members pack one share each of the NR panels of op(B) into
    /// the team's buffer, wait for each other, then each runs loop 3 over its own rows of C
    /// (cut on MR boundaries) with its own packed A blocks. Nothing is packed twice and every
    /// element of C goes through the same kernel calls as in ``run(_:)``.
    static func runMember(_ problem: GEMMProblem, team: GEMMTeam, member: Int) {
        let (kcMax, _, ncMax) = blocks(problem)
        let myRows = GEMM.part(problem.m, parts: team.size, index: member, granule: Kernel.mr)
        let mcMax = GEMMBlocking.balanced(Swift.max(1, myRows.count), limit: Kernel.blocking.mc, granule: Kernel.mr)
        let rows = RowBlockWorker(mcMax: mcMax, kcMax: kcMax)
        defer { rows.deallocate() }
        var first = true
        for jc in stride(from: 0, to: problem.n, by: ncMax) {                 // loop 5
            let nc = min(ncMax, problem.n - jc)
            let panels = (nc + Kernel.nr - 1) / Kernel.nr
            for pc in stride(from: 0, to: problem.k, by: kcMax) {             // loop 4
                let kc = min(kcMax, problem.k - pc)
                if !first { team.barrier() }          // everyone is done with the previous B block
                first = false
                packB(problem, panels: GEMM.part(panels, parts: team.size, index: member, granule: 1),
                      jc: jc, nc: nc, pc: pc, kc: kc, into: team.bPacked)
                team.barrier()                        // the B block is complete
                if !myRows.isEmpty {
                    rows.multiply(problem, rows: myRows, jc: jc, nc: nc, pc: pc, kc: kc, bPacked: team.bPacked)
                }
            }
        }
    }

    /// Packs NR panels `panels` of op(B)[pc ..< pc + kc, jc ..< jc + nc] to their place in the
    /// block at `bPacked` (panel `q` at `q * NR * kc`, as packing the whole block puts it).
    static func packB(_ problem: GEMMProblem, panels: Range<Int>, jc: Int, nc: Int, pc: Int, kc: Int,
                      into bPacked: UnsafeMutablePointer<Float>) {
        let first = panels.lowerBound &* Kernel.nr, columns = Swift.min(nc, panels.upperBound &* Kernel.nr) - first
        guard columns > 0 else { return }
        let packing = KernelProfile.begin()
        if let segments = problem.segments {
            packSegmentedB(problem, segments: segments, columns: (jc + first)..<(jc + first + columns), pc: pc, kc: kc,
                           into: bPacked + first &* kc)
        } else if let depthSegments = problem.depthSegments {
            // Each run of the depth inside one segment, into its steps of the panels.
            depthSegments.forEachRun(pc..<(pc + kc)) { start, count, _, _ in
                GEMMPacking.packB(Kernel.self, kc: count, nc: columns, panelDepth: kc,
                                  b: problem.bPointer(depth: start, column: jc + first), ldb: problem.ldb,
                                  transB: problem.transB, into: bPacked + first &* kc + (start - pc) &* Kernel.nr)
            }
        } else {
            GEMMPacking.packB(Kernel.self, kc: kc, nc: columns, b: problem.bPointer(depth: pc, column: jc + first),
                              ldb: problem.ldb, transB: problem.transB, into: bPacked + first &* kc)
        }
        KernelProfile.end(packing, .packing)
    }

    /// ``packB(_:panels:jc:nc:pc:kc:into:)`` for op(B) in segments: `columns` (of the product,
    /// starting on a panel boundary) as NR panels at `bPacked`. Panels inside one segment are
    /// packed as usual (consecutive ones together); a panel that spans segments is copied piece
    /// by piece.
    static func packSegmentedB(_ problem: GEMMProblem, segments: GEMMColumnSegments, columns: Range<Int>,
                               pc: Int, kc: Int, into bPacked: UnsafeMutablePointer<Float>) {
        let nr = Kernel.nr
        var panel = columns.lowerBound
        while panel < columns.upperBound {
            let dst = bPacked + (panel &- columns.lowerBound) &* kc
            let width = Swift.min(nr, columns.upperBound &- panel)
            let (_, within) = segments.place(panel)
            if within &+ width <= segments.width {
                // Whole panels from this segment: as many as lie inside it.
                let inside = Swift.min(columns.upperBound &- panel, segments.width &- within)
                let extent = inside >= nr ? inside / nr &* nr : inside
                GEMMPacking.packB(Kernel.self, kc: kc, nc: extent, b: problem.bPointer(depth: pc, column: panel),
                                  ldb: problem.ldb, transB: false, into: dst)
                panel &+= extent
                continue
            }
            // One panel across segments: each depth step's pieces, then zeros past the columns.
            segments.forEachRun(panel..<(panel &+ width)) { first, count, _, _ in
                let src = problem.bPointer(depth: pc, column: first), x0 = first &- panel
                for p in 0..<kc {
                    ConvLoops.copy(dst + (p &* nr &+ x0), src + p &* problem.ldb, count)
                }
            }
            if width < nr {
                for p in 0..<kc { (dst + (p &* nr &+ width)).update(repeating: 0, count: nr &- width) }
            }
            panel &+= width
        }
    }

    /// One thread's loop 3: packs MC-row blocks of op(A) into its own buffer and multiplies them
    /// by a packed B block.
    struct RowBlockWorker {
        let mcMax: Int
        /// The packed A block, then a tile for the edges of C (one 64-byte aligned allocation).
        let aPacked: UnsafeMutablePointer<Float>, edgeTile: UnsafeMutablePointer<Float>
        private let scratch: GEMMScratch

        init(mcMax: Int, kcMax: Int) {
            self.mcMax = mcMax
            let aFloats = GEMMBlocking.roundUp(mcMax * kcMax, to: 16)
            scratch = GEMMScratch(floats: aFloats + Kernel.mr * Kernel.nr)
            aPacked = scratch.floats
            edgeTile = scratch.floats + aFloats
        }

        func deallocate() { scratch.deallocate() }

        /// `C[rows, jc ..< jc + nc] (+)= op(A)[rows, pc ..< pc + kc] · Bblock`; the first KC pass
        /// applies the caller's beta, later ones accumulate.
        func multiply(_ problem: GEMMProblem, rows: Range<Int>, jc: Int, nc: Int, pc: Int, kc: Int,
                      bPacked: UnsafeMutablePointer<Float>) {
            let beta = pc == 0 ? problem.beta : 1
            for ic in stride(from: rows.lowerBound, to: rows.upperBound, by: mcMax) {   // loop 3
                let mc = Swift.min(mcMax, rows.upperBound - ic)
                let packingA = KernelProfile.begin()
                if let depthSegments = problem.depthSegments {
                    depthSegments.forEachRun(pc..<(pc + kc)) { start, count, _, _ in
                        GEMMPacking.packA(Kernel.self, mc: mc, kc: count, panelDepth: kc, a: problem.aPointer(row: ic, depth: start),
                                          lda: problem.lda, transA: problem.transA, into: aPacked + (start - pc) &* Kernel.mr)
                    }
                } else {
                    GEMMPacking.packA(Kernel.self, mc: mc, kc: kc, a: problem.aPointer(row: ic, depth: pc),
                                      lda: problem.lda, transA: problem.transA, into: aPacked)
                }
                KernelProfile.end(packingA, .packing)
                let multiplying = KernelProfile.begin()
                if let segments = problem.segments {
                    var blockSegments = segments
                    blockSegments.origin &+= jc
                    macroKernel(mc: mc, nc: nc, kc: kc, a: aPacked, b: bPacked, alpha: problem.alpha, beta: beta,
                                c: problem.c + ic * problem.ldc, ldc: problem.ldc, segments: blockSegments,
                                edgeTile: edgeTile)
                } else {
                    macroKernel(mc: mc, nc: nc, kc: kc, a: aPacked, b: bPacked, alpha: problem.alpha, beta: beta,
                                c: problem.c + ic * problem.ldc + jc, ldc: problem.ldc, segments: nil,
                                edgeTile: edgeTile)
                }
                KernelProfile.endProduct(multiplying, m: mc, n: nc, k: kc)
            }
        }
    }

    /// Loops 2 and 1: every MR x NR tile of the `mc x nc` block of C at `c` (with `segments`,
    /// the block's column 0 is the segments' column 0 and `c` points at its row 0 there).
    @inline(__always)
    static func macroKernel(
        mc: Int, nc: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, segments: GEMMColumnSegments?,
        edgeTile: UnsafeMutablePointer<Float>
    ) {
        let mr = Kernel.mr, nr = Kernel.nr
        // The full-height tiles over each B micro-panel share out the prefetching of the next one.
        let step = GEMMPrefetch.panelShareStep(tiles: Swift.max(1, mc / mr), depth: kc, panelFloats: nr &* kc)
        let spreadsRequests = kc <= GEMMPrefetch.nextTileDepthLimit
        for jr in stride(from: 0, to: nc, by: nr) {                               // loop 2
            let columns = min(nr, nc &- jr)
            let bPanel = b + jr &* kc
            let nextPanel = UnsafeRawPointer(bPanel + nr &* kc)
            // C's column jr, and whether the panel's columns run on into the next segment.
            var cColumn = c + jr, spansSegments = false
            if let segments {
                let at = segments.locate(jr, stride: segments.cStride)
                cColumn = c + (at.segmentOffset &+ at.within)
                spansSegments = at.within &+ columns > segments.width
            }
            for ir in stride(from: 0, to: mc, by: mr) {                           // loop 1
                let rows = min(mr, mc &- ir)
                let aPanel = a + ir &* kc
                let cTile = cColumn + ir &* ldc
                if rows == mr && columns == nr && !spansSegments {
                    // A slice of the next B panel each (none after the block's last panel), and
                    // the lines of the next full tile of C (the first tile asks for its own; in
                    // segments, the first of each panel, and only the next row of tiles is asked for).
                    let lastPanel = jr &+ nr >= nc
                    var nextTile: UnsafeMutablePointer<Float>? = nil, ownTile = !spreadsRequests
                    if spreadsRequests && segments == nil {
                        nextTile = GEMMPrefetch.nextFullTile(row: ir, column: jr, mc: mc, nc: nc, mr: mr, nr: nr, ldc: ldc)
                            .map { c + $0 }
                        ownTile = ir == 0 && jr == 0
                    } else if spreadsRequests {
                        nextTile = ir &+ 2 &* mr <= mc ? cTile + mr &* ldc : nil
                        ownTile = ir == 0
                    }
                    let prefetch = GEMMPrefetch(
                        start: lastPanel ? UnsafeRawPointer(aPanel) : nextPanel + (ir / mr) &* step &* kc,
                        step: lastPanel ? 0 : step, nextTile: nextTile, requestsOwnTile: ownTile)
                    Kernel.multiply(depth: kc, a: aPanel, b: bPanel, alpha: alpha, beta: beta, c: cTile, ldc: ldc,
                                    prefetch: prefetch)
                } else if columns == nr && !spansSegments,
                          Kernel.multiplyRows(rows, depth: kc, a: aPanel, b: bPanel, alpha: alpha, beta: beta, c: cTile, ldc: ldc) {
                    // The last rows of C with a kernel of their own.
                } else {
                    // Edge of C: the raw products go to the buffer (of only the left half of
                    // the tile where the rest is past the edge, if the kernel can), then the valid
                    // part is combined into C exactly as `GEMMSIMD.update` does for full tiles.
                    if columns > nr / 2 || !Kernel.multiplyLeftHalf(depth: kc, a: aPanel, b: bPanel, c: edgeTile, ldc: nr) {
                        Kernel.multiply(depth: kc, a: aPanel, b: bPanel, alpha: 1, beta: 0, c: edgeTile, ldc: nr,
                                        prefetch: .none(at: UnsafeRawPointer(aPanel)))
                    }
                    if spansSegments, let segments {
                        segments.forEachRun(jr..<(jr &+ columns)) { first, count, segment, within in
                            combineEdge(edgeTile + (first &- jr), rows: rows, columns: count, alpha: alpha, beta: beta,
                                        into: c + (segment &* segments.cStride &+ ir &* ldc &+ within), ldc: ldc)
                        }
                    } else {
                        combineEdge(edgeTile, rows: rows, columns: columns, alpha: alpha, beta: beta, into: cTile, ldc: ldc)
                    }
                }
            }
        }
    }

    /// `C[rows, columns] = alpha * T + beta * C` for the edge tile's products `t` (rows `NR`
    /// apart), exactly as `GEMMSIMD.update` combines full tiles.
    @inline(__always)
    static func combineEdge(_ t: UnsafePointer<Float>, rows: Int, columns: Int, alpha: Float, beta: Float,
                            into c: UnsafeMutablePointer<Float>, ldc: Int) {
        for r in 0..<rows {
            let tRow = t + r &* Kernel.nr, cRow = c + r &* ldc
            var j = 0
            while j &+ 8 <= columns {
                GEMMSIMD.update(VectorMath.load(tRow + j, as: SIMD8<Float>.self), cRow + j, alpha: alpha, beta: beta)
                j &+= 8
            }
            while j < columns {
                cRow[j] = GEMMSIMD.combine(tRow[j], cRow[j], alpha: alpha, beta: beta)
                j &+= 1
            }
        }
    }
}

/// A 64-byte aligned float buffer for packed blocks. Blocks of 64 KiB and more come from
/// ``ScratchPool`` and go back to it: a fresh multi-megabyte block costs a page fault per 4 KiB
/// on its first touch, on every call (BERT-base's 768 x 3072 weights pack into 9 MiB; the
/// forward's packing took 30 thousand faults a training step). Smaller ones come from the
/// system allocator, which reuses them without faults.
struct GEMMScratch {
    let floats: UnsafeMutablePointer<Float>
    private let pooled: ScratchPool.Buffer?

    /// Floats from which a block is pooled.
    static let pooledFloats = 16 << 10

    init(floats count: Int) {
        if count >= GEMMScratch.pooledFloats {
            let buffer = ScratchPool.take(count)
            floats = buffer.pointer
            pooled = buffer
        } else {
            floats = ScratchPool.allocate(count)
            pooled = nil
        }
    }

    func deallocate() {
        if let pooled { ScratchPool.give(pooled) } else { floats.deallocate() }
    }
}

/// The threads of one shared-packing product (``GEMMBlocked/runShared(_:threads:)``): how many,
/// the packed B block they share, and the barrier between packing it and using it.
final class GEMMTeam: Sendable {
    let size: Int
    nonisolated(unsafe) let bPacked: UnsafeMutablePointer<Float>
    private let barrierState: SpinBarrier

    init(size: Int, bPacked: UnsafeMutablePointer<Float>) {
        self.size = size
        self.bPacked = bPacked
        barrierState = SpinBarrier(count: size)
    }

    /// Waits until all `size` members have called it (the wait counts as `.threadWait`).
    func barrier() {
        let waiting = KernelProfile.begin()
        barrierState.wait()
        KernelProfile.end(waiting, .threadWait)
    }
}
