// Convolutions through the column matrix (see Im2col.swift for its layout). Per sample and
// group, with `col` the [Cin/g * KH * KW, OH * OW] column matrix and W_g = [Cout/g, Cin/g * KH * KW]:
//
//     forward:          Y_g  = W_g · col
//     backward input:   dcol = W_g^T · dY_g,   then col2im (adds into dX)
//     backward weight:  dW_g += dY_g · col^T
//
// The column matrix is built for a band of output rows at a time (`ConvPlan.bandRows`), so the
// buffer stays L2-sized however large the image. A pointwise convolution (1x1, stride 1, no
// padding) skips im2col: its input planes are the column matrix.
//
// Samples with small output planes run in groups (`ConvPlan.samplesPerGroup`), one sgemm per
// group with its weights packed once: the whole column matrices of the group's samples side by
// side, [Cin/g * KH * KW, samples * OH * OW]. The forward and input-gradient products read and
// write each sample's own planes of Y_g, dY_g and (pointwise) X_g, dX_g as column segments of the
// product (`GEMMColumnSegments`), and the weight gradient's product reads dY_g and (pointwise)
// X_g as segments of its depth (`GEMMDepthSegments`), so nothing is copied.

extension Kernels {
    static func conv2dForwardColumns(_ g: Conv2dGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                     bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, plan p: ConvPlan,
                                     epilogue: ConvEpilogue?) {
        let buffers = p.allocateColumnBuffers()
        defer { buffers?.deallocate() }
        let opg = g.outChannelsPerGroup, ohw = p.outPlane, ow = g.outWidth
        p.forEachWorker { worker, samples in
            let col = buffers.map { $0 + worker * p.columnStride }
            p.forEachGroup(of: samples) { first, count in
                for grp in 0..<g.groups {
                    let x = input + (first * g.inChannels + grp * p.shape.channels) * p.inPlane
                    let w = weight + grp * opg * p.colRows
                    let y = output + (first * g.outChannels + grp * opg) * ohw
                    // The bias first, then the products add to it.
                    var beta: Float = 0
                    if let groupBias = bias.map({ $0 + grp * opg }) {
                        for s in 0..<count {
                            for o in 0..<opg { (y + s * g.outChannels * ohw + o * ohw).update(repeating: groupBias[o], count: ohw) }
                        }
                        beta = 1
                    }
                    if count > 1 {
                        // One product for the group's samples, each writing its own output planes.
                        let n = count * ohw, outputStride = g.outChannels * ohw
                        if p.forwardMethod == .pointwise {
                            sgemm(m: opg, n: n, k: p.colRows, alpha: 1, a: w, lda: p.colRows, transA: false,
                                  b: x, ldb: p.inPlane, beta: beta, c: y, ldc: ohw,
                                  segments: GEMMColumnSegments(width: ohw, bStride: g.inChannels * p.inPlane, cStride: outputStride),
                                  threads: p.gemmThreads)
                        } else if let col {
                            p.im2colGroup(x, count: count, into: col)
                            sgemm(m: opg, n: n, k: p.colRows, alpha: 1, a: w, lda: p.colRows, transA: false,
                                  b: col, ldb: n, beta: beta, c: y, ldc: ohw,
                                  segments: GEMMColumnSegments(width: ohw, bStride: ohw, cStride: outputStride),
                                  threads: p.gemmThreads)
                        }
                        epilogue?.apply(output, samples: first..<(first + count), channels: (grp * opg)..<((grp + 1) * opg),
                                        of: g.outChannels, plane: ohw)
                        continue
                    }
                    defer {
                        epilogue?.apply(output, samples: first..<(first + count), channels: (grp * opg)..<((grp + 1) * opg),
                                        of: g.outChannels, plane: ohw)
                    }
                    guard let col, p.forwardMethod != .pointwise else {
                        sgemm(transA: false, transB: false, m: opg, n: ohw, k: p.colRows, alpha: 1,
                              a: w, lda: p.colRows, b: x, ldb: ohw, beta: beta, c: y, ldc: ohw, threads: p.gemmThreads)
                        continue
                    }
                    p.forEachBand { oy0, oy1 in
                        let cols = (oy1 - oy0) * ow
                        p.im2col(image: x, oy0: oy0, oy1: oy1, col: col)
                        sgemm(transA: false, transB: false, m: opg, n: cols, k: p.colRows, alpha: 1,
                              a: w, lda: p.colRows, b: col, ldb: cols, beta: beta, c: y + oy0 * ow, ldc: ohw,
                              threads: p.gemmThreads)
                    }
                }
            }
        }
    }

