// Forward convolution with few input channels (the 3-channel stem of a CNN) as a direct
// convolution over vectors of outputs, written straight into the NCHW planes (x86-64 host-CPU
// builds with AVX-512 or AVX2).
//
// With 3 input channels an output sums only `Cin * KH * KW` products (147 for the 7x7 stem): too
// little depth for a matrix product's packing to pay, and the indirect method's channels-last
// output must then be turned to NCHW (a fifth of the stem's forward on AVX-512, measured). Here a
// register tile is 6 vectors of 16 consecutive outputs of a row by 4 output channels (3 vectors
// of 8 on AVX2; the text below counts in 16), and each step of the depth (input channel c, kernel
// row ky, kernel column kx) adds `x_v * W[co, c, ky, kx]`, where `x_v` holds the 16 inputs that
// vector `v`'s outputs read for that tap.
//
// With a column stride s those inputs are s apart, so the input planes are first copied, padded,
// with each row split into its s phases, as the depthwise kernels read them (`PhasePlane`,
// Conv2dDepthwise.swift): tap kx of output column ox reads phase `(kx * dw) % s` at index
// `ox + (kx * dw) / s`, and a vector's 16 inputs are consecutive floats. A tap's address is the
// vector's base (its sample, row and first column) plus an offset that depends on the tap alone
// (a table of `Cin * KH * KW` offsets), so a tile's vectors may lie in different rows and
// samples. Rows must hold whole vectors (a multiple of 16 outputs, of 8 on AVX2: 112 for the
// stem on 224x224 images).
//
// On AVX-512 the tile's 24 accumulators, 4 broadcast weights and one input vector fill 29 of the
// 32 zmm registers; a step of the depth loads 6 input vectors and 4 weights for 24 fused
// multiply-adds (the 12 x 32 matrix tile loads 14 for 24). On AVX2 the 12 accumulators, 3 input
// vectors and one weight at a time fill the 16 ymm registers: 7 loads for 12 (the 6 x 16 matrix
// tile loads 8). On AMD EPYC (AVX2, one thread) the stem's forward took 0.85x the indirect
// method's time. Each output is summed over the depth in one order by one tile, and threads take
// runs of tiles, so the result does not depend on the thread count.

/// Sizes of the direct method's buffers for one geometry (internal).
struct DirectConvShape {
    /// Outputs per vector, vectors per tile (``DirectTile``: 16 and 6 on AVX-512, 8 and 3 on
    /// AVX2), output channels per tile.
    static let lanes = DirectTile.lanes, vectors = DirectTile.vectors, channels = 4
    /// Tiles that run before their outputs get the epilogue (768 outputs of every channel, in L2).
    static let tileGroup = 768 / (lanes * vectors)

    let g: Conv2dGeometry
    /// One padded, phase-split input plane.
    let plane: PhasePlane
    /// Products per output (`Cin * KH * KW`), and tiles of 4 output channels.
    let depth: Int, channelGroups: Int
    /// Vectors per output row, per sample and in the batch.
    let rowVectors: Int, sampleVectors: Int, vectorCount: Int
    /// Floats of one output plane.
    var outPlane: Int { g.outHeight * g.outWidth }

    /// Whether the method can run `g` (whatever its channel count): x86-64 host-CPU builds with
    /// AVX2 or AVX-512, one group, rows of whole vectors.
    static func supports(_ g: Conv2dGeometry) -> Bool {
        DirectTile.available && g.groups == 1 && g.batch > 0 && g.inChannels > 0
            && g.outHeight > 0 && g.outWidth > 0 && g.outWidth % lanes == 0
    }

    init(_ g: Conv2dGeometry) {
        self.g = g
        plane = PhasePlane(input: g)
        depth = g.inChannels * g.kernelHeight * g.kernelWidth
        channelGroups = (g.outChannels + DirectConvShape.channels - 1) / DirectConvShape.channels
        rowVectors = g.outWidth / DirectConvShape.lanes
        sampleVectors = rowVectors * g.outHeight
        vectorCount = g.batch * sampleVectors
    }

    /// Tiles of 6 vectors (the last may have fewer).
    var tiles: Int { (vectorCount + DirectConvShape.vectors - 1) / DirectConvShape.vectors }
    /// Floats of the phased input, and of the packed weights (`[channel group][depth][4]`).
    var phasedCount: Int { g.batch * g.inChannels * plane.count }
    var packedCount: Int { channelGroups * depth * DirectConvShape.channels }

