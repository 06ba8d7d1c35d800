/// Group normalisation of `[N, C, ...]` input (PyTorch's `nn.GroupNorm`): the `numChannels`
/// channels are split into `numGroups` groups, each (sample, group) is normalised with its own
/// mean and biased variance, then `weight` (ones) and `bias` (zeros), both `[C]`, scale and shift
/// each channel. The same in training and evaluation (no running statistics).
///
/// ```swift
/// let norm = GroupNorm(32, 256)      // [N, 256, H, W] -> [N, 256, H, W]
/// ```
public final class GroupNorm: Module, ParameterInitializing {
    /// Per-channel scale `[C]` (nil without `affine`).
    public let weight: Parameter?
    /// Per-channel shift `[C]` (nil without `affine`).
    public let bias: Parameter?

    /// Number of channel groups.
    public let numGroups: Int
    /// Number of channels C (a multiple of `numGroups`).
    public let numChannels: Int
    /// Added to the variance.
    public let eps: Float

    /// Normalises `numChannels` channels in `numGroups` groups.
    public init(_ numGroups: Int, _ numChannels: Int, eps: Float = 1e-5, affine: Bool = true) {
        precondition(numGroups > 0 && numChannels > 0 && numChannels % numGroups == 0,
                     "GroupNorm: numChannels (\(numChannels)) must be a positive multiple of numGroups (\(numGroups))")
        self.numGroups = numGroups
        self.numChannels = numChannels
        self.eps = eps
        (weight, bias) = BatchNormCore.affine(numChannels, affine)
        super.init()
    }

    /// Sets `weight` to ones and `bias` to zeros.
    public func resetParameters(generator: inout RandomGenerator) {
        BatchNormCore.reset(weight, bias)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        Shape.check(x.rank >= 2 && x.shape[1] == numChannels, op: "GroupNorm(\(numGroups), \(numChannels))",
                    shapes: [x.shape], "expected input [N, \(numChannels), ...]")
        return Tensor.groupNorm(x, groups: numGroups, weight: weight?.value, bias: bias?.value, eps: eps)
    }
}
