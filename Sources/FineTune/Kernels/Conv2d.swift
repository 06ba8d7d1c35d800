/// The shape of a 2-D convolution over NCHW input with OIHW weights (PyTorch layout).
public struct Conv2dGeometry: Hashable, Sendable {
    public var batch: Int, inChannels: Int, height: Int, width: Int
    public var outChannels: Int, kernelHeight: Int, kernelWidth: Int
    public var strideH: Int, strideW: Int, padH: Int, padW: Int
    public var dilationH: Int, dilationW: Int, groups: Int

    public init(batch: Int, inChannels: Int, height: Int, width: Int,
                outChannels: Int, kernelHeight: Int, kernelWidth: Int,
                stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                dilation: (Int, Int) = (1, 1), groups: Int = 1) {
        self.batch = batch; self.inChannels = inChannels; self.height = height; self.width = width
        self.outChannels = outChannels; self.kernelHeight = kernelHeight; self.kernelWidth = kernelWidth
        self.strideH = stride.0; self.strideW = stride.1; self.padH = padding.0; self.padW = padding.1
        self.dilationH = dilation.0; self.dilationW = dilation.1; self.groups = groups
    }

    public var outHeight: Int { Kernels.windowCount(size: height, padding: padH, window: dilationH * (kernelHeight - 1) + 1, stride: strideH) }
    public var outWidth: Int { Kernels.windowCount(size: width, padding: padW, window: dilationW * (kernelWidth - 1) + 1, stride: strideW) }
    /// Input channels seen by one output channel.
    public var inChannelsPerGroup: Int { inChannels / groups }
    public var outChannelsPerGroup: Int { outChannels / groups }
    /// Multiply-adds of the forward pass times two.
    public var forwardFlops: Double {
        2 * Double(batch * outChannels * outHeight * outWidth * inChannelsPerGroup * kernelHeight * kernelWidth)
    }
}

extension Kernels {
    /// How many positions a window of `window` elements takes along an axis of `size` padded by
    /// `padding` on both sides, stepping by `stride`: 0 when the window does not fit at all
    /// (floor division, so an over-large window never rounds up to one position).
    static func windowCount(size: Int, padding: Int, window: Int, stride: Int) -> Int {
        let span = size + 2 * padding - window
        return span < 0 || stride <= 0 ? 0 : span / stride + 1
    }
}

// MARK: - Convolution as matrix products
//
// Every convolution runs per sample (or sample group, below) and group by one of these methods,
// chosen from the geometry alone (`ConvPlan`):
//
//   * pointwise (1x1, stride 1, no padding): sgemm on the input planes, which are already the
//     column matrix; no copies for single samples.
//   * shifted copies (stride 1, >= 16 channels, little wasted width; Conv2dShifted.swift): the
//     input padded and copied KW times with column shifts, one sgemm per kernel row reading it.
//   * column matrix (everything else; Conv2dColumns.swift, Im2col.swift): im2col of a band of
//     output rows into an L2-sized buffer (or of a sample group's whole planes), then one sgemm;
//     col2im for the input gradient.
//   * depthwise (one input channel per group; Conv2dDepthwise.swift): direct vector loops.
//   * Winograd F(2x2, 3x3) (3x3 stride 1 from 32 channels; Conv2dWinograd.swift).
//   * indirect products (strided, AVX-512 and AVX2 builds; Conv2dIndirect.swift): 12 x 32 (AVX2:
//     6 x 16) register tiles reading a channels-last copy of the input through a table of row
//     pointers, for the forward and both gradients (the forward alone, reading kernel rows, below
//     16 input channels).
//   * direct (strided, below 16 input channels, rows of a multiple of 16 outputs, AVX-512 builds;
//     Conv2dDirect.swift): the forward of a stem, vectors of 16 outputs of a row by 4 output
//     channels, reading the input split into stride phases and writing NCHW directly.
//
// Sample groups: where a sample's output plane is small (14x14, 7x7), one sample's sgemm is too
// narrow for the micro-kernel's tiles and repacks the whole weight matrix for a few dozen
// columns. The column and pointwise methods then put the whole column matrices of several
// samples side by side (`ConvPlan.samplesPerGroup`, set by the geometry): one sgemm per group,
// which reads and writes each sample's own output (or output-gradient) planes as segments of
// its columns (the weight gradient gathers them into one [Cout/g, samples * OH * OW] matrix).
// Larger planes run per sample, in bands of output rows.
//
// Threading: with enough sample groups, each thread runs whole groups with single-threaded
// sgemm calls and its own buffers. Otherwise groups run in sequence and the threads share each
// one: the shifted method splits the output columns of its sgemm calls across threads, the
// column method runs threaded sgemm, im2col and col2im, the depthwise kernels split planes. The
// weight gradient is accumulated in a fixed number of slots of whole groups (set by the batch
// size and the groups, not the thread count) summed in slot order. Every output element is
// therefore produced by the same operations in the same order whatever the thread count or
// scheduling (sgemm's result does not depend on its blocking or thread count either): results
// are bit-identical for any `threads`.

