import Testing
@testable import FineTune

// Tests for Kernels.conv2dForward / conv2dBackwardInput / conv2dBackwardWeight (Kernels/Conv2d.swift,
// Kernels/Im2col.swift) against direct seven-loop references, on odd shapes covering padding,
// stride, dilation, groups (including depthwise), 1x1 fast paths, banded column buffers, sample
// groups sharing one sgemm (including groups that do not divide the batch) and the threaded plans
// (whole sample groups per thread, and threaded GEMM/im2col/col2im).

// MARK: - Naive references (Double accumulation)

private func referenceForward(_ g: Conv2dGeometry, _ x: [Float], _ w: [Float], _ b: [Float]?) -> [Float] {
    let oh = g.outHeight, ow = g.outWidth, cpg = g.inChannelsPerGroup, opg = g.outChannelsPerGroup
    var out = [Float](repeating: 0, count: g.batch * g.outChannels * oh * ow)
    for n in 0..<g.batch { for co in 0..<g.outChannels {
        let grp = co / opg
        for y in 0..<oh { for xo in 0..<ow {
            var s = Double(b?[co] ?? 0)
            for ci in 0..<cpg { for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
                let iy = y * g.strideH - g.padH + ky * g.dilationH, ix = xo * g.strideW - g.padW + kx * g.dilationW
                if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                let c = grp * cpg + ci
                s += Double(x[((n * g.inChannels + c) * g.height + iy) * g.width + ix])
                    * Double(w[((co * cpg + ci) * g.kernelHeight + ky) * g.kernelWidth + kx])
            }}}
            out[((n * g.outChannels + co) * oh + y) * ow + xo] = Float(s)
        }}
    }}
    return out
}

private func referenceBackwardInput(_ g: Conv2dGeometry, _ dy: [Float], _ w: [Float]) -> [Float] {
    let oh = g.outHeight, ow = g.outWidth, cpg = g.inChannelsPerGroup, opg = g.outChannelsPerGroup
    var dx = [Double](repeating: 0, count: g.batch * g.inChannels * g.height * g.width)
    for n in 0..<g.batch { for co in 0..<g.outChannels {
        let grp = co / opg
        for y in 0..<oh { for xo in 0..<ow {
            let go = Double(dy[((n * g.outChannels + co) * oh + y) * ow + xo])
            for ci in 0..<cpg { for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
                let iy = y * g.strideH - g.padH + ky * g.dilationH, ix = xo * g.strideW - g.padW + kx * g.dilationW
                if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                let c = grp * cpg + ci
                dx[((n * g.inChannels + c) * g.height + iy) * g.width + ix] +=
                    go * Double(w[((co * cpg + ci) * g.kernelHeight + ky) * g.kernelWidth + kx])
            }}}
        }}
    }}
    return dx.map { Float($0) }
}

private func referenceBackwardWeight(_ g: Conv2dGeometry, _ x: [Float], _ dy: [Float]) -> [Float] {
    let oh = g.outHeight, ow = g.outWidth, cpg = g.inChannelsPerGroup, opg = g.outChannelsPerGroup
    var dw = [Double](repeating: 0, count: g.outChannels * cpg * g.kernelHeight * g.kernelWidth)
    for n in 0..<g.batch { for co in 0..<g.outChannels {
        let grp = co / opg
        for y in 0..<oh { for xo in 0..<ow {
            let go = Double(dy[((n * g.outChannels + co) * oh + y) * ow + xo])
            for ci in 0..<cpg { for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
                let iy = y * g.strideH - g.padH + ky * g.dilationH, ix = xo * g.strideW - g.padW + kx * g.dilationW
                if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                let c = grp * cpg + ci
                dw[((co * cpg + ci) * g.kernelHeight + ky) * g.kernelWidth + kx] +=
                    go * Double(x[((n * g.inChannels + c) * g.height + iy) * g.width + ix])
            }}}
        }}
    }}
    return dw.map { Float($0) }
}

// MARK: - Helpers

/// Deterministic values uniform in [-1, 1).
private func values(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 23) - 1
    }
}

/// Runs `body` with a copy of `input` and a NaN-filled output of `outputCount` floats (so a kernel
/// that reads instead of overwriting its output is caught), returning the output.
private func run(_ inputs: [[Float]], outputCount: Int,
                 _ body: ([UnsafePointer<Float>], UnsafeMutablePointer<Float>) -> Void) -> [Float] {
    let pointers = inputs.map { values -> UnsafeMutablePointer<Float> in
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
        p.initialize(from: values, count: values.count)
        return p
    }
    let out = UnsafeMutablePointer<Float>.allocate(capacity: max(outputCount, 1))
    out.initialize(repeating: .nan, count: outputCount)
    defer { out.deallocate(); pointers.forEach { $0.deallocate() } }
    body(pointers.map { UnsafePointer($0) }, out)
    return Array(UnsafeBufferPointer(start: out, count: outputCount))
}

private func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

/// One test shape.
private struct ConvCase: CustomStringConvertible, Sendable {
    var batch: Int, inChannels: Int, outChannels: Int, height: Int, width: Int
    var kernel: (Int, Int), stride = (1, 1), padding = (0, 0), dilation = (1, 1), groups = 1, bias = true

    var geometry: Conv2dGeometry {
        Conv2dGeometry(batch: batch, inChannels: inChannels, height: height, width: width,
                       outChannels: outChannels, kernelHeight: kernel.0, kernelWidth: kernel.1,
                       stride: stride, padding: padding, dilation: dilation, groups: groups)
    }

    var description: String {
        "N\(batch) \(inChannels)->\(outChannels) \(height)x\(width) k\(kernel) s\(stride) p\(padding) d\(dilation) g\(groups)"
            + (bias ? " bias" : "")
    }
}

