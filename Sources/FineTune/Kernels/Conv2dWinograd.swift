// 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2016):
// 16 multiplications per 2x2 output tile and channel pair where the direct sum takes 36, so the
// matrix products behind a 3x3 layer shrink 2.25x, for all three kernels.
//
// With d a 4x4 input tile (rows 2ty - p ..< 2ty - p + 4, zero outside the image), g a 3x3 kernel
// and
//
//     B^T = | 1  0 -1  0 |     G = | 1    0    0  |     A^T = | 1  1  1  0 |
//           | 0  1  1  0 |         | 1/2  1/2  1/2 |           | 0  1 -1 -1 |
//           | 0 -1  1  0 |         | 1/2 -1/2  1/2 |
//           | 0  1  0 -1 |         | 0    0    1  |
//
// the 2x2 output tile is  Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A.  For every one of the 16 positions
// ξ of the 4x4 transformed tiles, summing over input channels is a matrix product:
//
//     forward:          M[ξ] = U[ξ] · V[ξ]          U[ξ] = [Cout, Cin]   V[ξ] = [Cin, tiles]
//                       Y    = A^T M A per tile (+ bias)
//     backward input:   the forward of dY (padding 2 - p) with each kernel turned 180° and the
//                       channel axes swapped (the same sums as the direct input gradient)
//     backward weight:  dM = A dY A^T per tile,  dU[ξ] = dM[ξ] · V[ξ]^T,  dW = G^T dU G
//
// (Y is linear in g, so dW from the last line is the exact gradient of the direct convolution.)
// Tiles of all samples are numbered row by row and processed in chunks whose buffers stay within
// `WinogradTiling.chunkBudget`; every chunk's 16 products run as independent single-threaded
// sgemm calls spread over the threads, and the transforms split channels. Chunks are set by the
// geometry alone, so the result does not depend on the thread count.
//
// Rounding: the transforms add and subtract (and halve, exactly) a few values, so results differ
// from the direct sums by a few units in the last place of the summed magnitudes, as with any
// reordering of the sums. Non-finite values are different: a tile mixes all 16 of its inputs, so
// one Inf would turn whole tiles into NaN where the direct sums give Inf or finite values. The
// kernels therefore check their operands first and hand calls with any non-finite value to the
// exact methods (`ConvPlan.exact`).

/// The tiling of one Winograd convolution of `batch x channels` planes (`height x width`, zero
/// padded by `pad` on every side) into `batch x outChannels` planes of `outHeight x outWidth`.
struct WinogradTiling {
    let batch: Int, channels: Int, outChannels: Int
    let height: Int, width: Int, pad: Int
    let outHeight: Int, outWidth: Int
    /// 2x2 tiles per output column and row: `ceil(outHeight / 2)`, `ceil(outWidth / 2)`.
    let tilesHigh: Int, tilesWide: Int
    /// Tile rows per chunk, and the floats between rows of the chunk buffers (the chunk's tiles
    /// plus `lanes` of slack that the last vector of a row may write).
    let rowsPerChunk: Int, ld: Int

    /// Transforms run on this many tiles at a time.
    static let lanes = 16
    /// Floats in each of a chunk's transformed buffers (`16 x channels x tiles`): 8 MB.
    static let chunkBudget = 1 << 21

    init(batch: Int, channels: Int, outChannels: Int, height: Int, width: Int, pad: Int,
         chunkBudget: Int = WinogradTiling.chunkBudget) {
        self.batch = batch; self.channels = channels; self.outChannels = outChannels
        self.height = height; self.width = width; self.pad = pad
        outHeight = height + 2 * pad - 2; outWidth = width + 2 * pad - 2
        tilesHigh = (outHeight + 1) / 2; tilesWide = (outWidth + 1) / 2
        let tiles = max(1, chunkBudget / (16 * max(channels, outChannels)))
        rowsPerChunk = max(1, min(batch * tilesHigh, tiles / max(1, tilesWide)))
        ld = rowsPerChunk * tilesWide + WinogradTiling.lanes
    }

