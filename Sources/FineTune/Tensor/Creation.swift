extension Tensor {
    /// All zeros.
    public static func zeros(_ shape: [Int]) -> Tensor { Tensor(zeros: shape) }

    /// All ones.
    public static func ones(_ shape: [Int]) -> Tensor { full(shape, 1) }

    /// Every element equal to `value`.
    public static func full(_ shape: [Int], _ value: Float) -> Tensor {
        let t = Tensor(zeros: shape)
        if value != 0 { t.withDataPointer { $0.update(repeating: value, count: t.count) } }
        return t
    }

    /// A tensor of zeros with this tensor's shape.
    public func zerosLike() -> Tensor { Tensor(zeros: shape) }

    /// `start, start + step, ...` up to but excluding `end` (1-D).
    ///
    /// ```swift
    /// Tensor.arange(0, 5)   // [0, 1, 2, 3, 4]
    /// ```
    public static func arange(_ start: Float, _ end: Float, step: Float = 1) -> Tensor {
        precondition(step != 0, "arange: step must not be zero")
        let n = Swift.max(0, Int(((end - start) / step).rounded(.up)))
        return Tensor((0..<n).map { start + Float($0) * step })
    }

    /// Uniform samples in `[low, high)`.
    public static func randomUniform(_ shape: [Int], low: Float = 0, high: Float = 1,
                                     generator: inout RandomGenerator) -> Tensor {
        let t = Tensor(zeros: shape)
        t.withDataPointer { p in
            for i in 0..<t.count { p[i] = low + (high - low) * generator.nextUniform() }
        }
        return t
    }

    /// Normal samples with the given mean and standard deviation.
    public static func randomNormal(_ shape: [Int], mean: Float = 0, std: Float = 1,
                                    generator: inout RandomGenerator) -> Tensor {
        let t = Tensor(zeros: shape)
        t.withDataPointer { p in
            for i in 0..<t.count { p[i] = mean + std * generator.nextNormal() }
        }
        return t
    }

    /// Uniform samples from the global generator (see ``RandomGenerator/seed(_:)``).
    public static func randomUniform(_ shape: [Int], low: Float = 0, high: Float = 1) -> Tensor {
        RandomGenerator.withGlobal { randomUniform(shape, low: low, high: high, generator: &$0) }
    }

    /// Normal samples from the global generator (see ``RandomGenerator/seed(_:)``).
    public static func randomNormal(_ shape: [Int], mean: Float = 0, std: Float = 1) -> Tensor {
        RandomGenerator.withGlobal { randomNormal(shape, mean: mean, std: std, generator: &$0) }
    }
}

/// Fan-in / fan-out based initialisation (PyTorch's `torch.nn.init`).
///
/// For a weight of shape `[out, in, k...]`, fanIn = in * prod(k) and fanOut = out * prod(k).
public enum Initializer {
    /// `(fanIn, fanOut)` of a weight shape, as PyTorch computes them.
    public static func fans(_ shape: [Int]) -> (fanIn: Int, fanOut: Int) {
        precondition(shape.count >= 2, "fans: need a weight with at least 2 dimensions, got \(shape)")
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    /// Gain for ReLU-family nonlinearities: sqrt(2 / (1 + a^2)) (`a` is the leaky slope).
    public static func leakyReLUGain(_ a: Float) -> Float { (2 / (1 + a * a)).squareRoot() }

    /// Kaiming (He) uniform: U(-b, b) with b = gain * sqrt(3 / fanIn).
    /// With `a = sqrt(5)` this is PyTorch's default for Linear and Conv weights.
    public static func kaimingUniform(_ shape: [Int], a: Float = 0, generator: inout RandomGenerator) -> Tensor {
        let bound = leakyReLUGain(a) * (3 / Float(fans(shape).fanIn)).squareRoot()
        return Tensor.randomUniform(shape, low: -bound, high: bound, generator: &generator)
    }

    /// Kaiming (He) normal: N(0, gain^2 / fanIn).
    public static func kaimingNormal(_ shape: [Int], a: Float = 0, generator: inout RandomGenerator) -> Tensor {
        Tensor.randomNormal(shape, std: leakyReLUGain(a) / Float(fans(shape).fanIn).squareRoot(), generator: &generator)
    }

    /// Xavier (Glorot) uniform: U(-b, b) with b = gain * sqrt(6 / (fanIn + fanOut)).
    public static func xavierUniform(_ shape: [Int], gain: Float = 1, generator: inout RandomGenerator) -> Tensor {
        let (fi, fo) = fans(shape)
        let bound = gain * (6 / Float(fi + fo)).squareRoot()
        return Tensor.randomUniform(shape, low: -bound, high: bound, generator: &generator)
    }

    /// Xavier (Glorot) normal: N(0, gain^2 * 2 / (fanIn + fanOut)).
    public static func xavierNormal(_ shape: [Int], gain: Float = 1, generator: inout RandomGenerator) -> Tensor {
        let (fi, fo) = fans(shape)
        return Tensor.randomNormal(shape, std: gain * (2 / Float(fi + fo)).squareRoot(), generator: &generator)
    }
}
