extension Tensor {
    /// Inverted dropout: zeroes each element with probability `p` and scales the rest by
    /// `1 / (1 - p)`; the identity when not training or `p == 0`.
    public func dropout(p: Float, training: Bool = true, generator: inout RandomGenerator) -> Tensor {
        Tensor.checkDropoutProbability(p, shape: shape)
        guard training && p > 0 else { return self }
        let mask = Tensor.dropoutMask(shape, p: p, generator: &generator)
        return self * mask
    }

    /// Dropout drawing its mask from the global generator (see ``RandomGenerator/seed(_:)``).
    public func dropout(p: Float, training: Bool = true) -> Tensor {
        Tensor.checkDropoutProbability(p, shape: shape)
        guard training && p > 0 else { return self }
        return RandomGenerator.withGlobal { dropout(p: p, training: training, generator: &$0) }
    }

    /// A mask of `0` (probability `p`) and `1 / (1 - p)` values.
    public static func dropoutMask(_ shape: [Int], p: Float, generator: inout RandomGenerator) -> Tensor {
        checkDropoutProbability(p, shape: shape)
        let mask = Tensor(uninitialized: shape), keep = 1 / (1 - p)
        mask.withDataPointer { pm in
            for i in 0..<mask.count { pm[i] = generator.nextUniform() < p ? 0 : keep }
        }
        return mask
    }

    /// `p` must be in `[0, 1)`: `p = 1` would scale the kept elements by `1 / 0`.
    static func checkDropoutProbability(_ p: Float, shape: [Int]) {
        Shape.check(p >= 0 && p < 1, op: "dropout", shapes: [shape], "p must be in [0, 1), got \(p)")
    }
}
