// Forward convolution as an indirect matrix product (XNNPACK's "IGEMM"): no column matrix and
// no packing of the image.
//
// The input is copied once to channels-last (NHWC), so each (position, tap) reads Cin
// consecutive floats. The output, channels-last too (`[positions, Cout]`, `Cout` rounded up to a
// whole panel), is computed in MR x NR register tiles (`IndirectTile`: 12 x 32 on AVX-512, 6 x 16
// on AVX2; the text below counts in 12 x 32): 12 output positions by 32 output channels, summing
// over every tap and input channel
//
//     Y[p, co] = sum_t sum_c X[pointer(p, t) + c] * W[co, c, t]
//
// where `pointer(p, t)` is the NHWC address of the input that tap `t` of position `p` reads, or a
// block of zeros in the padding (the "indirection" table: 12 pointers per tile and tap). The
// weights are packed once per call into 32-channel panels, `[channel block][cout panel][tap][c][32]`.
// Positions of several samples run together (a tile may span two samples: its pointers say
// where each position reads), so small planes still fill the tiles; any stride, padding and
// dilation is only a different table.
//
// Row taps: with few input channels (the 3-channel stem) a tap's run of Cin floats is too short
// for a tile. The channels-last copy is then padded on both sides of each row and packed without
// gaps, so the KW taps of one kernel row read KW * Cin consecutive floats: a "tap" is a kernel
// row, its depth `(kx, c)`, and the 7x7 stem runs 7 taps of 21 instead of 49 of 3.
//
// Blocking: the depth of each tap in blocks of at most `blockDepth / taps` (a panel, taps x block
// x 32 floats, stays in L2 while a group of tiles of positions passes over it). For each group of
// tiles, the blocks run in order (the first writes the tile of Y, later ones add to it), and the
// group's rows of Y, still in cache, are then written to NCHW with the bias. Every element of Y is
// summed in the same order (blocks, then taps, then depth) whatever the thread count: threads take
// different output-channel panels. The epilogue runs on each chunk of samples.
// Padding: with several blocks (Y is then written out after all of them), the chunk's positions
// are taken in an order that groups those reading the padding for the same taps (`TileOrder`:
// interior positions first, then the first row, a corner, the first column, ...), and each tile
// skips the taps whose 12 rows all read zeros, weights and all. A 3x3 stride-2 layer onto 7x7
// outputs reads padding for 9% of its products, onto 14x14 for 5%; oneDNN's direct kernels do
// not compute them either. Skipped products are zeros, so the sums keep their bits. Measured on
// AMD EPYC Zen 4, interleaved A/B 5 rounds: ResNet's stride-2 3x3 forwards onto 7x7 0.92-0.93x
// the time on one and two threads, onto 14x14 0.91-0.97x.
// The tile is the SGEMM micro-kernel's (GEMMMicroKernel.swift): 12 x 32 on AVX-512, 6 x 16 on
// AVX2 (x86-64 host-CPU builds); other builds keep the column method (`ConvPlan`). On AMD EPYC
// (AVX2, one thread) the strided 3x3 forwards ran at 0.87-0.96x and the stem's at 0.81x their
// time with the column method.

/// Sizes of the indirect method's buffers for one geometry (internal).
struct IndirectConvShape {
    static let mr = IndirectTile.mr, nr = IndirectTile.nr
    /// Depth (taps x input channels) per block at most: a 72 KiB weight panel (64 channels of a
    /// 3x3 kernel in 32-wide panels, 128 in the 16-wide panels of AVX2; measured on AMD EPYC with
    /// AVX2, one and two threads: 576 there, half-size panels and twice the passes over Y, took the
    /// stride-2 3x3 forwards with 128-512 input channels 1.03-1.15x the time).
    static let blockDepth = 576 * 32 / nr
    /// A chunk of samples holds at least this many output positions (or the whole batch).
    static let chunkPositions = 384

    let g: Conv2dGeometry
    /// Whether a tap is a kernel row reading `KW * Cin` consecutive floats (see above).
    let rowTaps: Bool
    /// Taps per output position (`KH * KW`, or `KH` with row taps) and the floats each reads.
    let taps: Int, tapDepth: Int
    /// Output positions per sample, and positions of a sample's channels-last input
    /// (`H * rowWidth`, or `(H + 2 * padH) * rowWidth` with row taps).
    let outPlane: Int, inPlane: Int
    /// Output-channel panels of 32, and `Cout` rounded up to them (the row length of Y).
    let coutPanels: Int, ldy: Int
    /// Blocks of each tap's depth, as equal as they can be.
    let channelBlocks: Int
    /// Samples per chunk.
    let chunkSamples: Int
    /// Floats between positions of the channels-last input: `Cin` and 16 more, so the 12 rows a
    /// tile reads (positions a stride apart) do not all fall into one L1 set when `Cin` is a
    /// power of two (measured: 512 channels at stride 2, 4 KiB apart, ran at 70% of peak).
    /// With row taps, `Cin`.
    let pitch: Int
    /// Positions per row of the channels-last input: `W`, or `W + 2 * padW` with row taps.
    let rowWidth: Int
    /// Zero rows above and below each sample's channels-last input: `padH` with row taps (a
    /// tap's row is then always inside the copy), else none.
    let padRows: Int

    /// The forward's shape: row taps where the input has fewer than `ConvPlan.minIndirectChannels`
    /// channels and the kernel is not dilated along rows.
    static func forward(_ g: Conv2dGeometry) -> IndirectConvShape {
        IndirectConvShape(g, rowTaps: g.inChannels < ConvPlan.minIndirectChannels && g.dilationW == 1)
    }

    init(_ g: Conv2dGeometry, rowTaps: Bool = false) {
        self.g = g
        self.rowTaps = rowTaps
        taps = rowTaps ? g.kernelHeight : g.kernelHeight * g.kernelWidth
        tapDepth = rowTaps ? g.kernelWidth * g.inChannels : g.inChannels
        outPlane = g.outHeight * g.outWidth
        coutPanels = (g.outChannels + IndirectConvShape.nr - 1) / IndirectConvShape.nr
        ldy = coutPanels * IndirectConvShape.nr
        let channelBlock = max(1, IndirectConvShape.blockDepth / max(1, taps))
        channelBlocks = max(1, (tapDepth + channelBlock - 1) / channelBlock)
        chunkSamples = max(1, min(g.batch, (IndirectConvShape.chunkPositions + outPlane - 1) / max(1, outPlane)))
        pitch = rowTaps ? g.inChannels : g.inChannels + 16
        rowWidth = rowTaps ? g.width + 2 * g.padW : g.width
        padRows = rowTaps ? g.padH : 0
        inPlane = (g.height + 2 * padRows) * rowWidth
    }

    /// The depth of each tap in block `b`.
    func channels(ofBlock b: Int) -> Range<Int> {
        (b * tapDepth / channelBlocks)..<((b + 1) * tapDepth / channelBlocks)
    }

    /// Floats of the packed weight panels.
    var packedCount: Int { ldy * taps * tapDepth }

    /// Packs `weight` (`[Cout, Cin, KH, KW]`) into the panels at `dst` (`packedCount` floats):
    /// block `b` (depth `d0..<d1`) from `d0 * taps * ldy`, then panel `q` of `taps * (d1 - d0) * 32`
    /// floats, element `(t, d, j)` at `(t * (d1 - d0) + d - d0) * 32 + j`; zero past `Cout`.
    func packWeights(_ weight: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, threads: Int = 1) {
        let nr = IndirectConvShape.nr, cin = g.inChannels
        if rowTaps {
            // Depth d = kx * Cin + c of kernel row t: few floats (the stem's 9 Ki), plain loops.
            let kw = g.kernelWidth, kh = g.kernelHeight
            for b in 0..<channelBlocks {
                let block = channels(ofBlock: b), width = block.count
                for q in 0..<coutPanels {
                    let panel = dst + block.lowerBound * taps * ldy + q * taps * width * nr
                    for t in 0..<taps {
                        for d in block {
                            let kx = d / cin, c = d - kx * cin
                            let to = panel + (t * width + d - block.lowerBound) * nr
                            for j in 0..<nr {
                                let co = q * nr + j
                                to[j] = co < g.outChannels ? weight[((co * cin + c) * kh + t) * kw + kx] : 0
                            }
                        }
                    }
                }
            }
            return
        }
        Kernels.parallelFor(min(threads, coutPanels), threads: threads) { part in
            let parts = min(threads, coutPanels)
            for q in (part * coutPanels / parts)..<((part + 1) * coutPanels / parts) {
                for b in 0..<channelBlocks { packPanel(weight, panel: q, block: b, into: dst + panelOffset(q, block: b)) }
            }
        }
    }

    /// Where panel `q` of block `b` starts in the packed weights.
    func panelOffset(_ q: Int, block b: Int) -> Int {
        let block = channels(ofBlock: b)
        return block.lowerBound * taps * ldy + q * taps * block.count * IndirectConvShape.nr
    }

    /// Packs panel `q` of block `b` (`taps * block.count * 32` floats) at `dst`, as ``packWeights``
    /// does (no row taps).
    func packPanel(_ weight: UnsafePointer<Float>, panel q: Int, block b: Int, into dst: UnsafeMutablePointer<Float>) {
        let block = channels(ofBlock: b)
        for j in stride(from: 0, to: IndirectConvShape.nr, by: 8) {
            packRows(weight, outChannel: q * IndirectConvShape.nr + j, block: block, into: dst + j)
        }
    }