    /// Floats of the convolved input (`batch x channels x height x width`).
    var inputCount: Int { batch * channels * height * width }
    /// Tile rows of the whole batch (`batch x tilesHigh`).
    var tileRows: Int { batch * tilesHigh }
    /// Floats between consecutive positions ξ of a chunk buffer with `channels` rows.
    func positionStride(_ channels: Int) -> Int { channels * ld }
    /// Floats per even/odd row of the input transform's scratch (a whole number of vectors, plus
    /// the one more tile each vector reads).
    var evenOddLength: Int { (tilesWide + WinogradTiling.lanes - 1) / WinogradTiling.lanes * WinogradTiling.lanes + WinogradTiling.lanes }

    /// Calls `body(n, tileRows, column)` for each sample `n` with tile rows in the global range
    /// `rows`: its tile rows `tileRows` (within the sample), whose first tile is column `column`
    /// of the chunk buffers.
    @inline(__always)
    func forEachSample(_ rows: Range<Int>, _ body: (Int, Range<Int>, Int) -> Void) {
        var r = rows.lowerBound
        while r < rows.upperBound {
            let n = r / tilesHigh, ty = r - n * tilesHigh
            let end = min(rows.upperBound, (n + 1) * tilesHigh)
            body(n, ty..<(ty + end - r), (r - rows.lowerBound) * tilesWide)
            r = end
        }
    }

    /// Calls `body(tileRows)` for the chunks, in order.
    func forEachChunk(_ body: (Range<Int>) -> Void) {
        var r0 = 0
        while r0 < tileRows {
            let r1 = min(tileRows, r0 + rowsPerChunk)
            body(r0..<r1)
            r0 = r1
        }
    }
}

extension Kernels {
    // MARK: The three kernels (false: an operand is not finite, nothing useful was written)

    static func conv2dForwardWinograd(_ g: Conv2dGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                      bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, plan p: ConvPlan,
                                      epilogue: ConvEpilogue?, transformedWeight: UnsafePointer<Float>? = nil) -> Bool {
        let tiling = WinogradTiling(batch: g.batch, channels: g.inChannels, outChannels: g.outChannels,
                                    height: g.height, width: g.width, pad: g.padH, chunkBudget: p.winogradChunkBudget)
        return Winograd.convolve(tiling, input: input, weight: weight, turned: false, transformed: transformedWeight,
                                 bias: bias, output: output, epilogue: epilogue, threads: p.threads)
    }

    static func conv2dBackwardInputWinograd(_ g: Conv2dGeometry, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                            gradInput: UnsafeMutablePointer<Float>, plan p: ConvPlan,
                                            transformedWeight: UnsafePointer<Float>? = nil) -> Bool {
        // dX = conv(dY padded by 2 - p, W turned 180° with Cin and Cout swapped): H = OH + 2(2 - p) - 2.
        let tiling = WinogradTiling(batch: g.batch, channels: g.outChannels, outChannels: g.inChannels,
                                    height: g.outHeight, width: g.outWidth, pad: 2 - g.padH, chunkBudget: p.winogradChunkBudget)
        return Winograd.convolve(tiling, input: gradOutput, weight: weight, turned: true, transformed: transformedWeight,
                                 bias: nil, output: gradInput, epilogue: nil, threads: p.threads)
    }

    /// Floats of a Winograd-transformed weight of `g` (`16 x Cout x Cin`).
    static func winogradWeightCount(_ g: Conv2dGeometry) -> Int { 16 * g.outChannels * g.inChannels }

    /// The weights the Winograd forward (or, `turned`, input gradient) of `g` multiplies by, into
    /// `transformed` (``winogradWeightCount(_:)`` floats), for calls that pass them as
    /// `transformedWeight`; false, with nothing useful written, when `weight` is not finite.
    static func transformWinogradWeights(_ g: Conv2dGeometry, weight: UnsafePointer<Float>, turned: Bool,
                                         into transformed: UnsafeMutablePointer<Float>, threads: Int = Kernels.maxThreads) -> Bool {
        guard ConvLoops.allFinite(weight, g.outChannels * g.inChannels * 9) else { return false }
        Winograd.transformWeights(weight, outChannels: g.outChannels, inChannels: g.inChannels, turned: turned,
                                  into: transformed, threads: threads)
        return true
    }