    /// Where tap `(c, ky, kx)` reads, from a vector's base in the phased input.
    func tapOffset(channel c: Int, row ky: Int, column kx: Int) -> Int {
        c * plane.count + ky * g.dilationH * plane.rowStride + plane.tapOffset(kx, dilation: g.dilationW)
    }

    /// Vector `v` (counted across the batch): the offset of its base in the phased input, and of
    /// its first output in channel 0's plane.
    func vectorBase(_ v: Int) -> (input: Int, output: Int) {
        let n = v / sampleVectors, r = v - n * sampleVectors, oy = r / rowVectors
        let ox = (r - oy * rowVectors) * DirectConvShape.lanes
        return (n * g.inChannels * plane.count + oy * g.strideH * plane.rowStride + ox,
                n * g.outChannels * outPlane + r * DirectConvShape.lanes)
    }

    /// Copies input planes `planes` (`N * Cin` of them, NCHW at `input`) to `phased`, padding
    /// zeroed.
    func copyPlanes(_ input: UnsafePointer<Float>, planes: Range<Int>, into phased: UnsafeMutablePointer<Float>) {
        for p in planes {
            let to = phased + p * plane.count
            plane.zeroPadding(to, h: g.height, w: g.width)
            plane.write(input + p * g.height * g.width, h: g.height, w: g.width, into: to)
        }
    }

    /// Packs `weight` (`[Cout, Cin, KH, KW]`, each output channel's `depth` floats in tap order)
    /// at `dst` (`packedCount` floats): group `q`, step `k`, channel `j` at `(q * depth + k) * 4 + j`,
    /// zero past `Cout`.
    func packWeights(_ weight: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        let n = DirectConvShape.channels
        for q in 0..<channelGroups {
            // The group's `[channels, depth]` weights turned to `[depth, 4]`.
            let rows = min(n, g.outChannels - q * n), to = dst + q * depth * n
            ConvLoops.transpose(rows: rows, columns: depth, weight + q * n * depth, lds: depth, to, ldd: n)
            if rows < n { for k in 0..<depth { ConvLoops.zero(to + k * n + rows, n - rows) } }
        }
    }
}

extension Kernels {
    /// The forward by the direct method (``DirectConvShape``): the input copied once to padded
    /// phase rows, then tiles of 6 output vectors by 4 channels written to `output` with the
    /// bias; the epilogue runs on each group of tiles while its outputs are in cache.
    static func conv2dForwardDirect(_ g: Conv2dGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, plan p: ConvPlan,
                                    epilogue: ConvEpilogue?) {
        let s = DirectConvShape(g)
        let phasedCount = ConvPlan.rounded(s.phasedCount)
        ScratchPool.withBuffer(phasedCount + s.packedCount) { scratch in
            let phased = scratch, packed = scratch + phasedCount
            let offsets = UnsafeMutablePointer<Int>.allocate(capacity: s.depth)
            defer { offsets.deallocate() }
            var k = 0
            for c in 0..<g.inChannels {
                for ky in 0..<g.kernelHeight {
                    for kx in 0..<g.kernelWidth { offsets[k] = s.tapOffset(channel: c, row: ky, column: kx); k += 1 }
                }
            }
            let preparing = KernelProfile.begin()
            s.packWeights(weight, into: packed)
            let planes = g.batch * g.inChannels
            Kernels.parallelFor(p.threads, threads: p.threads) { part in
                s.copyPlanes(input, planes: (part * planes / p.threads)..<((part + 1) * planes / p.threads), into: phased)
            }
            KernelProfile.end(preparing, .convolutionData)
            let tiles = s.tiles, parts = min(p.threads, tiles)
            Kernels.parallelFor(parts, threads: parts) { part in
                let own = (part * tiles / parts)..<((part + 1) * tiles / parts)
                for first in stride(from: own.lowerBound, to: own.upperBound, by: DirectConvShape.tileGroup) {
                    let groupTiles = first..<min(own.upperBound, first + DirectConvShape.tileGroup)
                    let multiplying = KernelProfile.begin()
                    s.multiply(tiles: groupTiles, phased: phased, offsets: offsets, packed: packed, bias: bias, output: output)
                    let vectors = (groupTiles.lowerBound * DirectConvShape.vectors)..<min(s.vectorCount,
                                                                                          groupTiles.upperBound * DirectConvShape.vectors)
                    KernelProfile.endProduct(multiplying, m: vectors.count * DirectConvShape.lanes,
                                             n: s.channelGroups * DirectConvShape.channels, k: s.depth)
                    if let epilogue { s.apply(epilogue, vectors: vectors, output: output) }
                }
            }
        }
    }
}