    /// Eight output channels' weights of the input channels `block` into their columns of a
    /// panel (`to`: column 0 of tap 0, channel `block.lowerBound`). Their weights are consecutive
    /// runs of `block.count * taps` floats, `(c, t)` in order, `Cin * taps` apart: 8 x 8 blocks are
    /// transposed in registers and each row stored where its `(t, c)` goes; missing channels
    /// (past `Cout`) are zeros.
    private func packRows(_ weight: UnsafePointer<Float>, outChannel first: Int, block: Range<Int>,
                          into to: UnsafeMutablePointer<Float>) {
        typealias V = SIMD8<Float>
        let nr = IndirectConvShape.nr, cin = g.inChannels, width = block.count, depth = width * taps
        let rows = max(0, min(8, g.outChannels - first)), lds = cin * taps
        let src = weight + (first * cin + block.lowerBound) * taps
        @inline(__always) func destination(_ column: Int) -> UnsafeMutablePointer<Float> {
            let c = column / taps
            return to + ((column - c * taps) * width + c) * nr
        }
        var column = 0
        if rows == 8 {
            var c = 0, t = 0
            while column + 8 <= depth {
                let from = src + column
                var r0 = VectorMath.load(from, as: V.self), r1 = VectorMath.load(from + lds, as: V.self)
                var r2 = VectorMath.load(from + 2 * lds, as: V.self), r3 = VectorMath.load(from + 3 * lds, as: V.self)
                var r4 = VectorMath.load(from + 4 * lds, as: V.self), r5 = VectorMath.load(from + 5 * lds, as: V.self)
                var r6 = VectorMath.load(from + 6 * lds, as: V.self), r7 = VectorMath.load(from + 7 * lds, as: V.self)
                GEMMSIMD.transpose(&r0, &r1, &r2, &r3, &r4, &r5, &r6, &r7)
                // Row i holds column `column + i`, which is (c, t) stepped i times.
                @inline(__always) func store(_ v: V) {
                    VectorMath.store(v, to + (t * width + c) * nr)
                    t += 1
                    if t == taps { t = 0; c += 1 }
                }
                store(r0); store(r1); store(r2); store(r3); store(r4); store(r5); store(r6); store(r7)
                column += 8
            }
        }
        for column in column..<depth {
            let row = destination(column)
            for r in 0..<8 { row[r] = r < rows ? src[r * lds + column] : 0 }
        }
    }
}

extension Kernels {
    /// Floats of the indirect method's weight panels for `g`.
    static func indirectWeightCount(_ g: Conv2dGeometry) -> Int {
        IndirectConvShape.forward(g).packedCount
    }

    /// Packs `weight` (`[Cout, Cin, KH, KW]`) into the indirect method's panels at `dst`
    /// (``indirectWeightCount(_:)`` floats), for ``conv2dForward`` to use as `transformedWeight`.
    static func packIndirectWeights(_ g: Conv2dGeometry, weight: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        IndirectConvShape.forward(g).packWeights(weight, into: dst)
    }

    /// With `packedWeight` (``packIndirectWeights(_:weight:into:)``), `weight` is not read.
    static func conv2dForwardIndirect(_ g: Conv2dGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                      bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, plan p: ConvPlan,
                                      epilogue: ConvEpilogue?, packedWeight: UnsafePointer<Float>? = nil) {
        let s = IndirectConvShape.forward(g)
        let mr = IndirectConvShape.mr, cin = g.inChannels
        let tiles = (s.chunkSamples * s.outPlane + mr - 1) / mr
        // One pooled buffer: the packed weights, the chunk's input (NHWC) followed by the zeros
        // that the padding reads, and Y.
        let packedCount = packedWeight == nil ? ConvPlan.rounded(s.packedCount) : 0
        let nhwcCount = ConvPlan.rounded(s.chunkSamples * s.inPlane * s.pitch + s.tapDepth)
        ScratchPool.withBuffer(packedCount + nhwcCount + tiles * mr * s.ldy) { scratch in
            let nhwc = scratch + packedCount, y = nhwc + nhwcCount
            let pointers = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: tiles * s.taps * mr)
            defer { pointers.deallocate() }
            // Tiles of border positions skip the taps that read only padding where the rows of Y
            // are written out after all blocks (with one block, each group's rows as they finish).
            let order = s.skipsPadding && s.channelBlocks > 1 ? IndirectConvShape.TileOrder(tiles: tiles) : nil
            defer { order?.deallocate() }
            // One chunk over several blocks packs each panel where it is used (see `multiply`).
            let panels: IndirectConvShape.Panels
            if let packedWeight {
                panels = .packed(packedWeight)
            } else if s.channelBlocks > 1 && !s.rowTaps && s.chunkSamples >= g.batch {
                panels = .packing(weight)
            } else {
                let packing = KernelProfile.begin()
                s.packWeights(weight, into: scratch, threads: p.threads)
                KernelProfile.end(packing, .packing)
                panels = .packed(scratch)
            }
            let zeros = nhwc + s.chunkSamples * s.inPlane * s.pitch
            zeros.update(repeating: 0, count: s.tapDepth)
            var first = 0, ordered = 0
            while first < g.batch {
                let count = min(s.chunkSamples, g.batch - first)
                // The order depends only on the chunk's sample count (all chunks but a short last one).
                if let order, count != ordered { s.orderTiles(samples: count, y: y, into: order); ordered = count }
                s.prepareChunk(input + first * cin * g.height * g.width, samples: count, nhwc: nhwc, zeros: zeros,
                               pointers: pointers, order: order, threads: p.threads)
                s.multiply(panels, pointers: pointers, positions: count * s.outPlane, order: order, y: y, bias: bias,
                           output: output + first * g.outChannels * s.outPlane, threads: p.threads)
                epilogue?.apply(output, samples: first..<(first + count), channels: 0..<g.outChannels,
                                of: g.outChannels, plane: s.outPlane)
                first += count
            }
        }
    }
}

extension IndirectConvShape {
    /// Tiles of positions that pass over one weight panel before the next: their inputs (12
    /// positions x taps x a channel block each) stay in L2 while the panels stream past.
    static let tileGroup = 8
    /// Output positions per block of the weight gradient's depth at most: a strip of 12 input
    /// channels (36 KiB) stays in L1 while a block of every output-gradient panel streams by.
    static let weightDepth = 768

    /// Copies `samples` NCHW samples at `input` to channels-last at `nhwc` and writes the
    /// indirection table of their output positions at `pointers` (tile, tap, then the tile's 12
    /// positions; positions past the end and padding read `zeros`).
    func prepareChunk(_ input: UnsafePointer<Float>, samples: Int, nhwc: UnsafeMutablePointer<Float>,
                      zeros: UnsafeMutablePointer<Float>, pointers: UnsafeMutablePointer<UnsafePointer<Float>>,
                      order: TileOrder? = nil, threads: Int) {
        let region = KernelProfile.begin()
        defer { KernelProfile.end(region, .convolutionData) }
        // The table needs only the addresses, not the copied rows: one parallel region for both.
        Kernels.parallelFor(threads, threads: threads) { part in
            copyChannelsLast(input, samples: samples, into: nhwc, part: part, of: threads)
            forEachTableEntry(positions: samples * outPlane, part: part, threads: threads, nhwc: nhwc, pitch: pitch,
                              zeros: zeros, order: order?.positions) { entry, row in pointers[entry] = UnsafePointer(row) }
        }
    }