private let cases: [ConvCase] = [
    ConvCase(batch: 1, inChannels: 1, outChannels: 1, height: 1, width: 1, kernel: (1, 1), bias: false),
    ConvCase(batch: 3, inChannels: 3, outChannels: 5, height: 5, width: 7, kernel: (3, 3), padding: (1, 1)),
    ConvCase(batch: 1, inChannels: 7, outChannels: 4, height: 17, width: 5, kernel: (5, 3), stride: (2, 2),
             padding: (2, 1), bias: false),
    ConvCase(batch: 3, inChannels: 4, outChannels: 6, height: 7, width: 7, kernel: (3, 3), stride: (3, 3),
             padding: (2, 2), dilation: (2, 2), groups: 2),
    ConvCase(batch: 3, inChannels: 7, outChannels: 7, height: 5, width: 17, kernel: (3, 3), padding: (1, 1), groups: 7),
    ConvCase(batch: 1, inChannels: 3, outChannels: 6, height: 7, width: 7, kernel: (3, 3), stride: (2, 1),
             padding: (1, 2), groups: 3, bias: false),
    ConvCase(batch: 3, inChannels: 7, outChannels: 5, height: 5, width: 7, kernel: (1, 1)),
    ConvCase(batch: 3, inChannels: 6, outChannels: 4, height: 5, width: 5, kernel: (1, 1), groups: 2, bias: false),
    ConvCase(batch: 3, inChannels: 3, outChannels: 4, height: 7, width: 7, kernel: (1, 1), stride: (2, 2)),
    ConvCase(batch: 1, inChannels: 3, outChannels: 2, height: 5, width: 5, kernel: (1, 1), padding: (1, 1)),
    ConvCase(batch: 1, inChannels: 3, outChannels: 2, height: 7, width: 17, kernel: (3, 3), dilation: (2, 2)),
    ConvCase(batch: 3, inChannels: 3, outChannels: 4, height: 1, width: 17, kernel: (3, 3), padding: (1, 1)),
    ConvCase(batch: 1, inChannels: 3, outChannels: 4, height: 5, width: 5, kernel: (3, 3), padding: (2, 2)),
    ConvCase(batch: 3, inChannels: 3, outChannels: 4, height: 7, width: 17, kernel: (5, 3), padding: (2, 1)),
    ConvCase(batch: 3, inChannels: 1, outChannels: 3, height: 17, width: 1, kernel: (5, 3), stride: (3, 1), padding: (2, 1)),
    ConvCase(batch: 4, inChannels: 3, outChannels: 4, height: 7, width: 7, kernel: (3, 3), padding: (1, 1)),
    ConvCase(batch: 4, inChannels: 4, outChannels: 4, height: 5, width: 7, kernel: (3, 3), stride: (2, 2),
             padding: (1, 1), groups: 4, bias: false),
    ConvCase(batch: 3, inChannels: 5, outChannels: 10, height: 7, width: 17, kernel: (5, 3), stride: (1, 3),
             padding: (2, 1), dilation: (2, 2), groups: 5, bias: false),
    ConvCase(batch: 2, inChannels: 3, outChannels: 3, height: 5, width: 5, kernel: (1, 1), groups: 3),
    // Depthwise, strided: odd sizes and row widths that exercise every step of the stride-2 row
    // shuffles (32, 16, 8 columns and single ones), channel multipliers, dilation, padding beyond
    // the kernel's reach, strides 3 and (2, 1) / (1, 2).
    ConvCase(batch: 3, inChannels: 3, outChannels: 3, height: 17, width: 33, kernel: (3, 3), stride: (2, 2),
             padding: (1, 1), groups: 3),
    ConvCase(batch: 1, inChannels: 2, outChannels: 4, height: 7, width: 63, kernel: (3, 3), stride: (2, 2),
             padding: (1, 1), groups: 2, bias: false),
    ConvCase(batch: 2, inChannels: 3, outChannels: 3, height: 33, width: 7, kernel: (3, 3), stride: (2, 2), groups: 3),
    ConvCase(batch: 1, inChannels: 2, outChannels: 2, height: 1, width: 1, kernel: (3, 3), stride: (2, 2),
             padding: (1, 1), groups: 2),
    ConvCase(batch: 2, inChannels: 2, outChannels: 2, height: 3, width: 3, kernel: (3, 3), stride: (2, 2),
             padding: (1, 1), groups: 2),
    ConvCase(batch: 3, inChannels: 3, outChannels: 6, height: 7, width: 17, kernel: (5, 3), stride: (2, 2),
             padding: (2, 1), dilation: (1, 2), groups: 3),
    ConvCase(batch: 1, inChannels: 4, outChannels: 4, height: 17, width: 35, kernel: (3, 3), stride: (3, 3),
             padding: (1, 1), dilation: (2, 2), groups: 4),
    ConvCase(batch: 2, inChannels: 3, outChannels: 3, height: 7, width: 33, kernel: (2, 2), stride: (2, 2), groups: 3),
    ConvCase(batch: 2, inChannels: 3, outChannels: 3, height: 7, width: 17, kernel: (3, 3), stride: (2, 2),
             padding: (3, 2), groups: 3, bias: false),
    ConvCase(batch: 2, inChannels: 2, outChannels: 2, height: 7, width: 17, kernel: (1, 1), stride: (2, 2),
             padding: (1, 1), groups: 2),
    ConvCase(batch: 3, inChannels: 3, outChannels: 3, height: 17, width: 7, kernel: (3, 5), stride: (1, 2),
             padding: (1, 2), groups: 3),
    ConvCase(batch: 1, inChannels: 3, outChannels: 3, height: 33, width: 40, kernel: (3, 3), stride: (2, 1),
             padding: (1, 1), groups: 3),
    ConvCase(batch: 3, inChannels: 2, outChannels: 4, height: 17, width: 40, kernel: (3, 3), padding: (1, 1), groups: 2),
    // Winograd F(2x2, 3x3) (forced below 16 channels): even and odd sizes, paddings 0 to 3 (3: the
    // input gradient takes column matrices), rows wider than one vector of tiles, and a case the
    // automatic plan sends to Winograd.
    ConvCase(batch: 2, inChannels: 5, outChannels: 6, height: 8, width: 8, kernel: (3, 3), padding: (1, 1)),
    ConvCase(batch: 1, inChannels: 4, outChannels: 3, height: 6, width: 9, kernel: (3, 3), bias: false),
    ConvCase(batch: 3, inChannels: 3, outChannels: 2, height: 3, width: 4, kernel: (3, 3)),
    ConvCase(batch: 1, inChannels: 2, outChannels: 3, height: 4, width: 5, kernel: (3, 3), padding: (3, 3)),
    ConvCase(batch: 2, inChannels: 3, outChannels: 2, height: 5, width: 70, kernel: (3, 3), padding: (1, 1)),
    ConvCase(batch: 2, inChannels: 17, outChannels: 19, height: 9, width: 11, kernel: (3, 3), padding: (1, 1)),
    // Column matrices of stride-2 rows long enough for the 8-wide vector gather and scatter
    // (im2col, col2im): 21 and 19 outputs per row with padding, and exactly 9 (one vector and
    // the last element) reading to the end of the row.
    ConvCase(batch: 2, inChannels: 5, outChannels: 7, height: 9, width: 41, kernel: (3, 3), stride: (2, 2),
             padding: (1, 1)),
    ConvCase(batch: 1, inChannels: 3, outChannels: 4, height: 11, width: 37, kernel: (7, 7), stride: (2, 2),
             padding: (3, 3), bias: false),
    ConvCase(batch: 2, inChannels: 3, outChannels: 5, height: 4, width: 17, kernel: (1, 1), stride: (2, 2)),
    // The indirect product: several input-channel blocks (3 of 64 channels or fewer with AVX-512's
    // 32-wide panels, 2 of 128 or fewer with AVX2's 16-wide ones), a partial second panel of output
    // channels and more tiles than a tile group (98 positions) in one chunk (the panels packed
    // where they are used); then planes of 196 positions, chunks of 2 and 1 samples (the panels
    // packed beforehand).
    ConvCase(batch: 2, inChannels: 134, outChannels: 40, height: 13, width: 13, kernel: (3, 3), stride: (2, 2),
             padding: (1, 1), bias: false),
    ConvCase(batch: 3, inChannels: 132, outChannels: 8, height: 27, width: 27, kernel: (3, 3), stride: (2, 2),
             padding: (1, 1)),
    // Tiles of border positions skip the taps that read only padding (``TileOrder``): a 3x5 kernel
    // with dilated rows and padding beyond its reach (positions whose taps read padding above,
    // below, left and right, some all of them), 80 channels in two blocks (15 taps), two chunks.
    ConvCase(batch: 3, inChannels: 80, outChannels: 33, height: 9, width: 11, kernel: (3, 5), stride: (2, 1),
             padding: (3, 3), dilation: (2, 1)),
    ConvCase(batch: 3, inChannels: 3, outChannels: 4, height: 40, width: 40, kernel: (3, 3), stride: (2, 2),
             padding: (1, 1)),
    // Stride 1, 870 positions per sample: the indirect weight gradient's depth in two blocks of
    // positions, over two chunks.
    ConvCase(batch: 2, inChannels: 5, outChannels: 33, height: 29, width: 30, kernel: (3, 3), padding: (1, 1)),
    // Row taps (fewer than 16 input channels): a stem-like 7x7 stride 2 (7 taps of 21 floats, a
    // partial second panel, tile groups across three samples of one chunk), and an 11x11 whose
    // 132-float kernel rows take several depth blocks (3 with AVX-512's panels, 2 with AVX2's).
    ConvCase(batch: 3, inChannels: 3, outChannels: 40, height: 23, width: 29, kernel: (7, 7), stride: (2, 2),
             padding: (3, 3)),
    ConvCase(batch: 2, inChannels: 12, outChannels: 8, height: 15, width: 15, kernel: (11, 11), stride: (2, 2),
             padding: (5, 5), bias: false),
    // The direct method (rows of a multiple of 16 outputs: whole vectors on AVX-512 and AVX2): a
    // stem-like 7x7 stride 2 with a partial last tile (21 vectors) and channel group (10
    // channels), three column phases with one tile of 3 vectors, dilated rows with stride 2
    // (automatic plans take it for these three); stride 1 with dilated columns, and 20 input
    // channels (forced only).
    ConvCase(batch: 3, inChannels: 3, outChannels: 10, height: 13, width: 31, kernel: (7, 7), stride: (2, 2),
             padding: (3, 3)),
    ConvCase(batch: 1, inChannels: 3, outChannels: 4, height: 9, width: 47, kernel: (3, 3), stride: (3, 3),
             padding: (1, 1), bias: false),
    ConvCase(batch: 2, inChannels: 4, outChannels: 7, height: 9, width: 32, kernel: (3, 5), stride: (2, 2),
             padding: (2, 2), dilation: (2, 1)),
    ConvCase(batch: 2, inChannels: 2, outChannels: 5, height: 5, width: 34, kernel: (3, 3), padding: (1, 1),
             dilation: (2, 2)),
    ConvCase(batch: 2, inChannels: 20, outChannels: 6, height: 6, width: 16, kernel: (3, 3), padding: (1, 1), bias: false),
    // Rows of one 8-float vector (the direct method on AVX2 builds, whose tiles of 3 vectors here
    // span rows and samples, the last one partial: 10 vectors; the indirect product on AVX-512).
    ConvCase(batch: 2, inChannels: 3, outChannels: 5, height: 9, width: 16, kernel: (3, 3), stride: (2, 2),
             padding: (1, 1)),
    // Five samples: groups of 2 (forced) leave a short last group; automatic plans group all five.
    ConvCase(batch: 5, inChannels: 4, outChannels: 6, height: 5, width: 7, kernel: (3, 3), stride: (2, 2),
             padding: (1, 1), dilation: (1, 2), groups: 2),
    ConvCase(batch: 5, inChannels: 6, outChannels: 4, height: 3, width: 5, kernel: (1, 1), groups: 2),
    ConvCase(batch: 5, inChannels: 3, outChannels: 5, height: 7, width: 5, kernel: (1, 1), stride: (2, 2), bias: false),
    ConvCase(batch: 5, inChannels: 5, outChannels: 3, height: 6, width: 5, kernel: (3, 2), padding: (2, 1), dilation: (2, 1)),
]