extension DirectConvShape {
    /// Tiles `tiles`, channel group by channel group (a group's weights stay in L1 while the
    /// tiles' inputs come from L2). A tile's missing vectors (the batch's last tile) repeat its
    /// last one, which is then written more than once with the same values.
    func multiply(tiles: Range<Int>, phased: UnsafePointer<Float>, offsets: UnsafePointer<Int>, packed: UnsafePointer<Float>,
                  bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
        let n = DirectConvShape.vectors, plane = outPlane, count = tiles.count * n
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * count) { buffer in
            let inputs = buffer.baseAddress!, outputs = inputs + count
            for v in 0..<count {
                let base = vectorBase(min(tiles.lowerBound * n + v, vectorCount - 1))
                inputs[v] = base.input
                outputs[v] = base.output
            }
            for q in 0..<channelGroups {
                let first = q * DirectConvShape.channels
                for t in 0..<tiles.count {
                    DirectTile.multiply(depth: depth, offsets: offsets, input: phased, bases: inputs + t * n,
                                        weights: packed + q * depth * DirectConvShape.channels,
                                        output: output + first * plane, outputs: outputs + t * n, plane: plane,
                                        channels: min(DirectConvShape.channels, g.outChannels - first),
                                        bias: bias.map { $0 + first })
                }
            }
        }
    }

    /// The epilogue on every channel of vectors `vectors`: one run per sample they cover.
    func apply(_ epilogue: ConvEpilogue, vectors: Range<Int>, output: UnsafeMutablePointer<Float>) {
        var v = vectors.lowerBound
        while v < vectors.upperBound {
            let sample = v / sampleVectors, end = min(vectors.upperBound, (sample + 1) * sampleVectors)
            let start = (v - sample * sampleVectors) * DirectConvShape.lanes
            for co in 0..<g.outChannels {
                epilogue.apply(output, at: (sample * g.outChannels + co) * outPlane + start,
                               count: (end - v) * DirectConvShape.lanes, channel: co)
            }
            v = end
        }
    }
}

/// The direct method's register tile: `vectors` vectors of `lanes` consecutive outputs by 4 output
/// channels, 6 x 16 with `SIMD16` (AVX-512) and 3 x 8 with `SIMD8` (AVX2, 12 of the 16 ymm
/// registers). Builds without the indirect method's tile (`IndirectTile.kind` nil) have none.
enum DirectTile {
    /// Whether this build and CPU run the method: x86-64 host-CPU builds with AVX2 or AVX-512.
    static let available = IndirectTile.kind != nil
    /// Whether the tile is the AVX-512 one (`SIMD16`).
    static let wide = IndirectTile.kind == .tile12x32
    /// Outputs per vector and vectors per tile.
    static let lanes = wide ? SIMD16<Float>.scalarCount : SIMD8<Float>.scalarCount
    static let vectors = wide ? vectors(SIMD16<Float>.self) : vectors(SIMD8<Float>.self)

    /// Vectors per tile with `V`: 6 of 16 lanes (24 zmm accumulators), 3 of 8 (12 ymm).
    @inline(__always)
    private static func vectors<V: SIMD>(_: V.Type) -> Int { V.scalarCount >= 16 ? 6 : 3 }

    /// For `j < channels` and each vector `v`: the `lanes` floats at `output + j * plane + outputs[v]`
    /// become `sum_k input[bases[v] + offsets[k] + (0..<lanes)] * weights[k * 4 + j]`, plus
    /// `bias[j]` when there is a bias (added once, after the sum).
    static func multiply(depth: Int, offsets: UnsafePointer<Int>, input: UnsafePointer<Float>, bases: UnsafePointer<Int>,
                         weights: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, outputs: UnsafePointer<Int>,
                         plane: Int, channels: Int, bias: UnsafePointer<Float>?) {
        if wide {
            multiply(SIMD16<Float>.self, depth: depth, offsets: offsets, input: input, bases: bases, weights: weights,
                     output: output, outputs: outputs, plane: plane, channels: channels, bias: bias)
        } else {
            multiply(SIMD8<Float>.self, depth: depth, offsets: offsets, input: input, bases: bases, weights: weights,
                     output: output, outputs: outputs, plane: plane, channels: channels, bias: bias)
        }
    }

