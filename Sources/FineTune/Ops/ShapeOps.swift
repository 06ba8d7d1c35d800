// Views and rearrangements. Views share storage; their backward rules route the gradient
// back to the input's layout.

extension Tensor {
    /// The same elements with a new shape; one dimension may be -1 (inferred).
    /// A view when the layout allows it, otherwise a copy.
    ///
    /// ```swift
    /// x.reshaped([2, -1])   // [2, 3, 4] -> [2, 12]
    /// ```
    public func reshaped(_ newShape: [Int]) -> Tensor {
        let target = inferShape(newShape)
        if target == shape { return self }
        let out = reshapedView(target)
        let inputShape = shape
        return Tensor.record(out, op: "reshape", inputs: [self]) { g, _ in [g.reshaped(inputShape)] }
    }

    private func inferShape(_ newShape: [Int]) -> [Int] {
        var target = newShape
        let unknown = newShape.indices.filter { newShape[$0] == -1 }
        Shape.check(unknown.count <= 1, op: "reshape", shapes: [shape, newShape], "at most one dimension may be -1")
        if let u = unknown.first {
            let known = newShape.enumerated().filter { $0.offset != u }.reduce(1) { $0 * $1.element }
            Shape.check(known > 0 && count % known == 0, op: "reshape", shapes: [shape, newShape], "cannot infer the -1 dimension")
            target[u] = count / known
        }
        Shape.check(Shape.count(target) == count, op: "reshape", shapes: [shape, newShape],
                    "element counts differ (\(count) vs \(Shape.count(target)))")
        return target
    }

    /// Flattens dimensions `startAxis...endAxis` into one (PyTorch's `flatten`).
    public func flattened(startAxis: Int = 0, endAxis: Int = -1) -> Tensor {
        let r = Swift.max(rank, 1)   // a 0-D tensor flattens as if it were [1]
        let s = startAxis < 0 ? startAxis + r : startAxis, e = endAxis < 0 ? endAxis + r : endAxis
        Shape.check(s >= 0 && s < r, op: "flatten", shapes: [shape], "startAxis \(startAxis) is out of range for rank \(rank)")
        Shape.check(e >= 0 && e < r, op: "flatten", shapes: [shape], "endAxis \(endAxis) is out of range for rank \(rank)")
        Shape.check(s <= e, op: "flatten", shapes: [shape], "startAxis \(startAxis) comes after endAxis \(endAxis)")
        if rank == 0 { return reshaped([1]) }
        let merged = shape[s...e].reduce(1, *)
        return reshaped(Array(shape[..<s]) + [merged] + Array(shape[(e + 1)...]))
    }

    /// Inserts a size-1 dimension at `axis`.
    public func unsqueezed(axis: Int) -> Tensor {
        let a = axis < 0 ? axis + rank + 1 : axis
        Shape.check(a >= 0 && a <= rank, op: "unsqueeze", shapes: [shape],
                    "axis \(axis) is out of range for rank \(rank) (valid: \(-rank - 1)...\(rank))")
        var s = shape
        s.insert(1, at: a)
        return reshaped(s)
    }

    /// Removes size-1 dimensions (all, or just `axis`).
    public func squeezed(axis: Int? = nil) -> Tensor {
        if let axis {
            let a = Shape.axis(axis, rank: rank, op: "squeeze", shape: shape)
            guard shape[a] == 1 else { return self }
            var s = shape
            s.remove(at: a)
            return reshaped(s)
        }
        return reshaped(shape.filter { $0 != 1 })
    }