/// A way to run a case: thread count (threading is forced, whatever the size; with 2 threads both
/// whole sample groups per thread and threaded GEMMs), and method: the automatic choice (which
/// takes the direct kernels for depthwise cases and groups the samples of small planes), shifted
/// copies wherever they apply, or column matrices: automatic sample groups, forced groups of two
/// samples, or one sample at a time in bands of one output row.
private struct PlanVariant {
    var threads: Int, splitSamples: Bool?, method: ConvPlan.Method?, columnBudget = ConvPlan.columnBudget
    var groupColumnBudget = ConvPlan.groupColumnBudget, samplesPerGroup: Int? = nil
    var winogradChunkBudget = WinogradTiling.chunkBudget

    func plan(_ g: Conv2dGeometry) -> ConvPlan {
        let plan = ConvPlan(g, threads: threads, minParallelFlops: 0, columnBudget: columnBudget,
                            groupColumnBudget: groupColumnBudget, method: method, splitSamples: splitSamples,
                            samplesPerGroup: samplesPerGroup, winogradChunkBudget: winogradChunkBudget)
        if let samplesPerGroup, plan.forwardMethod == .columns || plan.forwardMethod == .pointwise {
            #expect(plan.samplesPerGroup == min(samplesPerGroup, g.batch), "\(g): groups of \(samplesPerGroup) not applied")
        }
        if groupColumnBudget == 0 { #expect(plan.samplesPerGroup == 1, "\(g): sample groups not turned off") }
        return plan
    }

    /// Variants with the same method, bands, groups and Winograd chunks must agree bit for bit.
    var methodName: String {
        "\(method.map { "\($0)" } ?? "automatic")/\(columnBudget)/\(groupColumnBudget)/\(samplesPerGroup.map { "\($0)" } ?? "auto")"
            + "/\(winogradChunkBudget)"
    }
}

private let plans: [PlanVariant] = [(1, nil), (2, true), (2, false)].flatMap { (t: Int, split: Bool?) in
    [PlanVariant(threads: t, splitSamples: split, method: nil),
     PlanVariant(threads: t, splitSamples: split, method: .shifted),
     PlanVariant(threads: t, splitSamples: split, method: .columns),
     PlanVariant(threads: t, splitSamples: split, method: .columns, samplesPerGroup: 2),
     PlanVariant(threads: t, splitSamples: split, method: .columns, columnBudget: 1, groupColumnBudget: 0),
     PlanVariant(threads: t, splitSamples: split, method: .winograd),
     // The indirect product (AVX-512 and AVX2 builds; the column method elsewhere).
     PlanVariant(threads: t, splitSamples: split, method: .indirect),
     // The direct forward where rows hold whole vectors (AVX-512 and AVX2 builds; column matrices elsewhere).
     PlanVariant(threads: t, splitSamples: split, method: .direct),
     // One tile row per chunk: the weight gradient accumulates over many chunks.
     PlanVariant(threads: t, splitSamples: split, method: .winograd, winogradChunkBudget: 1)]
}

/// Shapes for the infinite-input test: every method (shifted copies on wide rows, column
/// matrices, pointwise, depthwise with vector tails past the last output at strides 1 and 2).
private let infinityCases: [ConvCase] = [
    ConvCase(batch: 2, inChannels: 3, outChannels: 4, height: 5, width: 7, kernel: (3, 3), padding: (1, 1), bias: false),
    ConvCase(batch: 2, inChannels: 2, outChannels: 3, height: 7, width: 17, kernel: (3, 3), dilation: (2, 2), bias: false),
    ConvCase(batch: 2, inChannels: 4, outChannels: 4, height: 7, width: 9, kernel: (5, 3), padding: (2, 1), groups: 2,
             bias: false),
    ConvCase(batch: 2, inChannels: 3, outChannels: 2, height: 7, width: 8, kernel: (3, 3), stride: (2, 2), bias: false),
    ConvCase(batch: 2, inChannels: 3, outChannels: 2, height: 5, width: 7, kernel: (1, 1), bias: false),
    ConvCase(batch: 2, inChannels: 3, outChannels: 3, height: 5, width: 17, kernel: (3, 3), groups: 3, bias: false),
    ConvCase(batch: 2, inChannels: 3, outChannels: 3, height: 7, width: 8, kernel: (3, 3), stride: (2, 2), groups: 3,
             bias: false),
    ConvCase(batch: 2, inChannels: 2, outChannels: 4, height: 7, width: 33, kernel: (3, 3), stride: (2, 2), padding: (1, 1),
             groups: 2, bias: false),
    ConvCase(batch: 2, inChannels: 2, outChannels: 2, height: 17, width: 35, kernel: (3, 3), stride: (3, 3), dilation: (2, 2),
             groups: 2, bias: false),
    ConvCase(batch: 2, inChannels: 3, outChannels: 2, height: 7, width: 32, kernel: (3, 3), stride: (2, 2), padding: (1, 1),
             bias: false),
]

// MARK: - Tests

/// Runs `kernel` under every plan variant and through the public entry point (default plan);
/// expects each result close to `expected` (NaN and infinities where it has them), and variants of
/// the same method to agree bit for bit. `label` replaces the case's description in messages.
private func checkAllPlans(_ c: ConvCase, inputs: [[Float]], expected: [Float], atol: Float, label: String? = nil,
                           _ kernel: KernelBody) {
    let g = c.geometry, name = label ?? c.description
    var byMethod: [String: [Float]] = [:]
    for variant in plans {
        let got = run(inputs, outputCount: expected.count) { p, out in kernel(variant.plan(g), p, out) }
        expectClose(got, expected, atol: atol, rtol: 1e-4, "\(name) threads \(variant.threads) split \(String(describing: variant.splitSamples)) \(variant.methodName)")
        if let first = byMethod[variant.methodName] {
            let same = sameBits(first, got)
            #expect(same, "\(name): thread counts or splits differ (\(variant.methodName))")
        } else {
            byMethod[variant.methodName] = got
        }
    }
    let viaPublic = run(inputs, outputCount: expected.count) { p, out in kernel(nil, p, out) }
    expectClose(viaPublic, expected, atol: atol, rtol: 1e-4, "\(name) public entry point")
}

private typealias KernelBody = (ConvPlan?, [UnsafePointer<Float>], UnsafeMutablePointer<Float>) -> Void

/// The kernels as `checkAllPlans` bodies (a nil plan calls the public entry point). Inputs:
/// forward `[x, w, bias]` (bias used when `bias`), input gradient `[dy, w]`, weight gradient `[x, dy]`.
private func forwardBody(_ g: Conv2dGeometry, bias: Bool) -> KernelBody {
    { plan, p, out in
        let b = bias ? p[2] : nil
        guard let plan else { return Kernels.conv2dForward(g, input: p[0], weight: p[1], bias: b, output: out) }
        Kernels.conv2dForward(g, input: p[0], weight: p[1], bias: b, output: out, plan: plan)
    }
}

private func backwardInputBody(_ g: Conv2dGeometry) -> KernelBody {
    { plan, p, out in
        guard let plan else { return Kernels.conv2dBackwardInput(g, gradOutput: p[0], weight: p[1], gradInput: out) }
        Kernels.conv2dBackwardInput(g, gradOutput: p[0], weight: p[1], gradInput: out, plan: plan)
    }
}

private func backwardWeightBody(_ g: Conv2dGeometry) -> KernelBody {
    { plan, p, out in
        guard let plan else { return Kernels.conv2dBackwardWeight(g, input: p[0], gradOutput: p[1], gradWeight: out) }
        Kernels.conv2dBackwardWeight(g, input: p[0], gradOutput: p[1], gradWeight: out, plan: plan)
    }
}

@Suite("Conv2d kernels")
struct ConvKernelTests {
    @Test("forward matches the reference; same bits with 1 and 2 threads", arguments: cases)
    fileprivate func forward(_ c: ConvCase) {
        let g = c.geometry
        let x = values(g.batch * g.inChannels * g.height * g.width, seed: 1)
        let w = values(g.outChannels * g.inChannelsPerGroup * g.kernelHeight * g.kernelWidth, seed: 2)
        let b = c.bias ? values(g.outChannels, seed: 3) : nil
        // Float sums of up to 1,200 products of values in [-1, 1] round by up to about 1e-5
        // against the double reference (80 channels x 15 taps: 1.07e-5 on a sum near 0.006, the
        // same bits before tiles skipped padding): 1e-5 for each 256 terms. A missing or extra
        // tap is off by a sum of its products, far more.
        let depth = g.inChannelsPerGroup * g.kernelHeight * g.kernelWidth
        checkAllPlans(c, inputs: [x, w, b ?? []], expected: referenceForward(g, x, w, b),
                      atol: 1e-5 * Float(max(1, (depth + 255) / 256)), forwardBody(g, bias: c.bias))
    }