    /// Calls `body(entry, row)` for the table entries of share `part` of `threads` of the tiles
    /// of `positions` output positions: entry `(tile * taps + tap) * 12 + r` is the row that
    /// position `tile * 12 + r` reads for `tap` in a buffer of rows `pitch` apart (`zeros` in the
    /// padding and past the last position). Entries are made in order, tap by tap within a tile:
    /// each tile's 12 positions are located once (no division per position without an `order`),
    /// and each entry is then an add and a bounds test (only the add with row taps). With an
    /// `order` (``TileOrder``), tile slot `s` holds position `order[s]` instead of `s`.
    @inline(__always)
    func forEachTableEntry(positions: Int, part: Int, threads: Int, nhwc: UnsafeMutablePointer<Float>, pitch: Int,
                           zeros: UnsafeMutablePointer<Float>, order: UnsafePointer<Int32>? = nil,
                           _ body: (Int, UnsafeMutablePointer<Float>) -> Void) {
        let mr = IndirectConvShape.mr, tiles = (positions + mr - 1) / mr
        let tileRange = (part * tiles / threads)..<((part + 1) * tiles / threads)
        guard !tileRange.isEmpty else { return }
        let kh = g.kernelHeight, kw = g.kernelWidth, height = g.height, width = g.width
        // Row taps read whole rows of the padded copy: no bounds to test, one add per entry.
        let rowStride = rowWidth * pitch, tapStride = g.dilationH * rowStride
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 3 * mr) { located in
            // Each position's sample offset, first input row and first column (with row taps, the
            // offset of its first tap's row in the padded copy).
            let offsets = located.baseAddress!, firstRows = offsets + mr, firstColumns = firstRows + mr
            var at = outputPosition(tileRange.lowerBound * mr)
            for tile in tileRange {
                let valid = min(mr, positions - tile * mr)
                for r in 0..<valid {
                    if let order { at = outputPosition(Int(order[tile * mr + r])) }
                    let y0 = at.oy * g.strideH - g.padH
                    if rowTaps {
                        offsets[r] = (at.sample * inPlane + (y0 + padRows) * rowWidth + at.ox * g.strideW) * pitch
                    } else {
                        offsets[r] = at.sample * inPlane * pitch
                        firstRows[r] = y0
                        firstColumns[r] = at.ox * g.strideW - g.padW
                    }
                    if order == nil { advance(&at) }
                }
                var entry = tile * taps * mr
                for ky in 0..<kh {
                    if rowTaps {
                        for r in 0..<valid { body(entry + r, nhwc + (offsets[r] + ky * tapStride)) }
                        for r in valid..<mr { body(entry + r, zeros) }
                        entry += mr
                        continue
                    }
                    let dy = ky * g.dilationH
                    for kx in 0..<kw {
                        let dx = kx * g.dilationW
                        for r in 0..<valid {
                            let iy = firstRows[r] + dy, ix = firstColumns[r] + dx
                            let inside = UInt(bitPattern: iy) < UInt(height) && UInt(bitPattern: ix) < UInt(width)
                            body(entry + r, inside ? nhwc + (offsets[r] + (iy * width + ix) * pitch) : zeros)
                        }
                        for r in valid..<mr { body(entry + r, zeros) }
                        entry += mr
                    }
                }
            }
        }
    }

    /// Each sample's `[Cin, H * W]` planes transposed to `[H * W, Cin]` (rows `pitch` apart); with
    /// row taps, each row padded by `padW` zero positions on both sides, and `padH` zero rows above
    /// and below each sample. Threads take runs of positions (whole rows with row taps), as long as
    /// they can be: the transposes' 8 x 8 blocks run along them, and only a run's last few
    /// positions go one by one.
    func copyChannelsLast(_ input: UnsafePointer<Float>, samples: Int, into nhwc: UnsafeMutablePointer<Float>, threads: Int) {
        Kernels.parallelFor(threads, threads: threads) { part in
            copyChannelsLast(input, samples: samples, into: nhwc, part: part, of: threads)
        }
    }

    /// Share `t` of `threads` of ``copyChannelsLast(_:samples:into:threads:)``.
    func copyChannelsLast(_ input: UnsafePointer<Float>, samples: Int, into nhwc: UnsafeMutablePointer<Float>,
                          part t: Int, of threads: Int) {
        let cin = g.inChannels, plane = g.height * g.width, pad = (rowWidth - g.width) / 2
        if rowTaps {
            let rows = g.height + 2 * padRows, bands = samples * rows
            for band in (t * bands / threads)..<((t + 1) * bands / threads) {
                let sample = band / rows, padded = band - sample * rows, row = padded - padRows
                let to = nhwc + (sample * inPlane + padded * rowWidth) * pitch
                guard row >= 0 && row < g.height else { ConvLoops.zero(to, rowWidth * pitch); continue }
                if pad > 0 {
                    ConvLoops.zero(to, pad * pitch)
                    ConvLoops.zero(to + (pad + g.width) * pitch, pad * pitch)
                }
                ConvLoops.transpose(rows: cin, columns: g.width, input + sample * cin * plane + row * g.width, lds: plane,
                                    to + pad * pitch, ldd: pitch)
            }
            return
        }
        // Positions of all samples, cut at multiples of 8 between threads and at samples.
        let total = samples * plane, units = (total + 7) / 8
        var position = min(total, units * t / threads * 8)
        let end = min(total, units * (t + 1) / threads * 8)
        while position < end {
            let sample = position / plane, q = position - sample * plane
            let count = min(end - position, plane - q)
            ConvLoops.transpose(rows: cin, columns: count, input + sample * cin * plane + q, lds: plane,
                                nhwc + position * pitch, ldd: pitch, prefetching: true)
            position += count
        }
    }

    /// Calls `body(position, tap, row)` for each output position in `positions` (counted across
    /// the chunk's samples) and each tap, with the channels-last input `row` it reads (`zeros` in
    /// the padding) in a buffer of rows `pitch` apart. Positions are walked in order, without
    /// divisions per position. Taps are single positions (the weight gradient's shape has no row
    /// taps).
    @inline(__always)
    func forEachPosition(_ positions: Range<Int>, nhwc: UnsafeMutablePointer<Float>, pitch: Int,
                         zeros: UnsafeMutablePointer<Float>, _ body: (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
        guard !positions.isEmpty else { return }
        var at = outputPosition(positions.lowerBound)
        let kh = g.kernelHeight, kw = g.kernelWidth
        for position in positions {
            let base = nhwc + at.sample * inPlane * pitch
            let y0 = at.oy * g.strideH - g.padH, x0 = at.ox * g.strideW - g.padW
            for ky in 0..<kh {
                let iy = y0 + ky * g.dilationH, rowInside = iy >= 0 && iy < g.height
                for kx in 0..<kw {
                    let ix = x0 + kx * g.dilationW
                    body(position, ky * kw + kx,
                         rowInside && ix >= 0 && ix < g.width ? base + (iy * g.width + ix) * pitch : zeros)
                }
            }
            advance(&at)
        }
    }

    /// An output position as sample, row and column.
    struct OutputPosition {
        var sample: Int, oy: Int, ox: Int
    }

    /// Output position `position`, counted across the chunk's samples.
    func outputPosition(_ position: Int) -> OutputPosition {
        let sample = position / outPlane, oy = (position - sample * outPlane) / g.outWidth
        return OutputPosition(sample: sample, oy: oy, ox: position - sample * outPlane - oy * g.outWidth)
    }

    /// Steps `at` to the next output position (no division).
    @inline(__always)
    func advance(_ at: inout OutputPosition) {
        at.ox += 1
        if at.ox == g.outWidth {
            at.ox = 0; at.oy += 1
            if at.oy == g.outHeight { at.oy = 0; at.sample += 1 }
        }
    }

    /// Whether the forward can order its tiles so that border positions skip the taps that read
    /// only padding (``TileOrder``): taps of single positions, at most 64 of them, and padding.
    var skipsPadding: Bool { !rowTaps && taps <= 64 && (g.padH > 0 || g.padW > 0) }

    /// The taps (bit `ky * KW + kx`) of output row `oy` whose input row lies in the padding.
    func paddedTaps(row oy: Int) -> UInt64 {
        let kw = g.kernelWidth, rowBits = UInt64.max >> UInt64(64 - kw)
        var mask: UInt64 = 0
        for ky in 0..<g.kernelHeight {
            let iy = oy * g.strideH - g.padH + ky * g.dilationH
            if iy < 0 || iy >= g.height { mask |= rowBits << UInt64(ky * kw) }
        }
        return mask
    }

    /// The taps (bit `ky * KW + kx`) of output column `ox` whose input column lies in the padding.
    func paddedTaps(column ox: Int) -> UInt64 {
        let kw = g.kernelWidth
        var mask: UInt64 = 0
        for kx in 0..<kw {
            let ix = ox * g.strideW - g.padW + kx * g.dilationW
            guard ix < 0 || ix >= g.width else { continue }
            for ky in 0..<g.kernelHeight { mask |= 1 << UInt64(ky * kw + kx) }
        }
        return mask
    }

    /// A chunk's output positions in the order its tiles take them (``orderTiles(samples:y:into:)``).
    /// Tile slot `s` (`tile * 12 + r`) holds position `positions[s]` and writes row `rows[s]` of Y;
    /// tile `t` skips the taps set in `skips[t]`, which read the padding for all its positions.
    struct TileOrder {
        let positions: UnsafeMutablePointer<Int32>
        let rows: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
        let skips: UnsafeMutablePointer<UInt64>
        let tiles: Int

        init(tiles: Int) {
            self.tiles = tiles
            positions = .allocate(capacity: tiles * IndirectConvShape.mr)
            rows = .allocate(capacity: tiles * IndirectConvShape.mr)
            skips = .allocate(capacity: tiles)
        }

        func deallocate() {
            positions.deallocate(); rows.deallocate(); skips.deallocate()
        }

        /// Taps run by `tile`: its taps less those it skips.
        func taps(ofTile tile: Int, in shape: IndirectConvShape) -> Int {
            shape.taps - (skips[tile] & shape.tapBits).nonzeroBitCount
        }

        /// Taps run by `tiles`.
        func taps(of tiles: Range<Int>, in shape: IndirectConvShape) -> Int {
            tiles.reduce(0) { $0 + taps(ofTile: $1, in: shape) }
        }

        /// Share `part` of `parts` of the chunk's `tiles`: runs of tiles with equal shares of the taps.
        func share(_ part: Int, of parts: Int, tiles: Int, in shape: IndirectConvShape) -> Range<Int> {
            let total = taps(of: 0..<tiles, in: shape)
            func boundary(_ p: Int) -> Int {
                if p == 0 { return 0 }
                if p == parts { return tiles }
                let target = p * total / parts
                var tile = 0, count = 0
                while tile < tiles && count < target {
                    count += taps(ofTile: tile, in: shape)
                    tile += 1
                }
                return tile
            }
            return boundary(part)..<boundary(part + 1)
        }
    }

    /// The bits of the kernel's taps in a ``TileOrder`` skip mask.
    var tapBits: UInt64 { UInt64.max >> UInt64(64 - taps) }

    /// Orders the `samples` positions of a chunk into `order` (Y at `y`): positions that read the
    /// padding for the same taps go together, interior positions first and in order, then each
    /// border class (the first row, a corner, the first column, ...) next to the one sharing most
    /// of its padded taps, so that their tiles skip those taps. (A 3x3 stride-2 layer onto 7x7
    /// outputs reads padding for 9% of its products; onto 14x14, 5%.) Tiles of Y rows in that
    /// order keep Y itself in position order.
    func orderTiles(samples: Int, y: UnsafeMutablePointer<Float>, into order: TileOrder) {
        let mr = IndirectConvShape.mr, positions = samples * outPlane
        let tiles = (positions + mr - 1) / mr
        precondition(tiles <= order.tiles, "tile order sized for \(order.tiles) tiles, chunk has \(tiles)")
        let rowMasks = (0..<g.outHeight).map { paddedTaps(row: $0) }
        let columnMasks = (0..<g.outWidth).map { paddedTaps(column: $0) }
        // The classes in a chain: interior first, then each next the one sharing most taps.
        var remaining = Set(rowMasks.flatMap { r in columnMasks.map { r | $0 } }).sorted()
        var chain: [UInt64] = []
        var last: UInt64 = 0
        if remaining.first == 0 { chain.append(0); remaining.removeFirst() }
        while !remaining.isEmpty {
            var best = 0
            for i in remaining.indices
            where (remaining[i] & last).nonzeroBitCount > (remaining[best] & last).nonzeroBitCount { best = i }
            last = remaining.remove(at: best)
            chain.append(last)
        }
        for tile in 0..<tiles { order.skips[tile] = .max }
        var slot = 0
        for mask in chain {
            for sample in 0..<samples {
                for oy in 0..<g.outHeight {
                    for ox in 0..<g.outWidth where rowMasks[oy] | columnMasks[ox] == mask {
                        let position = (sample * g.outHeight + oy) * g.outWidth + ox
                        order.positions[slot] = Int32(position)
                        order.rows[slot] = y + position * ldy
                        order.skips[slot / mr] &= mask
                        slot += 1
                    }
                }
            }
        }
        // Slots past the last position (reading zeros) write rows of Y past the positions.
        for s in positions..<(tiles * mr) {
            order.positions[s] = Int32(s)
            order.rows[s] = y + s * ldy
        }
    }

    /// The forward's weight panels: packed for the whole call (or cached by a frozen layer), or
    /// packed panel by panel where they are used.
    enum Panels {
        case packed(UnsafePointer<Float>)
        case packing(UnsafePointer<Float>)
    }

    /// `Y = X * W` for the chunk's `positions` output positions, written to the chunk's NCHW
    /// `output` with the bias. With packed panels threads take runs of tiles (a thread's inputs
    /// are the positions it copied to channels-last itself, in its own L2): with one block, each
    /// group of tiles passes over the panels and its rows of Y, still in cache, are written out
    /// next; with more, each block's panels pass in turn over the thread's tiles (the block's
    /// inputs, 64 channels of each position, stay in L2 while its panels pass) and its rows of Y
    /// are written out at the end. (Measured on the Xeon, two threads: taking panels instead, each
    /// thread read every position's inputs, and the 3x3 stride-2 forwards with 128-256 input
    /// channels ran 1.4x their one-thread speed.) With panels packed where they are used
    /// (`.packing`, into a buffer that stays in L2: the late layers' weights, 5-9 MB, are then
    /// read once and never written out), threads take panels, and Y is written out at the end.
    /// With an `order` (several blocks only), tile rows go to the rows of Y their positions name,
    /// tiles skip the taps it lists, threads taking tiles take equal shares of the taps to run,
    /// and Y is written out by runs of positions after all tiles.
    func multiply(_ weights: Panels, pointers: UnsafePointer<UnsafePointer<Float>>, positions: Int, order: TileOrder? = nil,
                  y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                  threads: Int) {
        let mr = IndirectConvShape.mr, nr = IndirectConvShape.nr, group = IndirectConvShape.tileGroup
        let tiles = (positions + mr - 1) / mr
        // Packed panels: threads take runs of tiles, each with all panels (a thread reads only
        // its own positions' inputs and table entries, which it copied and wrote itself). Panels
        // packed where they are used: threads take panels.
        let byTiles: Bool
        if case .packed = weights { byTiles = true } else { byTiles = false }
        let parts = min(threads, byTiles ? tiles : coutPanels)
        Kernels.parallelFor(parts, threads: parts) { part in
            let panels = byTiles ? 0..<coutPanels : (part * coutPanels / parts)..<((part + 1) * coutPanels / parts)
            let outChannels = (panels.lowerBound * nr)..<min(g.outChannels, panels.upperBound * nr)
            /// Block `b` of the tiles `groupTiles` over panel `q` at `panel`.
            func multiply(block b: Int, panel: UnsafePointer<Float>, _ q: Int, _ groupTiles: Range<Int>) {
                let block = channels(ofBlock: b)
                for tile in groupTiles {
                    if let order {
                        IndirectTile.multiply(taps: taps, skipping: order.skips[tile], channels: block.count,
                                              pointers: pointers + tile * taps * mr, channelOffset: block.lowerBound,
                                              b: panel, beta: b == 0 ? 0 : 1, rows: order.rows + tile * mr, column: q * nr)
                    } else {
                        IndirectTile.multiply(taps: taps, channels: block.count, pointers: pointers + tile * taps * mr,
                                              channelOffset: block.lowerBound, b: panel, beta: b == 0 ? 0 : 1,
                                              c: y + tile * mr * ldy + q * nr, ldc: ldy)
                    }
                }
            }
            /// Taps (times the 12 rows of a tile) that `tiles` run.
            func tapRows(_ tiles: Range<Int>) -> Int { (order?.taps(of: tiles, in: self) ?? tiles.count * taps) * mr }
            func write(_ rows: Range<Int>) {
                let writing = KernelProfile.begin()
                writeOutput(y, positions: rows, channels: outChannels, bias: bias, into: output)
                KernelProfile.end(writing, .convolutionData)
            }
            let ownTiles = order?.share(part, of: parts, tiles: tiles, in: self) ?? (part * tiles / parts)..<((part + 1) * tiles / parts)
            switch weights {
            case .packed(let packed) where channelBlocks == 1:
                for first in stride(from: ownTiles.lowerBound, to: ownTiles.upperBound, by: group) {
                    let groupTiles = first..<min(ownTiles.upperBound, first + group)
                    let rows = (first * mr)..<min(positions, groupTiles.upperBound * mr)
                    // The output lines this group writes load while its tiles run (the write then
                    // finds them in cache instead of stalling on each one).
                    let calls = groupTiles.count * panels.count
                    var prefetch = outputRows(rows, channels: outChannels, in: output, parts: calls)
                    let multiplying = KernelProfile.begin()
                    for q in panels {
                        let panel = packed + panelOffset(q, block: 0)
                        for tile in groupTiles {
                            prefetch?.fetchNextShare()
                            multiply(block: 0, panel: panel, q, tile..<(tile + 1))
                        }
                    }
                    KernelProfile.endProduct(multiplying, m: groupTiles.count * mr, n: panels.count * nr, k: taps * tapDepth)
                    write(rows)
                }
                return
            case .packed(let packed):
                let multiplying = KernelProfile.begin()
                for b in 0..<channelBlocks {
                    for first in stride(from: ownTiles.lowerBound, to: ownTiles.upperBound, by: group) {
                        for q in panels {
                            multiply(block: b, panel: packed + panelOffset(q, block: b), q,
                                     first..<min(ownTiles.upperBound, first + group))
                        }
                    }
                }
                KernelProfile.endProduct(multiplying, m: tapRows(ownTiles), n: panels.count * nr, k: tapDepth)
                // With an order, runs of positions are written after all tiles (below).
                if order == nil { write((ownTiles.lowerBound * mr)..<min(positions, ownTiles.upperBound * mr)) }
                return
            case .packing(let weight):
                // One panel of the widest block (blocks differ by at most one channel).
                let widest = (tapDepth + channelBlocks - 1) / channelBlocks
                let buffer = ScratchPool.allocate(taps * widest * nr)
                defer { buffer.deallocate() }
                let chunkTapRows = tapRows(0..<tiles)
                for b in 0..<channelBlocks {
                    for q in panels {
                        let packing = KernelProfile.begin()
                        packPanel(weight, panel: q, block: b, into: buffer)
                        KernelProfile.end(packing, .packing)
                        // The next panel's weights (from memory) load while the tiles pass over this one.
                        let (nextBlock, next) = q + 1 < panels.upperBound ? (b, q + 1) : (b + 1, panels.lowerBound)
                        var prefetch = nextBlock < channelBlocks
                            ? sourceRows(ofPanel: next, block: nextBlock, in: weight, parts: tiles) : nil
                        let multiplying = KernelProfile.begin()
                        for tile in 0..<tiles {
                            prefetch?.fetchNextShare()
                            multiply(block: b, panel: buffer, q, tile..<(tile + 1))
                        }
                        KernelProfile.endProduct(multiplying, m: chunkTapRows, n: nr, k: channels(ofBlock: b).count)
                    }
                }
            }
            write(0..<positions)
        }
        if byTiles, order != nil {
            Kernels.parallelFor(threads, threads: threads) { part in
                let writing = KernelProfile.begin()
                writeOutput(y, positions: (part * positions / threads)..<((part + 1) * positions / threads),
                            channels: 0..<g.outChannels, bias: bias, into: output)
                KernelProfile.end(writing, .convolutionData)
            }
        }
    }

    /// The weights that panel `q` of block `b` is packed from: up to 32 runs of
    /// `block.count * taps` floats, one per output channel, asked for over `parts` calls.
    func sourceRows(ofPanel q: Int, block b: Int, in weight: UnsafePointer<Float>, parts: Int) -> PrefetchRows {
        let block = channels(ofBlock: b), first = q * IndirectConvShape.nr, cin = g.inChannels
        return PrefetchRows(base: weight + (first * cin + block.lowerBound) * taps, rows: min(IndirectConvShape.nr, g.outChannels - first),
                            stride: cin * taps, floats: block.count * taps, parts: parts)
    }

    /// The NCHW output that rows `positions` of Y, columns `channels`, are written to, when the
    /// positions lie in one sample: a run of positions in each channel's plane, asked for over
    /// `parts` calls.
    func outputRows(_ positions: Range<Int>, channels: Range<Int>, in output: UnsafeMutablePointer<Float>,
                    parts: Int) -> PrefetchRows? {
        let sample = positions.lowerBound / outPlane, q = positions.lowerBound - sample * outPlane
        guard q + positions.count <= outPlane else { return nil }
        return PrefetchRows(base: output + (sample * g.outChannels + channels.lowerBound) * outPlane + q, rows: channels.count,
                            stride: outPlane, floats: positions.count, parts: parts)
    }

    /// Writes rows `positions` of Y (counted across the chunk's samples), columns `channels`, to
    /// the chunk's NCHW planes at `output` with the bias.
    func writeOutput(_ y: UnsafePointer<Float>, positions: Range<Int>, channels: Range<Int>, bias: UnsafePointer<Float>?,
                     into output: UnsafeMutablePointer<Float>) {
        var position = positions.lowerBound
        while position < positions.upperBound {
            let sample = position / outPlane, q = position - sample * outPlane
            let count = min(positions.upperBound - position, outPlane - q)
            let planes = output + (sample * g.outChannels + channels.lowerBound) * outPlane + q
            ConvLoops.transpose(rows: count, columns: channels.count, y + position * ldy + channels.lowerBound, lds: ldy,
                                planes, ldd: outPlane, destinationRows: true)
            if let bias {
                for co in channels {
                    let row = planes + (co - channels.lowerBound) * outPlane
                    ConvLoops.copyAdding(row, row, bias[co], count)
                }
            }
            position += count
        }
    }
}