    static func conv2dBackwardWeightWinograd(_ g: Conv2dGeometry, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                             gradWeight: UnsafeMutablePointer<Float>, plan p: ConvPlan) -> Bool {
        let tiling = WinogradTiling(batch: g.batch, channels: g.inChannels, outChannels: g.outChannels,
                                    height: g.height, width: g.width, pad: g.padH, chunkBudget: p.winogradChunkBudget)
        guard ConvLoops.allFinite(input, tiling.inputCount),
              ConvLoops.allFinite(gradOutput, g.batch * g.outChannels * g.outHeight * g.outWidth) else { return false }
        ScratchPool.withBuffer(16 * g.outChannels * g.inChannels) { du in
            Winograd.weightGradient(tiling, input: input, gradOutput: gradOutput, du: du, threads: p.threads)
            Winograd.untransformWeightGradient(du, outChannels: g.outChannels, inChannels: g.inChannels, into: gradWeight,
                                               threads: p.threads)
        }
        return true
    }
}

/// The transforms and chunk loops of F(2x2, 3x3).
enum Winograd {
    typealias V = SIMD16<Float>

    /// Calls `body(range)` for `threads` near-equal parts of `0..<count`, one per thread.
    @inline(__always)
    static func split(_ count: Int, threads: Int, _ body: (Range<Int>) -> Void) {
        let parts = max(1, min(threads, count))
        Kernels.parallelFor(parts, threads: parts) { t in
            // The weight and tile transforms are the method's data movement (its products time themselves as GEMM).
            KernelProfile.measure(.convolutionData) { body((t * count / parts)..<((t + 1) * count / parts)) }
        }
    }

    // MARK: Weights

    /// `u[ξ][o][i] = (G g G^T)[ξ]` for every kernel `g = weight[o][i]` (`[outChannels, inChannels,
    /// 3, 3]`). With `turned`, the kernels are turned 180° and the result is `u[ξ][i][o]`: the
    /// weights of the input gradient's convolution.
    static func transformWeights(_ weight: UnsafePointer<Float>, outChannels: Int, inChannels: Int, turned: Bool,
                                 into u: UnsafeMutablePointer<Float>, threads: Int) {
        let pairs = outChannels * inChannels
        // Vectors run along the contiguous axis of u: input channels, or output channels when turned.
        let rows = turned ? inChannels : outChannels, columns = turned ? outChannels : inChannels
        let rowStride = turned ? 9 : inChannels * 9, columnStride = turned ? inChannels * 9 : 9
        split(rows, threads: threads) { range in
            for r in range {
                var c = 0
                while c < columns {
                    let count = min(WinogradTiling.lanes, columns - c), src = weight + (r * rowStride + c * columnStride)
                    // Tap (a, b) of the lanes' (possibly turned) kernels.
                    @inline(__always) func tap(_ a: Int, _ b: Int) -> V {
                        let t = turned ? (2 - a) * 3 + 2 - b : a * 3 + b
                        var v = V()
                        for l in 0..<count { v[l] = src[l &* columnStride &+ t] }
                        return v
                    }
                    // G g, column by column: rows (g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2).
                    @inline(__always) func column(_ b: Int) -> (V, V, V, V) {
                        let g0 = tap(0, b), g1 = tap(1, b), g2 = tap(2, b)
                        return (g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2)
                    }
                    let t0 = column(0), t1 = column(1), t2 = column(2)
                    let dst = u + (r * columns + c)
                    @inline(__always) func store(_ v: V, _ xi: Int) {
                        let at = dst + xi &* pairs
                        if count == WinogradTiling.lanes { VectorMath.store(v, at) } else { for l in 0..<count { at[l] = v[l] } }
                    }
                    // (G g) G^T: the same combination along each row.
                    @inline(__always) func row(_ a: V, _ b: V, _ c: V, _ i: Int) {
                        store(a, 4 * i); store(0.5 * (a + b + c), 4 * i + 1); store(0.5 * (a - b + c), 4 * i + 2); store(c, 4 * i + 3)
                    }
                    row(t0.0, t1.0, t2.0, 0)
                    row(t0.1, t1.1, t2.1, 1)
                    row(t0.2, t1.2, t2.2, 2)
                    row(t0.3, t1.3, t2.3, 3)
                    c += count
                }
            }
        }
    }