    @Test("forward with an epilogue: bit-identical to batch norm, add and ReLU after the plain forward, every plan",
          arguments: cases.indices)
    fileprivate func forwardEpilogue(_ index: Int) {
        let c = cases[index], g = c.geometry
        let outCount = g.batch * g.outChannels * g.outHeight * g.outWidth, plane = g.outHeight * g.outWidth
        let x = values(g.batch * g.inChannels * g.height * g.width, seed: 11)
        let w = values(g.outChannels * g.inChannelsPerGroup * g.kernelHeight * g.kernelWidth, seed: 12)
        let b = values(g.outChannels, seed: 13)
        // Running statistics and affine; a residual; the ReLU and residual choices rotate over the cases.
        let mean = values(g.outChannels, seed: 14).map { $0 * 0.5 }, variance = values(g.outChannels, seed: 15).map { $0 * $0 + 0.1 }
        let gamma = values(g.outChannels, seed: 16), beta = values(g.outChannels, seed: 17)
        let residual = index % 2 == 0 ? values(outCount, seed: 18) : nil, relu = index % 4 < 2
        let eps: Float = 1e-5
        var rstd = [Float](repeating: 0, count: g.outChannels)
        let scale = (0..<g.outChannels).map {
            Kernels.batchNormScale(rstd: Kernels.batchNormReciprocalDeviation(variance: variance[$0], eps: eps), weight: gamma[$0])
        }
        for variant in plans {
            let plan = variant.plan(g)
            // The separate kernels: forward, BatchNorm with running statistics, add, ReLU.
            var expected = run([x, w, b], outputCount: outCount) { p, out in
                Kernels.conv2dForward(g, input: p[0], weight: p[1], bias: c.bias ? p[2] : nil, output: out, plan: plan)
            }
            var meanCopy = mean, varianceCopy = variance
            expected = expected.withUnsafeBufferPointer { y in
                [Float](unsafeUninitializedCapacity: outCount) { out, count in
                    Kernels.batchNormForward(x: y.baseAddress!, weight: gamma, bias: beta, y: out.baseAddress!, mean: &meanCopy,
                                             variance: &varianceCopy, rstd: &rstd, batch: g.batch, channels: g.outChannels,
                                             spatial: plane, eps: eps, batchStatistics: false, threads: 1)
                    count = outCount
                }
            }
            if let residual { expected = zip(expected, residual).map { $0 + $1 } }
            if relu { expected = expected.map { $0 < 0 ? 0 : $0 } }
            let fused = run([x, w, b, mean, scale, beta, residual ?? []], outputCount: outCount) { p, out in
                let e = ConvEpilogue(shift: p[3], scale: p[4], offset: p[5], residual: residual == nil ? nil : p[6], relu: relu)
                Kernels.conv2dForward(g, input: p[0], weight: p[1], bias: c.bias ? p[2] : nil, output: out, plan: plan, epilogue: e)
            }
            let same = sameBits(fused, expected)
            #expect(same, "\(c) \(variant.methodName) threads \(variant.threads) relu \(relu) residual \(residual != nil)")
        }
    }