extension Kernels {
    /// The weight gradient as indirect products: `dWt[(c, t), co] = sum_p X[row(p, t) + c] * dY[p, co]`
    /// (rows in the order of `W`'s `[Cin, KH * KW]`, so one transpose gives `dW[co, c, t]`), in
    /// 12 x 32 tiles (12 input channels of one tap, 32 output channels) whose depth runs over the
    /// output positions. The output gradient is turned once per chunk into 32-channel panels
    /// (`[panel][position][32]`); for each 12 input channels and tap, a block of positions' inputs
    /// is gathered through the indirection table into one contiguous `[position][12]` strip (in
    /// L1), which the SGEMM micro-kernel then multiplies by every panel in turn: both operands
    /// stream in order, where reading the inputs through the table in every tile left the
    /// prefetchers nothing to follow. Chunks and blocks of positions accumulate in order; threads
    /// take different strips, so the result does not depend on their number.
    static func conv2dBackwardWeightIndirect(_ g: Conv2dGeometry, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                             gradWeight: UnsafeMutablePointer<Float>, plan p: ConvPlan) {
        let s = IndirectConvShape(g)
        let mr = IndirectConvShape.mr, nr = IndirectConvShape.nr, cin = g.inChannels, cout = g.outChannels
        // Input channels rounded up to whole tiles: the last tile's extra rows read past a row's
        // channels (into the next row, or the zeros) and are dropped.
        let cpad = (cin + mr - 1) / mr * mr, chunkPositions = s.chunkSamples * s.outPlane
        // Rows of the transposed weight gradient 16 floats longer than a whole number of panels
        // (as the forward's `pitch`): 512 floats apart, the rows a tile writes and the final
        // transpose reads all fell into two L1 sets.
        let ldw = s.ldy + 16
        let nhwcCount = ConvPlan.rounded(s.chunkSamples * s.inPlane * s.pitch + cpad)
        let dyCount = ConvPlan.rounded(chunkPositions * s.ldy), dwCount = ConvPlan.rounded(s.taps * cpad * ldw)
        let stripCount = ConvPlan.rounded(min(chunkPositions, IndirectConvShape.weightDepth) * mr)
        let channelTiles = cpad / mr, strips = s.taps * channelTiles, parts = min(p.threads, strips)
        ScratchPool.withBuffer(nhwcCount + dyCount + dwCount + parts * stripCount) { scratch in
            let nhwc = scratch, dy = scratch + nhwcCount, dwt = dy + dyCount, stripBuffers = dwt + dwCount
            let zeros = nhwc + s.chunkSamples * s.inPlane * s.pitch
            zeros.update(repeating: 0, count: cpad)
            let pointers = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: s.taps * chunkPositions)
            defer { pointers.deallocate() }
            var first = 0
            while first < g.batch {
                let count = min(s.chunkSamples, g.batch - first), positions = count * s.outPlane
                let region = KernelProfile.begin()
                s.copyChannelsLast(input + first * cin * s.inPlane, samples: count, into: nhwc, threads: p.threads)
                // dY of each sample, [Cout, OH * OW] -> panels [OH * OW, 32], zero past Cout (threads
                // take panels), and the table (threads take positions).
                Kernels.parallelFor(p.threads, threads: p.threads) { part in
                    for q in (part * s.coutPanels / p.threads)..<((part + 1) * s.coutPanels / p.threads) {
                        let channels = (q * nr)..<min(cout, (q + 1) * nr), panel = dy + q * positions * nr
                        for sample in 0..<count {
                            let rows = panel + sample * s.outPlane * nr
                            if channels.count < nr {
                                for position in 0..<s.outPlane { ConvLoops.zero(rows + position * nr + channels.count, nr - channels.count) }
                            }
                            ConvLoops.transpose(rows: channels.count, columns: s.outPlane,
                                                gradOutput + ((first + sample) * cout + channels.lowerBound) * s.outPlane,
                                                lds: s.outPlane, rows, ldd: nr)
                        }
                    }
                    let own = (part * positions / p.threads)..<((part + 1) * positions / p.threads)
                    s.forEachPosition(own, nhwc: nhwc, pitch: s.pitch, zeros: zeros) { position, tap, row in
                        pointers[tap * chunkPositions + position] = UnsafePointer(row)
                    }
                }
                KernelProfile.end(region, .convolutionData)
                let blockCount = (positions + IndirectConvShape.weightDepth - 1) / IndirectConvShape.weightDepth
                Kernels.parallelFor(parts, threads: parts) { part in
                    let strip = stripBuffers + part * stripCount
                    for unit in (part * strips / parts)..<((part + 1) * strips / parts) {
                        let channelTile = unit / s.taps, t = unit - channelTile * s.taps, channelOffset = channelTile * mr
                        let c = dwt + (channelOffset * s.taps + t) * ldw, table = pointers + t * chunkPositions
                        for block in 0..<blockCount {
                            let depth = (block * positions / blockCount)..<((block + 1) * positions / blockCount)
                            let gather = KernelProfile.begin()
                            for (k, position) in depth.enumerated() {
                                ConvLoops.copy(strip + k * mr, table[position] + channelOffset, mr)
                            }
                            KernelProfile.end(gather, .packing)
                            let beta: Float = first == 0 && block == 0 ? 0 : 1
                            let product = KernelProfile.begin()
                            for q in 0..<s.coutPanels {
                                IndirectTile.multiplyPacked(depth: depth.count, a: strip, b: dy + (q * positions + depth.lowerBound) * nr,
                                                            beta: beta, c: c + q * nr, ldc: s.taps * ldw)
                            }
                            KernelProfile.endProduct(product, m: mr, n: s.ldy, k: depth.count)
                        }
                    }
                }
                first += count
            }
            // dW[co, (c, t)] = dWt[(c, t), co]: one transpose (threads take runs of rows).
            let region = KernelProfile.begin()
            let rows = cin * s.taps
            Kernels.parallelFor(p.threads, threads: p.threads) { part in
                let own = (part * rows / p.threads)..<((part + 1) * rows / p.threads)
                ConvLoops.transpose(rows: own.count, columns: cout, dwt + own.lowerBound * ldw, lds: ldw,
                                    gradWeight + own.lowerBound, ldd: rows, destinationRows: true)
            }
            KernelProfile.end(region, .convolutionData)
        }
    }
}

