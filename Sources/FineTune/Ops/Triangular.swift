extension Tensor {
    /// The lower triangle of the last two axes (PyTorch's `tril`): element `[i, j]` is kept when
    /// `j <= i + diagonal`, zero otherwise. Leading axes are batches.
    ///
    /// ```swift
    /// Tensor.ones([3, 3]).tril()   // [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    /// ```
    public func tril(diagonal: Int = 0) -> Tensor {
        triangle("tril") { i, j in j <= i + diagonal }
    }

    /// The upper triangle of the last two axes (PyTorch's `triu`): element `[i, j]` is kept when
    /// `j >= i + diagonal`, zero otherwise.
    public func triu(diagonal: Int = 0) -> Tensor {
        triangle("triu") { i, j in j >= i + diagonal }
    }

    private func triangle(_ op: String, keeps: (Int, Int) -> Bool) -> Tensor {
        Shape.check(rank >= 2, op: op, shapes: [shape], "needs at least 2 axes")
        let rows = shape[rank - 2], cols = shape[rank - 1]
        var scalars = [Float](repeating: 0, count: rows * cols)
        for i in 0..<rows { for j in 0..<cols where keeps(i, j) { scalars[i * cols + j] = 1 } }
        // `where`, not a product with the mask: an infinity in the dropped part must become 0, not NaN.
        return Tensor.where(Tensor(shape: [rows, cols], scalars: scalars), self, Tensor(0))
    }

    /// An additive causal mask `[queries, keys]`: 0 where key `j <= i` (query `i` may see it),
    /// `-inf` above the diagonal (PyTorch's `nn.Transformer.generate_square_subsequent_mask`).
    /// Aligned top-left like `scaledDotProductAttention(isCausal: true)` and PyTorch's
    /// `is_causal`; for queries that continue a cached prefix, shift with `tril(diagonal:)` instead.
    ///
    /// ```swift
    /// let y = Tensor.scaledDotProductAttention(query: q, key: k, value: v, mask: .additive(.causalMask(queries: 4)))
    /// ```
    public static func causalMask(queries: Int, keys: Int? = nil) -> Tensor {
        let keys = keys ?? queries
        precondition(queries >= 0 && keys >= 0, "causalMask: sizes must be non-negative, got \(queries) and \(keys)")
        var scalars = [Float](repeating: 0, count: queries * keys)
        for i in 0..<queries { for j in 0..<keys where j > i { scalars[i * keys + j] = -.infinity } }
        return Tensor(shape: [queries, keys], scalars: scalars)
    }
}