    @Test("backward input matches the reference; same bits with 1 and 2 threads", arguments: cases)
    fileprivate func backwardInput(_ c: ConvCase) {
        let g = c.geometry
        let dy = values(g.batch * g.outChannels * g.outHeight * g.outWidth, seed: 4)
        let w = values(g.outChannels * g.inChannelsPerGroup * g.kernelHeight * g.kernelWidth, seed: 5)
        checkAllPlans(c, inputs: [dy, w], expected: referenceBackwardInput(g, dy, w), atol: 1e-5, backwardInputBody(g))
    }

    @Test("backward weight matches the reference; same bits with 1 and 2 threads", arguments: cases)
    fileprivate func backwardWeight(_ c: ConvCase) {
        let g = c.geometry
        let x = values(g.batch * g.inChannels * g.height * g.width, seed: 6)
        let dy = values(g.batch * g.outChannels * g.outHeight * g.outWidth, seed: 7)
        checkAllPlans(c, inputs: [x, dy], expected: referenceBackwardWeight(g, x, dy), atol: 1e-4, backwardWeightBody(g))
    }

    @Test("an infinite input: every method's gradients have Inf and NaN exactly where the direct sums do",
          arguments: infinityCases)
    fileprivate func infiniteInput(_ c: ConvCase) {
        // The weight gradient sums dy * x over the outputs only. Methods that compute discarded
        // outputs (the shifted method's wide rows, the depthwise kernels' vector tails) must not
        // let an input that only those read meet a zero there: 0 * Inf would be NaN.
        let g = c.geometry
        let dy = values(g.batch * g.outChannels * g.outHeight * g.outWidth, seed: 8)
        let w = values(g.outChannels * g.inChannelsPerGroup * g.kernelHeight * g.kernelWidth, seed: 9)
        let h = g.height, wd = g.width, n = g.batch - 1, ch = g.inChannels - 1
        // Corners (read by discarded outputs of wide rows and vector tails) and the middle.
        for (y, x) in [(0, 0), (0, wd - 1), (h - 1, 0), (h - 1, wd - 1), (h / 2, wd / 2)] {
            var input = values(g.batch * g.inChannels * h * wd, seed: 10)
            input[((n * g.inChannels + ch) * h + y) * wd + x] = .infinity
            let label = "\(c) +Inf at (\(y), \(x))"
            checkAllPlans(c, inputs: [input, dy], expected: referenceBackwardWeight(g, input, dy), atol: 1e-4,
                          label: label + " grad-weight", backwardWeightBody(g))
            checkAllPlans(c, inputs: [input, w], expected: referenceForward(g, input, w, nil), atol: 1e-5,
                          label: label + " forward", forwardBody(g, bias: false))
        }
        // The input gradient reads no input values: finite, as the direct sums.
        checkAllPlans(c, inputs: [dy, w], expected: referenceBackwardInput(g, dy, w), atol: 1e-5,
                      label: "\(c) grad-input", backwardInputBody(g))
    }

    @Test("phase rows: split puts column x at run (x + left) % s, position (x + left) / s; merge inverts it")
    func phaseRows() {
        for phases in 1...4 {
            for left in 0...3 {
                for width in 0...70 {
                    let phaseLength = (left + width + phases - 1) / phases + 1, rows = 2
                    let src = values(rows * width, seed: UInt64(width))
                    var runs = [Float](repeating: .nan, count: rows * phases * phaseLength)
                    var back = [Float](repeating: .nan, count: rows * width)
                    src.withUnsafeBufferPointer { s in
                        runs.withUnsafeMutableBufferPointer { r in
                            PhaseRows.split(s.baseAddress!, srcStride: width, into: r.baseAddress!, dstStride: phases * phaseLength,
                                            rows: rows, width: width, left: left, phases: phases, phaseLength: phaseLength)
                        }
                    }
                    var placed = true
                    for y in 0..<rows {
                        for x in 0..<width {
                            let c = x + left, at = y * phases * phaseLength + c % phases * phaseLength + c / phases
                            placed = placed && runs[at].bitPattern == src[y * width + x].bitPattern
                        }
                    }
                    #expect(placed, "split: phases \(phases) left \(left) width \(width)")
                    runs.withUnsafeBufferPointer { r in
                        back.withUnsafeMutableBufferPointer { b in
                            PhaseRows.merge(r.baseAddress!, srcStride: phases * phaseLength, into: b.baseAddress!, dstStride: width,
                                            rows: rows, width: width, left: left, phases: phases, phaseLength: phaseLength)
                        }
                    }
                    #expect(sameBits(back, src), "merge: phases \(phases) left \(left) width \(width)")
                }
            }
        }
    }

    @Test("stride-2 row loops: gather and scatter-add equal element loops for every length; other entries keep their bits")
    func strideTwoRowLoops() {
        for n in 0...41 {
            // The source holds exactly the elements read, so the vector body must stop in time
            // (the last one at 2 * (n - 1)).
            let extent = max(1, 2 * n - 1)
            let src = UnsafeMutablePointer<Float>.allocate(capacity: extent)
            let gathered = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n))
            defer { src.deallocate(); gathered.deallocate() }
            for i in 0..<extent { src[i] = Float(i) * 0.5 - 7 }
            ConvLoops.gather(gathered, src, n, stride: 2)
            #expect((0..<n).allSatisfy { gathered[$0] == src[2 * $0] }, "gather n = \(n)")