extension Kernels {
    /// `output[N, Cout, OH, OW] = conv(input[N, Cin, H, W], weight[Cout, Cin/groups, KH, KW]) + bias`.
    ///
    /// Cross-correlation as in PyTorch's `F.conv2d`; `bias` (`[Cout]`) is optional. Overwrites
    /// `output`. Runs on up to `threads` threads; the result does not depend on `threads`.
    public static func conv2dForward(_ g: Conv2dGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                     bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                                     threads: Int = Kernels.maxThreads) {
        conv2dForward(g, input: input, weight: weight, bias: bias, output: output, plan: ConvPlan(g, threads: threads))
    }

    /// `gradInput = d(output)/d(input)^T · gradOutput` (overwrites `gradInput`).
    ///
    /// Runs on up to `threads` threads; the result does not depend on `threads`.
    public static func conv2dBackwardInput(_ g: Conv2dGeometry, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                           gradInput: UnsafeMutablePointer<Float>, threads: Int = Kernels.maxThreads) {
        conv2dBackwardInput(g, gradOutput: gradOutput, weight: weight, gradInput: gradInput, plan: ConvPlan(g, threads: threads))
    }

    /// `gradWeight = d(output)/d(weight)^T · gradOutput`, summed over the batch (overwrites `gradWeight`).
    ///
    /// Runs on up to `threads` threads; the result does not depend on `threads`.
    public static func conv2dBackwardWeight(_ g: Conv2dGeometry, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                            gradWeight: UnsafeMutablePointer<Float>, threads: Int = Kernels.maxThreads) {
        conv2dBackwardWeight(g, input: input, gradOutput: gradOutput, gradWeight: gradWeight, plan: ConvPlan(g, threads: threads))
    }

    // MARK: Dispatch (the plan is a parameter so tests can force methods and threading)

    /// With an `epilogue`, each method applies it to each part of the output as it finishes it. A
    /// `transformedWeight` spares the Winograd method its weight transform
    /// (``transformWinogradWeights(_:weight:turned:into:threads:)``) and the indirect method its
    /// weight panels (``packIndirectWeights(_:weight:into:)``); other methods ignore it.
    static func conv2dForward(_ g: Conv2dGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                              bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, plan: ConvPlan,
                              epilogue: ConvEpilogue? = nil, transformedWeight: UnsafePointer<Float>? = nil) {
        let e = epilogue
        switch plan.forwardMethod {
        case .winograd:
            if !conv2dForwardWinograd(g, input: input, weight: weight, bias: bias, output: output, plan: plan, epilogue: e,
                                      transformedWeight: transformedWeight) {
                conv2dForward(g, input: input, weight: weight, bias: bias, output: output, plan: plan.exact, epilogue: e)
            }
        case .depthwise: conv2dForwardDepthwise(g, input: input, weight: weight, bias: bias, output: output, plan: plan, epilogue: e)
        case .shifted: conv2dForwardShifted(g, input: input, weight: weight, bias: bias, output: output, plan: plan, epilogue: e)
        case .indirect:
            conv2dForwardIndirect(g, input: input, weight: weight, bias: bias, output: output, plan: plan, epilogue: e,
                                  packedWeight: transformedWeight)
        case .direct: conv2dForwardDirect(g, input: input, weight: weight, bias: bias, output: output, plan: plan, epilogue: e)
        case .pointwise, .columns:
            conv2dForwardColumns(g, input: input, weight: weight, bias: bias, output: output, plan: plan, epilogue: e)
        }
    }

