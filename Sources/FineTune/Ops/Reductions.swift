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
        sumOrMean(axes: axes, keepDims: keepDims, dividedByCount: false)
    }

    /// Sum of the axes given by a single index.
    public func sum(axis: Int, keepDims: Bool = false) -> Tensor { sum(axes: [axis], keepDims: keepDims) }

    /// Mean of all elements.
    public func mean() -> Tensor { mean(axes: Array(0..<rank)) }

    /// Mean over `axes`.
    public func mean(axes: [Int], keepDims: Bool = false) -> Tensor {
        sumOrMean(axes: axes, keepDims: keepDims, dividedByCount: true)
    }

    /// Mean over one axis.
    public func mean(axis: Int, keepDims: Bool = false) -> Tensor { mean(axes: [axis], keepDims: keepDims) }

    /// Sum or mean over `axes`: one op whose gradient spreads the output gradient (over the count).
    private func sumOrMean(axes: [Int], keepDims: Bool, dividedByCount: Bool) -> Tensor {
        let op = dividedByCount ? "mean" : "sum"
        let reduced = normalizedAxes(axes, op: op)
        let kept = shape.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
        let n = reduced.reduce(1) { $0 * shape[$1] }
        let scale: Float = dividedByCount ? 1 / Float(Swift.max(n, 1)) : 1
        var gradientScale = scale
        if dividedByCount && GradientMutation.isActive(.meanDividesByCountMinusOne) {
            gradientScale = 1 / Float(Swift.max(n - 1, 1))     // the mutation tests' wrong rule
        }
        let out = reduceSum(to: kept)
        if scale != 1 { out.withDataPointer { p in KernelProfile.measure(.elementwise) { Kernels.scale(scale, p, count: out.count) } } }
        let result = keepDims ? out : out.detached().reshapedView(shape.enumerated().filter { !reduced.contains($0.offset) }.map(\.element))
        let inputShape = shape
        return Tensor.record(result, op: op, inputs: [self]) { g, _ in
            let spread = g.reshaped(kept).expanded(to: inputShape)
            return [gradientScale == 1 ? spread : spread * gradientScale]
        }
    }

    /// Maximum over `axes` (PyTorch's `amax`). The gradient is shared equally among tied maxima.
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

    /// Maximum over one axis (PyTorch's `torch.max(x, dim)`). The gradient goes to the selected
    /// element: the first maximum along the axis (or the first NaN), the index `torch.max`
    /// returns, where ``max(axes:keepDims:)`` shares it among ties.
    ///
    /// ```swift
    /// Tensor([1, 3, 3]).max(axis: 0)   // 3; gradient [0, 1, 0]
    /// ```
    public func max(axis: Int, keepDims: Bool = false) -> Tensor {
        let a = Shape.axis(axis, rank: rank, op: "max", shape: shape)
        let n = rank == 0 ? 1 : shape[a]
        Shape.check(n > 0, op: "max", shapes: [shape], "axis \(axis) is empty: there is no maximum")
        let inner = shape.dropFirst(a + 1).reduce(1, *), outer = shape.prefix(a).reduce(1, *)
        var kept = shape
        if rank > 0 { kept[a] = 1 }
        let x = contiguousData(), out = Tensor(uninitialized: kept)
        let winners = IndexBuffer(count: out.count)
        x.withDataPointer { px in out.withDataPointer { po in
            for o in 0..<outer {
                let first = px + o * n * inner, best = po + o * inner, index = winners.pointer + o * inner
                best.update(from: first, count: inner)
                index.update(repeating: 0, count: inner)
                for j in 1..<n {
                    let row = first + j * inner
                    for i in 0..<inner where row[i] > best[i] || (row[i].isNaN && !best[i].isNaN) {
                        best[i] = row[i]; index[i] = Int32(j)
                    }
                }
            }
        }}
        let result = keepDims ? out : out.reshapedView(rank == 0 ? [] : shape.enumerated().filter { $0.offset != a }.map(\.element))
        let inputShape = shape
        return Tensor.record(result, op: "max", inputs: [self]) { g, _ in
            let gd = g.contiguousData(), dx = Tensor(zeros: inputShape)
            gd.withDataPointer { pg in dx.withDataPointer { pdx in
                for o in 0..<outer {
                    for i in 0..<inner {
                        pdx[(o * n + Int(winners.pointer[o * inner + i])) * inner + i] = pg[o * inner + i]
                    }
                }
            }}
            return [dx]
        }
    }

    /// Maximum of all elements. The gradient is shared equally among tied maxima (as PyTorch's
    /// `max()` without a dimension).
    public func max() -> Tensor { max(axes: Array(0..<rank)) }

    func normalizedAxes(_ axes: [Int], op: String) -> Set<Int> {
        Set(axes.map { Shape.axis($0, rank: rank, op: op, shape: shape) })
    }
}
