// Rotary position embedding (RoPE) with the half-split pairing of Hugging Face's LLaMA family:
// element i of a head is paired with element i + R (R = the table width), and the pair turns by
// the angle whose cosine and sine the table holds for the row's position:
//
//   y[i]     = x[i] cos - x[i + R] sin
//   y[i + R] = x[i + R] cos + x[i] sin          (elements from 2R on are copied)
//
// A rotation's transpose is the rotation by the opposite angle, so the input gradient is the
// same loop with the sine negated.

extension Kernels {
    /// Rotates every head of `x` `[positions, heads, headDim]` (contiguous) into `y` (which must
    /// not overlap `x`). Position `p` reads row `p` of the tables when `tableRows == positions`,
    /// else row `p % tableRows` (one table `[T, R]` shared by every sample of a `[B, T]` batch).
    /// `inverse` turns by the opposite angles (the gradient of the forward rotation).
    public static func rotaryEmbedding(x: UnsafePointer<Float>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
                                       y: UnsafeMutablePointer<Float>, positions: Int, heads: Int, headDim: Int,
                                       tableRows: Int, rotaryHalf: Int, inverse: Bool) {
        let r = rotaryHalf
        for p in 0..<positions {
            let row = p % tableRows
            let c = cos + row * r, s = sin + row * r
            for h in 0..<heads {
                let offset = (p * heads + h) * headDim
                let x1 = x + offset, x2 = x1 + r, y1 = y + offset, y2 = y1 + r
                if inverse {
                    for i in 0..<r {
                        let a = x1[i], b = x2[i]
                        y1[i] = a * c[i] + b * s[i]
                        y2[i] = b * c[i] - a * s[i]
                    }
                } else {
                    for i in 0..<r {
                        let a = x1[i], b = x2[i]
                        y1[i] = a * c[i] - b * s[i]
                        y2[i] = b * c[i] + a * s[i]
                    }
                }
                for i in (2 * r)..<headDim { y1[i] = x1[i] }
            }
        }
    }
}