    static func conv2dBackwardInput(_ g: Conv2dGeometry, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                    gradInput: UnsafeMutablePointer<Float>, plan: ConvPlan,
                                    transformedWeight: UnsafePointer<Float>? = nil) {
        switch plan.backwardInputMethod {
        case .winograd:
            if !conv2dBackwardInputWinograd(g, gradOutput: gradOutput, weight: weight, gradInput: gradInput, plan: plan,
                                            transformedWeight: transformedWeight) {
                conv2dBackwardInput(g, gradOutput: gradOutput, weight: weight, gradInput: gradInput, plan: plan.exact)
            }
        case .depthwise: conv2dBackwardInputDepthwise(g, gradOutput: gradOutput, weight: weight, gradInput: gradInput, plan: plan)
        case .shifted: conv2dBackwardInputShifted(g, gradOutput: gradOutput, weight: weight, gradInput: gradInput, plan: plan)
        case .indirect:
            conv2dBackwardInputIndirect(g, gradOutput: gradOutput, weight: weight, gradInput: gradInput, plan: plan,
                                        packedWeight: transformedWeight)
        case .pointwise, .columns, .direct:  // (`.direct` is a forward method only)
            conv2dBackwardInputColumns(g, gradOutput: gradOutput, weight: weight, gradInput: gradInput, plan: plan)
        }
    }

    static func conv2dBackwardWeight(_ g: Conv2dGeometry, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                     gradWeight: UnsafeMutablePointer<Float>, plan: ConvPlan) {
        switch plan.backwardWeightMethod {
        case .winograd:
            if !conv2dBackwardWeightWinograd(g, input: input, gradOutput: gradOutput, gradWeight: gradWeight, plan: plan) {
                conv2dBackwardWeight(g, input: input, gradOutput: gradOutput, gradWeight: gradWeight, plan: plan.exact)
            }
        case .depthwise:
            conv2dBackwardWeightDepthwise(g, input: input, gradOutput: gradOutput, gradWeight: gradWeight, plan: plan)
        case .shifted: conv2dBackwardWeightShifted(g, input: input, gradOutput: gradOutput, gradWeight: gradWeight, plan: plan)
        case .indirect: conv2dBackwardWeightIndirect(g, input: input, gradOutput: gradOutput, gradWeight: gradWeight, plan: plan)
        case .pointwise, .columns, .direct:  // (`.direct` is a forward method only)
            conv2dBackwardWeightColumns(g, input: input, gradOutput: gradOutput, gradWeight: gradWeight, plan: plan)
        }
    }
}

/// How one convolution call is carried out: the method per kernel, the work split across
/// threads, and the buffer sizes. Depends on the geometry and the thread count only.
struct ConvPlan {
    enum Method {
        /// 1x1, stride 1, no padding: sgemm on the input planes directly.
        case pointwise
        /// im2col / col2im through a column matrix (Conv2dColumns.swift).
        case columns
        /// Shifted copies of the padded planes, one sgemm per kernel row (Conv2dShifted.swift).
        case shifted
        /// One input channel per group: direct loops, no sgemm (Conv2dDepthwise.swift).
        case depthwise
        /// Winograd F(2x2, 3x3): 3x3, stride 1, no dilation, one group (Conv2dWinograd.swift).
        case winograd
        /// Indirect matrix products over the channels-last input, 12 x 32 tiles (6 x 16 on AVX2;
        /// Conv2dIndirect.swift); AVX-512 and AVX2 builds, one group.
        case indirect
        /// The forward only: tiles of output-row vectors by 4 channels over the input split into
        /// stride phases (Conv2dDirect.swift); AVX-512 builds, one group, rows of whole vectors.
        case direct
    }