    /// The tile with `V`: 6 vectors for `SIMD16`, 3 for `SIMD8` (a constant for each `V`, so the
    /// tests on it fold away and the unused accumulators vanish).
    @inline(never)
    private static func multiply<V: SIMD>(
        _: V.Type, depth: Int, offsets: UnsafePointer<Int>, input: UnsafePointer<Float>, bases: UnsafePointer<Int>,
        weights: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, outputs: UnsafePointer<Int>,
        plane: Int, channels: Int, bias: UnsafePointer<Float>?
    ) where V.Scalar == Float {
        let six = vectors(V.self) == 6
        let x0 = input + bases[0], x1 = input + bases[1], x2 = input + bases[2]
        let x3 = six ? input + bases[3] : x0, x4 = six ? input + bases[4] : x0, x5 = six ? input + bases[5] : x0
        var a00 = V(), a01 = V(), a02 = V(), a03 = V(), a10 = V(), a11 = V(), a12 = V(), a13 = V()
        var a20 = V(), a21 = V(), a22 = V(), a23 = V(), a30 = V(), a31 = V(), a32 = V(), a33 = V()
        var a40 = V(), a41 = V(), a42 = V(), a43 = V(), a50 = V(), a51 = V(), a52 = V(), a53 = V()
        var w = weights, k = 0
        // Bottom-tested, as the indirect tile's loop (the accumulators stay in registers).
        if depth > 0 {
            repeat {
                let o = offsets[k]
                if six {
                    // 24 accumulators, the 4 weights and one input vector at a time (29 zmm).
                    let w0 = V(repeating: w[0]), w1 = V(repeating: w[1]), w2 = V(repeating: w[2]), w3 = V(repeating: w[3])
                    // One vector's row of the tile: its inputs for this tap times the 4 weights.
                    @inline(__always) func add(_ x: UnsafePointer<Float>, _ a0: inout V, _ a1: inout V, _ a2: inout V,
                                               _ a3: inout V) {
                        let v = VectorMath.load(x + o, as: V.self)
                        a0 = GEMMSIMD.multiplyAdd(v, w0, a0); a1 = GEMMSIMD.multiplyAdd(v, w1, a1)
                        a2 = GEMMSIMD.multiplyAdd(v, w2, a2); a3 = GEMMSIMD.multiplyAdd(v, w3, a3)
                    }
                    add(x0, &a00, &a01, &a02, &a03); add(x1, &a10, &a11, &a12, &a13); add(x2, &a20, &a21, &a22, &a23)
                    add(x3, &a30, &a31, &a32, &a33); add(x4, &a40, &a41, &a42, &a43); add(x5, &a50, &a51, &a52, &a53)
                } else {
                    // 12 accumulators, the 3 input vectors and one weight at a time (16 ymm; the
                    // 4 weights at once took 17, and LLVM spilled).
                    let v0 = VectorMath.load(x0 + o, as: V.self), v1 = VectorMath.load(x1 + o, as: V.self)
                    let v2 = VectorMath.load(x2 + o, as: V.self)
                    // One channel's column of the tile: its weight for this tap times the 3 vectors.
                    @inline(__always) func add(_ j: Int, _ a0: inout V, _ a1: inout V, _ a2: inout V) {
                        let wj = V(repeating: w[j])
                        a0 = GEMMSIMD.multiplyAdd(v0, wj, a0); a1 = GEMMSIMD.multiplyAdd(v1, wj, a1)
                        a2 = GEMMSIMD.multiplyAdd(v2, wj, a2)
                    }
                    add(0, &a00, &a10, &a20); add(1, &a01, &a11, &a21); add(2, &a02, &a12, &a22); add(3, &a03, &a13, &a23)
                }
                w += 4
                k &+= 1
            } while k < depth
        }
        @inline(__always) func store(_ a0: V, _ a1: V, _ a2: V, _ a3: V, _ a4: V, _ a5: V, channel j: Int) {
            guard j < channels else { return }
            let row = output + j * plane, b = V(repeating: bias?[j] ?? 0)
            @inline(__always) func put(_ a: V, _ v: Int) {
                VectorMath.store(bias == nil ? a : a + b, row + outputs[v])
            }
            put(a0, 0); put(a1, 1); put(a2, 2)
            if six { put(a3, 3); put(a4, 4); put(a5, 5) }
        }
        store(a00, a10, a20, a30, a40, a50, channel: 0)
        store(a01, a11, a21, a31, a41, a51, channel: 1)
        store(a02, a12, a22, a32, a42, a52, channel: 2)
        store(a03, a13, a23, a33, a43, a53, channel: 3)
    }
}
