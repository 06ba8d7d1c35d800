// SGEMM micro-kernels: the innermost loop of the blocked GEMM (see GEMMBlocked.swift).
//
// A micro-kernel multiplies one packed `MR x kc` micro-panel of A by one packed `kc x NR`
// micro-panel of B and keeps the whole `MR x NR` block of C in SIMD registers while it walks
// the depth. Each step loads one row of B (NR floats, one `V`), broadcasts MR scalars of A and
// issues MR vector multiply-adds. Only at the end is C touched:
// `C = alpha * acc + beta * C` (C not read when `beta == 0`).
//
// Three tile shapes are compiled into every build; `GEMMKernelKind.active` picks one
// (GEMMKernelKind.swift):
//
//   6 x 16  (V = SIMD16<Float>): AVX2 + FMA, 12 ymm accumulators + 2 for B + 1 broadcast of
//           the 16 registers (as BLIS's Haswell kernel); on arm64, 24 of the 32 NEON q registers.
//  12 x 32  (two SIMD16<Float> per row): AVX-512, 24 zmm accumulators + 2 for B + broadcasts
//           of the 32.
//   6 x 8   (V = SIMD8<Float>): baseline x86-64 (SSE, no FMA): 12 xmm accumulators + 2 for B
//           + broadcast + product temporary = the 16 xmm registers, no spills.

/// A register-tiled kernel `C[MR x NR] = alpha * Apanel · Bpanel + beta * C`.
///
/// Packed layouts (see GEMMPacking.swift): the A micro-panel holds `a[p * mr + r]` = element
/// `(r, p)`; the B micro-panel holds `b[p * nr + j]` = element `(p, j)`.
protocol GEMMMicroKernel {
    /// Rows of the register tile (height of an A micro-panel).
    static var mr: Int { get }
    /// Columns of the register tile (width of a B micro-panel).
    static var nr: Int { get }
    /// Cache block sizes for this tile.
    static var blocking: GEMMBlocking { get }

    /// Multiplies the packed micro-panels over `depth` steps and updates the full tile at `c`.
    /// Meanwhile it makes the requests of `prefetch` (a B stream, the next tile of C).
    static func multiply(depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                         alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                         prefetch: GEMMPrefetch)

