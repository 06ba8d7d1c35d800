// Smallest and largest elements: min reductions, argmax/argmin, topk, and the element-wise
// minimum/maximum of two tensors. (The max reduction lives with the sums in Reductions.swift.)

extension Tensor {
    /// Minimum over `axes` (PyTorch's `amin`): the gradient is shared equally among tied minima,
    /// and a NaN anywhere in a slice makes its minimum NaN.
    ///
    /// ```swift
    /// x.min(axes: [1])   // [3, 4] -> [3]
    /// ```
    public func min(axes: [Int], keepDims: Bool = false) -> Tensor {
        negated().max(axes: axes, keepDims: keepDims).negated()
    }

    /// Minimum over one axis, with the gradient convention of ``max(axis:keepDims:)`` (the mirror
    /// image of it: `-max(-x)`).
    public func min(axis: Int, keepDims: Bool = false) -> Tensor {
        negated().max(axis: axis, keepDims: keepDims).negated()
    }

    /// Minimum of all elements.
    public func min() -> Tensor { min(axes: Array(0..<rank)) }

    /// The index of the largest element along `axis`, or in the flattened tensor when `axis` is
    /// nil (PyTorch's `argmax`). The first of tied maxima wins; a NaN counts as the largest.
    ///
    /// ```swift
    /// let predicted = logits.argmax(axis: -1).values   // [N] class indices
    /// ```
    public func argmax(axis: Int? = nil, keepDims: Bool = false) -> IndexTensor {
        argExtremum(axis: axis, keepDims: keepDims, op: "argmax", largest: true)
    }

    /// The index of the smallest element along `axis` (or overall when nil), PyTorch's `argmin`:
    /// the first of tied minima wins; a NaN counts as the smallest.
    public func argmin(axis: Int? = nil, keepDims: Bool = false) -> IndexTensor {
        argExtremum(axis: axis, keepDims: keepDims, op: "argmin", largest: false)
    }

    private func argExtremum(axis: Int?, keepDims: Bool, op: String, largest: Bool) -> IndexTensor {
        guard let axis else {
            let flat = reshaped([-1]).argExtremum(axis: 0, keepDims: false, op: op, largest: largest)
            return keepDims ? flat.reshaped(Array(repeating: 1, count: rank)) : flat.reshaped([])
        }
        let lanes = AxisLanes(self, axis: axis, op: op)
        Shape.check(lanes.length > 0, op: op, shapes: [shape], "cannot take \(op) over an empty axis")
        let data = contiguousData()
        var result = [Int](repeating: 0, count: lanes.count)
        data.withDataPointer { p in
            lanes.forEach { lane, start, step in
                var best = p[start], at = 0
                if !best.isNaN {
                    for i in 1..<lanes.length {
                        let v = p[start + i * step]
                        if v.isNaN { at = i; break }
                        if largest ? v > best : v < best { best = v; at = i }
                    }
                }
                result[lane] = at
            }
        }
        return IndexTensor(shape: lanes.reducedShape(keepDims: keepDims), values: result)
    }