    /// `gradWeight[o][i] = G^T du[·][o][i] G` (`du` is `[16, outChannels, inChannels]`).
    static func untransformWeightGradient(_ du: UnsafePointer<Float>, outChannels: Int, inChannels: Int,
                                          into gradWeight: UnsafeMutablePointer<Float>, threads: Int) {
        let pairs = outChannels * inChannels
        split(outChannels, threads: threads) { range in
            for o in range {
                var i = 0
                while i < inChannels {
                    let count = min(WinogradTiling.lanes, inChannels - i), src = du + (o * inChannels + i)
                    @inline(__always) func at(_ xi: Int) -> V {
                        let p = src + xi &* pairs
                        if count == WinogradTiling.lanes { return VectorMath.load(p, as: V.self) }
                        var v = V()
                        for l in 0..<count { v[l] = p[l] }
                        return v
                    }
                    // G^T down column j: (D0 + (D1 + D2)/2, (D1 - D2)/2, (D1 + D2)/2 + D3).
                    @inline(__always) func column(_ j: Int) -> (V, V, V) {
                        let d0 = at(j), d1 = at(4 + j), d2 = at(8 + j), d3 = at(12 + j), half = 0.5 * (d1 + d2)
                        return (d0 + half, 0.5 * (d1 - d2), half + d3)
                    }
                    let e0 = column(0), e1 = column(1), e2 = column(2), e3 = column(3)
                    // ... then the same along each row a.
                    @inline(__always) func row(_ a: V, _ b: V, _ c: V, _ d: V) -> (V, V, V) {
                        let half = 0.5 * (b + c)
                        return (a + half, 0.5 * (b - c), half + d)
                    }
                    let k = (row(e0.0, e1.0, e2.0, e3.0), row(e0.1, e1.1, e2.1, e3.1), row(e0.2, e1.2, e2.2, e3.2))
                    let out = gradWeight + (o * inChannels + i) * 9
                    for l in 0..<count {
                        let lane = out + l &* 9
                        lane[0] = k.0.0[l]; lane[1] = k.0.1[l]; lane[2] = k.0.2[l]
                        lane[3] = k.1.0[l]; lane[4] = k.1.1[l]; lane[5] = k.1.2[l]
                        lane[6] = k.2.0[l]; lane[7] = k.2.1[l]; lane[8] = k.2.2[l]
                    }
                    i += count
                }
            }
        }
    }

    // MARK: Convolution

    /// `output = conv(input, weight) + bias` over `s`, overwriting `output`; with `turned`, the
    /// input gradient's convolution (`weight` turned 180°, channel axes swapped). False, with
    /// nothing written, when `input` or `weight` holds a value that is not finite.
    /// `transformed`, when given, holds the weights already transformed (by
    /// ``Kernels/transformWinogradWeights(_:weight:turned:into:threads:)``, which checked them).
    static func convolve(_ s: WinogradTiling, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                         turned: Bool, transformed: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
                         output: UnsafeMutablePointer<Float>, epilogue: ConvEpilogue?, threads: Int) -> Bool {
        let (cin, cout) = (s.channels, s.outChannels)
        guard transformed != nil || ConvLoops.allFinite(weight, cin * cout * 9),
              ConvLoops.allFinite(input, s.inputCount) else { return false }
        ScratchPool.withBuffer(transformed == nil ? 16 * cin * cout : 0) { scratch in
            // The layer's kernels are [Cout, Cin]: the input gradient's convolution runs Cout -> Cin.
            if transformed == nil {
                transformWeights(weight, outChannels: turned ? cin : cout, inChannels: turned ? cout : cin, turned: turned,
                                 into: scratch, threads: threads)
            }
            let u = transformed ?? UnsafePointer(scratch)
            let vStride = s.positionStride(cin), mStride = s.positionStride(cout)
            forEachChunk(s, input: input, threads: threads) { rows, v, m in
                let tiles = rows.count * s.tilesWide
                Kernels.parallelFor(16, threads: threads) { xi in
                    Kernels.sgemm(transA: false, transB: false, m: cout, n: tiles, k: cin, alpha: 1,
                                  a: u + xi * cout * cin, lda: cin, b: v + xi * vStride, ldb: s.ld,
                                  beta: 0, c: m + xi * mStride, ldc: s.ld, threads: 1)
                }
                transformOutput(s, m: m, rows: rows, bias: bias, output: output, epilogue: epilogue, threads: threads)
            }
        }
        return true
    }