extension Kernels {
    /// The input gradient as indirect products, without col2im, by stride phases: input position
    /// `(iy, ix)` receives from exactly the taps `(ky, kx)` with `ky * dh - ph = iy` and
    /// `kx * dw - pw = ix` modulo the strides, so the positions of one phase `(iy % sh, ix % sw)`
    /// form an indirect product of their own (a stride-1 convolution of `dY` with that phase's
    /// taps, `dX[i, c] = sum_t sum_co dY[row(i, t), co] * W[co, c, t]`), and each element is
    /// computed once, in registers: 12 x 32 tiles (12 positions of a phase, 32 input channels)
    /// whose depth runs over the phase's taps and the output channels, written to the
    /// channels-last rows of their positions, then turned to NCHW. Every element is one tile's
    /// sum in one order and threads take different input-channel panels, so the result does not
    /// depend on the thread count. (Stride 1 is the single phase with every tap.)
    /// With `packedWeight` (``packIndirectTransposedWeights(_:weight:into:)``), `weight` is not read.
    static func conv2dBackwardInputIndirect(_ g: Conv2dGeometry, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                            gradInput: UnsafeMutablePointer<Float>, plan p: ConvPlan,
                                            packedWeight: UnsafePointer<Float>? = nil) {
        let s = IndirectConvShape(g), phases = StridePhases(g)
        let mr = IndirectConvShape.mr, nr = IndirectConvShape.nr, cin = g.inChannels, cout = g.outChannels
        let inPlane = g.height * g.width, chunkPositions = s.chunkSamples * s.outPlane
        // Input-channel panels; rows of dX and dY 16 floats longer than their channels (as the
        // forward's `pitch`: the 12 rows a tile reads or writes are then not all in one L1 set).
        let cinPanels = (cin + nr - 1) / nr, ldx = cinPanels * nr + 16, ldo = cout + 16
        let packedCount = packedWeight == nil ? ConvPlan.rounded(s.transposedPackedCount) : 0
        // dY rows and one row of zeros (taps that fall outside dY); dX rows and a discarded row.
        let dyCount = ConvPlan.rounded((chunkPositions + 1) * ldo), dxCount = ConvPlan.rounded((s.chunkSamples * inPlane + 1) * ldx)
        let table = phases.table(samples: s.chunkSamples)
        ScratchPool.withBuffer(packedCount + dyCount + dxCount) { scratch in
            let dy = scratch + packedCount, dx = dy + dyCount
            let zeros = dy + chunkPositions * ldo, sink = dx + s.chunkSamples * inPlane * ldx
            zeros.update(repeating: 0, count: cout)
            let sources = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: max(1, table.sourceCount))
            defer { sources.deallocate() }
            let targets = UnsafeMutablePointer<UnsafeMutablePointer<Float>>.allocate(capacity: max(1, table.targetCount))
            defer { targets.deallocate() }
            let packed = packedWeight ?? {
                let packing = KernelProfile.begin()
                s.packTransposedWeights(weight, into: scratch, threads: p.threads)
                KernelProfile.end(packing, .packing)
                return UnsafePointer(scratch)
            }()
            let parts = min(p.threads, cinPanels)
            var first = 0
            while first < g.batch {
                let count = min(s.chunkSamples, g.batch - first)
                let region = KernelProfile.begin()
                // dY to channels-last rows (threads take samples), and each phase's table (threads
                // take phases).
                Kernels.parallelFor(p.threads, threads: p.threads) { part in
                    for sample in (part * count / p.threads)..<((part + 1) * count / p.threads) {
                        ConvLoops.transpose(rows: cout, columns: s.outPlane,
                                            gradOutput + (first + sample) * cout * s.outPlane, lds: s.outPlane,
                                            dy + sample * s.outPlane * ldo, ldd: ldo)
                    }
                    for phase in stride(from: part, to: phases.count, by: p.threads) {
                        table.fill(phase, samples: count, dy: dy, ldo: ldo, zeros: zeros, dx: dx, ldx: ldx, sink: sink,
                                   sources: sources, targets: targets)
                    }
                }
                KernelProfile.end(region, .convolutionData)
                Kernels.parallelFor(parts, threads: parts) { part in
                    let panels = (part * cinPanels / parts)..<((part + 1) * cinPanels / parts)
                    let columns = (panels.lowerBound * nr)..<(panels.upperBound * nr)
                    let multiplying = KernelProfile.begin()
                    var rowTaps = 0
                    for phase in 0..<phases.count {
                        let taps = phases.taps(phase), tiles = table.tiles(phase, samples: count)
                        rowTaps += tiles * mr * taps.count
                        for group in stride(from: 0, to: tiles, by: IndirectConvShape.tileGroup) {
                            for q in panels {
                                let panel = packed + (q * s.taps + taps.lowerBound) * cout * nr
                                for tile in group..<min(tiles, group + IndirectConvShape.tileGroup) {
                                    IndirectTile.multiply(taps: taps.count, skipping: 0, channels: cout,
                                                          pointers: sources + table.sourceOffset(phase, tile: tile),
                                                          channelOffset: 0, b: panel, beta: 0,
                                                          rows: targets + table.targetOffset(phase, tile: tile), column: q * nr)
                                }
                            }
                        }
                    }
                    KernelProfile.endProduct(multiplying, m: rowTaps, n: columns.count, k: cout)
                    let writing = KernelProfile.begin()
                    let channels = columns.lowerBound..<min(cin, columns.upperBound)
                    for sample in 0..<count {
                        ConvLoops.transpose(rows: inPlane, columns: channels.count, dx + sample * inPlane * ldx + channels.lowerBound,
                                            lds: ldx, gradInput + ((first + sample) * cin + channels.lowerBound) * inPlane,
                                            ldd: inPlane, destinationRows: true)
                    }
                    KernelProfile.end(writing, .convolutionData)
                }
                first += count
            }
        }
    }
}