    /// The `k` largest (or smallest) elements along `axis` and their indices (PyTorch's `topk`),
    /// always sorted: largest first (smallest first when `largest` is false). A NaN counts as
    /// larger than any number, as in PyTorch; ties keep the lower index first. The gradient flows
    /// to the selected elements.
    ///
    /// ```swift
    /// let (scores, classes) = probabilities.topk(5)   // [N, C] -> [N, 5] each
    /// ```
    public func topk(_ k: Int, axis: Int = -1, largest: Bool = true) -> (values: Tensor, indices: IndexTensor) {
        let lanes = AxisLanes(self, axis: axis, op: "topk")
        Shape.check(k >= 0 && k <= lanes.length, op: "topk", shapes: [shape], "k = \(k) is not in 0...\(lanes.length)")
        let data = contiguousData()
        var picked = [Int](repeating: 0, count: lanes.count * k)
        data.withDataPointer { p in
            var order = [Int](repeating: 0, count: lanes.length)
            lanes.forEach { lane, start, step in
                for i in 0..<lanes.length { order[i] = i }
                // "a before b": larger (NaN largest) first, or smaller first; ties by index.
                func before(_ a: Int, _ b: Int) -> Bool {
                    let x = p[start + a * step], y = p[start + b * step]
                    if x.isNaN || y.isNaN {
                        if x.isNaN && y.isNaN { return a < b }
                        return largest ? x.isNaN : y.isNaN
                    }
                    if x != y { return largest ? x > y : x < y }
                    return a < b
                }
                order.sort(by: before)
                for j in 0..<k { picked[lane * k + j] = order[j] }
            }
        }
        // Lanes are (outer, inner) pairs; the indices tensor puts k on the axis.
        var indexShape = shape
        indexShape[lanes.axis] = k
        var values = [Int](repeating: 0, count: picked.count)
        for outer in 0..<lanes.outer { for j in 0..<k { for inner in 0..<lanes.inner {
            values[(outer * k + j) * lanes.inner + inner] = picked[(outer * lanes.inner + inner) * k + j]
        }}}
        let indices = IndexTensor(shape: indexShape, values: values)
        return (gather(axis: lanes.axis, indices: indices), indices)
    }

    /// Element-wise minimum with broadcasting (PyTorch's `torch.minimum`): NaN propagates, and
    /// where both are equal each side gets half the gradient, as in PyTorch.
    public func minimum(_ other: Tensor) -> Tensor {
        elementwiseExtremum(other, op: "minimum") { a, b in a < b }
    }

    /// Element-wise maximum with broadcasting (PyTorch's `torch.maximum`): NaN propagates, and
    /// where both are equal each side gets half the gradient, as in PyTorch.
    ///
    /// ```swift
    /// let clipped = x.maximum(floor)    // per-element lower bound
    /// ```
    public func maximum(_ other: Tensor) -> Tensor {
        elementwiseExtremum(other, op: "maximum") { a, b in a > b }
    }

    /// `wins(a, b)`: `a` is strictly the extremum.
    private func elementwiseExtremum(_ other: Tensor, op: String, wins: @escaping (Float, Float) -> Bool) -> Tensor {
        let out = Broadcasting.binary(self, other, op: op) { a, b in
            if a.isNaN { return a }
            if b.isNaN { return b }
            return wins(b, a) ? b : a
        }
        let a = detached(), b = other.detached()
        return Tensor.record(out, op: op, inputs: [self, other]) { g, needs in
            func share(_ x: Tensor, _ y: Tensor) -> Tensor {
                g * Broadcasting.binary(x, y, op: op) { x, y in wins(x, y) ? 1 : (x == y ? 0.5 : 0) }
            }
            return [needs[0] ? share(a, b) : nil, needs[1] ? share(b, a) : nil]
        }
    }
}

/// The 1-D lanes of a tensor along one axis: `outer x inner` lanes of `length` elements each,
/// lane `outer * inner + i` starting at `outer * length * inner + i` with step `inner` in
/// contiguous (row-major) data.
struct AxisLanes {
    let shape: [Int]
    let axis: Int
    let outer: Int, length: Int, inner: Int

    init(_ x: Tensor, axis: Int, op: String) {
        Shape.check(x.rank >= 1, op: op, shapes: [x.shape], "needs at least one axis")
        let a = Shape.axis(axis, rank: x.rank, op: op, shape: x.shape)
        shape = x.shape
        self.axis = a
        outer = x.shape[..<a].reduce(1, *)
        length = x.shape[a]
        inner = x.shape[(a + 1)...].reduce(1, *)
    }

    /// Number of lanes.
    var count: Int { outer * inner }

    /// The shape with the axis removed (or kept as 1).
    func reducedShape(keepDims: Bool) -> [Int] {
        var s = shape
        if keepDims { s[axis] = 1 } else { s.remove(at: axis) }
        return s
    }

    /// `body(lane, start, step)` for every lane, in lane order.
    func forEach(_ body: (Int, Int, Int) -> Void) {
        for o in 0..<outer {
            for i in 0..<inner { body(o * inner + i, o * length * inner + i, inner) }
        }
    }
}
