import Foundation

extension Tensor {
    /// Rotary position embedding (RoPE) in Hugging Face's half-split convention (LLaMA, Qwen2,
    /// Mistral, GPT-NeoX: `x * cos + rotate_half(x) * sin`): element `i` of each head is paired
    /// with element `i + R` and the pair is turned by the angle of its position, where `R` is
    /// the tables' last axis. Elements from `2R` on pass through unchanged (partial rotary, as
    /// `partial_rotary_factor < 1`). The interleaved pairing of Meta's original LLaMA code
    /// (GPT-J) is not this one: Hugging Face checkpoints are stored permuted for half-split.
    ///
    /// - Shapes: `x` `[B, T, H, D]` (projected activations before the heads are moved forward)
    ///   or `[B, T, D]`; `cos` and `sin` `[T, R]` (every sample at positions `0..<T`) or
    ///   `[B, T, R]` (positions per sample), with `2R <= D`. Hugging Face's tables are `[.., 2R]`
    ///   with both halves equal: FineTune keeps one half (``RotaryEmbedding/tables(length:)``).
    /// - Gradients flow to `x`, and to `cos`/`sin` when they require one.
    ///
    /// ```swift
    /// let rope = RotaryEmbedding(dimension: 64, base: 10_000)
    /// let (cos, sin) = rope.tables(length: t)                    // [T, 32] each
    /// let q = Tensor.rotaryEmbedding(qProj(x).reshaped([b, t, heads, 64]), cos: cos, sin: sin)
    /// ```
    public static func rotaryEmbedding(_ x: Tensor, cos: Tensor, sin: Tensor) -> Tensor {
        let op = "rotaryEmbedding"
        Shape.check(x.rank == 3 || x.rank == 4, op: op, shapes: [x.shape], "expected x [B, T, H, D] or [B, T, D]")
        Shape.check(cos.shape == sin.shape && (cos.rank == 2 || cos.rank == 3), op: op, shapes: [cos.shape, sin.shape],
                    "expected cos and sin of one shape, [T, R] or [B, T, R]")
        let b = x.shape[0], t = x.shape[1], d = x.shape[x.rank - 1], heads = x.rank == 4 ? x.shape[2] : 1
        let r = cos.shape[cos.rank - 1]
        let tableOK = Array(cos.shape.dropLast()) == (cos.rank == 2 ? [t] : [b, t])
        Shape.check(tableOK && 2 * r <= d && r > 0, op: op, shapes: [x.shape, cos.shape],
                    "tables must be [T, R] or [B, T, R] for x's B and T, with 0 < 2R <= D")
        let xd = x.contiguousData(), cd = cos.contiguousData(), sd = sin.contiguousData()
        let tableRows = cos.rank == 2 ? t : b * t
        func rotate(_ source: Tensor, inverse: Bool) -> Tensor {
            let y = Tensor(uninitialized: x.shape)
            source.withDataPointer { px in cd.withDataPointer { pc in sd.withDataPointer { ps in y.withDataPointer { py in
                Kernels.rotaryEmbedding(x: px, cos: pc, sin: ps, y: py, positions: b * t, heads: heads, headDim: d,
                                        tableRows: tableRows, rotaryHalf: r, inverse: inverse)
            }}}}
            return y
        }
        return record(rotate(xd, inverse: false), op: op, inputs: [x, cos, sin]) { g, needs in
            let gd = g.contiguousData()
            let dx = needs[0] ? rotate(gd, inverse: true) : nil
            guard needs[1] || needs[2] else { return [dx, nil, nil] }
            // d cos = g1 x1 + g2 x2, d sin = g2 x1 - g1 x2, summed over heads (and samples for a [T, R] table).
            let shape4 = [b, t, heads, d]
            let x4 = xd.reshaped(shape4), g4 = gd.reshaped(shape4)
            let x1 = x4.slice(axis: 3, 0..<r), x2 = x4.slice(axis: 3, r..<(2 * r))
            let g1 = g4.slice(axis: 3, 0..<r), g2 = g4.slice(axis: 3, r..<(2 * r))
            let axes = cos.rank == 2 ? [0, 2] : [2]
            let dcos = needs[1] ? (g1 * x1 + g2 * x2).sum(axes: axes) : nil
            let dsin = needs[2] ? (g2 * x1 - g1 * x2).sum(axes: axes) : nil
            return [dx, dcos, dsin]
        }
    }
}