    /// The same for only the first `rows < MR` rows of the tile (all NR columns), with the same
    /// operations per row; false, with nothing done, where the kernel has no such variant.
    static func multiplyRows(_ rows: Int, depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                             alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool

    /// The raw products (`alpha = 1`, `beta = 0`) of the first `NR / 2` columns of the tile
    /// into the first `NR / 2` floats of each of the MR rows at `c` (the edge buffer), with the
    /// same operations per element as ``multiply(depth:a:b:alpha:beta:c:ldc:prefetch:)``: for a last
    /// column tile with at most half its columns valid, at half the multiply-adds. False, with
    /// nothing done, where the kernel has no such variant.
    static func multiplyLeftHalf(depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                 c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool
}

extension GEMMMicroKernel {
    static func multiplyRows(_ rows: Int, depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                             alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool { false }

    static func multiplyLeftHalf(depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                 c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool { false }
}

/// 6 x 16 tile: the AVX2 + FMA kernel (16 ymm registers), also used on arm64 NEON.
enum GEMMKernel6x16: GEMMMicroKernel {
    static var mr: Int { 6 }
    static var nr: Int { 16 }
    /// Tuned on Zen 3 (32 KiB L1d, 512 KiB L2): the `kc x 16` B micro-panel (up to 24 KiB)
    /// stays in L1, the `mc x kc` A block (up to 180 KiB) in L2, the `kc x nc` B block in L3.
    /// (KC 256-512 and MC 72-240 are all within a few percent of each other there.)
    static var blocking: GEMMBlocking { GEMMBlocking(mc: 120, kc: 384, nc: 2048) }

    @inline(never)
    static func multiply(depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                         alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                         prefetch: GEMMPrefetch) {
        #if arch(x86_64)
        GEMMTile.rowsOfTwoHalves(SIMD8<Float>.self, rows: 6, panelRows: 6, depth: depth, a: a, b: b,
                                 alpha: alpha, beta: beta, c: c, ldc: ldc, prefetch: prefetch)
        #else
        GEMMTile.sixRows(SIMD16<Float>.self, depth: depth, a: a, b: b, alpha: alpha, beta: beta, c: c, ldc: ldc,
                         prefetch: prefetch)
        #endif
    }

    #if arch(x86_64)
    /// 2 or 4 rows (the last tile of a product whose rows are 2 or 4 past a multiple of 6: 64,
    /// 128, 256, 512 or 1024 output channels), where the full-tile kernel would compute 6 rows
    /// into a buffer.
    @inline(never)
    static func multiplyRows(_ rows: Int, depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                             alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        switch rows {
        case 4: GEMMTile.rowsOfTwoHalves(SIMD8<Float>.self, rows: 4, panelRows: 6, depth: depth, a: a, b: b,
                                         alpha: alpha, beta: beta, c: c, ldc: ldc, prefetch: nil)
        case 2: GEMMTile.rowsOfTwoHalves(SIMD8<Float>.self, rows: 2, panelRows: 6, depth: depth, a: a, b: b,
                                         alpha: alpha, beta: beta, c: c, ldc: ldc, prefetch: nil)
        default: return false
        }
        return true
    }

    /// 6 x 8: the last column tile of products whose width is at most 8 past a multiple of 16
    /// (the 392 positions of 8 planes of 7x7), where the full tile would compute 16 columns.
    @inline(never)
    static func multiplyLeftHalf(depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                 c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        GEMMTile.leftHalf(SIMD8<Float>.self, rows: 6, depth: depth, a: a, b: b, c: c, ldc: ldc)
        return true
    }
    #endif
}

/// 12 x 32 tile: the AVX-512 kernel (32 zmm registers), chosen only for host-CPU builds on a
/// CPU that reports AVX-512F.
enum GEMMKernel12x32: GEMMMicroKernel {
    static var mr: Int { 12 }
    static var nr: Int { 32 }
    /// Measured on Zen 4 (32 KiB L1d, 1 MiB L2): a deep KC pays. Each KC pass ends with every
    /// tile reading and writing its block of C, which misses L2 once C is a few MiB (BERT's
    /// 1024 x 3072 products), so fewer passes win more than a B micro-panel in L1 does: KC 768
    /// (the `kc x 32` B micro-panel, 96 KiB, streams from L2) with MC 120 (the A block, 360 KiB,
    /// in L2) runs BERT-base's GEMMs at 85-89% of peak where KC 192, MC 240 ran them at 76-80%,
    /// with no loss on the smaller transformer, MLP and ResNet products (KC 512-1024 all within
    /// a few percent of each other).
    static var blocking: GEMMBlocking { GEMMBlocking(mc: 120, kc: 768, nc: 3072) }

    @inline(never)
    static func multiply(depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                         alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                         prefetch: GEMMPrefetch) {
        GEMMTile.rowsOfTwoHalves(SIMD16<Float>.self, rows: 12, panelRows: 12, depth: depth, a: a, b: b,
                                 alpha: alpha, beta: beta, c: c, ldc: ldc, prefetch: prefetch)
    }

    /// 4 or 8 rows (the last tile of a 64-, 128- or 256-row product, every convolution's output
    /// channels) as one or two 4-row passes, where the full-tile kernel would compute 12 rows
    /// into a buffer: 8 accumulators still keep the FMA units busy on Zen 4.
    @inline(never)
    static func multiplyRows(_ rows: Int, depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                             alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        guard rows == 4 || rows == 8 else { return false }
        for first in stride(from: 0, to: rows, by: 4) {
            GEMMTile.rowsOfTwoHalves(SIMD16<Float>.self, rows: 4, panelRows: 12, depth: depth, a: a + first, b: b,
                                     alpha: alpha, beta: beta, c: c + first &* ldc, ldc: ldc, prefetch: nil)
        }
        return true
    }

    /// 12 x 16: the last column tile of products whose width is 8 or 16 past a multiple of 32
    /// (the 392 columns of a convolution over 8 planes of 7x7, or 2 of 14x14; the 784 of one
    /// 28x28 plane), where the full tile would compute 32 columns for 8 or 16.
    @inline(never)
    static func multiplyLeftHalf(depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                 c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        GEMMTile.leftHalf(SIMD16<Float>.self, rows: 12, depth: depth, a: a, b: b, c: c, ldc: ldc)
        return true
    }
}

/// 6 x 8 tile: the portable kernel for baseline x86-64 (16 xmm registers, no FMA) and any
/// other architecture without a host-CPU build.
enum GEMMKernel6x8: GEMMMicroKernel {
    static var mr: Int { 6 }
    static var nr: Int { 8 }
    /// The 8 KiB B micro-panel stays in L1, the 120 KiB A block in L2.
    static var blocking: GEMMBlocking { GEMMBlocking(mc: 120, kc: 256, nc: 2048) }

    @inline(never)
    static func multiply(depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                         alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                         prefetch: GEMMPrefetch) {
        GEMMTile.sixRows(SIMD8<Float>.self, depth: depth, a: a, b: b, alpha: alpha, beta: beta, c: c, ldc: ldc,
                         prefetch: prefetch)
    }
}

/// What a full-tile micro-kernel call asks the memory system for while it multiplies, so that
/// its operands and its output are on their way before they are needed:
///
/// - a stream of one cache line request per depth step, `start + s * step`, into L2. The
///   blocked GEMM points the stream at this tile's share of the next B micro-panel, so that the
///   panel is in L2 before the first tile that uses it. On a Sapphire Rapids-class Xeon, whose
///   L3 feeds a cold panel too slowly for the kernel, a micro-benchmark of 12 x 32 tiles over a
///   9 MiB B block ran at 61% of the FMA peak without the stream and 74% with it (on Zen 4 and
///   5, without it, the GEMMs of the training steps had run at 85-94% of peak).
/// - the lines of the *next* tile of C (to be written), one row every `depth / MR` steps, so
///   that each row has a whole tile's time to arrive; the first tile of a block asks for its
///   own lines as it starts, and so does every tile deeper than `nextTileDepthLimit`. On the
///   same Xeon, with C from L3 (12 x 32 tiles over a 960 x 3072 C), tiles of depth 64 ran at
///   64% of peak asking for their own lines as they started and at 83% asking for the next
///   tile's spread out (depth 128: 75% -> 93%, depth 256: 89% -> 94%, depth 768: level); with
///   C in L1 they reach 94%. Small depths are the pointwise convolutions and their gradients,
///   whose every output is written once.
struct GEMMPrefetch {
    /// The first address of the stream.
    var start: UnsafeRawPointer
    /// Bytes between the stream's requests of consecutive depth steps (0: the same line every step).
    var step: Int
    /// The tile of C whose rows are asked for during the call (a row at a time, each row's first
    /// and last float; `ldc` apart), if any.
    var nextTile: UnsafeMutablePointer<Float>?
    /// Whether the call asks for its own tile of C as it starts (no earlier call did).
    var requestsOwnTile: Bool

    /// No stream: every step asks for the line at `address` (one already in use costs little);
    /// the call asks for its own tile of C as it starts.
    static func none(at address: UnsafeRawPointer) -> GEMMPrefetch {
        GEMMPrefetch(start: address, step: 0, nextTile: nil, requestsOwnTile: true)
    }

    /// The deepest tiles that ask for the next tile's lines; deeper ones ask for their own as
    /// they start. Above it there was nothing to gain, and a row asked for a whole deep tile
    /// early can be pushed out of L1 by the B panel streaming through before it is written: on
    /// the Xeon (interleaved A/B, one thread), the pointwise convolutions with 512 to 2048
    /// input channels (depths 512-683) ran at 0.99-1.01x their time with requests at every
    /// depth, and those with 64 to 256 input channels at 0.82-1.0x their time without any.
    static let nextTileDepthLimit = 256

    /// The step of each of `tiles` streams that together request a panel of `panelFloats`
    /// floats over `depth` steps each, tile `t` starting at byte `t * step * depth`: the
    /// smallest step whose slices cover the panel.
    static func panelShareStep(tiles: Int, depth: Int, panelFloats: Int) -> Int {
        let perStep = tiles * depth
        return (panelFloats * MemoryLayout<Float>.stride + perStep - 1) / perStep
    }

    /// The element offset, from the block's first element of C, of the full tile that the
    /// blocked GEMM's loops 2 and 1 (columns outer, rows inner; GEMMBlocked.macroKernel) reach
    /// after the full tile at (`row`, `column`) of an `mc x nc` block, or nil after the last.
    /// Full tiles are `mr x nr` and lie wholly inside the block.
    static func nextFullTile(row: Int, column: Int, mc: Int, nc: Int, mr: Int, nr: Int, ldc: Int) -> Int? {
        if row + 2 * mr <= mc { return (row + mr) * ldc + column }
        if column + 2 * nr <= nc, mc >= mr { return column + nr }
        return nil
    }

    /// Asks for the lines of the `rows x columns` tile at `c` (each row's first and last
    /// float) to be written.
    @inline(__always)
    static func requestTile(_ c: UnsafeMutablePointer<Float>, rows: Int, columns: Int, ldc: Int) {
        var row = c
        for _ in 0..<rows {
            Prefetch.toL1ForWriting(row)
            Prefetch.toL1ForWriting(row + (columns - 1))
            row += ldc
        }
    }
}

/// The requests of one micro-kernel call: its B stream (one line per depth step) and the rows
/// of the next tile of C (a row every `interval` steps), advanced once per depth step.
struct GEMMRequests {
    private var next: UnsafeRawPointer
    private let step: Int
    private var row: UnsafeMutablePointer<Float>
    private let ldc: Int, lastColumn: Int, interval: Int
    private var untilRow: Int, rowsLeft: Int

    /// Starts the requests of a call over `depth` steps for a `rows x columns` tile at `c`.
    @inline(__always)
    init(_ prefetch: GEMMPrefetch, depth: Int, rows: Int, columns: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if prefetch.requestsOwnTile { GEMMPrefetch.requestTile(c, rows: rows, columns: columns, ldc: ldc) }
        next = prefetch.start
        step = prefetch.step
        self.ldc = ldc
        lastColumn = columns - 1
        interval = Swift.max(1, depth / rows)
        if let nextTile = prefetch.nextTile {
            row = nextTile
            untilRow = interval
            rowsLeft = rows
        } else {
            row = c
            untilRow = -1
            rowsLeft = 0
        }
    }

    /// One depth step: the stream's next line into L2 and, every `interval` steps, the next
    /// row of the next tile (to be written), until all its rows are asked for.
    @inline(__always)
    mutating func advance() {
        Prefetch.toL2(next)
        next += step
        untilRow &-= 1
        if untilRow == 0 {
            Prefetch.toL1ForWriting(row)
            Prefetch.toL1ForWriting(row + lastColumn)
            row += ldc
            rowsLeft &-= 1
            untilRow = rowsLeft > 0 ? interval : -1
        }
    }
}

/// The kernel bodies, generic over the row vector `V` (NR = `V.scalarCount`). Every
/// accumulator is a named local so that LLVM keeps it in registers.
enum GEMMTile {
    /// MR = 6.
    @inline(__always)
    static func sixRows<V: SIMD>(
        _: V.Type, depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, prefetch: GEMMPrefetch
    ) where V.Scalar == Float {
        var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V()
        let nr = c0.scalarCount
        var requests = GEMMRequests(prefetch, depth: depth, rows: 6, columns: nr, c: c, ldc: ldc)
        var pa = a, pb = b
        for _ in 0..<depth {
            requests.advance()
            let row = VectorMath.load(pb, as: V.self)
            c0 = GEMMSIMD.multiplyAdd(V(repeating: pa[0]), row, c0)
            c1 = GEMMSIMD.multiplyAdd(V(repeating: pa[1]), row, c1)
            c2 = GEMMSIMD.multiplyAdd(V(repeating: pa[2]), row, c2)
            c3 = GEMMSIMD.multiplyAdd(V(repeating: pa[3]), row, c3)
            c4 = GEMMSIMD.multiplyAdd(V(repeating: pa[4]), row, c4)
            c5 = GEMMSIMD.multiplyAdd(V(repeating: pa[5]), row, c5)
            pa += 6
            pb += nr
        }
        GEMMSIMD.update(c0, c, alpha: alpha, beta: beta)
        GEMMSIMD.update(c1, c + ldc, alpha: alpha, beta: beta)
        GEMMSIMD.update(c2, c + 2 &* ldc, alpha: alpha, beta: beta)
        GEMMSIMD.update(c3, c + 3 &* ldc, alpha: alpha, beta: beta)
        GEMMSIMD.update(c4, c + 4 &* ldc, alpha: alpha, beta: beta)
        GEMMSIMD.update(c5, c + 5 &* ldc, alpha: alpha, beta: beta)
    }

    /// The first `rows` rows of a tile whose rows are two `V` halves each (NR = 2 x
    /// `V.scalarCount`), from an A panel of `panelRows` rows (its step per depth; `a` may point
    /// at any row of it). `rows` and `panelRows` are constants at each call site, so every
    /// accumulator is a named register and the tests on `rows` fold away:
    ///
    /// - the full tiles: 6 x 16 on AVX2 (`SIMD8` halves: 12 ymm accumulators) and 12 x 32 on
    ///   AVX-512 (`SIMD16` halves: 24 zmm accumulators), with the requests of `prefetch`;
    /// - the last 2, 4 or 8 rows of a product (64-1024 output channels) as 2- or 4-row passes
    ///   over the full tile's A panel, without requests, where the full tile would compute all
    ///   its rows into a buffer.
    ///
    /// Each element of C gets the same operations whatever `rows` is. Not one `SIMD16` per row
    /// on AVX2: LLVM splits each 512-bit accumulator into two ymm registers itself but then
    /// allocates them badly, keeping two on the stack and copying two more every depth step
    /// (AMD EPYC, Zen: GEMMs at 66-68% of the FMA peak). Not one `SIMD32` per row on AVX-512:
    /// the standard library does not vectorise `SIMD32.addingProduct` (a per-lane loop through
    /// memory), while `SIMD16` maps to one zmm register.
    @inline(__always)
    static func rowsOfTwoHalves<V: SIMD>(
        _: V.Type, rows: Int, panelRows: Int, depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        alpha: Float, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, prefetch: GEMMPrefetch?
    ) where V.Scalar == Float {
        // Written out row by row: with a nested function per row (inout accumulators) LLVM kept
        // an AVX2 accumulator on the stack and copied the others every depth step.
        let half = V.scalarCount
        var c0a = V(), c0b = V(), c1a = V(), c1b = V()
        var c2a = V(), c2b = V(), c3a = V(), c3b = V()
        var c4a = V(), c4b = V(), c5a = V(), c5b = V()
        var c6a = V(), c6b = V(), c7a = V(), c7b = V()
        var c8a = V(), c8b = V(), c9a = V(), c9b = V()
        var c10a = V(), c10b = V(), c11a = V(), c11b = V()
        // Not an optional `GEMMRequests`: its nil is a null stream pointer, tested every step.
        let requesting = prefetch != nil
        var requests = GEMMRequests(prefetch ?? GEMMPrefetch(start: b, step: 0, nextTile: nil, requestsOwnTile: false),
                                    depth: depth, rows: rows, columns: 2 * half, c: c, ldc: ldc)
        var pa = a, pb = b
        for _ in 0..<depth {
            if requesting { requests.advance() }
            let b0 = VectorMath.load(pb, as: V.self), b1 = VectorMath.load(pb + half, as: V.self)
            let a0 = V(repeating: pa[0]), a1 = V(repeating: pa[1])
            c0a = GEMMSIMD.multiplyAdd(a0, b0, c0a)
            c0b = GEMMSIMD.multiplyAdd(a0, b1, c0b)
            c1a = GEMMSIMD.multiplyAdd(a1, b0, c1a)
            c1b = GEMMSIMD.multiplyAdd(a1, b1, c1b)
            if rows > 2 {
                let a2 = V(repeating: pa[2]), a3 = V(repeating: pa[3])
                c2a = GEMMSIMD.multiplyAdd(a2, b0, c2a)
                c2b = GEMMSIMD.multiplyAdd(a2, b1, c2b)
                c3a = GEMMSIMD.multiplyAdd(a3, b0, c3a)
                c3b = GEMMSIMD.multiplyAdd(a3, b1, c3b)
            }
            if rows > 4 {
                let a4 = V(repeating: pa[4]), a5 = V(repeating: pa[5])
                c4a = GEMMSIMD.multiplyAdd(a4, b0, c4a)
                c4b = GEMMSIMD.multiplyAdd(a4, b1, c4b)
                c5a = GEMMSIMD.multiplyAdd(a5, b0, c5a)
                c5b = GEMMSIMD.multiplyAdd(a5, b1, c5b)
            }
            if rows > 6 {
                let a6 = V(repeating: pa[6]), a7 = V(repeating: pa[7]), a8 = V(repeating: pa[8])
                c6a = GEMMSIMD.multiplyAdd(a6, b0, c6a)
                c6b = GEMMSIMD.multiplyAdd(a6, b1, c6b)
                c7a = GEMMSIMD.multiplyAdd(a7, b0, c7a)
                c7b = GEMMSIMD.multiplyAdd(a7, b1, c7b)
                c8a = GEMMSIMD.multiplyAdd(a8, b0, c8a)
                c8b = GEMMSIMD.multiplyAdd(a8, b1, c8b)
                let a9 = V(repeating: pa[9]), a10 = V(repeating: pa[10]), a11 = V(repeating: pa[11])
                c9a = GEMMSIMD.multiplyAdd(a9, b0, c9a)
                c9b = GEMMSIMD.multiplyAdd(a9, b1, c9b)
                c10a = GEMMSIMD.multiplyAdd(a10, b0, c10a)
                c10b = GEMMSIMD.multiplyAdd(a10, b1, c10b)
                c11a = GEMMSIMD.multiplyAdd(a11, b0, c11a)
                c11b = GEMMSIMD.multiplyAdd(a11, b1, c11b)
            }
            pa += panelRows
            pb += 2 * half
        }
        var row = c
        GEMMSIMD.update(c0a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c0b, row + half, alpha: alpha, beta: beta)
        row += ldc
        GEMMSIMD.update(c1a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c1b, row + half, alpha: alpha, beta: beta)
        guard rows > 2 else { return }
        row += ldc
        GEMMSIMD.update(c2a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c2b, row + half, alpha: alpha, beta: beta)
        row += ldc
        GEMMSIMD.update(c3a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c3b, row + half, alpha: alpha, beta: beta)
        guard rows > 4 else { return }
        row += ldc
        GEMMSIMD.update(c4a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c4b, row + half, alpha: alpha, beta: beta)
        row += ldc
        GEMMSIMD.update(c5a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c5b, row + half, alpha: alpha, beta: beta)
        guard rows > 6 else { return }
        row += ldc
        GEMMSIMD.update(c6a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c6b, row + half, alpha: alpha, beta: beta)
        row += ldc
        GEMMSIMD.update(c7a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c7b, row + half, alpha: alpha, beta: beta)
        row += ldc
        GEMMSIMD.update(c8a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c8b, row + half, alpha: alpha, beta: beta)
        row += ldc
        GEMMSIMD.update(c9a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c9b, row + half, alpha: alpha, beta: beta)
        row += ldc
        GEMMSIMD.update(c10a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c10b, row + half, alpha: alpha, beta: beta)
        row += ldc
        GEMMSIMD.update(c11a, row, alpha: alpha, beta: beta)
        GEMMSIMD.update(c11b, row + half, alpha: alpha, beta: beta)
    }

    /// The left half (the first `V.scalarCount` columns) of a `rows` x 2 `V.scalarCount` tile
    /// of ``rowsOfTwoHalves(_:rows:panelRows:depth:a:b:alpha:beta:c:ldc:prefetch:)`` (`rows` 6
    /// or 12, a constant): raw products (`alpha = 1`, `beta = 0`) into the first `V.scalarCount`
    /// floats of each row at `c`, with the same operations per element, at half the
    /// multiply-adds, for a last column tile with at most half its columns valid.
    @inline(__always)
    static func leftHalf<V: SIMD>(_: V.Type, rows: Int, depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                  c: UnsafeMutablePointer<Float>, ldc: Int) where V.Scalar == Float {
        var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V()
        var c6 = V(), c7 = V(), c8 = V(), c9 = V(), c10 = V(), c11 = V()
        var pa = a, pb = b
        for _ in 0..<depth {
            let b0 = VectorMath.load(pb, as: V.self)
            c0 = GEMMSIMD.multiplyAdd(V(repeating: pa[0]), b0, c0)
            c1 = GEMMSIMD.multiplyAdd(V(repeating: pa[1]), b0, c1)
            c2 = GEMMSIMD.multiplyAdd(V(repeating: pa[2]), b0, c2)
            c3 = GEMMSIMD.multiplyAdd(V(repeating: pa[3]), b0, c3)
            c4 = GEMMSIMD.multiplyAdd(V(repeating: pa[4]), b0, c4)
            c5 = GEMMSIMD.multiplyAdd(V(repeating: pa[5]), b0, c5)
            if rows > 6 {
                c6 = GEMMSIMD.multiplyAdd(V(repeating: pa[6]), b0, c6)
                c7 = GEMMSIMD.multiplyAdd(V(repeating: pa[7]), b0, c7)
                c8 = GEMMSIMD.multiplyAdd(V(repeating: pa[8]), b0, c8)
                c9 = GEMMSIMD.multiplyAdd(V(repeating: pa[9]), b0, c9)
                c10 = GEMMSIMD.multiplyAdd(V(repeating: pa[10]), b0, c10)
                c11 = GEMMSIMD.multiplyAdd(V(repeating: pa[11]), b0, c11)
            }
            pa += rows
            pb += 2 * V.scalarCount
        }
        VectorMath.store(c0, c); VectorMath.store(c1, c + ldc); VectorMath.store(c2, c + 2 &* ldc)
        VectorMath.store(c3, c + 3 &* ldc); VectorMath.store(c4, c + 4 &* ldc); VectorMath.store(c5, c + 5 &* ldc)
        if rows > 6 {
            VectorMath.store(c6, c + 6 &* ldc); VectorMath.store(c7, c + 7 &* ldc); VectorMath.store(c8, c + 8 &* ldc)
            VectorMath.store(c9, c + 9 &* ldc); VectorMath.store(c10, c + 10 &* ldc); VectorMath.store(c11, c + 11 &* ldc)
        }
    }
}