    /// Floats in one column buffer (a band of whole output rows, 4 MB). Each band's sgemm packs
    /// the whole weight matrix again and ends in a partial column tile, so small bands cost more
    /// than a column matrix streamed from L3: measured on Zen 4 (12 x 32 tile, KC 768), batch 8,
    /// one thread, raising this from 128 Ki floats (half of L2) made the stride-2 convolutions of
    /// ResNet on 56x56 and 28x28 inputs (3x3, 1x1, the 7x7 stem) 3-13% faster, forward and
    /// backward; the 3x3 and 1x1 ones now take whole planes, the stem two bands.
    static let columnBudget = 1 << 20
    /// Below this many forward flops a call runs on one thread (dispatch would cost more).
    static let minParallelFlops = 4.0e6
    /// Upper bound on weight-gradient slots, and on their scratch memory (floats).
    static let maxWeightSlots = 16, weightScratchBudget = 1 << 23
    /// The shifted method computes `(KW - 1) * dw` discarded outputs per output row; it is used
    /// while those are at most a tenth of the row. (Measured on 3x3 32x32, 6% waste: its copies
    /// cost ~5% of the time where im2col / col2im cost ~15%, ~8% faster overall.)
    static let maxShiftedWaste = 0.1
    /// The shifted method's sgemm calls have depth `KW * channels` (and, for the input gradient,
    /// `Cin/groups` rows), so it needs at least this many channels per group in and out.
    /// (Measured 3x3 32x32: 3 -> 64 channels, columns are 2x faster overall; 16 -> 16, shifted is
    /// ~10% faster.)
    static let minShiftedChannels = 16
    /// Winograd's transforms cost about as much per tile and channel as a few dozen multiply-adds,
    /// so it needs this many channels in and out to pay. (Measured 3x3 32x32, batch 32, Zen 4,
    /// with the earlier sgemm-based kernels: at 32 channels forward and input gradient were level
    /// with the shifted method; at 64 channels all three kernels 1.1-1.4x faster. With the
    /// channels-last kernels the weight gradient pays from 32 channels too: `cnn_step_full`, whose
    /// second convolution is 3x3 32 -> 64 at 14x14, ran 4% faster on 1 and on 2 threads.)
    static let minWinogradChannels = 32
    /// The indirect product reads each tap's input channels as one run; with fewer (the 3-channel
    /// stem) its forward reads whole kernel rows instead (row taps), and the weight gradient keeps
    /// the column method. (Strided 1x1 convolutions keep the column method too: it gathers only
    /// the inputs they read, where the indirect one copies every input.)
    static let minIndirectChannels = 16
    /// The column and pointwise methods group samples whose output planes are smaller than this
    /// many columns, so that a group's sgemm has up to this many. Measured on Zen 4 (12 x 32
    /// tile), batch 8, one thread, forward + backward: 3x3 512 -> 512 at 7x7 takes 0.55x the time
    /// of one sample per sgemm (4-row bands), 1x1 2048 -> 512 at 7x7 0.7x, 3x3 256 -> 256 at 14x14
    /// 0.9x; targets from 512 to 1600 columns were within noise of each other, and 1600 was slower
    /// on 3x3 64 -> 64 at 14x14 (a 3.6 MB column matrix).
    static let groupColumns = 512
    /// Floats in a group's column matrix at most (8 MB, L3-resident; the sgemm reading it does
    /// `2 * Cout/g` flops per float, hundreds for the convolutions that group).
    static let groupColumnBudget = 1 << 21

