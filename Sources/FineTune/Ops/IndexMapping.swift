// Ops that move whole positions along axes: flip, repeat, indexSelect (and padding, in
// Padding.swift). Each output position along each axis reads one input position (or a fill
// value), so one engine does the forward gather and the backward scatter-add for all of them.

/// Output position -> input position, axis by axis (`-1` = the fill value).
struct AxisRemap {
    let inputShape: [Int]
    let outputShape: [Int]
    /// `sources[axis][o]`: the input index read by output index `o` along `axis`, or -1.
    let sources: [[Int]]
    let fill: Float

    init(inputShape: [Int], sources: [[Int]], fill: Float = 0) {
        precondition(sources.count == inputShape.count, "AxisRemap: one table per axis")
        self.inputShape = inputShape
        self.outputShape = sources.map(\.count)
        self.sources = sources
        self.fill = fill
    }

    /// The identity table of an axis of `size`.
    static func identity(_ size: Int) -> [Int] { Array(0..<size) }

    /// Calls `row(outOffset, inputBase)` for every row of the last axis of the output; the input
    /// base is nil when an outer axis reads the fill value (the whole row is fill).
    private func forEachRow(_ row: (Int, Int?) -> Void) {
        let rank = outputShape.count, total = Shape.count(outputShape)
        if total == 0 { return }
        let inner = outputShape[rank - 1]
        let inStrides = Shape.contiguousStrides(inputShape)
        var index = [Int](repeating: 0, count: rank)
        var out = 0
        while out < total {
            var base: Int? = 0
            for axis in 0..<(rank - 1) {
                let s = sources[axis][index[axis]]
                if s < 0 { base = nil; break }
                base! += s * inStrides[axis]
            }
            row(out, base)
            out += inner
            var axis = rank - 2
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < outputShape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
    }

    /// The remapped copy of `x` (no graph).
    func gather(_ x: Tensor) -> Tensor {
        let src = x.contiguousData(), out = Tensor(uninitialized: outputShape)
        let inner = sources.last ?? [], fill = fill
        src.withDataPointer { px in out.withDataPointer { po in
            inner.withUnsafeBufferPointer { map in
                forEachRow { o, base in
                    let dst = po + o
                    guard let base else { dst.update(repeating: fill, count: map.count); return }
                    let row = px + base
                    for j in 0..<map.count { let s = map[j]; dst[j] = s >= 0 ? row[s] : fill }
                }
            }
        }}
        return out
    }

    /// The gradient of ``gather(_:)``: `g` summed into the input positions each output read.
    func scatterAdd(_ g: Tensor) -> Tensor {
        let gd = g.contiguousData(), dx = Tensor(zeros: inputShape)
        let inner = sources.last ?? []
        gd.withDataPointer { pg in dx.withDataPointer { pd in
            inner.withUnsafeBufferPointer { map in
                forEachRow { o, base in
                    guard let base else { return }
                    let src = pg + o, row = pd + base
                    for j in 0..<map.count { let s = map[j]; if s >= 0 { row[s] += src[j] } }
                }
            }
        }}
        return dx
    }

    /// `x` remapped, recorded under `op` with the scatter-add backward.
    func apply(_ x: Tensor, op: String) -> Tensor {
        if x.rank == 0 { return x }
        let out = gather(x)
        return Tensor.record(out, op: op, inputs: [x]) { g, _ in [scatterAdd(g)] }
    }
}

extension Tensor {
    /// The elements in reverse order along each of `axes` (PyTorch's `flip`); a copy.
    ///
    /// ```swift
    /// Tensor([1, 2, 3]).flipped(axes: [0])   // [3, 2, 1]
    /// ```
    public func flipped(axes: [Int]) -> Tensor {
        let reversed = normalizedAxes(axes, op: "flip")
        let sources = shape.enumerated().map { axis, size in
            reversed.contains(axis) ? Array((0..<size).reversed()) : AxisRemap.identity(size)
        }
        return AxisRemap(inputShape: shape, sources: sources).apply(self, op: "flip")
    }

    /// Tiles the tensor `repeats[i]` times along axis `i` (PyTorch's `Tensor.repeat`). With more
    /// repeats than axes, leading size-1 axes are added first.
    ///
    /// ```swift
    /// Tensor([1, 2]).repeated([2, 3])   // [2, 6]: [[1, 2, 1, 2, 1, 2], [1, 2, 1, 2, 1, 2]]
    /// ```
    public func repeated(_ repeats: [Int]) -> Tensor {
        Shape.check(repeats.count >= rank && repeats.allSatisfy { $0 >= 0 }, op: "repeat", shapes: [shape, repeats],
                    "need one non-negative repeat count per axis (at least \(rank))")
        let lifted = repeats.count > rank ? reshaped(Array(repeating: 1, count: repeats.count - rank) + shape) : self
        if lifted.rank == 0 { return lifted }
        let sources = zip(lifted.shape, repeats).map { size, times in (0..<(size * times)).map { $0 % size } }
        return AxisRemap(inputShape: lifted.shape, sources: sources).apply(lifted, op: "repeat")
    }

    /// The entries at `indices` along `axis` (PyTorch's `index_select`): the axis takes the
    /// length of `indices`; repeated indices sum their gradients.
    ///
    /// ```swift
    /// x.indexSelect(axis: 1, [2, 0, 2])   // [N, 5] -> [N, 3]
    /// ```
    public func indexSelect(axis: Int, _ indices: [Int]) -> Tensor {
        let a = Shape.axis(axis, rank: rank, op: "indexSelect", shape: shape)
        for i in indices where i < 0 || i >= shape[a] {
            Shape.fail(ShapeError(op: "indexSelect", shapes: [shape, [indices.count]],
                                  reason: "index \(i) out of range 0..<\(shape[a]) on axis \(a)"))
        }
        let sources = shape.enumerated().map { axis, size in axis == a ? indices : AxisRemap.identity(size) }
        return AxisRemap(inputShape: shape, sources: sources).apply(self, op: "indexSelect")
    }
}
