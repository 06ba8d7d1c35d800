/// How ``Tensor/padded(_:mode:)`` fills the new positions (PyTorch's `F.pad` modes).
public enum PaddingMode: Sendable, Equatable {
    /// A constant value (negative padding crops).
    case constant(Float)
    /// Mirror without repeating the edge: `[a, b, c, d]` padded by 2 gives `c, b | a, b, c, d | c, b`.
    /// Each pad must be smaller than its axis.
    case reflect
    /// Repeat the edge element: `a, a | a, b, c, d | d, d`.
    case replicate
    /// Wrap around: `c, d | a, b, c, d | a, b`. Each pad must be at most its axis.
    case circular
}

extension Tensor {
    /// Pads the trailing axes, PyTorch's `F.pad` order: `padding` holds `(before, after)` pairs
    /// starting from the **last** axis, `[left, right]` pads the last axis, `[left, right, top,
    /// bottom]` the last two.
    ///
    /// ```swift
    /// image.padded([1, 1, 1, 1], mode: .reflect)   // [N, C, H, W] -> [N, C, H + 2, W + 2]
    /// sequence.padded([0, 0, 0, 3])                 // [B, T, D] -> [B, T + 3, D], zeros
    /// ```
    public func padded(_ padding: [Int], mode: PaddingMode = .constant(0)) -> Tensor {
        Shape.check(padding.count % 2 == 0 && padding.count / 2 <= rank, op: "pad", shapes: [shape, padding],
                    "padding needs (before, after) pairs for at most \(rank) trailing axes")
        var sources = shape.map { AxisRemap.identity($0) }
        for pair in 0..<(padding.count / 2) {
            let axis = rank - 1 - pair, size = shape[axis]
            let before = padding[2 * pair], after = padding[2 * pair + 1]
            Shape.check(size + before + after >= 0, op: "pad", shapes: [shape, padding],
                        "padding (\(before), \(after)) crops more than axis \(axis) holds")
            switch mode {
            case .constant:
                break
            case .reflect:
                Shape.check(before >= 0 && after >= 0 && before < size && after < size, op: "pad (reflect)",
                            shapes: [shape, padding], "each pad must be in 0..<\(size), the size of axis \(axis)")
            case .replicate:
                Shape.check(before >= 0 && after >= 0 && (size > 0 || before + after == 0), op: "pad (replicate)",
                            shapes: [shape, padding], "pads must be non-negative and axis \(axis) non-empty")
            case .circular:
                Shape.check(before >= 0 && after >= 0 && before <= size && after <= size, op: "pad (circular)",
                            shapes: [shape, padding], "each pad must be in 0...\(size), the size of axis \(axis)")
            }
            sources[axis] = (0..<(size + before + after)).map { Tensor.paddingSource($0 - before, size: size, mode: mode) }
        }
        var fill: Float = 0
        if case .constant(let value) = mode { fill = value }
        return AxisRemap(inputShape: shape, sources: sources, fill: fill).apply(self, op: "pad")
    }

    /// The input position that padded position `i` (relative to the first input element) reads.
    private static func paddingSource(_ i: Int, size: Int, mode: PaddingMode) -> Int {
        if i >= 0 && i < size { return i }
        switch mode {
        case .constant: return -1
        case .reflect: return i < 0 ? -i : 2 * (size - 1) - i
        case .replicate: return i < 0 ? 0 : size - 1
        case .circular: return ((i % size) + size) % size
        }
    }
}