    /// `du[ξ] = Σ_tiles dM[ξ] V[ξ]^T` over all chunks (overwrites `du`, `[16, outChannels, channels]`).
    static func weightGradient(_ s: WinogradTiling, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                               du: UnsafeMutablePointer<Float>, threads: Int) {
        let vStride = s.positionStride(s.channels), mStride = s.positionStride(s.outChannels)
        let (cin, cout) = (s.channels, s.outChannels)
        forEachChunk(s, input: input, threads: threads) { rows, v, m in
            transformGradOutput(s, gradOutput: gradOutput, rows: rows, into: m, threads: threads)
            let tiles = rows.count * s.tilesWide, first = rows.lowerBound == 0
            Kernels.parallelFor(16, threads: threads) { xi in
                Kernels.sgemm(transA: false, transB: true, m: cout, n: cin, k: tiles, alpha: 1,
                              a: m + xi * mStride, lda: s.ld, b: v + xi * vStride, ldb: s.ld,
                              beta: first ? 0 : 1, c: du + xi * cout * cin, ldc: cin, threads: 1)
            }
        }
    }

    /// Calls `body(rows, v, m)` for each chunk of tile rows, in order, with the chunk's input tiles
    /// transformed into `v` (`[16, channels, ld]`) and `m` a buffer of `[16, outChannels, ld]`.
    static func forEachChunk(_ s: WinogradTiling, input: UnsafePointer<Float>, threads: Int,
                             _ body: (Range<Int>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        let vFloats = 16 * s.positionStride(s.channels)
        ScratchPool.withBuffer(vFloats + 16 * s.positionStride(s.outChannels)) { v in
            s.forEachChunk { rows in
                transformInput(s, input: input, rows: rows, into: v, threads: threads)
                body(rows, v, v + vFloats)
            }
        }
    }

    // MARK: Tile transforms

    /// `V[ξ][c][t] = (B^T d B)[ξ]` for the tiles of `rows` (global tile rows), every channel.
    static func transformInput(_ s: WinogradTiling, input: UnsafePointer<Float>, rows: Range<Int>,
                               into v: UnsafeMutablePointer<Float>, threads: Int) {
        transformTiles(InputTiles.self, s, source: input, channels: s.channels, height: s.height, width: s.width,
                       pad: s.pad, rows: rows, into: v, threads: threads)
    }

    /// `dM[ξ][o][t] = (A dY A^T)[ξ]` for the tiles of `rows`: the output gradient's 2x2 tiles (zero
    /// past the last output row or column).
    static func transformGradOutput(_ s: WinogradTiling, gradOutput: UnsafePointer<Float>, rows: Range<Int>,
                                    into m: UnsafeMutablePointer<Float>, threads: Int) {
        transformTiles(GradOutputTiles.self, s, source: gradOutput, channels: s.outChannels, height: s.outHeight,
                       width: s.outWidth, pad: 0, rows: rows, into: m, threads: threads)
    }

    /// Transforms the tiles of `rows` of every one of `channels` planes (`height x width`, padded by
    /// `pad`) with `Tiles`: tile row `ty` reads padded rows `2ty ..< 2ty + 2 + Tiles.overlap`, each
    /// split once into even and odd columns; the 16 values of tile `t` go to
    /// `dst[ξ * positionStride + channel * ld + t]`.
    static func transformTiles<Tiles: WinogradTiles>(_: Tiles.Type, _ s: WinogradTiling, source: UnsafePointer<Float>,
                                                     channels: Int, height: Int, width: Int, pad: Int, rows: Range<Int>,
                                                     into dst: UnsafeMutablePointer<Float>, threads: Int) {
        let stride = s.positionStride(channels), el = s.evenOddLength, plane = height * width
        let scratch = (2 * min(rows.count, s.tilesHigh) + Tiles.overlap) * 2 * el
        split(channels, threads: threads) { part in
            ScratchPool.withBuffer(scratch) { evenOdd in
                for c in part {
                    s.forEachSample(rows) { n, tileRows, column in
                        splitRows(source + (n * channels + c) * plane, height: height, width: width,
                                  from: 2 * tileRows.lowerBound - pad, count: 2 * tileRows.count + Tiles.overlap, left: pad,
                                  el: el, into: evenOdd)
                        for ty in tileRows {
                            let e = evenOdd + 4 * (ty - tileRows.lowerBound) * el
                            let to = dst + c * s.ld + column + (ty - tileRows.lowerBound) * s.tilesWide
                            var tx = 0
                            while tx < s.tilesWide {
                                Tiles.transform(e + tx, el: el, dst: to + tx, stride: stride)
                                tx &+= WinogradTiling.lanes
                            }
                        }
                    }
                }
            }
        }
    }

    /// Rows `from ..< from + count` of the `height x width` plane `image` (zero outside it), each
    /// zero-padded by `left` columns and split into even and odd columns: row `j`'s even part
    /// (`padded[2k]` at `k`) at `into + 2j * el`, its odd part at `into + (2j + 1) * el`.
    @inline(__always)
    static func splitRows(_ image: UnsafePointer<Float>, height: Int, width: Int, from: Int, count: Int, left: Int,
                          el: Int, into dst: UnsafeMutablePointer<Float>) {
        ConvLoops.zero(dst, count * 2 * el)
        let y0 = max(0, from), y1 = min(height, from + count)
        guard y0 < y1 else { return }
        PhaseRows.split(image + y0 * width, srcStride: width, into: dst + (y0 - from) * 2 * el, dstStride: 2 * el,
                        rows: y1 - y0, width: width, left: left, phases: 2, phaseLength: el)
    }

    /// `lanes` tiles from the even/odd rows at `e` (row i's even part at `e + 2i * el`, odd at
    /// `e + (2i + 1) * el`): the 16 transformed values of tile `k` go to `dst[ξ * stride + k]`.
    @inline(__always)
    static func inputTile(_ e: UnsafePointer<Float>, el: Int, dst: UnsafeMutablePointer<Float>, stride: Int) {
        // d B for each of the four rows: (d0 - d2, d1 + d2, d2 - d1, d1 - d3), where the row's
        // columns are d0 = even[k], d1 = odd[k], d2 = even[k + 1], d3 = odd[k + 1].
        @inline(__always) func row(_ i: Int) -> (V, V, V, V) {
            let even = e + 2 &* i &* el, odd = even + el
            let d0 = VectorMath.load(even, as: V.self), d1 = VectorMath.load(odd, as: V.self)
            let d2 = VectorMath.load(even + 1, as: V.self), d3 = VectorMath.load(odd + 1, as: V.self)
            return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
        }
        let r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3)
        // B^T (d B): the same combination down each column.
        @inline(__always) func column(_ a: V, _ b: V, _ c: V, _ d: V, _ j: Int) {
            VectorMath.store(a - c, dst + j &* stride)
            VectorMath.store(b + c, dst + (4 &+ j) &* stride)
            VectorMath.store(c - b, dst + (8 &+ j) &* stride)
            VectorMath.store(b - d, dst + (12 &+ j) &* stride)
        }
        column(r0.0, r1.0, r2.0, r3.0, 0)
        column(r0.1, r1.1, r2.1, r3.1, 1)
        column(r0.2, r1.2, r2.2, r3.2, 2)
        column(r0.3, r1.3, r2.3, r3.3, 3)
    }

