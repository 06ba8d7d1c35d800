// What a convolution's forward can do to its output while the output is still in cache: batch
// normalization with fixed statistics, a residual added, ReLU. A ResNet block's
// `relu(bn(conv(x)) + shortcut)` then costs one pass over data the kernel just wrote, where the
// separate ops take three passes over memory (normalize, add, ReLU) and two more buffers.
//
// The arithmetic is the separate ops', element by element, so the results are bit-identical:
// BatchNorm's `(v - mean) * a + b` as one fused multiply-add with `a = rstd * weight`
// (``Kernels/batchNormScale(rstd:weight:)``, as `batchNormForward` computes it), then `+ residual`,
// then ReLU's `v < 0 ? 0 : v`.

/// A per-channel `(v - shift) * scale + offset`, an optional residual, an optional ReLU, applied
/// to a convolution's output (`[N, C, OH, OW]`) as the kernel finishes each part of it.
struct ConvEpilogue {
    /// `[C]` each: batch norm's mean, `rstd * weight` and bias.
    let shift: UnsafePointer<Float>, scale: UnsafePointer<Float>, offset: UnsafePointer<Float>
    /// Added after the affine, laid out as the output (nil: nothing added).
    let residual: UnsafePointer<Float>?
    let relu: Bool

    /// Applies to the `count` floats at `output + start`, all of channel `channel` (the residual
    /// is read at the same offset).
    @inline(__always)
    func apply(_ output: UnsafeMutablePointer<Float>, at start: Int, count: Int, channel: Int) {
        KernelProfile.measure(.normalization) {
            VectorMath.normalizedAffine(output + start, output + start, residual: residual.map { $0 + start }, count,
                                        shift: shift[channel], scale: scale[channel], offset: offset[channel], relu: relu)
        }
    }

    /// Applies to the planes of channels `channels` of samples `samples` (`channels` total channels,
    /// `plane` floats each).
    func apply(_ output: UnsafeMutablePointer<Float>, samples: Range<Int>, channels range: Range<Int>, of channels: Int,
               plane: Int) {
        for n in samples {
            for c in range { apply(output, at: (n * channels + c) * plane, count: plane, channel: c) }
        }
    }
}

extension Kernels {
    /// BatchNorm's per-channel multiplier `rstd * weight` (`rstd` alone without a weight), as both
    /// `batchNormForward` and the convolution epilogue compute it.
    @inline(__always)
    static func batchNormScale(rstd: Float, weight: Float?) -> Float { rstd * (weight ?? 1) }

    /// BatchNorm's `rstd = 1 / sqrt(variance + eps)`.
    @inline(__always)
    static func batchNormReciprocalDeviation(variance: Float, eps: Float) -> Float { 1 / (variance + eps).squareRoot() }

    /// The gradient of a convolution's output before its epilogue from the gradient after it:
    /// `gradOutput * scale[c]`, zero where ReLU cut (`output <= 0` or NaN) when `relu`, for
    /// `planes` planes of `plane` floats (`channels` per sample). With `gradResidual`, also the
    /// residual's gradient (the masked `gradOutput`, unscaled). Bit-identical to ReLU's gradient
    /// followed by BatchNorm's with fixed statistics.
    static func convEpilogueBackward(output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                     scale: UnsafePointer<Float>, relu: Bool, planes: Int, channels: Int, plane: Int,
                                     gradConvolution: UnsafeMutablePointer<Float>, gradResidual: UnsafeMutablePointer<Float>?,
                                     threads: Int = Kernels.maxThreads) {
        let parts = threads > 1 && planes * plane >= VectorMath.rowParallelThreshold ? min(planes, threads) : 1
        Kernels.parallelFor(parts, threads: parts) { t in
            KernelProfile.measure(.normalization) {
                for p in (planes * t / parts)..<(planes * (t + 1) / parts) {
                    let o = p * plane, s = scale[p % channels]
                    if relu, let gradResidual {
                        VectorMath.lanes2(output + o, gradOutput + o, gradResidual + o, plane, ReLUGradOp())
                        VectorMath.lanes(gradResidual + o, gradConvolution + o, plane, ScaleOp(alpha: s))
                    } else if relu {
                        VectorMath.lanes2(output + o, gradOutput + o, gradConvolution + o, plane, MaskedScaleOp(scale: s))
                    } else {
                        gradResidual.map { ConvLoops.copy($0 + o, gradOutput + o, plane) }
                        VectorMath.lanes(gradOutput + o, gradConvolution + o, plane, ScaleOp(alpha: s))
                    }
                }
            }
        }
    }
}

extension VectorMath {
    /// `y = relu?(fma(x - shift, scale, offset) + residual?)` (`y` may be `x`): batch norm's
    /// element-wise step, with the residual and ReLU that follow it in a ResNet block.
    @inline(never)
    static func normalizedAffine(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>?,
                                 _ n: Int, shift: Float, scale: Float, offset: Float, relu: Bool) {
        let affine = CenteredAffineOp(shift: shift, a: scale, b: offset)
        switch (residual, relu) {
        case (let r?, true): lanes2(x, r, y, n, AffineAddReLUOp(affine: affine))
        case (let r?, false): lanes2(x, r, y, n, AffineAddOp(affine: affine))
        case (nil, true): lanes(x, y, n, AffineReLUOp(affine: affine))
        case (nil, false): lanes(x, y, n, affine)
        }
    }

    /// `masked = output > 0 ? g : 0` (ReLU's gradient from its output).
    @inline(never)
    static func reluMasked(_ output: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ masked: UnsafeMutablePointer<Float>, _ n: Int) {
        lanes2(output, g, masked, n, ReLUGradOp())
    }
}

/// ReLU after the affine.
private struct AffineReLUOp: LaneOp {
    let affine: CenteredAffineOp
    @inline(__always) func vector(_ x: VectorMath.V) -> VectorMath.V { ReLUOp().vector(affine.vector(x)) }
    @inline(__always) func scalar(_ x: Float) -> Float { ReLUOp().scalar(affine.scalar(x)) }
}

/// The affine, then the residual added.
private struct AffineAddOp: LaneOp2 {
    let affine: CenteredAffineOp
    @inline(__always) func vector(_ x: VectorMath.V, _ r: VectorMath.V) -> VectorMath.V { affine.vector(x) + r }
    @inline(__always) func scalar(_ x: Float, _ r: Float) -> Float { affine.scalar(x) + r }
}

/// The affine, the residual added, ReLU.
private struct AffineAddReLUOp: LaneOp2 {
    let affine: CenteredAffineOp
    @inline(__always) func vector(_ x: VectorMath.V, _ r: VectorMath.V) -> VectorMath.V { ReLUOp().vector(affine.vector(x) + r) }
    @inline(__always) func scalar(_ x: Float, _ r: Float) -> Float { ReLUOp().scalar(affine.scalar(x) + r) }
}

/// `(y > 0 ? g : 0) * scale`: ReLU's gradient, then BatchNorm's with fixed statistics.
private struct MaskedScaleOp: LaneOp2 {
    let scale: Float
    @inline(__always) func vector(_ y: VectorMath.V, _ g: VectorMath.V) -> VectorMath.V { ReLUGradOp().vector(y, g) * scale }
    @inline(__always) func scalar(_ y: Float, _ g: Float) -> Float { ReLUGradOp().scalar(y, g) * scale }
}
