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

extension Kernels {
    static func conv2dForwardColumns(_ g: Conv2dGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                     bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, plan p: ConvPlan) {
        let columns = p.allocateColumns()
        defer { columns?.deallocate() }
        let opg = g.outChannelsPerGroup, ohw = p.outPlane, ow = g.outWidth
        p.forEachWorker { worker, samples in
            let col = columns.map { $0 + worker * p.columnStride }
            for n in samples {
                for grp in 0..<g.groups {
                    let x = input + (n * g.inChannels + grp * p.shape.channels) * p.inPlane
                    let w = weight + grp * opg * p.colRows
                    let y = output + (n * g.outChannels + grp * opg) * ohw
                    var beta: Float = 0
                    if let bias {
                        for o in 0..<opg { (y + o * ohw).update(repeating: bias[grp * opg + o], count: ohw) }
                        beta = 1
                    }
                    guard let col else {
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
        let columns = p.allocateColumns()
        defer { columns?.deallocate() }
        let opg = g.outChannelsPerGroup, cpg = p.shape.channels, ohw = p.outPlane, ow = g.outWidth
        p.forEachWorker { worker, samples in
            let col = columns.map { $0 + worker * p.columnStride }
            for n in samples {
                for grp in 0..<g.groups {
                    let dy = gradOutput + (n * g.outChannels + grp * opg) * ohw
                    let w = weight + grp * opg * p.colRows
                    let dx = gradInput + (n * g.inChannels + grp * cpg) * p.inPlane
                    guard let col else {
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
        let columns = p.allocateColumns(workers: p.weightWorkers)
        defer { columns?.deallocate() }
        let opg = g.outChannelsPerGroup, ohw = p.outPlane, ow = g.outWidth
        let weightCount = g.outChannels * p.colRows
        // Slot 0 accumulates in place, the others in scratch.
        let scratch = ConvPlan.allocate((p.weightSlots - 1) * weightCount)
        defer { scratch.deallocate() }
        p.forEachWeightSlot { worker, slot, samples in
            let col = columns.map { $0 + worker * p.columnStride }
            let dw = slot == 0 ? gradWeight : scratch + (slot - 1) * weightCount
            for n in samples {
                for grp in 0..<g.groups {
                    let x = input + (n * g.inChannels + grp * p.shape.channels) * p.inPlane
                    let dy = gradOutput + (n * g.outChannels + grp * opg) * ohw
                    let dwg = dw + grp * opg * p.colRows
                    guard let col else {
                        sgemm(transA: false, transB: true, m: opg, n: p.colRows, k: ohw, alpha: 1,
                              a: dy, lda: ohw, b: x, ldb: ohw, beta: n == samples.lowerBound ? 0 : 1,
                              c: dwg, ldc: p.colRows, threads: p.gemmThreads)
                        continue
                    }
                    p.forEachBand { oy0, oy1 in
                        let cols = (oy1 - oy0) * ow
                        p.im2col(image: x, oy0: oy0, oy1: oy1, col: col)
                        sgemm(transA: false, transB: true, m: opg, n: p.colRows, k: cols, alpha: 1,
                              a: dy + oy0 * ow, lda: ohw, b: col, ldb: cols,
                              beta: n == samples.lowerBound && oy0 == 0 ? 0 : 1, c: dwg, ldc: p.colRows,
                              threads: p.gemmThreads)
                    }
                }
            }
        }
        p.sumWeightSlots(into: gradWeight, others: scratch, count: weightCount)
    }
}

extension ConvPlan {
    /// Distance between the workers' column buffers (a multiple of 16 floats, 64 bytes).
    var columnStride: Int { ConvPlan.rounded(colRows * bandRows * g.outWidth) }

    /// One column buffer per worker, or nil for a pointwise convolution (which needs none).
    func allocateColumns(workers: Int? = nil) -> UnsafeMutablePointer<Float>? {
        forwardMethod == .pointwise ? nil : ConvPlan.allocate((workers ?? self.workers) * columnStride)
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
}
