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
//     forward:          M[ξ] = V[ξ] · U[ξ]          V[ξ] = [tiles, Cin]   U[ξ] = [Cin, Cout]
//                       Y    = A^T M A per tile (+ bias)
//     backward input:   the forward of dY (padding 2 - p) with each kernel turned 180° and the
//                       channel axes swapped (the same sums as the direct input gradient)
//     backward weight:  dM = A dY A^T per tile,  dU[ξ] = dM[ξ]^T · V[ξ],  dW = G^T dU G
//
// (Y is linear in g, so dW from the last line is the exact gradient of the direct convolution.)
//
// Layout: everything between the transforms is channels-last, so the transforms run 16 channels
// per vector whatever the plane size (a 7x7 plane has only 4 tiles per row), and the products
// need no packing. Each tile row's input rows are copied to channels-last (zero padded) by 8 x 8
// transposes, transformed into V (`[ξ][tile][channel]`), multiplied by the weights, already
// transformed into NR-channel panels (`[ξ][panel][Cin][NR]`), in the indirect method's register
// tiles (12 x 32 on AVX-512, 6 x 16 on AVX2; rows of V read in place; other builds run sgemm per
// panel), and M (`[ξ][tile][Cout]`) is transformed back a tile row at a time and transposed to NCHW.
//
// Tiles of all samples are numbered row by row and processed in chunks sized to stay in L2 (larger
// when the weights, which every chunk reads, are large). With many small chunks each thread takes
// whole chunks (the weight gradient: whole runs of chunks, summed separately, then added in
// order); otherwise the threads share each chunk: its 16 products on different threads (all of
// a product's sums on one) and the transforms split tile rows. The chunks and runs are set by the
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
    /// Tile rows per chunk, and the tiles a chunk's buffers hold (rounded up to whole 12-tile
    /// rows of the register tile).
    let rowsPerChunk: Int, chunkTiles: Int
    /// Floats between tiles (rows) of V and of M: see ``pitch(_:)``.
    let inPitch: Int, outPitch: Int

    /// Floats in each of a chunk's transformed buffers (`16 x tiles x channels`) at most: 8 MB.
    static let chunkBudget = 1 << 21
    /// Floats in each of a chunk's buffers when the weights are small: 512 KiB, so that both
    /// buffers of a chunk stay in a Zen 4 L2 (1 MiB) between the transforms and the products.
    /// Every chunk reads all the transformed weights (`16 x Cin x Cout`; the weight gradient
    /// adds into all of them), so chunks grow with the weights: half their floats, up to
    /// `chunkBudget`. (Measured on Zen 4, one thread, batch 8: 64 channels at 56x56 ran 1.4x
    /// faster forward and 1.7x forward + backward than in one 8 MB chunk; 512 channels at 7x7
    /// ran its weight gradient 1.5x slower in L2-sized chunks than in one.)
    static let cacheBudget = 1 << 17
    /// Tile rows whose channels-last input one thread copies at a time.
    static let runRows = 4
    /// Floats of V that a group of register tiles of the forward product reads (512 KiB, half of
    /// a Zen 4 L2): a 3x3 512-channel layer on 7x7 planes of 8 samples takes all its tiles at once.
    static let groupFloats = 1 << 17
    /// Tiles per depth block of the weight gradient's sums.
    static let depthTiles = 256

    init(batch: Int, channels: Int, outChannels: Int, height: Int, width: Int, pad: Int,
         chunkBudget: Int = WinogradTiling.chunkBudget) {
        self.batch = batch; self.channels = channels; self.outChannels = outChannels
        self.height = height; self.width = width; self.pad = pad
        outHeight = height + 2 * pad - 2; outWidth = width + 2 * pad - 2
        tilesHigh = (outHeight + 1) / 2; tilesWide = (outWidth + 1) / 2
        inPitch = WinogradTiling.pitch(channels); outPitch = WinogradTiling.pitch(outChannels)
        let budget = min(chunkBudget, max(WinogradTiling.cacheBudget, 8 * channels * outChannels))
        let tiles = max(1, budget / (16 * max(inPitch, outPitch)))
        rowsPerChunk = max(1, min(batch * tilesHigh, tiles / max(1, tilesWide)))
        chunkTiles = GEMMBlocking.roundUp(rowsPerChunk * tilesWide, to: IndirectConvShape.mr)
    }

    /// Floats between the tiles of a transformed buffer of `channels`: whole 32-channel panels
    /// (the register tile's width) and 16 more, so that the 12 rows a tile reads do not fall into
    /// one L1 set when `channels` is a power of two.
    static func pitch(_ channels: Int) -> Int { GEMMBlocking.roundUp(channels, to: IndirectConvShape.nr) + 16 }
    /// `channels` rounded up to whole vectors: the channels-last copies' pitch.
    static func vectors(_ channels: Int) -> Int { GEMMBlocking.roundUp(channels, to: 16) }

    /// Floats of the convolved input (`batch x channels x height x width`).
    var inputCount: Int { batch * channels * height * width }
    /// Tile rows of the whole batch (`batch x tilesHigh`).
    var tileRows: Int { batch * tilesHigh }
    /// Floats between consecutive positions ξ of V and of M.
    var inStride: Int { chunkTiles * inPitch }
    var outStride: Int { chunkTiles * outPitch }

    /// Whether `threads` threads each take whole chunks (when there are at least 4 per thread:
    /// chunks are small when the weights are) rather than share every chunk.
    func threadsTakeChunks(_ threads: Int) -> Bool { threads > 1 && chunkCount >= 4 * threads }

    /// Chunks of the batch's tile rows, and the tile rows of chunk `c`.
    var chunkCount: Int { (tileRows + rowsPerChunk - 1) / rowsPerChunk }
    func chunk(_ c: Int) -> Range<Int> { (c * rowsPerChunk)..<min(tileRows, (c + 1) * rowsPerChunk) }

    /// Runs of whole chunks whose weight gradients are summed separately, then added in order,
    /// so that threads can take whole runs: where there are at least 8 chunks (small weights),
    /// at most `maxWeightSlots`, within `weightSlotBudget` floats of extra sums. Set by the
    /// geometry, so the result does not depend on the thread count. (With few large chunks the
    /// extra sums cost more than they save: 256 channels at 14x14, 4 chunks, ran its weight
    /// gradient 1.2x slower in 4 runs.)
    static let maxWeightSlots = 4, weightSlotBudget = 1 << 22
    func weightSlots(sumFloats: Int) -> Int {
        guard chunkCount >= 8 else { return 1 }
        return max(1, min(chunkCount, WinogradTiling.maxWeightSlots, 1 + WinogradTiling.weightSlotBudget / max(1, sumFloats)))
    }

    /// Splits the chunk's tile rows `rows` (global) between `threads` and calls
    /// `body(n, tileRows, firstTile)` on each thread for its runs of at most `runRows` tile rows
    /// of one sample `n`, `firstTile` the run's first tile in the chunk's buffers.
    func forEachRun(_ rows: Range<Int>, threads: Int, _ body: (Int, Range<Int>, Int) -> Void) {
        Winograd.split(rows.count, threads: threads) { part in
            var r = rows.lowerBound + part.lowerBound
            let end = rows.lowerBound + part.upperBound
            while r < end {
                let n = r / tilesHigh, ty = r - n * tilesHigh
                let count = min(end - r, tilesHigh - ty, WinogradTiling.runRows)
                body(n, ty..<(ty + count), (r - rows.lowerBound) * tilesWide)
                r += count
            }
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

    /// Floats of the Winograd-transformed weights of `g`'s forward (or, `turned`, input gradient).
    static func winogradWeightCount(_ g: Conv2dGeometry, turned: Bool) -> Int {
        turned ? Winograd.weightCount(depth: g.outChannels, columns: g.inChannels)
            : Winograd.weightCount(depth: g.inChannels, columns: g.outChannels)
    }

    /// The weights the Winograd forward (or, `turned`, input gradient) of `g` multiplies by, into
    /// `transformed` (``winogradWeightCount(_:turned:)`` floats), for calls that pass them as
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
        // dU[ξ] in MR x NR tiles: output channels rounded up to MR rows, input channels to panels.
        let ldu = GEMMBlocking.roundUp(g.inChannels, to: IndirectConvShape.nr)
        let duStride = GEMMBlocking.roundUp(g.outChannels, to: IndirectConvShape.mr) * ldu
        ScratchPool.withBuffer(16 * duStride) { du in
            Winograd.weightGradient(tiling, input: input, gradOutput: gradOutput, du: du, ldu: ldu, duStride: duStride,
                                    threads: p.threads)
            Winograd.untransformWeightGradient(du, outChannels: g.outChannels, inChannels: g.inChannels, ldu: ldu,
                                               duStride: duStride, into: gradWeight, threads: p.threads)
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

    /// Whether the products run in the indirect method's register tiles (12 x 32 on AVX-512, 6 x 16
    /// on AVX2; else sgemm). On AMD EPYC (AVX2), one thread, interleaved A/B: the 3x3 forwards
    /// of ResNet-18 0.70-0.72x their time with sgemm (which packs both operands of every product),
    /// forward + backward 0.75-0.82x.
    static var registerTiles: Bool { IndirectTile.kind != nil }

    /// Whether the tile transforms run 8 channels at a time (AVX2: an input tile's 16 values of
    /// 16 channels take 32 ymm registers, and LLVM spilled a fifth of the transform's vector
    /// instructions to the stack); elsewhere 16. The same operations per lane either way.
    static var narrowTransforms: Bool { IndirectTile.kind == .tile6x16 }

    // MARK: Weights

    /// Floats of transformed weights: 16 positions of `[panels][depth][32]`, the panels covering
    /// `columns` (the convolution's output channels) 32 at a time.
    static func weightCount(depth: Int, columns: Int) -> Int {
        16 * GEMMBlocking.roundUp(columns, to: IndirectConvShape.nr) * depth
    }

    /// `u[ξ][q][i][j] = (G g G^T)[ξ]` for every kernel `g = weight[32q + j][i]` (`weight` is
    /// `[outChannels, inChannels, 3, 3]`; zero past the last output channel). With `turned`, the
    /// kernels are turned 180° and the roles of the channel axes swapped: `g = weight[i][32q + j]`
    /// turned, the weights of the input gradient's convolution.
    static func transformWeights(_ weight: UnsafePointer<Float>, outChannels: Int, inChannels: Int, turned: Bool,
                                 into u: UnsafeMutablePointer<Float>, threads: Int) {
        // The convolution's depth (summed channels) and columns (produced channels).
        let depth = turned ? outChannels : inChannels, columns = turned ? inChannels : outChannels
        let nr = IndirectConvShape.nr, panels = (columns + nr - 1) / nr, stride = panels * nr * depth
        // Kernel j of a panel row starts `lds` floats after kernel j - 1.
        let lds = turned ? 9 : depth * 9
        split(panels * depth, threads: threads) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 9 * nr) { buffer in
                let taps = buffer.baseAddress!
                for index in range {
                    let q = index / depth, i = index - q * depth, valid = min(nr, columns - nr * q)
                    let src = weight + (turned ? (i * columns + nr * q) * 9 : (nr * q * depth + i) * 9)
                    // The panel's kernels' taps, tap-major: taps[t * nr + j].
                    ConvLoops.transpose(rows: valid, columns: 9, src, lds: lds, taps, ldd: nr)
                    if valid < nr { for t in 0..<9 { ConvLoops.zero(taps + t * nr + valid, nr - valid) } }
                    let dst = u + (q * depth + i) * nr
                    for half in 0..<(nr / 16) {
                        let lanes = taps + 16 * half
                        // Tap (a, b) of the lanes' (possibly turned) kernels.
                        @inline(__always) func tap(_ a: Int, _ b: Int) -> V {
                            VectorMath.load(lanes + (turned ? (2 - a) * 3 + 2 - b : a * 3 + b) * nr, as: V.self)
                        }
                        // G g, column by column: rows (g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2).
                        @inline(__always) func column(_ b: Int) -> (V, V, V, V) {
                            let g0 = tap(0, b), g1 = tap(1, b), g2 = tap(2, b)
                            return (g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2)
                        }
                        let t0 = column(0), t1 = column(1), t2 = column(2)
                        @inline(__always) func store(_ v: V, _ xi: Int) { VectorMath.store(v, dst + (xi &* stride &+ 16 &* half)) }
                        // (G g) G^T: the same combination along each row.
                        @inline(__always) func row(_ a: V, _ b: V, _ c: V, _ i: Int) {
                            store(a, 4 * i); store(0.5 * (a + b + c), 4 * i + 1); store(0.5 * (a - b + c), 4 * i + 2); store(c, 4 * i + 3)
                        }
                        row(t0.0, t1.0, t2.0, 0)
                        row(t0.1, t1.1, t2.1, 1)
                        row(t0.2, t1.2, t2.2, 2)
                        row(t0.3, t1.3, t2.3, 3)
                    }
                }
            }
        }
    }

    /// `gradWeight[o][i] = G^T du[·][o][i] G` (`du[ξ][o][i]` at `ξ * duStride + o * ldu + i`).
    static func untransformWeightGradient(_ du: UnsafePointer<Float>, outChannels: Int, inChannels: Int, ldu: Int,
                                          duStride: Int, into gradWeight: UnsafeMutablePointer<Float>, threads: Int) {
        split(outChannels, threads: threads) { range in
            for o in range {
                var i = 0
                while i < inChannels {
                    let count = min(16, inChannels - i), src = du + (o * ldu + i)
                    // The rows are padded to whole panels: a full vector is always there to load.
                    @inline(__always) func at(_ xi: Int) -> V { VectorMath.load(src + xi &* duStride, as: V.self) }
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
        let uCount = transformed == nil ? ConvPlan.rounded(weightCount(depth: cin, columns: cout)) : 0
        let biasCount = WinogradTiling.vectors(cout)
        ScratchPool.withBuffer(uCount + biasCount) { scratch in
            // The layer's kernels are [Cout, Cin]: the input gradient's convolution runs Cout -> Cin.
            if transformed == nil {
                transformWeights(weight, outChannels: turned ? cin : cout, inChannels: turned ? cout : cin, turned: turned,
                                 into: scratch, threads: threads)
            }
            let u = transformed ?? UnsafePointer(scratch)
            // The bias (or zeros) in whole vectors.
            let paddedBias = scratch + uCount
            ConvLoops.zero(paddedBias, biasCount)
            if let bias { ConvLoops.copy(paddedBias, bias, cout) }
            /// Tile rows `rows` in chunks, `inner` threads on each.
            func run(_ rows: Range<Int>, inner: Int) {
                runChunks(s, input: input, rows: rows, threads: inner) { chunk, v, m in
                    multiply(s, v: v, u: u, tiles: chunk.count * s.tilesWide, m: m, threads: inner)
                    transformOutput(s, m: m, rows: chunk, bias: paddedBias, output: output, epilogue: epilogue, threads: inner)
                }
            }
            // Each tile's values do not depend on the chunks: threads take equal shares of the
            // tile rows, in chunks of their own, when the chunks are small (so are the weights
            // each chunk reads), else they share each chunk.
            if s.threadsTakeChunks(threads) {
                let rows = s.tileRows
                Kernels.parallelFor(threads, threads: threads) { t in
                    run((t * rows / threads)..<((t + 1) * rows / threads), inner: 1)
                }
            } else {
                run(0..<s.tileRows, inner: threads)
            }
        }
        return true
    }

    /// `M[ξ] = V[ξ] · U[ξ]` for the chunk's first `tiles` tiles, each position on one thread.
    static func multiply(_ s: WinogradTiling, v: UnsafeMutablePointer<Float>, u: UnsafePointer<Float>, tiles: Int,
                         m: UnsafeMutablePointer<Float>, threads: Int) {
        let mr = IndirectConvShape.mr, nr = IndirectConvShape.nr
        let cin = s.channels, cout = s.outChannels, panels = (cout + nr - 1) / nr, uStride = panels * nr * cin
        let rowTiles = (tiles + mr - 1) / mr
        guard registerTiles else {
            Kernels.parallelFor(16, threads: threads) { xi in
                for q in 0..<panels {
                    Kernels.sgemm(transA: false, transB: false, m: tiles, n: min(nr, cout - nr * q), k: cin, alpha: 1,
                                  a: v + xi * s.inStride, lda: s.inPitch, b: u + xi * uStride + q * cin * nr, ldb: nr,
                                  beta: 0, c: m + xi * s.outStride + q * nr, ldc: s.outPitch, threads: 1)
                }
            }
            return
        }
        // The rows the last register tile reads past the last tile: zeros.
        for xi in 0..<16 {
            for t in tiles..<(rowTiles * mr) { ConvLoops.zero(v + xi * s.inStride + t * s.inPitch, cin) }
        }
        let rows = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: rowTiles * mr)
        defer { rows.deallocate() }
        for t in 0..<(rowTiles * mr) { rows[t] = UnsafePointer(v + t * s.inPitch) }
        // Groups of register tiles whose rows of V stay in L2 while the panels pass over them.
        let group = max(1, WinogradTiling.groupFloats / (mr * cin))
        Kernels.parallelFor(16, threads: threads) { xi in
            let multiplying = KernelProfile.begin()
            for first in stride(from: 0, to: rowTiles, by: group) {
                for q in 0..<panels {
                    let panel = u + xi * uStride + q * cin * nr
                    for tile in first..<min(rowTiles, first + group) {
                        IndirectTile.multiply(taps: 1, channels: cin, pointers: rows + tile * mr, channelOffset: xi * s.inStride,
                                              b: panel, beta: 0, c: m + xi * s.outStride + tile * mr * s.outPitch + q * nr,
                                              ldc: s.outPitch)
                    }
                }
            }
            KernelProfile.endProduct(multiplying, m: rowTiles * mr, n: panels * nr, k: cin)
        }
    }

    /// `du[ξ] = Σ_tiles dM[ξ]^T V[ξ]` over all chunks (overwrites `du`: `du[ξ][o][i]` at
    /// `ξ * duStride + o * ldu + i`, output channels rounded up to 12 rows, `ldu` >= whole panels
    /// of input channels). The chunks are summed in `weightSlots` runs, each on one thread when
    /// there are enough (else each position of a chunk on one thread), then added in order.
    static func weightGradient(_ s: WinogradTiling, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                               du: UnsafeMutablePointer<Float>, ldu: Int, duStride: Int, threads: Int) {
        let chunks = s.chunkCount, sumFloats = 16 * duStride, slots = s.weightSlots(sumFloats: sumFloats)
        ScratchPool.withBuffer((slots - 1) * sumFloats) { extra in
            /// Slot `slot`'s chunks summed into its buffer, `inner` threads on each chunk.
            func run(slot: Int, inner: Int) {
                let sum = slot == 0 ? du : extra + (slot - 1) * sumFloats
                let first = s.chunk(slot * chunks / slots).lowerBound
                let rows = first..<s.chunk((slot + 1) * chunks / slots - 1).upperBound
                runChunks(s, input: input, rows: rows, threads: inner) { chunk, v, m in
                    transformGradOutput(s, gradOutput: gradOutput, rows: chunk, into: m, threads: inner)
                    multiplyGradient(s, v: v, m: m, tiles: chunk.count * s.tilesWide, beta: chunk.lowerBound == first ? 0 : 1,
                                     du: sum, ldu: ldu, duStride: duStride, threads: inner)
                }
            }
            if s.threadsTakeChunks(threads) && slots >= threads {
                Kernels.parallelFor(threads, threads: threads) { t in
                    for slot in stride(from: t, to: slots, by: threads) { run(slot: slot, inner: 1) }
                }
            } else {
                for slot in 0..<slots { run(slot: slot, inner: threads) }
            }
            for slot in 1..<slots { ConvLoops.accumulate(du, extra + (slot - 1) * sumFloats, sumFloats) }
        }
    }

    /// `du[ξ] = dM[ξ]^T V[ξ] (+ du[ξ] when beta is 1)` for a chunk's first `tiles` tiles, each
    /// position on one thread.
    static func multiplyGradient(_ s: WinogradTiling, v: UnsafePointer<Float>, m: UnsafePointer<Float>, tiles: Int, beta: Float,
                                 du: UnsafeMutablePointer<Float>, ldu: Int, duStride: Int, threads: Int) {
        let (cin, cout) = (s.channels, s.outChannels)
        guard registerTiles else {
            Kernels.parallelFor(16, threads: threads) { xi in
                Kernels.sgemm(transA: true, transB: false, m: cout, n: cin, k: tiles, alpha: 1,
                              a: m + xi * s.outStride, lda: s.outPitch, b: v + xi * s.inStride, ldb: s.inPitch,
                              beta: beta, c: du + xi * duStride, ldc: ldu, threads: 1)
            }
            return
        }
        let mr = IndirectConvShape.mr, nr = IndirectConvShape.nr
        let rowTiles = (cout + mr - 1) / mr, panels = (cin + nr - 1) / nr
        let rows = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: max(1, tiles))
        defer { rows.deallocate() }
        for t in 0..<tiles { rows[t] = m + t * s.outPitch }
        // Blocks of tiles whose rows of V and dM stay in L2 while every register tile passes
        // over them (the depth of each sum in blocks of `depthTiles`, added in order).
        let block = WinogradTiling.depthTiles
        Kernels.parallelFor(16, threads: threads) { xi in
            let multiplying = KernelProfile.begin()
            for first in stride(from: 0, to: tiles, by: block) {
                let count = min(block, tiles - first), blockBeta: Float = first == 0 ? beta : 1
                for q in 0..<panels {
                    for tile in 0..<rowTiles {
                        IndirectTile.multiplyOverPositions(count, pointers: rows + first,
                                                           channelOffset: xi * s.outStride + tile * mr,
                                                           b: v + xi * s.inStride + first * s.inPitch + q * nr, ldb: s.inPitch,
                                                           beta: blockBeta, c: du + xi * duStride + tile * mr * ldu + q * nr,
                                                           ldc: ldu)
                    }
                }
            }
            KernelProfile.endProduct(multiplying, m: rowTiles * mr, n: panels * nr, k: tiles)
        }
    }

    /// Calls `body(chunk, v, m)` for the tile rows `rows` in chunks of `rowsPerChunk` from the
    /// first, in order, on the calling thread (`threads` inside each), with the chunk's input tiles
    /// transformed into `v` (`[16, chunkTiles, inPitch]`) and `m` a buffer of `[16, chunkTiles, outPitch]`.
    static func runChunks(_ s: WinogradTiling, input: UnsafePointer<Float>, rows: Range<Int>, threads: Int,
                          _ body: (Range<Int>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        guard !rows.isEmpty else { return }
        let vFloats = 16 * s.inStride
        ScratchPool.withBuffer(vFloats + 16 * s.outStride) { v in
            for first in stride(from: rows.lowerBound, to: rows.upperBound, by: s.rowsPerChunk) {
                let chunk = first..<min(rows.upperBound, first + s.rowsPerChunk)
                transformInput(s, input: input, rows: chunk, into: v, threads: threads)
                body(chunk, v, v + vFloats)
            }
        }
    }

    // MARK: Tile transforms

    /// `V[ξ][t][c] = (B^T d B)[ξ]` for the tiles of `rows` (global tile rows), every channel.
    static func transformInput(_ s: WinogradTiling, input: UnsafePointer<Float>, rows: Range<Int>,
                               into v: UnsafeMutablePointer<Float>, threads: Int) {
        transformTiles(InputTiles.self, s, source: input, channels: s.channels, height: s.height, width: s.width,
                       pad: s.pad, pitch: s.inPitch, rows: rows, into: v, threads: threads)
    }

    /// `dM[ξ][t][o] = (A dY A^T)[ξ]` for the tiles of `rows`: the output gradient's 2x2 tiles (zero
    /// past the last output row or column).
    static func transformGradOutput(_ s: WinogradTiling, gradOutput: UnsafePointer<Float>, rows: Range<Int>,
                                    into m: UnsafeMutablePointer<Float>, threads: Int) {
        transformTiles(GradOutputTiles.self, s, source: gradOutput, channels: s.outChannels, height: s.outHeight,
                       width: s.outWidth, pad: 0, pitch: s.outPitch, rows: rows, into: m, threads: threads)
    }

    /// Transforms the tiles of `rows` of the NCHW `source` (`channels` planes of `height x width`
    /// per sample, padded by `pad`) with `Tiles`: tile row `ty` reads padded rows
    /// `2ty ..< 2ty + Tiles.size`, copied to channels-last first; the 16 values of chunk tile `t`
    /// go to `dst[ξ * chunkTiles * pitch + t * pitch + channel]`, zeros from `channels` to `pitch`.
    static func transformTiles<Tiles: WinogradTiles>(_: Tiles.Type, _ s: WinogradTiling, source: UnsafePointer<Float>,
                                                     channels: Int, height: Int, width: Int, pad: Int, pitch: Int,
                                                     rows: Range<Int>, into dst: UnsafeMutablePointer<Float>, threads: Int) {
        let vectors = WinogradTiling.vectors(channels), plane = height * width, stride = s.chunkTiles * pitch
        let rowWidth = 2 * s.tilesWide + Tiles.size - 2, rowFloats = rowWidth * vectors
        let narrow = narrowTransforms
        s.forEachRun(rows, threads: threads) { n, tileRows, first in
            let count = 2 * tileRows.count + Tiles.size - 2
            ScratchPool.withBuffer(count * rowFloats) { copy in
                channelsLastRows(source + n * channels * plane, channels: channels, height: height, width: width,
                                 from: 2 * tileRows.lowerBound - pad, count: count, left: pad, rowWidth: rowWidth,
                                 pitch: vectors, into: copy)
                for ty in tileRows {
                    let top = copy + 2 * (ty - tileRows.lowerBound) * rowFloats
                    let firstTile = first + (ty - tileRows.lowerBound) * s.tilesWide
                    for tx in 0..<s.tilesWide {
                        let from = top + 2 * tx * vectors, to = dst + (firstTile + tx) * pitch
                        var c = 0
                        while c < vectors {
                            if narrow {
                                Tiles.transform(SIMD8<Float>.self, from + c, rowStride: rowFloats, step: vectors,
                                                dst: to + c, stride: stride)
                                Tiles.transform(SIMD8<Float>.self, from + (c &+ 8), rowStride: rowFloats, step: vectors,
                                                dst: to + (c &+ 8), stride: stride)
                            } else {
                                Tiles.transform(SIMD16<Float>.self, from + c, rowStride: rowFloats, step: vectors,
                                                dst: to + c, stride: stride)
                            }
                            c &+= 16
                        }
                        while c < pitch {
                            for xi in 0..<16 { VectorMath.store(V(), to + (xi &* stride &+ c)) }
                            c &+= 16
                        }
                    }
                }
            }
        }
    }

    /// Rows `from ..< from + count` of one sample's `channels` planes (`height x width`, zero
    /// outside them), channels-last: position `x` of row `r` (`left` zero positions first, zeros
    /// after the image to `rowWidth`) at `dst + (r * rowWidth + x) * pitch`, channels past
    /// `channels` zero.
    static func channelsLastRows(_ image: UnsafePointer<Float>, channels: Int, height: Int, width: Int, from: Int,
                                 count: Int, left: Int, rowWidth: Int, pitch: Int, into dst: UnsafeMutablePointer<Float>) {
        let plane = height * width
        for r in 0..<count {
            let y = from + r, row = dst + r * rowWidth * pitch
            guard y >= 0 && y < height else { ConvLoops.zero(row, rowWidth * pitch); continue }
            ConvLoops.zero(row, left * pitch)
            ConvLoops.transpose(rows: channels, columns: width, image + y * width, lds: plane, row + left * pitch, ldd: pitch)
            if pitch > channels {
                for x in left..<(left + width) { ConvLoops.zero(row + x * pitch + channels, pitch - channels) }
            }
            ConvLoops.zero(row + (left + width) * pitch, (rowWidth - left - width) * pitch)
        }
    }

    /// `output[n][o][2ty + a][2tx + b] = (A^T M A)[a][b] + bias[o]` for the tiles of `rows` (`bias`
    /// padded to whole vectors), then the epilogue on each pair of output rows.
    static func transformOutput(_ s: WinogradTiling, m: UnsafePointer<Float>, rows: Range<Int>, bias: UnsafePointer<Float>,
                                output: UnsafeMutablePointer<Float>, epilogue: ConvEpilogue?, threads: Int) {
        let cout = s.outChannels, vectors = WinogradTiling.vectors(cout), plane = s.outHeight * s.outWidth
        let stride = s.outStride, rowWidth = 2 * s.tilesWide
        s.forEachRun(rows, threads: threads) { n, tileRows, first in
            // A tile row's two output rows, channels-last.
            ScratchPool.withBuffer(2 * rowWidth * vectors) { pair in
                for ty in tileRows {
                    let firstTile = first + (ty - tileRows.lowerBound) * s.tilesWide
                    for tx in 0..<s.tilesWide {
                        let src = m + (firstTile + tx) * s.outPitch, to = pair + 2 * tx * vectors
                        var c = 0
                        while c < vectors {
                            let y = outputTile(src + c, stride: stride), b = VectorMath.load(bias + c, as: V.self)
                            VectorMath.store(y.0 + b, to + c)
                            VectorMath.store(y.1 + b, to + (vectors &+ c))
                            VectorMath.store(y.2 + b, to + (rowWidth &* vectors &+ c))
                            VectorMath.store(y.3 + b, to + ((rowWidth &+ 1) &* vectors &+ c))
                            c &+= 16
                        }
                    }
                    let rowsOut = min(2, s.outHeight - 2 * ty), top = (n * cout) * plane + 2 * ty * s.outWidth
                    for a in 0..<rowsOut {
                        ConvLoops.transpose(rows: s.outWidth, columns: cout, pair + a * rowWidth * vectors, lds: vectors,
                                            output + top + a * s.outWidth, ldd: plane)
                    }
                    if let epilogue {
                        for o in 0..<cout { epilogue.apply(output, at: top + o * plane, count: rowsOut * s.outWidth, channel: o) }
                    }
                }
            }
        }
    }

    /// `A^T M A` for 16 channels of a tile: outputs (0, 0), (0, 1), (1, 0), (1, 1).
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
    /// Rows (and columns) of a tile: 4 for input tiles, 2 for output-gradient tiles.
    static var size: Int { get }
    /// Transforms `V.scalarCount` channels of one tile, its row `i` column `j` at
    /// `src + i * rowStride + j * step`: value ξ goes to `dst + ξ * stride`.
    static func transform<V: SIMD>(_: V.Type, _ src: UnsafePointer<Float>, rowStride: Int, step: Int,
                                   dst: UnsafeMutablePointer<Float>, stride: Int) where V.Scalar == Float
}

/// Input tiles: `B^T d B` of 4x4 tiles, overlapping by two rows and columns.
enum InputTiles: WinogradTiles {
    static var size: Int { 4 }
    @inline(__always)
    static func transform<V: SIMD>(_: V.Type, _ src: UnsafePointer<Float>, rowStride: Int, step: Int,
                                   dst: UnsafeMutablePointer<Float>, stride: Int) where V.Scalar == Float {
        // d B for each of the four rows: (d0 - d2, d1 + d2, d2 - d1, d1 - d3).
        @inline(__always) func row(_ i: Int) -> (V, V, V, V) {
            let p = src + i &* rowStride
            let d0 = VectorMath.load(p, as: V.self), d1 = VectorMath.load(p + step, as: V.self)
            let d2 = VectorMath.load(p + 2 &* step, as: V.self), d3 = VectorMath.load(p + 3 &* step, as: V.self)
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
}

/// Output-gradient tiles: `A y A^T` of disjoint 2x2 tiles.
enum GradOutputTiles: WinogradTiles {
    static var size: Int { 2 }
    @inline(__always)
    static func transform<V: SIMD>(_: V.Type, _ src: UnsafePointer<Float>, rowStride: Int, step: Int,
                                   dst: UnsafeMutablePointer<Float>, stride: Int) where V.Scalar == Float {
        // A (a, b) = (a, a + b, a - b, -b), first along each row, then down each column.
        @inline(__always) func row(_ i: Int) -> (V, V, V, V) {
            let a = VectorMath.load(src + i &* rowStride, as: V.self), b = VectorMath.load(src + (i &* rowStride &+ step), as: V.self)
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
}