    /// `A y A^T` for `lanes` 2x2 tiles (row i's even columns at `e + 2i * el`, odd at `+ el`).
    @inline(__always)
    static func gradOutputTile(_ e: UnsafePointer<Float>, el: Int, dst: UnsafeMutablePointer<Float>, stride: Int) {
        // A (a, b) = (a, a + b, a - b, -b), first along each row, then down each column.
        @inline(__always) func row(_ i: Int) -> (V, V, V, V) {
            let a = VectorMath.load(e + 2 &* i &* el, as: V.self), b = VectorMath.load(e + (2 &* i &+ 1) &* el, as: V.self)
            return (a, a + b, a - b, -b)
        }
        let r0 = row(0), r1 = row(1)
        @inline(__always) func column(_ a: V, _ b: V, _ j: Int) {
            VectorMath.store(a, dst + j &* stride)
            VectorMath.store(a + b, dst + (4 &+ j) &* stride)
            VectorMath.store(a - b, dst + (8 &+ j) &* stride)
            VectorMath.store(-b, dst + (12 &+ j) &* stride)
        }
        column(r0.0, r1.0, 0)
        column(r0.1, r1.1, 1)
        column(r0.2, r1.2, 2)
        column(r0.3, r1.3, 3)
    }

    /// `output[n][o][2ty + a][2tx + b] = (A^T M A)[a][b] + bias[o]` for the tiles of `rows`, then
    /// the epilogue on each pair of output rows.
    static func transformOutput(_ s: WinogradTiling, m: UnsafePointer<Float>, rows: Range<Int>, bias: UnsafePointer<Float>?,
                                output: UnsafeMutablePointer<Float>, epilogue: ConvEpilogue?, threads: Int) {
        let mStride = s.positionStride(s.outChannels), plane = s.outHeight * s.outWidth, lanes = WinogradTiling.lanes
        split(s.outChannels, threads: threads) { channels in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 4 * lanes) { scratch in
                let pairs = scratch.baseAddress!
                for o in channels {
                    let b = V(repeating: bias?[o] ?? 0)
                    s.forEachSample(rows) { n, tileRows, column in
                        for ty in tileRows {
                            let top = output + (n * s.outChannels + o) * plane + 2 * ty * s.outWidth
                            let rowsOut = min(2, s.outHeight - 2 * ty)
                            let src = m + o * s.ld + column + (ty - tileRows.lowerBound) * s.tilesWide
                            var tx = 0
                            while tx < s.tilesWide {
                                let y = outputTile(src + tx, stride: mStride)
                                // The tiles' two columns interleaved: 2 * lanes outputs per row.
                                let count = min(2 * lanes, s.outWidth - 2 * tx)
                                @inline(__always) func store(_ left: V, _ right: V, row: Int) {
                                    let low = PhaseRows.interleave(left.lowHalf, right.lowHalf)
                                    let high = PhaseRows.interleave(left.highHalf, right.highHalf)
                                    let dst = top + (row &* s.outWidth &+ 2 &* tx)
                                    if count == 2 &* lanes {
                                        VectorMath.store(low, dst); VectorMath.store(high, dst + lanes)
                                    } else {
                                        VectorMath.store(low, pairs); VectorMath.store(high, pairs + lanes)
                                        ConvLoops.copy(dst, pairs, count)
                                    }
                                }
                                store(y.0 + b, y.1 + b, row: 0)
                                if rowsOut == 2 { store(y.2 + b, y.3 + b, row: 1) }
                                tx &+= lanes
                            }
                            epilogue?.apply(output, at: top - output, count: rowsOut * s.outWidth, channel: o)
                        }
                    }
                }
            }
        }
    }

    /// `A^T M A` for `lanes` tiles: outputs (0, 0), (0, 1), (1, 0), (1, 1).
    @inline(__always)
    static func outputTile(_ src: UnsafePointer<Float>, stride: Int) -> (V, V, V, V) {
        @inline(__always) func at(_ xi: Int) -> V { VectorMath.load(src + xi &* stride, as: V.self) }
        // A^T down each column j: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3.
        @inline(__always) func column(_ j: Int) -> (V, V) {
            let m0 = at(j), m1 = at(4 &+ j), m2 = at(8 &+ j), m3 = at(12 &+ j)
            return (m0 + m1 + m2, m1 - m2 - m3)
        }
        let c0 = column(0), c1 = column(1), c2 = column(2), c3 = column(3)
        // ... then along each row.
        return (c0.0 + c1.0 + c2.0, c1.0 - c2.0 - c3.0, c0.1 + c1.1 + c2.1, c1.1 - c2.1 - c3.1)
    }
}

