extension Tensor {
    /// Sum of all elements (a 0-D tensor).
    public func sum() -> Tensor { sum(axes: Array(0..<rank)) }

    /// Sum over `axes`; reduced axes are kept with size 1 when `keepDims`.
    ///
    /// ```swift
    /// x.sum(axes: [0])                 // [3, 4] -> [4]
    /// x.sum(axes: [1], keepDims: true) // [3, 4] -> [3, 1]
    /// ```
    public func sum(axes: [Int], keepDims: Bool = false) -> Tensor {
        let reduced = normalizedAxes(axes, op: "sum")
        let kept = shape.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
        let out = reduceSum(to: kept)
        let result = keepDims ? out : out.detached().reshapedView(shape.enumerated().filter { !reduced.contains($0.offset) }.map(\.element))
        let inputShape = shape
        return Tensor.record(result, op: "sum", inputs: [self]) { g, _ in
            [g.reshaped(kept).expanded(to: inputShape)]
        }
    }

    /// Sum of the axes given by a single index.
    public func sum(axis: Int, keepDims: Bool = false) -> Tensor { sum(axes: [axis], keepDims: keepDims) }

    /// Mean of all elements.
    public func mean() -> Tensor { mean(axes: Array(0..<rank)) }

    /// Mean over `axes`.
    public func mean(axes: [Int], keepDims: Bool = false) -> Tensor {
        let n = normalizedAxes(axes, op: "mean").reduce(1) { $0 * shape[$1] }
        return sum(axes: axes, keepDims: keepDims) * (1 / Float(Swift.max(n, 1)))
    }

    /// Mean over one axis.
    public func mean(axis: Int, keepDims: Bool = false) -> Tensor { mean(axes: [axis], keepDims: keepDims) }

    /// Maximum over `axes`. The gradient is shared equally among tied maxima (like `amax`).
    public func max(axes: [Int], keepDims: Bool = false) -> Tensor {
        let reduced = normalizedAxes(axes, op: "max")
        let kept = shape.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
        let out = Tensor(zeros: kept)
        out.withDataPointer { $0.update(repeating: -.infinity, count: out.count) }
        let src = detached()
        let stridesX = src.strides, stridesOut = Broadcasting.strides(of: out, broadcastTo: shape)
        src.withDataPointer { px in out.withDataPointer { po in
            Broadcasting.forEachRow(shape: shape, stridesA: stridesX, stridesB: stridesOut) { ox, oo, _, n, ix, io in
                for i in 0..<n {
                    let v = px[ox &+ i &* ix], o = oo &+ i &* io
                    if v > po[o] || v.isNaN { po[o] = v }
                }
            }
        }}
        let result = keepDims ? out : out.detached().reshapedView(shape.enumerated().filter { !reduced.contains($0.offset) }.map(\.element))
        let x = detached()
        return Tensor.record(result, op: "max", inputs: [self]) { g, _ in
            let isMax = Broadcasting.binary(x, out, op: "max") { $0 == $1 ? 1 : 0 }
            let ties = isMax.reduceSum(to: kept)
            return [isMax * (g.reshaped(kept) / ties)]
        }
    }

    /// Maximum over one axis.
    public func max(axis: Int, keepDims: Bool = false) -> Tensor { max(axes: [axis], keepDims: keepDims) }

    /// Maximum of all elements.
    public func max() -> Tensor { max(axes: Array(0..<rank)) }

    /// Sums a (broadcast) gradient down to `target`, the shape it was broadcast from.
    func summed(toShape target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        precondition(lead >= 0, "summed(toShape:): \(shape) cannot reduce to \(target)")
        var kept = shape
        for axis in 0..<rank where axis < lead || target[axis - lead] == 1 { kept[axis] = 1 }
        return reduceSum(to: kept).detached().reshapedView(target)
    }

    /// Sum into `kept` (same rank, 1 on reduced axes): no graph.
    func reduceSum(to kept: [Int]) -> Tensor {
        let out = Tensor(zeros: kept)
        let stridesOut = Broadcasting.strides(of: out, broadcastTo: shape)
        withDataPointer { px in out.withDataPointer { po in
            Broadcasting.forEachRow(shape: shape, stridesA: strides, stridesB: stridesOut) { ox, oo, _, n, ix, io in
                if io == 0 && ix == 1 {
                    po[oo] += Kernels.sum(px + ox, count: n)
                } else if io == 1 && ix == 1 {
                    for i in 0..<n { po[oo &+ i] += px[ox &+ i] }
                } else {
                    for i in 0..<n { po[oo &+ i &* io] += px[ox &+ i &* ix] }
                }
            }
        }}
        return out
    }

    func normalizedAxes(_ axes: [Int], op: String) -> Set<Int> {
        Set(axes.map { Shape.axis($0, rank: rank, op: op, shape: shape) })
    }
}