/// The stride phases of a convolution's input (internal): input row `iy` receives from the
/// kernel rows `ky` with `ky * dh - ph ≡ iy (mod sh)`, so the rows of one phase `iy % sh` share
/// their taps (likewise for columns). Taps are ordered phase by phase (`order`), so each phase's
/// taps are one run of the input gradient's packed weights.
struct StridePhases {
    let g: Conv2dGeometry
    /// The strides (at least 1).
    let sh: Int, sw: Int
    /// `sh * sw` phases, phase `(py, px)` at `py * sw + px`.
    let count: Int
    /// Taps (`ky * KW + kx`) in phase order, and where each phase's run starts (`count + 1` entries).
    let order: [Int], starts: [Int]

    init(_ g: Conv2dGeometry) {
        self.g = g
        let sh = max(1, g.strideH), sw = max(1, g.strideW)
        self.sh = sh
        self.sw = sw
        count = sh * sw
        func phase(_ k: Int, dilation: Int, padding: Int, stride: Int) -> Int {
            ((k * dilation - padding) % stride + stride) % stride
        }
        var order: [Int] = [], starts: [Int] = []
        for py in 0..<sh {
            for px in 0..<sw {
                starts.append(order.count)
                for ky in 0..<g.kernelHeight where phase(ky, dilation: g.dilationH, padding: g.padH, stride: sh) == py {
                    for kx in 0..<g.kernelWidth where phase(kx, dilation: g.dilationW, padding: g.padW, stride: sw) == px {
                        order.append(ky * g.kernelWidth + kx)
                    }
                }
            }
        }
        starts.append(order.count)
        self.order = order
        self.starts = starts
    }

    /// Phase `phase`'s row and column phases.
    func coordinates(_ phase: Int) -> (py: Int, px: Int) { (phase / sw, phase % sw) }

    /// The run of `order` that holds phase `phase`'s taps.
    func taps(_ phase: Int) -> Range<Int> { starts[phase]..<starts[phase + 1] }

    /// Input rows (or columns) of phase `p` in a size of `n`: `p, p + s, ...`.
    static func positions(_ p: Int, of n: Int, stride s: Int) -> Int { n > p ? (n - p + s - 1) / s : 0 }

    func table(samples: Int) -> Table { Table(self, samples: samples) }

    /// Where each phase's tiles find their `dY` rows (`sources`: per tile, per tap, 12 pointers)
    /// and the `dX` rows they write (`targets`: per tile, 12 pointers), for chunks of up to
    /// `samples` samples.
    struct Table {
        let phases: StridePhases
        /// Per phase: input positions per sample, and where its entries start in each table.
        let perSample: [Int], sourceStarts: [Int], targetStarts: [Int]
        let sourceCount: Int, targetCount: Int

        init(_ phases: StridePhases, samples: Int) {
            self.phases = phases
            let g = phases.g, mr = IndirectConvShape.mr
            var perSample: [Int] = [], sourceStarts: [Int] = [], targetStarts: [Int] = []
            var sources = 0, targets = 0
            for phase in 0..<phases.count {
                let (py, px) = phases.coordinates(phase)
                let n = StridePhases.positions(py, of: g.height, stride: phases.sh)
                    * StridePhases.positions(px, of: g.width, stride: phases.sw)
                perSample.append(n)
                sourceStarts.append(sources)
                targetStarts.append(targets)
                let tiles = (n * samples + mr - 1) / mr
                sources += tiles * phases.taps(phase).count * mr
                targets += tiles * mr
            }
            self.perSample = perSample
            self.sourceStarts = sourceStarts
            self.targetStarts = targetStarts
            sourceCount = sources
            targetCount = targets
        }

        /// Tiles of phase `phase` in a chunk of `samples` samples.
        func tiles(_ phase: Int, samples: Int) -> Int {
            (perSample[phase] * samples + IndirectConvShape.mr - 1) / IndirectConvShape.mr
        }

        func sourceOffset(_ phase: Int, tile: Int) -> Int {
            sourceStarts[phase] + tile * phases.taps(phase).count * IndirectConvShape.mr
        }

        func targetOffset(_ phase: Int, tile: Int) -> Int { targetStarts[phase] + tile * IndirectConvShape.mr }