    /// Reorders dimensions: output axis `i` is input axis `order[i]` (a view).
    public func permuted(_ order: [Int]) -> Tensor {
        Shape.check(order.count == rank && Set(order) == Set(0..<rank), op: "permute", shapes: [shape, order],
                    "order must be a permutation of 0..<\(rank)")
        let out = Tensor(storage: storage, shape: order.map { shape[$0] }, strides: order.map { strides[$0] }, offset: offset)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, o) in order.enumerated() { inverse[o] = i }
        return Tensor.record(out, op: "permute", inputs: [self]) { g, _ in [g.permuted(inverse)] }
    }

    /// Swaps two dimensions (default: the last two, a matrix transpose). A view.
    public func transposed(_ axis0: Int = -2, _ axis1: Int = -1) -> Tensor {
        let a = Shape.axis(axis0, rank: rank, op: "transpose", shape: shape)
        let b = Shape.axis(axis1, rank: rank, op: "transpose", shape: shape)
        var order = Array(0..<rank)
        order.swapAt(a, b)
        return permuted(order)
    }

    /// Contiguous row-major layout (self when already contiguous); differentiable.
    public func contiguous() -> Tensor {
        if isContiguous { return self }
        return Tensor.record(contiguousCopy(), op: "contiguous", inputs: [self]) { g, _ in [g] }
    }

    /// Broadcasts to `target` as a view with zero strides (`expand` in PyTorch).
    public func expanded(to target: [Int]) -> Tensor {
        if target == shape { return self }
        let full = Shape.broadcastOrFail(shape, target, op: "expand")
        Shape.check(full == target, op: "expand", shapes: [shape, target], "cannot expand to a smaller shape")
        let out = Tensor(storage: storage, shape: target, strides: Broadcasting.strides(of: self, broadcastTo: target), offset: offset)
        // The engine sums the gradient back to this tensor's shape.
        return Tensor.record(out, op: "expand", inputs: [self]) { g, _ in [g] }
    }

    /// Elements `range` along `axis` (a view), like `x[:, 2:5]`.
    public func slice(axis: Int, _ range: Range<Int>) -> Tensor {
        let a = Shape.axis(axis, rank: rank, op: "slice", shape: shape)
        Shape.check(range.lowerBound >= 0 && range.upperBound <= shape[a], op: "slice", shapes: [shape],
                    "range \(range) out of bounds for axis \(a) of size \(shape[a])")
        var s = shape
        s[a] = range.count
        let out = Tensor(storage: storage, shape: s, strides: strides, offset: offset + range.lowerBound * strides[a])
        let inputShape = shape
        return Tensor.record(out, op: "slice", inputs: [self]) { g, _ in
            // Scatter the gradient into zeros of the input's shape.
            let dx = Tensor(zeros: inputShape)
            dx.sliceView(axis: a, range).assign(g)
            return [dx]
        }
    }

    /// The sub-tensor at `index` along `axis`, which is removed (like `x[:, 3]`).
    public func select(axis: Int, _ index: Int) -> Tensor {
        let a = Shape.axis(axis, rank: rank, op: "select", shape: shape)
        let i = index < 0 ? index + shape[a] : index
        return slice(axis: a, i..<(i + 1)).squeezed(axis: a)
    }

    /// Joins tensors along an existing axis; all other dimensions must match.
    public static func concat(_ tensors: [Tensor], axis: Int = 0) -> Tensor {
        precondition(!tensors.isEmpty, "concat: no tensors given")
        let first = tensors[0]
        let a = Shape.axis(axis, rank: first.rank, op: "concat", shape: first.shape)
        for t in tensors {
            Shape.check(t.rank == first.rank && t.shape.enumerated().allSatisfy { $0.offset == a || $0.element == first.shape[$0.offset] },
                        op: "concat", shapes: [first.shape, t.shape], "dimensions other than axis \(a) must match")
        }
        var outShape = first.shape
        outShape[a] = tensors.reduce(0) { $0 + $1.shape[a] }
        let out = Tensor(zeros: outShape)
        var start = 0
        var ranges: [Range<Int>] = []
        for t in tensors {
            let r = start..<(start + t.shape[a])
            out.sliceView(axis: a, r).assign(t)
            ranges.append(r)
            start = r.upperBound
        }
        return Tensor.record(out, op: "concat", inputs: tensors) { g, needs in
            ranges.enumerated().map { i, r in needs[i] ? g.slice(axis: a, r).contiguousData() : nil }
        }
    }

    /// Stacks same-shape tensors along a new axis.
    public static func stack(_ tensors: [Tensor], axis: Int = 0) -> Tensor {
        precondition(!tensors.isEmpty, "stack: no tensors given")
        return concat(tensors.map { $0.unsqueezed(axis: axis) }, axis: axis)
    }

    // MARK: Internal writable views

    /// A view sharing storage, for writing into freshly created (uniquely owned) outputs.
    func sliceView(axis: Int, _ range: Range<Int>) -> Tensor {
        var s = shape
        s[axis] = range.count
        return Tensor(storage: storage, shape: s, strides: strides, offset: offset + range.lowerBound * strides[axis])
    }

    /// Copies `source` (broadcast to this view's shape) into this view's elements, in place.
    func assign(_ source: Tensor) {
        let src = source.detached()
        let ss = Broadcasting.strides(of: src, broadcastTo: shape)
        src.withDataPointer { ps in withDataPointer { pd in
            // Walk this view's strides as operand A and the source as operand B.
            Broadcasting.forEachRow(shape: shape, stridesA: strides, stridesB: ss) { od, os, _, n, id, isrc in
                for i in 0..<n { pd[od &+ i &* id] = ps[os &+ i &* isrc] }
            }
        }}
    }
}