    static func conv2dBackwardInputColumns(_ g: Conv2dGeometry, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                           gradInput: UnsafeMutablePointer<Float>, plan p: ConvPlan) {
        let buffers = p.allocateColumnBuffers()
        defer { buffers?.deallocate() }
        let opg = g.outChannelsPerGroup, cpg = p.shape.channels, ohw = p.outPlane, ow = g.outWidth
        p.forEachWorker { worker, samples in
            let col = buffers.map { $0 + worker * p.columnStride }
            p.forEachGroup(of: samples) { first, count in
                for grp in 0..<g.groups {
                    let dy = gradOutput + (first * g.outChannels + grp * opg) * ohw
                    let w = weight + grp * opg * p.colRows
                    let dx = gradInput + (first * g.inChannels + grp * cpg) * p.inPlane
                    if count > 1 {
                        // One product for the group's samples, each reading its own output-gradient
                        // planes: the input gradient itself (pointwise), or the columns for col2im.
                        let n = count * ohw, gradientStride = g.outChannels * ohw
                        if p.forwardMethod == .pointwise {
                            sgemm(m: p.colRows, n: n, k: opg, alpha: 1, a: w, lda: p.colRows, transA: true,
                                  b: dy, ldb: ohw, beta: 0, c: dx, ldc: p.inPlane,
                                  segments: GEMMColumnSegments(width: ohw, bStride: gradientStride, cStride: g.inChannels * p.inPlane),
                                  threads: p.gemmThreads)
                        } else if let col {
                            sgemm(m: p.colRows, n: n, k: opg, alpha: 1, a: w, lda: p.colRows, transA: true,
                                  b: dy, ldb: ohw, beta: 0, c: col, ldc: n,
                                  segments: GEMMColumnSegments(width: ohw, bStride: gradientStride, cStride: ohw),
                                  threads: p.gemmThreads)
                            p.col2imGroup(col, count: count, into: dx)
                        }
                        continue
                    }
                    guard let col, p.forwardMethod != .pointwise else {
                        sgemm(transA: true, transB: false, m: cpg, n: ohw, k: opg, alpha: 1,
                              a: w, lda: cpg, b: dy, ldb: ohw, beta: 0, c: dx, ldc: ohw, threads: p.gemmThreads)
                        continue
                    }
                    dx.update(repeating: 0, count: cpg * p.inPlane)
                    p.forEachBand { oy0, oy1 in
                        let cols = (oy1 - oy0) * ow
                        sgemm(transA: true, transB: false, m: p.colRows, n: cols, k: opg, alpha: 1,
                              a: w, lda: p.colRows, b: dy + oy0 * ow, ldb: ohw, beta: 0, c: col, ldc: cols,
                              threads: p.gemmThreads)
                        p.col2im(col: col, oy0: oy0, oy1: oy1, image: dx)
                    }
                }
            }
        }
    }

    static func conv2dBackwardWeightColumns(_ g: Conv2dGeometry, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                            gradWeight: UnsafeMutablePointer<Float>, plan p: ConvPlan) {
        let buffers = p.allocateColumnBuffers(workers: p.weightWorkers)
        defer { buffers?.deallocate() }
        let xSampleStride = g.inChannels * p.inPlane, dySampleStride = g.outChannels * p.outPlane
        let opg = g.outChannelsPerGroup, ohw = p.outPlane, ow = g.outWidth
        let weightCount = g.outChannels * p.colRows
        // Slot 0 accumulates in place, the others in scratch.
        let scratch = ScratchPool.allocate((p.weightSlots - 1) * weightCount)
        defer { scratch.deallocate() }
        p.forEachWeightSlot { worker, slot, samples in
            let col = buffers.map { $0 + worker * p.columnStride }
            let dw = slot == 0 ? gradWeight : scratch + (slot - 1) * weightCount
            p.forEachGroup(of: samples) { first, count in
                let beta: Float = first == samples.lowerBound ? 0 : 1
                for grp in 0..<g.groups {
                    let x = input + (first * g.inChannels + grp * p.shape.channels) * p.inPlane
                    let dy = gradOutput + (first * g.outChannels + grp * opg) * ohw
                    let dwg = dw + grp * opg * p.colRows
                    if count > 1 {
                        // One product whose depth runs over the group's samples, each read from its
                        // own output-gradient planes (and, pointwise, its own input planes).
                        let n = count * ohw
                        if p.forwardMethod == .pointwise {
                            sgemm(transA: false, transB: true, m: opg, n: p.colRows, k: n, alpha: 1,
                                  a: dy, lda: ohw, b: x, ldb: p.inPlane, beta: beta, c: dwg, ldc: p.colRows,
                                  depthSegments: GEMMDepthSegments(width: ohw, aStride: dySampleStride, bStride: xSampleStride),
                                  threads: p.gemmThreads)
                        } else if let col {
                            p.im2colGroup(x, count: count, into: col)
                            sgemm(transA: false, transB: true, m: opg, n: p.colRows, k: n, alpha: 1,
                                  a: dy, lda: ohw, b: col, ldb: n, beta: beta, c: dwg, ldc: p.colRows,
                                  depthSegments: GEMMDepthSegments(width: ohw, aStride: dySampleStride, bStride: ohw),
                                  threads: p.gemmThreads)
                        }
                        continue
                    }
                    guard let col, p.forwardMethod != .pointwise else {
                        sgemm(transA: false, transB: true, m: opg, n: p.colRows, k: ohw, alpha: 1,
                              a: dy, lda: ohw, b: x, ldb: ohw, beta: beta,
                              c: dwg, ldc: p.colRows, threads: p.gemmThreads)
                        continue
                    }
                    p.forEachBand { oy0, oy1 in
                        let cols = (oy1 - oy0) * ow
                        p.im2col(image: x, oy0: oy0, oy1: oy1, col: col)
                        sgemm(transA: false, transB: true, m: opg, n: p.colRows, k: cols, alpha: 1,
                              a: dy + oy0 * ow, lda: ohw, b: col, ldb: cols,
                              beta: oy0 == 0 ? beta : 1, c: dwg, ldc: p.colRows,
                              threads: p.gemmThreads)
                    }
                }
            }
        }
        p.sumWeightSlots(into: gradWeight, others: scratch, count: weightCount)
    }
}