    let g: Conv2dGeometry
    let shape: Im2colShape
    /// `H * W` and `OH * OW`.
    let inPlane: Int, outPlane: Int
    /// Rows of a group's column matrix: `Cin/groups * KH * KW`.
    let colRows: Int
    private(set) var forwardMethod: Method, backwardInputMethod: Method, backwardWeightMethod: Method
    /// The methods without Winograd, which the Winograd kernels hand non-finite operands to.
    private let exactMethods: (forward: Method, backwardInput: Method, backwardWeight: Method)
    /// Threads the call may use (1 below `minParallelFlops`).
    let threads: Int
    /// Floats per transformed buffer of the Winograd method (tests make it small to force chunks).
    let winogradChunkBudget: Int
    /// Output rows per band of the column matrix (all of them when samples are grouped).
    let bandRows: Int
    /// Samples whose whole column matrices share one sgemm in the column and pointwise methods
    /// (the last group of a batch may have fewer); 1 for every other method.
    let samplesPerGroup: Int
    /// Threads that each run whole sample groups (1: groups run in sequence).
    let workers: Int
    /// Threads sharing one sample group when groups run in sequence (sgemm calls, im2col,
    /// col2im, column parts, planes).
    let gemmThreads: Int
    /// Runs of whole sample groups whose weight gradients are accumulated separately (set by the
    /// geometry).
    let weightSlots: Int

