extension Tensor {
    /// Splits along `axis` into pieces of the given sizes, which must add up to the axis
    /// (PyTorch's `split` with a list). The pieces are views; each routes its gradient back.
    ///
    /// ```swift
    /// let parts = qkv.split(sizes: [64, 64, 64], axis: -1)   // [B, T, 192] -> 3 x [B, T, 64]
    /// ```
    public func split(sizes: [Int], axis: Int = 0) -> [Tensor] {
        let a = Shape.axis(axis, rank: rank, op: "split", shape: shape)
        Shape.check(sizes.allSatisfy { $0 >= 0 } && sizes.reduce(0, +) == shape[a], op: "split", shapes: [shape, sizes],
                    "the sizes must be non-negative and add up to \(shape[a]), the size of axis \(a)")
        var start = 0
        return sizes.map { size in
            defer { start += size }
            return slice(axis: a, start..<(start + size))
        }
    }

    /// Splits along `axis` into pieces of `size` elements; the last piece is smaller when
    /// `size` does not divide the axis (PyTorch's `split` with an int).
    public func split(size: Int, axis: Int = 0) -> [Tensor] {
        let a = Shape.axis(axis, rank: rank, op: "split", shape: shape)
        Shape.check(size > 0, op: "split", shapes: [shape], "the piece size must be positive, got \(size)")
        let n = shape[a]
        let sizes = stride(from: 0, to: n, by: size).map { Swift.min(size, n - $0) }
        return split(sizes: sizes.isEmpty ? [0] : sizes, axis: a)
    }

    /// Splits along `axis` into at most `count` pieces of `ceil(n / count)` elements (PyTorch's
    /// `chunk`): the last piece may be smaller, and there may be fewer than `count` pieces
    /// (6 elements in 4 chunks gives 3 pieces of 2, as in PyTorch).
    ///
    /// ```swift
    /// let (gate, up) = { ($0[0], $0[1]) }(projected.chunk(2, axis: -1))
    /// ```
    public func chunk(_ count: Int, axis: Int = 0) -> [Tensor] {
        let a = Shape.axis(axis, rank: rank, op: "chunk", shape: shape)
        Shape.check(count > 0, op: "chunk", shapes: [shape], "the chunk count must be positive, got \(count)")
        let n = shape[a]
        return split(size: Swift.max(1, (n + count - 1) / count), axis: a)
    }
}