extension ConvPlan {
    /// Floats in a worker's column buffer: a band of one sample, or the whole planes of a sample
    /// group (a multiple of 16 floats, 64 bytes).
    var columnStride: Int { ConvPlan.rounded(colRows * bandRows * g.outWidth * samplesPerGroup) }

    /// Column buffers for `workers` workers (default: all), or nil for a pointwise convolution
    /// (whose products read and write the planes in place).
    func allocateColumnBuffers(workers: Int? = nil) -> UnsafeMutablePointer<Float>? {
        forwardMethod == .pointwise ? nil : ScratchPool.allocate((workers ?? self.workers) * columnStride)
    }

    /// Calls `body(oy0, oy1)` for the bands of output rows, in order.
    @inline(__always)
    func forEachBand(_ body: (Int, Int) -> Void) {
        var oy0 = 0
        while oy0 < g.outHeight {
            let oy1 = min(g.outHeight, oy0 + bandRows)
            body(oy0, oy1)
            oy0 = oy1
        }
    }

    /// im2col of a band into `col` (leading dimension = band width), split by channel over `gemmThreads`.
    func im2col(image: UnsafePointer<Float>, oy0: Int, oy1: Int, col: UnsafeMutablePointer<Float>) {
        let ldcol = (oy1 - oy0) * g.outWidth, channels = shape.channels, parts = min(gemmThreads, channels)
        Kernels.parallelFor(parts, threads: parts) { t in
            Kernels.im2col(shape, image: image, channels: (t * channels / parts)..<((t + 1) * channels / parts),
                           oy0: oy0, oy1: oy1, col: col, ldcol: ldcol)
        }
    }

    /// col2im of a band, split by channel over `gemmThreads` (disjoint writes).
    func col2im(col: UnsafePointer<Float>, oy0: Int, oy1: Int, image: UnsafeMutablePointer<Float>) {
        let ldcol = (oy1 - oy0) * g.outWidth, channels = shape.channels, parts = min(gemmThreads, channels)
        Kernels.parallelFor(parts, threads: parts) { t in
            Kernels.col2im(shape, col: col, ldcol: ldcol, channels: (t * channels / parts)..<((t + 1) * channels / parts),
                           oy0: oy0, oy1: oy1, image: image)
        }
    }

    /// The column matrices of `count` samples side by side in `col` (leading dimension
    /// `count * OH * OW`, sample `s` from column `s * OH * OW`): im2col of each sample's whole
    /// planes. `image` points at the group's first input channel of the first sample; split by
    /// channel over `gemmThreads`.
    func im2colGroup(_ image: UnsafePointer<Float>, count: Int, into col: UnsafeMutablePointer<Float>) {
        let ldcol = count * outPlane, sampleStride = g.inChannels * inPlane
        let channels = shape.channels, parts = min(gemmThreads, channels)
        Kernels.parallelFor(parts, threads: parts) { t in
            let range = (t * channels / parts)..<((t + 1) * channels / parts)
            for s in 0..<count {
                Kernels.im2col(shape, image: image + s * sampleStride, channels: range, oy0: 0, oy1: g.outHeight,
                               col: col + s * outPlane, ldcol: ldcol)
            }
        }
    }

    /// The inverse of ``im2colGroup(_:count:into:)`` for the input gradient of the column
    /// method: overwrites the group's input planes of `count` samples (from `image`) with col2im
    /// of their columns. Split by channel over `gemmThreads`.
    func col2imGroup(_ col: UnsafePointer<Float>, count: Int, into image: UnsafeMutablePointer<Float>) {
        let ldcol = count * outPlane, sampleStride = g.inChannels * inPlane
        let channels = shape.channels, parts = min(gemmThreads, channels)
        Kernels.parallelFor(parts, threads: parts) { t in
            let range = (t * channels / parts)..<((t + 1) * channels / parts)
            for s in 0..<count {
                let planes = image + s * sampleStride
                (planes + range.lowerBound * inPlane).update(repeating: 0, count: range.count * inPlane)
                Kernels.col2im(shape, col: col + s * outPlane, ldcol: ldcol, channels: range, oy0: 0, oy1: g.outHeight,
                               image: planes)
            }
        }
    }
}