    /// The parameters after `threads` are for tests and benchmarks: they force threading on small
    /// shapes, small bands, a split, or a method: `.columns`, or `.shifted` wherever it applies
    /// (however much width it wastes); pointwise convolutions stay pointwise. Other values choose.
    /// `groupColumnBudget: 0` turns sample groups off (bands per sample); `samplesPerGroup` forces
    /// groups of that many samples wherever the column or pointwise method runs.
    init(_ g: Conv2dGeometry, threads: Int, minParallelFlops: Double = ConvPlan.minParallelFlops,
         columnBudget: Int = ConvPlan.columnBudget, groupColumnBudget: Int = ConvPlan.groupColumnBudget,
         method: Method? = nil, splitSamples: Bool? = nil, samplesPerGroup: Int? = nil,
         winogradChunkBudget: Int = WinogradTiling.chunkBudget) {
        self.g = g
        shape = Im2colShape(g)
        inPlane = g.height * g.width
        outPlane = g.outHeight * g.outWidth
        colRows = shape.rows

        let pointwise = g.kernelHeight == 1 && g.kernelWidth == 1 && g.strideH == 1 && g.strideW == 1
            && g.padH == 0 && g.padW == 0
        let shifted = ShiftedShape(g)
        let waste = Double((g.kernelWidth - 1) * g.dilationW)
        let enoughChannels = min(g.inChannelsPerGroup, g.outChannelsPerGroup) >= ConvPlan.minShiftedChannels
        let depthwise = g.groups > 1 && g.inChannelsPerGroup == 1
        let forced = method == .columns || method == .shifted || method == .winograd || method == .indirect
            || method == .direct ? method : nil
        // Winograd's tiles: 3x3, stride 1, no dilation, one group, the same padding on both axes
        // (at most 2 for the input gradient, whose convolution pads by 2 - p).
        let winograd = g.kernelHeight == 3 && g.kernelWidth == 3 && g.strideH == 1 && g.strideW == 1
            && g.dilationH == 1 && g.dilationW == 1 && g.groups == 1 && g.padH == g.padW
            && g.outHeight > 0 && g.outWidth > 0
        let channels = min(g.inChannels, g.outChannels)
        func choose(shiftedApplies: Bool, winogradApplies: Bool, width: Int, forced: Method? = forced) -> Method {
            if depthwise && forced == nil { return .depthwise }
            if pointwise { return .pointwise }
            if let forced {
                if forced == .winograd && winogradApplies { return .winograd }
                return forced == .shifted && shiftedApplies ? .shifted : .columns
            }
            if winogradApplies && channels >= ConvPlan.minWinogradChannels { return .winograd }
            let pays = enoughChannels && waste <= ConvPlan.maxShiftedWaste * Double(width)
            return shiftedApplies && pays ? .shifted : .columns
        }
        let winogradInput = winograd && g.padH <= 2
        forwardMethod = choose(shiftedApplies: shifted.supportsForward, winogradApplies: winograd, width: g.outWidth)
        backwardWeightMethod = choose(shiftedApplies: shifted.supportsForward, winogradApplies: winograd, width: g.outWidth)
        backwardInputMethod = choose(shiftedApplies: shifted.supportsBackwardInput, winogradApplies: winogradInput,
                                     width: g.width)
        // The indirect products (forward and weight gradient) where the column method would run a
        // strided convolution.
        let indirect = IndirectTile.kind != nil && g.groups == 1 && !pointwise && g.batch > 0
            && g.outHeight > 0 && g.outWidth > 0
        // With fewer input channels, the forward reads kernel rows (row taps) where it can, and
        // the weight gradient keeps the column method (its tiles are 12 input channels).
        if indirect && (forced == .indirect
            || (forced == nil && forwardMethod == .columns && (g.strideH > 1 || g.strideW > 1)
                && g.kernelHeight * g.kernelWidth > 1)) {
            let manyChannels = forced == .indirect || g.inChannels >= ConvPlan.minIndirectChannels
            if manyChannels || IndirectConvShape.forward(g).rowTaps { forwardMethod = .indirect }
            if manyChannels { backwardWeightMethod = .indirect; backwardInputMethod = .indirect }
            // With few channels and rows of whole vectors, the forward runs directly on the rows.
            if !manyChannels && DirectConvShape.supports(g) { forwardMethod = .direct }
        }
        if forced == .direct && DirectConvShape.supports(g) && !depthwise && !pointwise { forwardMethod = .direct }
        // Without Winograd (a forced Winograd falls back to what the geometry would choose).
        func exact(_ chosen: Method, shiftedApplies: Bool, width: Int) -> Method {
            guard chosen == .winograd else { return chosen }
            return choose(shiftedApplies: shiftedApplies, winogradApplies: false, width: width,
                          forced: forced == .winograd ? nil : forced)
        }
        exactMethods = (exact(forwardMethod, shiftedApplies: shifted.supportsForward, width: g.outWidth),
                        exact(backwardInputMethod, shiftedApplies: shifted.supportsBackwardInput, width: g.width),
                        exact(backwardWeightMethod, shiftedApplies: shifted.supportsForward, width: g.outWidth))
        self.winogradChunkBudget = winogradChunkBudget

        // Whole planes of several samples per sgemm where a plane is narrow and the group's
        // column matrix fits its budget; the groups of a batch are as equal as they can be.
        let sampleColumns = colRows * outPlane
        // (The indirect forward chunks samples itself; the column method's backward groups them.)
        let groupable = (forwardMethod == .pointwise || forwardMethod == .columns || forwardMethod == .indirect) && g.batch > 0
        if groupable, let samplesPerGroup {
            self.samplesPerGroup = max(1, min(samplesPerGroup, g.batch))
            bandRows = g.outHeight
        } else if groupable && outPlane < ConvPlan.groupColumns && sampleColumns <= groupColumnBudget {
            let most = max(1, min(g.batch, ConvPlan.groupColumns / max(1, outPlane), groupColumnBudget / max(1, sampleColumns)))
            let groupCount = (g.batch + most - 1) / most
            self.samplesPerGroup = (g.batch + groupCount - 1) / groupCount
            bandRows = g.outHeight
        } else {
            self.samplesPerGroup = 1
            let maxRows = max(1, columnBudget / max(1, colRows * g.outWidth))
            let bands = (g.outHeight + maxRows - 1) / maxRows
            bandRows = (g.outHeight + bands - 1) / bands
        }
        let groupCount = (g.batch + self.samplesPerGroup - 1) / self.samplesPerGroup

        // Whole groups per thread when at least 3/4 of the threads' time is busy (3 groups on 2
        // threads: yes; 5 on 4: no). Measured on the 3x3 64-channel case, batch 32, 2 threads:
        // ~1.9x one thread this way (one sample per group), ~1.1x with threaded sgemm calls.
        let t = threads > 1 && g.forwardFlops >= minParallelFlops ? threads : 1
        self.threads = t
        let perThread = (groupCount + t - 1) / t
        if t > 1 && (splitSamples ?? (4 * groupCount >= 3 * t * perThread)) {
            workers = t; gemmThreads = 1
        } else {
            workers = 1; gemmThreads = t
        }
        let weightCount = max(1, g.outChannels * colRows)
        weightSlots = max(1, min(groupCount, ConvPlan.maxWeightSlots, 1 + ConvPlan.weightScratchBudget / weightCount))
    }