        /// Fills phase `phase`'s entries for a chunk of `samples` samples: its positions in order
        /// (sample, row, column); a tile's positions past the last write to `sink` and read `zeros`.
        func fill(_ phase: Int, samples: Int, dy: UnsafePointer<Float>, ldo: Int, zeros: UnsafePointer<Float>,
                  dx: UnsafeMutablePointer<Float>, ldx: Int, sink: UnsafeMutablePointer<Float>,
                  sources: UnsafeMutablePointer<UnsafePointer<Float>>, targets: UnsafeMutablePointer<UnsafeMutablePointer<Float>>) {
            let g = phases.g, mr = IndirectConvShape.mr
            let sh = phases.sh, sw = phases.sw, (py, px) = phases.coordinates(phase)
            let columns = StridePhases.positions(px, of: g.width, stride: sw)
            let n = perSample[phase] * samples, tiles = self.tiles(phase, samples: samples)
            let taps = phases.taps(phase), kw = g.kernelWidth
            let from = sources + sourceStarts[phase], to = targets + targetStarts[phase]
            var sample = 0, a = 0, b = 0
            for position in 0..<(tiles * mr) {
                let tile = position / mr, r = position - tile * mr
                let base = from + tile * taps.count * mr + r
                guard position < n else {
                    to[position] = sink
                    for i in 0..<taps.count { base[i * mr] = zeros }
                    continue
                }
                let iy = py + a * sh, ix = px + b * sw
                to[position] = dx + ((sample * g.height + iy) * g.width + ix) * ldx
                for i in 0..<taps.count {
                    let tap = phases.order[taps.lowerBound + i], ky = tap / kw, kx = tap - ky * kw
                    // Multiples of the strides: the phase's taps are those whose offsets are.
                    let y = iy + g.padH - ky * g.dilationH, x = ix + g.padW - kx * g.dilationW
                    let oy = y / sh, ox = x / sw
                    let inside = y >= 0 && x >= 0 && oy < g.outHeight && ox < g.outWidth
                    base[i * mr] = inside ? dy + ((sample * g.outHeight + oy) * g.outWidth + ox) * ldo : zeros
                }
                b += 1
                if b == columns {
                    b = 0; a += 1
                    if py + a * sh >= g.height { a = 0; sample += 1 }
                }
            }
        }
    }
}

extension Kernels {
    /// Floats of the indirect input gradient's weight panels for `g`.
    static func indirectTransposedWeightCount(_ g: Conv2dGeometry) -> Int {
        IndirectConvShape(g).transposedPackedCount
    }

    /// Packs `weight` (`[Cout, Cin, KH, KW]`) into the indirect input gradient's panels at `dst`
    /// (``indirectTransposedWeightCount(_:)`` floats), for ``conv2dBackwardInput`` to use as
    /// `transformedWeight`.
    static func packIndirectTransposedWeights(_ g: Conv2dGeometry, weight: UnsafePointer<Float>,
                                              into dst: UnsafeMutablePointer<Float>) {
        IndirectConvShape(g).packTransposedWeights(weight, into: dst, threads: 1)
    }
}

extension IndirectConvShape {
    /// Floats of the input gradient's weight panels: input-channel panels x `taps` x `Cout` x 32.
    var transposedPackedCount: Int {
        taps * GEMMBlocking.roundUp(g.inChannels, to: IndirectConvShape.nr) * g.outChannels
    }

    /// The input gradient's weight panels: input-channel panel `q`, then the taps in phase order
    /// (``StridePhases/order``): the `i`-th, tap `t`, at `(q * taps + i) * Cout * 32`, element
    /// `(co, j)` at `co * 32 + j` = `W[co, 32q + j, t]` (zero past `Cin`). A phase's taps are then
    /// one run of each panel.
    func packTransposedWeights(_ weight: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, threads: Int) {
        let nr = IndirectConvShape.nr, cin = g.inChannels, cout = g.outChannels
        let cinPanels = (cin + nr - 1) / nr, order = StridePhases(g).order
        // For each panel of 32 input channels and output channel: their `[32, taps]` weights turned
        // to `[taps, 32]` (zero past `Cin`), then each tap's row copied to its place in the order.
        Kernels.parallelFor(threads, threads: threads) { part in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: taps * nr) { buffer in
                let turned = buffer.baseAddress!
                for q in 0..<cinPanels {
                    let rows = min(nr, cin - q * nr)
                    if rows < nr { turned.update(repeating: 0, count: taps * nr) }
                    for co in (part * cout / threads)..<((part + 1) * cout / threads) {
                        ConvLoops.transpose(rows: rows, columns: taps, weight + (co * cin + q * nr) * taps, lds: taps,
                                            turned, ldd: nr)
                        for (i, t) in order.enumerated() {
                            ConvLoops.copy(dst + ((q * taps + i) * cout + co) * nr, turned + t * nr, nr)
                        }
                    }
                }
            }
        }
    }
}

/// The register tile of the indirect method: the active SGEMM kernel's tile (12 x 32 on AVX-512,
/// 6 x 16 on AVX2; GEMMMicroKernel.swift) with its A operand read through row pointers instead
/// of a packed panel. Other builds have none (`kind` nil) and keep the column method.
enum IndirectTile {
    /// The tile shape the indirect method runs with in this build and on this CPU, if any.
    static let kind: GEMMKernelKind? = {
        switch GEMMKernelKind.active {
        case .tile12x32: return .tile12x32
        #if arch(x86_64)
        case .tile6x16: return .tile6x16
        #endif
        default: return nil
        }
    }()
    /// Rows (positions) and columns (channels) of the tile: 12 x 32, or 6 x 16 on AVX2.
    static let mr = kind == .tile6x16 ? IndirectRegisters<SIMD8<Float>>.mr : IndirectRegisters<SIMD16<Float>>.mr
    static let nr = kind == .tile6x16 ? IndirectRegisters<SIMD8<Float>>.nr : IndirectRegisters<SIMD16<Float>>.nr

    /// `C[mr x nr] = sum_t sum_c pointers[t * mr + r][channelOffset + c] * b[(t * channels + c) * nr + j]
    /// (+ C when beta is 1)`.
    static func multiply(taps: Int, channels: Int, pointers: UnsafePointer<UnsafePointer<Float>>, channelOffset: Int,
                         b: UnsafePointer<Float>, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if kind == .tile6x16 {
            multiply(SIMD8<Float>.self, taps: taps, channels: channels, pointers: pointers,
                     channelOffset: channelOffset, b: b, beta: beta, c: c, ldc: ldc)
        } else {
            multiply(SIMD16<Float>.self, taps: taps, channels: channels, pointers: pointers,
                     channelOffset: channelOffset, b: b, beta: beta, c: c, ldc: ldc)
        }
    }

    /// The first sum without the taps set in `skipping` (bit `t`: tap `t`, whose weights are
    /// passed over), row `r` written (`beta` 0) or added (`beta` 1) to the `nr` floats at
    /// `rows[r] + column`.
    static func multiply(taps: Int, skipping: UInt64, channels: Int, pointers: UnsafePointer<UnsafePointer<Float>>,
                         channelOffset: Int, b: UnsafePointer<Float>, beta: Float,
                         rows: UnsafePointer<UnsafeMutablePointer<Float>>, column: Int) {
        if kind == .tile6x16 {
            multiply(SIMD8<Float>.self, taps: taps, skipping: skipping, channels: channels, pointers: pointers,
                     channelOffset: channelOffset, b: b, beta: beta, rows: rows, column: column)
        } else {
            multiply(SIMD16<Float>.self, taps: taps, skipping: skipping, channels: channels, pointers: pointers,
                     channelOffset: channelOffset, b: b, beta: beta, rows: rows, column: column)
        }
    }