            // Odd entries hold -0 and a NaN payload; adding must leave their bits alone.
            let dst = UnsafeMutablePointer<Float>.allocate(capacity: extent)
            defer { dst.deallocate() }
            for i in 0..<extent { dst[i] = i % 2 == 1 ? (i % 4 == 1 ? -0.0 : Float(nan: 0x1234, signaling: false)) : Float(i) }
            let expected = (0..<extent).map { i in i % 2 == 0 && i / 2 < n ? dst[i] + gathered[i / 2] : dst[i] }
            ConvLoops.scatterAdd(dst, gathered, n, stride: 2)
            #expect((0..<extent).allSatisfy { dst[$0].bitPattern == expected[$0].bitPattern }, "scatterAdd n = \(n)")
        }
    }

    @Test("transpose: every block order and prefetch setting equals the element loop; padding between rows untouched")
    func transposeOrders() {
        for rows in [1, 7, 8, 9, 16, 23] {
            for columns in [1, 5, 8, 13, 24] {
                let lds = columns + 3, ldd = rows + 2
                let src = (0..<(rows * lds)).map { Float($0) * 0.25 - 3 }
                for (prefetching, destinationRows) in [(false, false), (true, false), (false, true)] {
                    // -0 in every destination float, so a stray write of +0 shows in the bits too.
                    var dst = [Float](repeating: -0.0, count: columns * ldd)
                    src.withUnsafeBufferPointer { s in
                        dst.withUnsafeMutableBufferPointer { d in
                            ConvLoops.transpose(rows: rows, columns: columns, s.baseAddress!, lds: lds, d.baseAddress!, ldd: ldd,
                                                prefetching: prefetching, destinationRows: destinationRows)
                        }
                    }
                    let expected = (0..<(columns * ldd)).map { k -> Float in
                        let j = k / ldd, i = k % ldd
                        return i < rows ? src[i * lds + j] : -0.0
                    }
                    #expect(dst.map(\.bitPattern) == expected.map(\.bitPattern),
                            "\(rows) x \(columns), prefetching \(prefetching), destination rows \(destinationRows)")
                }
            }
        }
    }

    @Test("plans: methods by geometry; whole samples per thread for large batches, threaded GEMMs otherwise")
    func planChoice() {
        let big = Conv2dGeometry(batch: 32, inChannels: 64, height: 32, width: 32, outChannels: 64,
                                 kernelHeight: 3, kernelWidth: 3, padding: (1, 1))
        let p32 = ConvPlan(big, threads: 2)
        #expect(p32.workers == 2 && p32.gemmThreads == 1)
        #expect(p32.forwardMethod == .winograd && p32.backwardInputMethod == .winograd && p32.backwardWeightMethod == .winograd)
        // Non-finite operands go to the method the geometry would take without Winograd.
        let exact = p32.exact
        #expect(exact.forwardMethod == .shifted && exact.backwardInputMethod == .shifted && exact.backwardWeightMethod == .shifted)
        // Winograd needs 3x3, stride 1, no dilation, one group, equal padding (at most 2 for the input gradient).
        var wideKernel = big
        (wideKernel.kernelWidth, wideKernel.padW, wideKernel.width) = (5, 2, 64)
        #expect(ConvPlan(wideKernel, threads: 1).forwardMethod == .shifted)
        var dilated = big
        (dilated.dilationH, dilated.dilationW, dilated.padH, dilated.padW, dilated.width) = (2, 2, 2, 2, 64)
        #expect(ConvPlan(dilated, threads: 1).forwardMethod == .shifted)
        var farPadded = big
        (farPadded.padH, farPadded.padW) = (3, 3)
        let pf = ConvPlan(farPadded, threads: 1)
        #expect(pf.forwardMethod == .winograd && pf.backwardWeightMethod == .winograd && pf.backwardInputMethod == .columns)
        var fewChannels = big
        fewChannels.outChannels = 8
        #expect(ConvPlan(fewChannels, threads: 1).forwardMethod != .winograd)
        // From 32 channels in and out: Winograd for all three kernels; below, none.
        var thinner = big
        (thinner.inChannels, thinner.outChannels) = (32, 48)
        let pn = ConvPlan(thinner, threads: 1)
        #expect(pn.forwardMethod == .winograd && pn.backwardInputMethod == .winograd && pn.backwardWeightMethod == .winograd)
        thinner.inChannels = 31
        let below = ConvPlan(thinner, threads: 1)
        #expect(below.forwardMethod != .winograd && below.backwardInputMethod != .winograd && below.backwardWeightMethod != .winograd)
        #expect(p32.colRows * p32.bandRows * big.outWidth <= ConvPlan.columnBudget)
        var one = big
        one.batch = 1
        let p1 = ConvPlan(one, threads: 2)
        #expect(p1.workers == 1 && p1.gemmThreads == 2)
        #expect(p1.weightSlots == 1 && p32.weightSlots == ConvPlan.maxWeightSlots)

        // Narrow images waste too much width for the shifted method, few channels make its sgemm
        // calls too thin; strided convolutions cannot use it.
        var narrow = wideKernel
        (narrow.height, narrow.width) = (7, 7)
        #expect(ConvPlan(narrow, threads: 1).forwardMethod == .columns)
        var firstLayer = big
        firstLayer.inChannels = 3
        #expect(ConvPlan(firstLayer, threads: 1, method: .winograd).forwardMethod == .winograd)
        #expect(ConvPlan(firstLayer, threads: 1).forwardMethod == .columns)
        var strided = big
        (strided.strideH, strided.strideW) = (2, 2)
        // Strided: indirect products forward and for both gradients on AVX-512 and AVX2 builds
        // (column matrices elsewhere).
        let stridedPlan = ConvPlan(strided, threads: 1), avx512 = GEMMKernelKind.active == .tile12x32
        let indirect = IndirectTile.kind != nil
        #expect(indirect == (avx512 || (GEMMKernelKind.active == .tile6x16 && isX86)))
        #expect(stridedPlan.forwardMethod == (indirect ? .indirect : .columns))
        #expect(stridedPlan.backwardWeightMethod == (indirect ? .indirect : .columns))
        #expect(stridedPlan.backwardInputMethod == (indirect ? .indirect : .columns))
        // Fewer channels: the forward runs directly on rows of whole vectors (16 outputs here: one
        // vector on AVX-512, two on AVX2), else reads kernel rows (row taps); the weight gradient
        // keeps column matrices; dilated rows are not contiguous, so columns.
        var stridedFew = strided
        stridedFew.inChannels = 8
        let fewPlan = ConvPlan(stridedFew, threads: 1)
        #expect(DirectTile.available == indirect && DirectTile.lanes == (avx512 ? 16 : 8))
        #expect(stridedFew.outWidth == 16 && fewPlan.forwardMethod == (indirect ? .direct : .columns))
        var oddFew = stridedFew
        oddFew.width = 30
        #expect(ConvPlan(oddFew, threads: 1).forwardMethod == (indirect ? .indirect : .columns))
        #expect(fewPlan.backwardWeightMethod == .columns && fewPlan.backwardInputMethod == .columns)
        let fewShape = IndirectConvShape.forward(stridedFew)
        #expect(fewShape.rowTaps && fewShape.taps == stridedFew.kernelHeight)
        #expect(fewShape.tapDepth == stridedFew.kernelWidth * 8 && fewShape.pitch == 8)
        #expect(!IndirectConvShape.forward(strided).rowTaps)
        var dilatedFew = stridedFew
        dilatedFew.dilationW = 2
        #expect(ConvPlan(dilatedFew, threads: 1).forwardMethod == .columns)
        let stem = Conv2dGeometry(batch: 8, inChannels: 3, height: 224, width: 224, outChannels: 64, kernelHeight: 7,
                                  kernelWidth: 7, stride: (2, 2), padding: (3, 3))
        #expect(ConvPlan(stem, threads: 1).forwardMethod == (indirect ? .direct : .columns))
        #expect(ConvPlan(stem, threads: 1).backwardWeightMethod == .columns)
        // A forced direct method only where rows hold whole vectors, never for pointwise ones.
        #expect(ConvPlan(big, threads: 1, method: .direct).forwardMethod == (indirect ? .direct : .columns))
        var pointwiseWide = big
        (pointwiseWide.kernelHeight, pointwiseWide.kernelWidth, pointwiseWide.padH, pointwiseWide.padW) = (1, 1, 0, 0)
        #expect(ConvPlan(pointwiseWide, threads: 1, method: .direct).forwardMethod == .pointwise)
        #expect(IndirectConvShape.forward(stem).channelBlocks == 1)
        let wide = Conv2dGeometry(batch: 2, inChannels: 12, height: 15, width: 15, outChannels: 8, kernelHeight: 11,
                                  kernelWidth: 11, stride: (2, 2), padding: (5, 5))
        // 11 row taps of 132 floats: blocks of at most 52 floats in AVX-512's 32-wide panels, 104 in AVX2's.
        #expect(IndirectConvShape.forward(wide).channelBlocks == (IndirectConvShape.nr == 16 ? 2 : 3))
        // Each build's panels hold the same bytes: 64 channels of a 3x3 kernel in 32-wide panels, 128 in 16-wide.
        #expect(IndirectConvShape.blockDepth * IndirectConvShape.nr == 576 * 32)
        // Padding beyond the kernel's reach: shifted forward, but column matrices for the input gradient.
        var padded = big
        (padded.kernelHeight, padded.kernelWidth, padded.padH, padded.padW) = (1, 1, 1, 1)
        let pp = ConvPlan(padded, threads: 1)
        #expect(pp.forwardMethod == .shifted && pp.backwardInputMethod == .columns)

        let tiny = Conv2dGeometry(batch: 2, inChannels: 1, height: 3, width: 3, outChannels: 1,
                                  kernelHeight: 1, kernelWidth: 1)
        let pt = ConvPlan(tiny, threads: 2)
        #expect(pt.workers == 1 && pt.gemmThreads == 1)
        #expect(pt.forwardMethod == .pointwise && pt.backwardInputMethod == .pointwise)
    }

    @Test("tile order: every position once, interior first; a tile skips a tap only if all its positions read padding there")
    func tileOrder() throws {
        // ResNet-18's last stride-2 3x3 (14x14 -> 7x7, pad 1) and a 3x5 with dilated rows and wide padding.
        let layers = [
            Conv2dGeometry(batch: 8, inChannels: 256, height: 14, width: 14, outChannels: 512, kernelHeight: 3,
                           kernelWidth: 3, stride: (2, 2), padding: (1, 1)),
            Conv2dGeometry(batch: 3, inChannels: 80, height: 9, width: 11, outChannels: 33, kernelHeight: 3,
                           kernelWidth: 5, stride: (2, 1), padding: (3, 3), dilation: (2, 1)),
        ]
        for g in layers {
            let s = IndirectConvShape.forward(g), mr = IndirectConvShape.mr
            #expect(s.skipsPadding && s.channelBlocks > 1)
            let positions = g.batch * s.outPlane, tiles = (positions + mr - 1) / mr
            let order = IndirectConvShape.TileOrder(tiles: tiles)
            defer { order.deallocate() }
            let y = UnsafeMutablePointer<Float>.allocate(capacity: tiles * mr * s.ldy)
            defer { y.deallocate() }
            s.orderTiles(samples: g.batch, y: y, into: order)
            // A permutation of the positions; each slot's row of Y is its position's.
            let slots = (0..<positions).map { Int(order.positions[$0]) }
            #expect(slots.sorted() == Array(0..<positions))
            #expect((0..<(tiles * mr)).allSatisfy { order.rows[$0] == y + ($0 < positions ? slots[$0] : $0) * s.ldy })
            // The taps each position reads from the padding, by brute force.
            func padded(_ p: Int) -> Set<Int> {
                let oy = (p % s.outPlane) / g.outWidth, ox = p % g.outWidth
                var taps = Set<Int>()
                for ky in 0..<g.kernelHeight {
                    for kx in 0..<g.kernelWidth {
                        let iy = oy * g.strideH - g.padH + ky * g.dilationH, ix = ox * g.strideW - g.padW + kx * g.dilationW
                        if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { taps.insert(ky * g.kernelWidth + kx) }
                    }
                }
                return taps
            }
            // Interior positions first, in order.
            let interior = (0..<positions).filter { padded($0).isEmpty }
            #expect(Array(slots.prefix(interior.count)) == interior)
            // A tile skips exactly the taps that every one of its positions reads from the padding.
            var skipped = 0, paddedPairs = 0
            for tile in 0..<tiles {
                let members = (tile * mr)..<min(positions, (tile + 1) * mr)
                let common = members.map { padded(slots[$0]) }.reduce(Set(0..<s.taps)) { $0.intersection($1) }
                let skips = Set((0..<s.taps).filter { order.skips[tile] & (1 << UInt64($0)) != 0 })
                #expect(skips == common, "tile \(tile) of \(g)")
                skipped += skips.count * members.count
                paddedPairs += members.map { padded(slots[$0]).count }.reduce(0, +)
            }
            // Grouping pays: most of the padded (position, tap) pairs fall in skipped taps (in
            // position order, 12 consecutive positions of 7-wide rows would share almost none).
            #expect(Double(skipped) >= 0.75 * Double(paddedPairs), "\(skipped) of \(paddedPairs) padded pairs skipped for \(g)")
            // Shares of the taps for two threads: all tiles once, in two runs of near-equal work.
            let first = order.share(0, of: 2, tiles: tiles, in: s), second = order.share(1, of: 2, tiles: tiles, in: s)
            #expect(first.lowerBound == 0 && first.upperBound == second.lowerBound && second.upperBound == tiles)
            let (a, b) = (order.taps(of: first, in: s), order.taps(of: second, in: s))
            #expect(abs(a - b) <= s.taps, "\(a) and \(b) taps for \(g)")
        }
    }

    @Test("plans: samples of small planes share an sgemm in groups set by the geometry, never by the threads")
    func sampleGroups() {
        func geometry(batch: Int = 8, channels: Int, size: Int, kernel: Int, stride: Int = 1) -> Conv2dGeometry {
            Conv2dGeometry(batch: batch, inChannels: channels, height: size, width: size, outChannels: channels,
                           kernelHeight: kernel, kernelWidth: kernel, stride: (stride, stride), padding: (kernel / 2, kernel / 2))
        }
        // 3x3 stride-1 layers of 32 channels or more take Winograd (never grouped), so `columns`
        // forces the column method the grouping applies to.
        func groups(_ g: Conv2dGeometry, _ method: ConvPlan.Method? = nil) -> (size: Int, slots: Int) {
            let one = ConvPlan(g, threads: 1, method: method), two = ConvPlan(g, threads: 2, method: method)
            #expect(one.samplesPerGroup == two.samplesPerGroup && one.weightSlots == two.weightSlots, "\(g)")
            if one.samplesPerGroup > 1 {
                #expect(one.bandRows == g.outHeight, "\(g): groups hold whole planes")
                #expect(one.colRows * one.samplesPerGroup * one.outPlane <= ConvPlan.groupColumnBudget, "\(g)")
            }
            return (one.samplesPerGroup, one.weightSlots)
        }
        // ResNet's late stages: 7x7 planes group the whole batch of 8 (392 columns, one weight slot),
        // 14x14 planes pairs (392 columns), the 1x1 pointwise ones too; 56x56 planes run per sample, whole; larger column matrices in bands.
        #expect(groups(geometry(channels: 512, size: 7, kernel: 3)).size == 1)
        #expect(ConvPlan(geometry(channels: 512, size: 7, kernel: 3), threads: 1).forwardMethod == .winograd)
        #expect(groups(geometry(channels: 512, size: 7, kernel: 3), .columns) == (8, 1))
        #expect(groups(geometry(channels: 256, size: 14, kernel: 3), .columns) == (2, 4))
        #expect(groups(geometry(channels: 256, size: 14, kernel: 3, stride: 2)) == (8, 1))
        #expect(groups(geometry(channels: 1024, size: 14, kernel: 1)) == (2, 4))
        #expect(ConvPlan(geometry(channels: 1024, size: 14, kernel: 1), threads: 1).forwardMethod == .pointwise)
        let large = ConvPlan(geometry(channels: 64, size: 56, kernel: 3, stride: 2), threads: 1)
        #expect(large.samplesPerGroup == 1 && large.bandRows == large.g.outHeight)
        let larger = ConvPlan(geometry(channels: 256, size: 224, kernel: 3, stride: 2), threads: 1)
        #expect(larger.samplesPerGroup == 1 && larger.bandRows < larger.g.outHeight)
        #expect(larger.bandRows * larger.g.outWidth * larger.colRows <= ConvPlan.columnBudget)
        // Groups as equal as they can be: 20 samples of 7x7 at most 10 per group are two groups of 10;
        // 5 samples of 14x14 are groups of 2, 2, 1.
        #expect(groups(geometry(batch: 20, channels: 256, size: 7, kernel: 3), .columns).size == 10)
        #expect(groups(geometry(batch: 5, channels: 256, size: 14, kernel: 3), .columns) == (2, 3))
        // The group's column matrix stays within its budget: 1024 channels at 7x7 allow 4 of 8 samples.
        #expect(groups(geometry(channels: 1024, size: 7, kernel: 3), .columns).size == 4)
        // Winograd, shifted and depthwise methods never group.
        #expect(groups(geometry(channels: 16, size: 32, kernel: 3)).size == 1)
        #expect(groups(geometry(channels: 64, size: 32, kernel: 3)).size == 1)
        var depthwise = geometry(channels: 32, size: 7, kernel: 3)
        depthwise.groups = 32
        #expect(groups(depthwise).size == 1)
    }

    @Test("Winograd chunks: in L2 when the weights are small, whole batches when large; threads take chunks only when there are many")
    func winogradChunks() {
        func tiling(channels: Int, size: Int, batch: Int = 8) -> WinogradTiling {
            WinogradTiling(batch: batch, channels: channels, outChannels: channels, height: size, width: size, pad: 1)
        }
        // 64 channels at 56x56: a chunk's two buffers (V and M) fit in half a Zen 4 L2 each,
        // whole tile rows, many chunks: threads take whole chunks, the weight gradient sums 4 runs.
        let small = tiling(channels: 64, size: 56)
        #expect(16 * small.rowsPerChunk * small.tilesWide * max(small.inPitch, small.outPitch) <= WinogradTiling.cacheBudget)
        #expect(small.chunkCount >= 8 && small.threadsTakeChunks(2) && !small.threadsTakeChunks(1))
        #expect(small.weightSlots(sumFloats: 16 * 64 * 64) == 4)
        // Every tile row is in exactly one chunk, in order.
        var next = 0
        for c in 0..<small.chunkCount {
            #expect(small.chunk(c).lowerBound == next && !small.chunk(c).isEmpty)
            next = small.chunk(c).upperBound
        }
        #expect(next == small.tileRows)
        // 512 channels at 7x7: 4 MB of transformed weights, which every chunk reads: one chunk for
        // the whole batch, shared by the threads, one weight-gradient sum.
        let large = tiling(channels: 512, size: 7)
        #expect(large.chunkCount == 1 && !large.threadsTakeChunks(2) && large.weightSlots(sumFloats: 16 * 516 * 512) == 1)
        // 256 channels at 14x14: a few chunks, still shared (extra sums would cost more than they save).
        let middle = tiling(channels: 256, size: 14)
        #expect(middle.chunkCount > 1 && middle.chunkCount < 8 && !middle.threadsTakeChunks(2))
        #expect(middle.weightSlots(sumFloats: 16 * 264 * 256) == 1)
        // Pitches: whole panels (32 channels, 16 on AVX2) and 16 floats more (no power-of-two row stride).
        let wide = IndirectConvShape.nr == 32
        #expect(WinogradTiling.pitch(64) == 80 && WinogradTiling.pitch(70) == (wide ? 112 : 96) && WinogradTiling.pitch(512) == 528)
        // Transformed and packed weights take exactly their panels' floats: 16 positions (or the
        // taps) x the depth x the produced channels rounded up to whole panels of 32 (16).
        let layer = Conv2dGeometry(batch: 1, inChannels: 64, height: 8, width: 8, outChannels: 70,
                                   kernelHeight: 3, kernelWidth: 3, padding: (1, 1))
        #expect(Kernels.winogradWeightCount(layer, turned: false) == 16 * 64 * (wide ? 96 : 80))
        #expect(Kernels.winogradWeightCount(layer, turned: true) == 16 * 70 * 64)
        #expect(Kernels.indirectTransposedWeightCount(layer) == 9 * 64 * 70)
    }
}

#if arch(x86_64)
private let isX86 = true
#else
private let isX86 = false
#endif