    /// Sample groups in the batch.
    var groupCount: Int { (g.batch + samplesPerGroup - 1) / samplesPerGroup }

    /// The samples of groups `groups` (the last group may be short).
    func samples(ofGroups groups: Range<Int>) -> Range<Int> {
        min(g.batch, groups.lowerBound * samplesPerGroup)..<min(g.batch, groups.upperBound * samplesPerGroup)
    }

    /// The same plan with the Winograd kernels replaced by the exact methods.
    var exact: ConvPlan {
        var plan = self
        (plan.forwardMethod, plan.backwardInputMethod, plan.backwardWeightMethod) = exactMethods
        return plan
    }

    /// `count` rounded up to a multiple of 16 floats (64 bytes).
    static func rounded(_ count: Int) -> Int { (count + 15) & ~15 }

    /// Calls `body(worker, samples)` on `workers` threads, each with a contiguous range of whole
    /// sample groups.
    func forEachWorker(_ body: (Int, Range<Int>) -> Void) {
        let n = groupCount, w = workers
        Kernels.parallelFor(w, threads: w) { t in body(t, samples(ofGroups: (t * n / w)..<((t + 1) * n / w))) }
    }

    /// Calls `body(columns)` for `gemmThreads` near-equal parts of `0..<n` (cut at multiples of 16),
    /// each on its own thread; the sgemm calls inside then run single-threaded. One dispatch for a
    /// sample's sgemm calls, where threaded sgemm calls would dispatch once each.
    func forEachColumnPart(_ n: Int, _ body: (Range<Int>) -> Void) {
        let parts = max(1, min(gemmThreads, n / 16))
        if parts == 1 { return body(0..<n) }
        let units = (n + 15) / 16
        Kernels.parallelFor(parts, threads: parts) { t in
            body(min(n, units * t / parts * 16)..<min(n, units * (t + 1) / parts * 16))
        }
    }

    /// Threads used for the weight gradient: no more than there are slots.
    var weightWorkers: Int { min(workers, weightSlots) }

    /// Calls `body(worker, slot, samples)` for every weight-gradient slot, on `weightWorkers`
    /// threads; slot `s` always holds the same whole sample groups, whatever the thread count.
    func forEachWeightSlot(_ body: (Int, Int, Range<Int>) -> Void) {
        let n = groupCount, slots = weightSlots, w = weightWorkers
        Kernels.parallelFor(w, threads: w) { worker in
            for slot in stride(from: worker, to: slots, by: w) {
                body(worker, slot, samples(ofGroups: (slot * n / slots)..<((slot + 1) * n / slots)))
            }
        }
    }

    /// Calls `body(first, count)` for the sample groups that make up `samples` (a range from
    /// `forEachWorker` or `forEachWeightSlot`), in order.
    @inline(__always)
    func forEachGroup(of samples: Range<Int>, _ body: (Int, Int) -> Void) {
        var first = samples.lowerBound
        while first < samples.upperBound {
            let count = min(samplesPerGroup, samples.upperBound - first)
            body(first, count)
            first += count
        }
    }

    /// Adds slots `1..<weightSlots` (each `count` floats after `slot0`) into `slot0`, in slot order.
    func sumWeightSlots(into slot0: UnsafeMutablePointer<Float>, others: UnsafePointer<Float>, count: Int) {
        for slot in 1..<max(weightSlots, 1) {
            ConvLoops.accumulate(slot0, others + (slot - 1) * count, count)
        }
    }
}
