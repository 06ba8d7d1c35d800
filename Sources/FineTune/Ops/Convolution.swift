extension Tensor {
    /// 2-D convolution over NCHW input with weight `[out, in / groups, kh, kw]` (PyTorch's `F.conv2d`).
    ///
    /// ```swift
    /// let y = Tensor.conv2d(x, weight: w, bias: b, padding: (1, 1))
    /// ```
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil,
                              stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                              dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups,
               weightCache: nil)
    }

    /// ``conv2d(_:weight:bias:stride:padding:dilation:groups:)`` for a layer that keeps
    /// `weightCache` (a frozen weight's transformed forms, see ``TransformedWeightCache``).
    static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int), padding: (Int, Int),
                       dilation: (Int, Int), groups: Int, weightCache: TransformedWeightCache?) -> Tensor {
        Shape.check(x.rank == 4 && weight.rank == 4, op: "conv2d", shapes: [x.shape, weight.shape],
                    "expected input [N, C, H, W] and weight [out, in/groups, kh, kw]")
        Shape.check(stride.0 >= 1 && stride.1 >= 1, op: "conv2d", shapes: [x.shape, weight.shape],
                    "stride must be at least 1, got \(stride)")
        Shape.check(padding.0 >= 0 && padding.1 >= 0, op: "conv2d", shapes: [x.shape, weight.shape],
                    "padding must not be negative, got \(padding)")
        Shape.check(dilation.0 >= 1 && dilation.1 >= 1, op: "conv2d", shapes: [x.shape, weight.shape],
                    "dilation must be at least 1, got \(dilation)")
        Shape.check(groups >= 1 && x.shape[1] % groups == 0 && weight.shape[0] % groups == 0 && weight.shape[1] * groups == x.shape[1],
                    op: "conv2d", shapes: [x.shape, weight.shape],
                    "input channels \(x.shape[1]) do not match weight [*, \(weight.shape[1]), *, *] with groups \(groups)")
        let g = Conv2dGeometry(input: x.shape, weight: weight.shape, stride: stride, padding: padding, dilation: dilation,
                               groups: groups)
        Shape.check(g.outHeight > 0 && g.outWidth > 0, op: "conv2d", shapes: [x.shape, weight.shape],
                    "the kernel (with dilation and padding) is larger than the input")
        if let bias {
            Shape.check(bias.shape == [g.outChannels], op: "conv2d", shapes: [weight.shape, bias.shape], "bias must be [out]")
        }
        return convolution(x, weight: weight, bias: bias, geometry: g, epilogue: nil, weightCache: weightCache)
    }

    /// `relu?(batchNorm(conv2d(x, weight, bias)) + residual?)` with the batch norm's fixed
    /// statistics, in one pass over the convolution's output as the kernel writes it (see
    /// `Kernels/ConvEpilogue.swift`); values and gradients are bit-identical to the separate ops.
    /// The batch norm's tensors are constants here: none of them may require a gradient.
    static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int), padding: (Int, Int),
                       dilation: (Int, Int), groups: Int, then epilogue: FixedBatchNormEpilogue,
                       weightCache: TransformedWeightCache? = nil) -> Tensor {
        let g = Conv2dGeometry(input: x.shape, weight: weight.shape, stride: stride, padding: padding, dilation: dilation,
                               groups: groups)
        let outShape = [g.batch, g.outChannels, g.outHeight, g.outWidth]
        for (name, tensor) in [("mean", epilogue.mean), ("variance", epilogue.variance), ("weight", epilogue.weight),
                               ("bias", epilogue.bias)] {
            guard let tensor else { continue }
            Shape.check(tensor.shape == [g.outChannels], op: "conv2d+batchNorm", shapes: [outShape, tensor.shape],
                        "batch norm \(name) must be [\(g.outChannels)]")
        }
        if let residual = epilogue.residual {
            Shape.check(residual.shape == outShape, op: "conv2d+batchNorm", shapes: [outShape, residual.shape],
                        "the residual must have the convolution's output shape")
        }
        precondition(!willRecord(inputs: [epilogue.weight, epilogue.bias].compactMap { $0 }),
                     "conv2d+batchNorm: the batch norm's weight and bias are constants here and must not require gradients")
        return convolution(x, weight: weight, bias: bias, geometry: g, epilogue: epilogue, weightCache: weightCache)
    }

    /// The convolution op, with or without an epilogue.
    private static func convolution(_ x: Tensor, weight: Tensor, bias: Tensor?, geometry g: Conv2dGeometry,
                                    epilogue: FixedBatchNormEpilogue?, weightCache: TransformedWeightCache?) -> Tensor {
        let xd = x.contiguousData(), wd = weight.contiguousData(), bd = bias?.contiguousData()
        // A frozen weight's transformed forms, kept by its layer.
        let cache = weight.requiresGrad ? nil : weightCache
        let plan = ConvPlan.current(g)
        let transformed: Tensor? = switch plan.forwardMethod {
        case .winograd: cache?.transformed(wd, geometry: g, form: .winograd)
        case .indirect: cache?.transformed(wd, geometry: g, form: .indirectPanels)
        default: nil
        }
        let out = Tensor(uninitialized: [g.batch, g.outChannels, g.outHeight, g.outWidth])
        // The epilogue's per-channel constants, as BatchNorm's kernel computes them.
        let coefficients = epilogue.map { $0.coefficients() }
        let residual = epilogue?.residual?.contiguousData()
        xd.withDataPointer { px in wd.withDataPointer { pw in out.withDataPointer { py in bd.withOptionalPointer { pb in
            transformed.withOptionalPointer { pu in
            guard let epilogue, let coefficients else {
                return Kernels.conv2dForward(g, input: px, weight: pw, bias: pb, output: py, plan: plan,
                                             transformedWeight: pu.map { UnsafePointer($0) })
            }
            coefficients.shift.withDataPointer { shift in coefficients.scale.withDataPointer { scale in
            coefficients.offset.withDataPointer { offset in residual.withOptionalPointer { pr in
                let e = ConvEpilogue(shift: shift, scale: scale, offset: offset, residual: pr.map { UnsafePointer($0) },
                                     relu: epilogue.relu)
                Kernels.conv2dForward(g, input: px, weight: pw, bias: pb, output: py, plan: plan, epilogue: e,
                                      transformedWeight: pu.map { UnsafePointer($0) })
            }}}}
            }
        }}}}
        var inputs = [x, weight]
        if let bias { inputs.append(bias) }
        let residualSlot = epilogue?.residual.map { inputs.append($0); return inputs.count - 1 }
        return Tensor.record(out, op: epilogue == nil ? "conv2d" : "conv2d+batchNorm", inputs: inputs) { grad, needs in
            var grads = [Tensor?](repeating: nil, count: needs.count)
            var gy = grad.contiguousData()
            if let coefficients, let epilogue {
                // Back through ReLU, the residual's sum and the batch norm's affine.
                let gConv = Tensor(uninitialized: out.shape)
                let gResidual = residualSlot.map { needs[$0] } == true ? Tensor(uninitialized: out.shape) : nil
                out.withDataPointer { py in gy.withDataPointer { pg in coefficients.scale.withDataPointer { scale in
                gConv.withDataPointer { pc in gResidual.withOptionalPointer { pr in
                    Kernels.convEpilogueBackward(output: py, gradOutput: pg, scale: scale, relu: epilogue.relu,
                                                 planes: g.batch * g.outChannels, channels: g.outChannels,
                                                 plane: g.outHeight * g.outWidth, gradConvolution: pc, gradResidual: pr)
                }}}}}
                if let residualSlot { grads[residualSlot] = gResidual }
                gy = gConv
            }
            if needs[0] {
                let dx = Tensor(uninitialized: xd.shape), plan = ConvPlan.current(g)
                let turned: Tensor? = switch plan.backwardInputMethod {
                case .winograd: cache?.transformed(wd, geometry: g, form: .winogradTurned)
                case .indirect: cache?.transformed(wd, geometry: g, form: .indirectTransposedPanels)
                default: nil
                }
                gy.withDataPointer { pg in wd.withDataPointer { pw in dx.withDataPointer { pdx in turned.withOptionalPointer { pu in
                    Kernels.conv2dBackwardInput(g, gradOutput: pg, weight: pw, gradInput: pdx, plan: plan,
                                                transformedWeight: pu.map { UnsafePointer($0) })
                }}}}
                grads[0] = dx
            }
            if needs[1] {
                let dw = Tensor(uninitialized: wd.shape)
                gy.withDataPointer { pg in xd.withDataPointer { px in dw.withDataPointer { pdw in
                    Kernels.conv2dBackwardWeight(g, input: px, gradOutput: pg, gradWeight: pdw, plan: .current(g))
                }}}
                grads[1] = dw
            }
            if bias != nil && needs[2] {
                grads[2] = gy.reduceSum(to: [1, g.outChannels, 1, 1]).reshapedView([g.outChannels])
            }
            return grads
        }
    }
}