    /// `C[mr x nr] = sum_p pointers[p][channelOffset + r] * b[p * ldb + j] (+ C when beta is 1)`:
    /// the weight gradient's tile, its depth over output positions.
    static func multiplyOverPositions(_ positions: Int, pointers: UnsafePointer<UnsafePointer<Float>>, channelOffset: Int,
                                      b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if kind == .tile6x16 {
            multiplyOverPositions(SIMD8<Float>.self, positions, pointers: pointers, channelOffset: channelOffset,
                                  b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        } else {
            multiplyOverPositions(SIMD16<Float>.self, positions, pointers: pointers, channelOffset: channelOffset,
                                  b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        }
    }

    /// `C = alpha A B + beta C` for one full tile of packed panels (`a`: `[depth][mr]`, `b`:
    /// `[depth][nr]`) with the SGEMM kernel of this tile shape.
    static func multiplyPacked(depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, beta: Float,
                               c: UnsafeMutablePointer<Float>, ldc: Int) {
        if kind == .tile6x16 {
            GEMMKernel6x16.multiply(depth: depth, a: a, b: b, alpha: 1, beta: beta, c: c, ldc: ldc, prefetch: .none(at: a))
        } else {
            GEMMKernel12x32.multiply(depth: depth, a: a, b: b, alpha: 1, beta: beta, c: c, ldc: ldc, prefetch: .none(at: a))
        }
    }

    @inline(never)
    private static func multiply<V: SIMD>(
        _: V.Type, taps: Int, channels: Int, pointers: UnsafePointer<UnsafePointer<Float>>, channelOffset: Int,
        b: UnsafePointer<Float>, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) where V.Scalar == Float {
        sum(V.self, taps: taps, channels: channels, pointers: pointers, channelOffset: channelOffset, b: b)
            .write(c, ldc: ldc, beta: beta)
    }

    @inline(never)
    private static func multiply<V: SIMD>(
        _: V.Type, taps: Int, skipping: UInt64, channels: Int, pointers: UnsafePointer<UnsafePointer<Float>>,
        channelOffset: Int, b: UnsafePointer<Float>, beta: Float, rows: UnsafePointer<UnsafeMutablePointer<Float>>,
        column: Int
    ) where V.Scalar == Float {
        sum(V.self, taps: taps, skipping: skipping, channels: channels, pointers: pointers, channelOffset: channelOffset,
            b: b).write(rows, column: column, beta: beta)
    }

    /// `sum_t sum_c pointers[t * mr + r][channelOffset + c] * b[(t * channels + c) * nr + j]` in
    /// registers, over the taps `t` not set in `skipping`.
    @inline(__always)
    private static func sum<V: SIMD>(
        _: V.Type, taps: Int, skipping: UInt64 = 0, channels: Int, pointers: UnsafePointer<UnsafePointer<Float>>,
        channelOffset: Int, b: UnsafePointer<Float>
    ) -> IndirectRegisters<V> where V.Scalar == Float {
        var acc = IndirectRegisters<V>()
        var pb = b, row = pointers
        // A bottom-tested channel loop: with `for k in 0..<channels` (which may run zero times)
        // LLVM spilled and reloaded 15 of the 24 accumulators around it at every tap; this way
        // they stay in registers (a micro-benchmark on the Xeon: 9 taps of 16 channels 2-6%
        // faster, the stem's 7 row taps of 21 floats 5-6%).
        if channels > 0 {
            for t in 0..<taps {
                if skipping & (1 &<< UInt64(t)) != 0 {
                    pb += channels &* IndirectRegisters<V>.nr
                    row += IndirectRegisters<V>.mr
                    continue
                }
                let rows = IndirectRegisters<V>.Rows(row, offset: channelOffset)
                var k = 0
                repeat {
                    acc.add(rows, at: k, times: pb)
                    pb += IndirectRegisters<V>.nr
                    k &+= 1
                } while k < channels
                row += IndirectRegisters<V>.mr
            }
        }
        return acc
    }

    @inline(never)
    private static func multiplyOverPositions<V: SIMD>(
        _: V.Type, _ positions: Int, pointers: UnsafePointer<UnsafePointer<Float>>, channelOffset: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) where V.Scalar == Float {
        var acc = IndirectRegisters<V>()
        var pb = b
        for p in 0..<positions {
            acc.add(consecutive: pointers[p] + channelOffset, times: pb)
            pb += ldb
        }
        acc.write(c, ldc: ldc, beta: beta)
    }
}

/// The accumulators of an indirect register tile (kept in registers once inlined): `mr` rows of
/// two `V` halves, 12 x 32 with `SIMD16` (24 zmm registers, AVX-512) and 6 x 16 with `SIMD8` (12
/// ymm, AVX2; as in the SGEMM kernel, one `SIMD16` per row would leave LLVM to split and spill
/// them). `mr` is a constant for each `V`, so the tests on it fold away and the 6-row tile's
/// unused accumulators vanish.
struct IndirectRegisters<V: SIMD> where V.Scalar == Float {
    static var mr: Int { V.scalarCount >= 16 ? 12 : 6 }
    static var nr: Int { 2 * V.scalarCount }
    var c0a = V(), c0b = V(), c1a = V(), c1b = V(), c2a = V(), c2b = V()
    var c3a = V(), c3b = V(), c4a = V(), c4b = V(), c5a = V(), c5b = V()
    var c6a = V(), c6b = V(), c7a = V(), c7b = V(), c8a = V(), c8b = V()
    var c9a = V(), c9b = V(), c10a = V(), c10b = V(), c11a = V(), c11b = V()

    /// The tile's `mr` row pointers for one tap: `row[r] + offset` (rows past `mr` unused).
    struct Rows {
        let a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11: UnsafePointer<Float>
        @inline(__always)
        init(_ row: UnsafePointer<UnsafePointer<Float>>, offset: Int) {
            a0 = row[0] + offset; a1 = row[1] + offset; a2 = row[2] + offset
            a3 = row[3] + offset; a4 = row[4] + offset; a5 = row[5] + offset
            if IndirectRegisters.mr > 6 {
                a6 = row[6] + offset; a7 = row[7] + offset; a8 = row[8] + offset
                a9 = row[9] + offset; a10 = row[10] + offset; a11 = row[11] + offset
            } else {
                (a6, a7, a8, a9, a10, a11) = (a0, a0, a0, a0, a0, a0)
            }
        }
    }

    init() {}

    /// Row `r` += `rows[r][k]` times the `nr` floats at `b`.
    @inline(__always)
    mutating func add(_ r: Rows, at k: Int, times b: UnsafePointer<Float>) {
        let b0 = VectorMath.load(b, as: V.self), b1 = VectorMath.load(b + V.scalarCount, as: V.self)
        addLow(r.a0[k], r.a1[k], r.a2[k], r.a3[k], r.a4[k], r.a5[k], b0, b1)
        if Self.mr > 6 { addHigh(r.a6[k], r.a7[k], r.a8[k], r.a9[k], r.a10[k], r.a11[k], b0, b1) }
    }

    /// Row `r` += `a[r]` times the `nr` floats at `b`.
    @inline(__always)
    mutating func add(consecutive a: UnsafePointer<Float>, times b: UnsafePointer<Float>) {
        let b0 = VectorMath.load(b, as: V.self), b1 = VectorMath.load(b + V.scalarCount, as: V.self)
        addLow(a[0], a[1], a[2], a[3], a[4], a[5], b0, b1)
        if Self.mr > 6 { addHigh(a[6], a[7], a[8], a[9], a[10], a[11], b0, b1) }
    }

    /// Rows 0-5 += `a_r` times `(b0, b1)`.
    @inline(__always)
    private mutating func addLow(_ a0: Float, _ a1: Float, _ a2: Float, _ a3: Float, _ a4: Float, _ a5: Float,
                                 _ b0: V, _ b1: V) {
        var x = V(repeating: a0)
        c0a = GEMMSIMD.multiplyAdd(x, b0, c0a); c0b = GEMMSIMD.multiplyAdd(x, b1, c0b)
        x = V(repeating: a1)
        c1a = GEMMSIMD.multiplyAdd(x, b0, c1a); c1b = GEMMSIMD.multiplyAdd(x, b1, c1b)
        x = V(repeating: a2)
        c2a = GEMMSIMD.multiplyAdd(x, b0, c2a); c2b = GEMMSIMD.multiplyAdd(x, b1, c2b)
        x = V(repeating: a3)
        c3a = GEMMSIMD.multiplyAdd(x, b0, c3a); c3b = GEMMSIMD.multiplyAdd(x, b1, c3b)
        x = V(repeating: a4)
        c4a = GEMMSIMD.multiplyAdd(x, b0, c4a); c4b = GEMMSIMD.multiplyAdd(x, b1, c4b)
        x = V(repeating: a5)
        c5a = GEMMSIMD.multiplyAdd(x, b0, c5a); c5b = GEMMSIMD.multiplyAdd(x, b1, c5b)
    }

    /// Rows 6-11 += `a_r` times `(b0, b1)`.
    @inline(__always)
    private mutating func addHigh(_ a6: Float, _ a7: Float, _ a8: Float, _ a9: Float, _ a10: Float, _ a11: Float,
                                  _ b0: V, _ b1: V) {
        var x = V(repeating: a6)
        c6a = GEMMSIMD.multiplyAdd(x, b0, c6a); c6b = GEMMSIMD.multiplyAdd(x, b1, c6b)
        x = V(repeating: a7)
        c7a = GEMMSIMD.multiplyAdd(x, b0, c7a); c7b = GEMMSIMD.multiplyAdd(x, b1, c7b)
        x = V(repeating: a8)
        c8a = GEMMSIMD.multiplyAdd(x, b0, c8a); c8b = GEMMSIMD.multiplyAdd(x, b1, c8b)
        x = V(repeating: a9)
        c9a = GEMMSIMD.multiplyAdd(x, b0, c9a); c9b = GEMMSIMD.multiplyAdd(x, b1, c9b)
        x = V(repeating: a10)
        c10a = GEMMSIMD.multiplyAdd(x, b0, c10a); c10b = GEMMSIMD.multiplyAdd(x, b1, c10b)
        x = V(repeating: a11)
        c11a = GEMMSIMD.multiplyAdd(x, b0, c11a); c11b = GEMMSIMD.multiplyAdd(x, b1, c11b)
    }

    /// Row `r` stored at (`beta` 0) or added to (`beta` 1) the `nr` floats at `rows[r] + column`.
    @inline(__always)
    func write(_ rows: UnsafePointer<UnsafeMutablePointer<Float>>, column: Int, beta: Float) {
        @inline(__always) func row(_ low: V, _ high: V, _ r: Int) {
            let to = rows[r] + column
            GEMMSIMD.update(low, to, alpha: 1, beta: beta)
            GEMMSIMD.update(high, to + V.scalarCount, alpha: 1, beta: beta)
        }
        row(c0a, c0b, 0); row(c1a, c1b, 1); row(c2a, c2b, 2); row(c3a, c3b, 3); row(c4a, c4b, 4); row(c5a, c5b, 5)
        guard Self.mr > 6 else { return }
        row(c6a, c6b, 6); row(c7a, c7b, 7); row(c8a, c8b, 8); row(c9a, c9b, 9); row(c10a, c10b, 10); row(c11a, c11b, 11)
    }

    /// `C = acc` (`beta` 0) or `C = acc + C` (`beta` 1), row `r` at `c + r * ldc`.
    @inline(__always)
    func write(_ c: UnsafeMutablePointer<Float>, ldc: Int, beta: Float) {
        @inline(__always) func row(_ low: V, _ high: V, _ row: UnsafeMutablePointer<Float>) {
            GEMMSIMD.update(low, row, alpha: 1, beta: beta)
            GEMMSIMD.update(high, row + V.scalarCount, alpha: 1, beta: beta)
        }
        row(c0a, c0b, c); row(c1a, c1b, c + ldc); row(c2a, c2b, c + 2 &* ldc)
        row(c3a, c3b, c + 3 &* ldc); row(c4a, c4b, c + 4 &* ldc); row(c5a, c5b, c + 5 &* ldc)
        guard Self.mr > 6 else { return }
        row(c6a, c6b, c + 6 &* ldc); row(c7a, c7b, c + 7 &* ldc); row(c8a, c8b, c + 8 &* ldc)
        row(c9a, c9b, c + 9 &* ldc); row(c10a, c10b, c + 10 &* ldc); row(c11a, c11b, c + 11 &* ldc)
    }
}