/// The angles of rotary position embeddings: inverse frequencies `base^(-2i/dimension)` for
/// `i < dimension / 2`, optionally rescaled for longer contexts, and the cosine and sine tables
/// ``Tensor/rotaryEmbedding(_:cos:sin:)`` turns heads by. Computed in Float32 as Hugging Face's
/// `LlamaRotaryEmbedding` does (`position * inv_freq`, then `cos`/`sin`).
///
/// ```swift
/// let rope = RotaryEmbedding(dimension: 128, base: 500_000,
///                            scaling: .llama3(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4,
///                                             originalContext: 8192))
/// let (cos, sin) = rope.tables(length: 256)                  // [256, 64] each
/// ```
public struct RotaryEmbedding: Sendable, Equatable {
    /// How the inverse frequencies are adjusted for contexts longer than pretraining's
    /// (Hugging Face's `rope_type`).
    public enum Scaling: Sendable, Equatable {
        /// `default`: unchanged.
        case none
        /// `linear`: every inverse frequency divided by `factor` (positions interpolated).
        case linear(factor: Float)
        /// `llama3` (Llama 3.1+): wavelengths longer than `originalContext / lowFrequencyFactor`
        /// are stretched by `factor`, those shorter than `originalContext / highFrequencyFactor`
        /// kept, and those between interpolated smoothly.
        case llama3(factor: Float, lowFrequencyFactor: Float, highFrequencyFactor: Float, originalContext: Int)
    }

    /// The number of rotated elements of each head (even; at most the head size).
    public let dimension: Int
    /// The base of the frequencies (`rope_theta`).
    public let base: Float
    public let scaling: Scaling
    /// `dimension / 2` inverse frequencies, after scaling.
    public let inverseFrequencies: [Float]

    /// Frequencies for `dimension` rotated elements per head (even and positive).
    public init(dimension: Int, base: Float = 10_000, scaling: Scaling = .none) {
        precondition(dimension > 0 && dimension % 2 == 0, "RotaryEmbedding: dimension must be even and positive, got \(dimension)")
        self.dimension = dimension
        self.base = base
        self.scaling = scaling
        let plain = stride(from: 0, to: dimension, by: 2).map { 1 / Foundation.pow(base, Float($0) / Float(dimension)) }
        switch scaling {
        case .none:
            inverseFrequencies = plain
        case .linear(let factor):
            inverseFrequencies = plain.map { $0 / factor }
        case .llama3(let factor, let low, let high, let context):
            let lowWavelength = Float(context) / low, highWavelength = Float(context) / high
            inverseFrequencies = plain.map { f in
                let wavelength = 2 * Float.pi / f
                if wavelength < highWavelength { return f }
                if wavelength > lowWavelength { return f / factor }
                let smooth = (Float(context) / wavelength - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
    }

    /// Cosine and sine tables `[length, dimension / 2]` for positions `0..<length`.
    public func tables(length: Int) -> (cos: Tensor, sin: Tensor) {
        tables(positions: (0..<length).map(Float.init), shape: [length])
    }

    /// Cosine and sine tables `[B, T, dimension / 2]` for position ids `[B, T]` (integer-valued).
    public func tables(positions: Tensor) -> (cos: Tensor, sin: Tensor) {
        Shape.check(positions.rank == 2, op: "RotaryEmbedding.tables", shapes: [positions.shape], "expected position ids [B, T]")
        return tables(positions: positions.scalars, shape: positions.shape)
    }

    private func tables(positions: [Float], shape: [Int]) -> (cos: Tensor, sin: Tensor) {
        let half = dimension / 2
        var c = [Float](repeating: 0, count: positions.count * half), s = c
        for (row, position) in positions.enumerated() {
            for i in 0..<half {
                let angle = position * inverseFrequencies[i]
                c[row * half + i] = Foundation.cos(angle)
                s[row * half + i] = Foundation.sin(angle)
            }
        }
        return (Tensor(shape: shape + [half], scalars: c), Tensor(shape: shape + [half], scalars: s))
    }
}