/// What ``Tensor/conv2d(_:weight:bias:stride:padding:dilation:groups:then:)`` applies to the
/// convolution's output: batch norm with fixed statistics (`(v - mean) / sqrt(variance + eps) *
/// weight + bias`), then `residual` added, then ReLU when `relu`.
struct FixedBatchNormEpilogue {
    var mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, eps: Float
    var residual: Tensor?
    var relu: Bool

    /// Per channel: the shift (the mean), the scale `rstd * weight` and the offset (the bias).
    func coefficients() -> (shift: Tensor, scale: Tensor, offset: Tensor) {
        let channels = mean.count
        let shift = mean.contiguousCopy(), scale = Tensor(uninitialized: [channels])
        let offset = bias?.contiguousCopy() ?? Tensor.zeros([channels])
        let variance = variance.contiguousData(), weight = weight?.contiguousData()
        variance.withDataPointer { pv in scale.withDataPointer { ps in weight.withOptionalPointer { pw in
            for c in 0..<channels {
                ps[c] = Kernels.batchNormScale(rstd: Kernels.batchNormReciprocalDeviation(variance: pv[c], eps: eps),
                                               weight: pw?[c])
            }
        }}}
        return (shift, scale, offset)
    }
}

extension ConvPlan {
    /// The plan of the convolution ops: `Kernels.maxThreads` threads, and the flop threshold
    /// divided as a `Kernels.withMaxThreads(_:parallelThresholdsDividedBy:_:)` scope asks
    /// (the same plan as the public kernels' outside such a scope).
    static func current(_ g: Conv2dGeometry) -> ConvPlan {
        ConvPlan(g, threads: Kernels.maxThreads,
                 minParallelFlops: ConvPlan.minParallelFlops / Double(Kernels.parallelThresholdDivisor))
    }
}

