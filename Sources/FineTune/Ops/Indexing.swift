extension Tensor {
    /// Rows of `weight [vocab, dim]` at `indices`, shaped `indexShape + [dim]` (an embedding lookup).
    /// The gradient scatter-adds into the selected rows, except the `paddingIndex` row, which
    /// gets none (PyTorch's `padding_idx`: padding tokens never move their vector).
    ///
    /// ```swift
    /// let e = Tensor.embedding([3, 1, 3], weight: table)   // [3, dim]
    /// ```
    public static func embedding(_ indices: [Int], shape indexShape: [Int]? = nil, weight: Tensor,
                                 paddingIndex: Int? = nil) -> Tensor {
        Shape.check(weight.rank == 2, op: "embedding", shapes: [weight.shape], "weight must be [vocab, dim]")
        let vocab = weight.shape[0], dim = weight.shape[1]
        let outLead = indexShape ?? [indices.count]
        Shape.check(Shape.count(outLead) == indices.count, op: "embedding", shapes: [outLead, [indices.count]],
                    "index shape does not match the number of indices")
        for i in indices where i < 0 || i >= vocab {
            Shape.fail(ShapeError(op: "embedding", shapes: [weight.shape], reason: "index \(i) out of range 0..<\(vocab)"))
        }
        let w = weight.contiguousData()
        let out = Tensor(uninitialized: outLead + [dim])
        w.withDataPointer { pw in out.withDataPointer { po in
            for (r, i) in indices.enumerated() { (po + r * dim).update(from: pw + i * dim, count: dim) }
        }}
        return Tensor.record(out, op: "embedding", inputs: [weight]) { g, _ in
            let gd = g.contiguousData(), dw = Tensor(zeros: [vocab, dim])
            gd.withDataPointer { pg in dw.withDataPointer { pdw in
                for (r, i) in indices.enumerated() where i != paddingIndex {
                    Kernels.axpy(alpha: 1, x: pg + r * dim, y: pdw + i * dim, count: dim)
                }
            }}
            return [dw]
        }
    }

    /// Rows of this tensor (axis 0) at `indices` (`index_select(0, ...)`).
    public func gatherRows(_ indices: [Int]) -> Tensor {
        let rest = Array(shape.dropFirst())
        return Tensor.embedding(indices, weight: reshaped([shape[0], -1])).reshaped([indices.count] + rest)
    }

    /// Elementwise choice: `a` where `condition` is non-zero, else `b` (all three broadcast).
    /// Gradients flow to `a` where chosen and to `b` elsewhere.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        let shape = Shape.broadcastOrFail(Shape.broadcastOrFail(condition.shape, a.shape, op: "where"), b.shape, op: "where")
        let mask = Broadcasting.unary(condition.detached().expanded(to: shape)) { $0 != 0 ? 1 : 0 }
        let out = zipMap(mask, a.detached().expanded(to: shape), b.detached().expanded(to: shape)) { m, x, y in m != 0 ? x : y }
        return Tensor.record(out, op: "where", inputs: [a, b]) { g, needs in
            [needs[0] ? zipMap(g, mask, mask) { g, m, _ in m != 0 ? g : 0 } : nil,
             needs[1] ? zipMap(g, mask, mask) { g, m, _ in m != 0 ? 0 : g } : nil]
        }
    }

    /// Replaces elements where `mask` is non-zero by `value` (e.g. `-inf` for attention masks).
    public func maskedFill(_ mask: Tensor, _ value: Float) -> Tensor {
        Tensor.where(mask, Tensor(value), self)
    }
}