/// A tile transform of `Winograd.transformTiles` (static dispatch: no closure per vector).
protocol WinogradTiles {
    /// Padded rows a tile row reads beyond its own two (input tiles are 4 rows high).
    static var overlap: Int { get }
    /// Transforms `WinogradTiling.lanes` tiles (see `Winograd.inputTile`).
    static func transform(_ e: UnsafePointer<Float>, el: Int, dst: UnsafeMutablePointer<Float>, stride: Int)
}

/// Input tiles: `B^T d B` of 4x4 tiles, overlapping by two rows.
enum InputTiles: WinogradTiles {
    static var overlap: Int { 2 }
    @inline(__always)
    static func transform(_ e: UnsafePointer<Float>, el: Int, dst: UnsafeMutablePointer<Float>, stride: Int) {
        Winograd.inputTile(e, el: el, dst: dst, stride: stride)
    }
}

/// Output-gradient tiles: `A y A^T` of disjoint 2x2 tiles.
enum GradOutputTiles: WinogradTiles {
    static var overlap: Int { 0 }
    @inline(__always)
    static func transform(_ e: UnsafePointer<Float>, el: Int, dst: UnsafeMutablePointer<Float>, stride: Int) {
        Winograd.gradOutputTile(e, el: el, dst: dst, stride: stride)
    }
}