/// The transformed forms of one frozen convolution weight, kept between calls by the layer that
/// owns the weight (``Conv2d``): a frozen backbone's convolutions skip the weight transform of
/// the method they run (Winograd's for 3x3, 16/9 of the weight's size, kept for the forward and,
/// once a gradient passes through, the input gradient; the indirect product's panels for strided
/// ones, the weight's size). An entry holds the weight tensor it was made from, so its storage can
/// neither change (tensors copy on write) nor be reused while the entry lives: it is valid exactly
/// while the layer convolves with that same tensor, and replaced on the first call with another one.
final class TransformedWeightCache: @unchecked Sendable {
    /// What is kept of the weight.
    enum Form: Equatable {
        /// Winograd's transform for the forward.
        case winograd
        /// Winograd's transform of the turned weight, for the input gradient.
        case winogradTurned
        /// The indirect product's weight panels.
        case indirectPanels
        /// The indirect input gradient's weight panels.
        case indirectTransposedPanels
    }

    private struct Entry {
        let weight: Tensor, form: Form
        /// nil: the weight is not finite (the Winograd kernels then run the exact method).
        let transformed: Tensor?
    }
    private let entries = Locked<[Entry]>([])
    /// Transforms computed (tests read it).
    private(set) var transforms = 0

    /// Drops every entry (and the weights they hold).
    func removeAll() { entries.withLock { $0.removeAll() } }

    /// Entries kept (tests read it).
    var count: Int { entries.withLock { $0.count } }

    /// `weight` (contiguous, `[Cout, Cin / groups, KH, KW]`) in `form` for `g`; nil when a
    /// Winograd form is not finite.
    func transformed(_ weight: Tensor, geometry g: Conv2dGeometry, form: Form) -> Tensor? {
        entries.withLock { entries in
            if let hit = entries.first(where: { $0.form == form && $0.weight.isSameTensor(as: weight) }) {
                return hit.transformed
            }
            let u: Tensor, usable: Bool
            switch form {
            case .winograd, .winogradTurned:
                u = Tensor(uninitialized: [Kernels.winogradWeightCount(g, turned: form == .winogradTurned)])
                usable = weight.withDataPointer { pw in
                    u.withDataPointer { pu in
                        Kernels.transformWinogradWeights(g, weight: pw, turned: form == .winogradTurned, into: pu)
                    }
                }
            case .indirectPanels:
                u = Tensor(uninitialized: [Kernels.indirectWeightCount(g)])
                weight.withDataPointer { pw in u.withDataPointer { pu in Kernels.packIndirectWeights(g, weight: pw, into: pu) } }
                usable = true
            case .indirectTransposedPanels:
                u = Tensor(uninitialized: [Kernels.indirectTransposedWeightCount(g)])
                weight.withDataPointer { pw in
                    u.withDataPointer { pu in Kernels.packIndirectTransposedWeights(g, weight: pw, into: pu) }
                }
                usable = true
            }
            transforms += 1
            entries.removeAll { $0.form == form || !$0.weight.isSameTensor(as: weight) }
            entries.append(Entry(weight: weight, form: form, transformed: usable ? u : nil))
            return usable ? u : nil
        }
    }
}

extension Tensor {
    /// The same elements of the same storage: `other` is this tensor or a copy of it.
    func isSameTensor(as other: Tensor) -> Bool {
        storage === other.storage && offset == other.offset && shape == other.shape && strides == other.strides
    }
}

extension Conv2dGeometry {
    /// The geometry of a convolution of `input` (`[N, C, H, W]`) by `weight` (`[out, in / groups, kh, kw]`).
    init(input: [Int], weight: [Int], stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int), groups: Int) {
        self.init(batch: input[0], inChannels: input[1], height: input[2], width: input[3],
                  outChannels: weight[0], kernelHeight: weight[2], kernelWidth: weight[3],
                  stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
}
