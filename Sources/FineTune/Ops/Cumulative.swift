extension Tensor {
    /// Running sums along `axis` (PyTorch's `cumsum`): `out[i] = x[0] + ... + x[i]`, accumulated
    /// in Double as PyTorch does on the CPU. The gradient is the reversed running sum of the
    /// output gradient.
    ///
    /// ```swift
    /// Tensor([1, 2, 3]).cumsum(axis: 0)   // [1, 3, 6]
    /// ```
    public func cumsum(axis: Int) -> Tensor {
        let lanes = AxisLanes(self, axis: axis, op: "cumsum")
        let out = Tensor.runningSums(self, lanes, reversed: false)
        return Tensor.record(out, op: "cumsum", inputs: [self]) { g, _ in [Tensor.runningSums(g, lanes, reversed: true)] }
    }

    /// Running sums of `x` along the lanes, from the last element backwards when `reversed` (no graph).
    private static func runningSums(_ x: Tensor, _ lanes: AxisLanes, reversed: Bool) -> Tensor {
        let data = x.contiguousData(), out = Tensor(uninitialized: x.shape)
        data.withDataPointer { px in out.withDataPointer { po in
            lanes.forEach { _, start, step in
                var total: Double = 0
                for k in 0..<lanes.length {
                    let o = start + (reversed ? lanes.length - 1 - k : k) * step
                    total += Double(px[o])
                    po[o] = Float(total)
                }
            }
        }}
        return out
    }
}
