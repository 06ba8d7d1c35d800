// gather and scatterAdd along any axis (PyTorch's `torch.gather` / `Tensor.scatter_add`): each
// is the other's backward.

/// Walks an index tensor against a target of the same rank: index position `p` (row-major)
/// addresses the target element whose coordinates are `p`'s, with the `axis` coordinate
/// replaced by the index value.
private struct AxisIndexing {
    let indices: IndexTensor
    let targetShape: [Int]
    let axis: Int

    init(_ indices: IndexTensor, target: [Int], axis: Int, op: String, sourceShape: [Int]) {
        Shape.check(!target.isEmpty && indices.rank == target.count, op: op, shapes: [sourceShape, indices.shape],
                    "the tensor needs rank >= 1 and the indices the same rank (\(target.count))")
        for d in 0..<target.count where d != axis && indices.shape[d] > target[d] {
            Shape.fail(ShapeError(op: op, shapes: [sourceShape, indices.shape],
                                  reason: "the indices are larger than the tensor on axis \(d)"))
        }
        for i in indices.values where i < 0 || i >= target[axis] {
            Shape.fail(ShapeError(op: op, shapes: [sourceShape, indices.shape],
                                  reason: "index \(i) out of range 0..<\(target[axis]) on axis \(axis)"))
        }
        self.indices = indices
        self.targetShape = target
        self.axis = axis
    }

    /// `body(p, offset)` for every index position `p` and the target's contiguous offset it
    /// addresses; the innermost axis runs as a plain loop.
    @inline(__always)
    func forEach(_ body: (Int, Int) -> Void) {
        let rank = targetShape.count, shape = indices.shape, total = indices.count
        if total == 0 { return }
        let strides = Shape.contiguousStrides(targetShape)
        let inner = shape[rank - 1], innerStride = rank - 1 == axis ? 0 : strides[rank - 1], axisStride = strides[axis]
        var coordinates = [Int](repeating: 0, count: rank)
        var offset = 0    // of the outer coordinates, without the axis term
        indices.values.withUnsafeBufferPointer { values in
            var p = 0
            while p < total {
                for j in 0..<inner { body(p &+ j, offset &+ j &* innerStride &+ values[p &+ j] &* axisStride) }
                p &+= inner
                var d = rank - 2
                while d >= 0 {
                    coordinates[d] += 1
                    if d != axis { offset += strides[d] }
                    if coordinates[d] < shape[d] { break }
                    if d != axis { offset -= strides[d] * shape[d] }
                    coordinates[d] = 0
                    d -= 1
                }
            }
        }
    }

    /// `out[p] = target[offset(p)]` for a contiguous `target` (no graph).
    func gather(from target: Tensor) -> Tensor {
        let t = target.contiguousData(), out = Tensor(uninitialized: indices.shape)
        t.withDataPointer { pt in out.withDataPointer { po in forEach { p, o in po[p] = pt[o] } } }
        return out
    }

    /// `target[offset(p)] += source[p]` into a copy of `base` (zeros when nil), no graph.
    func scatterAdd(_ source: Tensor, into base: Tensor?) -> Tensor {
        let out = base.map { $0.contiguousCopy() } ?? Tensor(zeros: targetShape)
        let s = source.contiguousData()
        s.withDataPointer { ps in out.withDataPointer { po in forEach { p, o in po[o] += ps[p] } } }
        return out
    }
}

extension Tensor {
    /// `out[i][j][k] = self[indices[i][j][k]][j][k]` for `axis` 0, and likewise for any axis
    /// (PyTorch's `torch.gather`). The output has the indices' shape, which may be smaller than
    /// this tensor's on the other axes. The gradient is scatter-added back.
    ///
    /// ```swift
    /// let picked = logProbs.gather(axis: 1, indices: IndexTensor(shape: [3, 1], values: [2, 0, 1]))   // [3, 1]
    /// ```
    public func gather(axis: Int, indices: IndexTensor) -> Tensor {
        let a = Shape.axis(axis, rank: rank, op: "gather", shape: shape)
        let walk = AxisIndexing(indices, target: shape, axis: a, op: "gather", sourceShape: shape)
        let out = walk.gather(from: self)
        return Tensor.record(out, op: "gather", inputs: [self]) { g, _ in [walk.scatterAdd(g, into: nil)] }
    }

    /// A copy of this tensor with `source[i][j][k]` added at `[indices[i][j][k]][j][k]` for
    /// `axis` 0, and likewise for any axis (PyTorch's `scatter_add`); repeated indices accumulate.
    /// `source` has the indices' shape (PyTorch also allows a larger source and ignores the rest).
    /// Gradients: this tensor gets the output gradient, `source` its gather at `indices`.
    ///
    /// ```swift
    /// let counts = Tensor.zeros([5]).scatterAdd(axis: 0, indices: IndexTensor([1, 3, 1]), source: Tensor.ones([3]))
    /// ```
    public func scatterAdd(axis: Int, indices: IndexTensor, source: Tensor) -> Tensor {
        let a = Shape.axis(axis, rank: rank, op: "scatterAdd", shape: shape)
        Shape.check(source.shape == indices.shape, op: "scatterAdd", shapes: [source.shape, indices.shape],
                    "source must have the indices' shape")
        let walk = AxisIndexing(indices, target: shape, axis: a, op: "scatterAdd", sourceShape: shape)
        let out = walk.scatterAdd(source, into: self)
        return Tensor.record(out, op: "scatterAdd", inputs: [self, source]) { g, needs in
            [needs[0] ? g : nil, needs[1] ? walk.gather(from: g) : nil]
        }
    }
}
