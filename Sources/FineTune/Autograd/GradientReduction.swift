// Reducing a broadcast gradient to the shape of its input: the backward engine's one sum,
// which the sum ops call too.

extension Tensor {
    /// Sums a (broadcast) gradient down to `target`, the shape it was broadcast from.
    func summed(toShape target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        precondition(lead >= 0, "summed(toShape:): \(shape) cannot reduce to \(target)")
        if GradientMutation.isActive(.broadcastNotReduced) {
            return contiguousData().reshapedView(target)     // the mutation tests' wrong rule
        }
        var kept = shape
        for axis in 0..<rank where axis < lead || target[axis - lead] == 1 { kept[axis] = 1 }
        return reduceSum(to: kept).detached().reshapedView(target)
    }

    /// Sum into `kept` (same rank, 1 on reduced axes): no graph.
    ///
    /// One accuracy scheme for every choice of axes, the one of ``Kernels/sum(_:count:)``: with
    /// size-1 axes dropped and neighbouring axes of one kind merged, the elements form runs of
    /// kept and reduced axes. A reduced innermost run is summed row by row by `Kernels.sum`; a
    /// reduced run above the kept innermost one (bias and broadcast gradients, `sum(axes: [0])`)
    /// by `Kernels.addColumnSums`. Every partial result is accumulated in Double. A reduced axis
    /// that a broadcast view repeats (stride 0, as the gradient of a sum) is summed once and
    /// multiplied by its length, not copied out.
    func reduceSum(to kept: [Int]) -> Tensor {
        let out = Tensor(zeros: kept)
        var source = self, repeats = 1.0
        for axis in 0..<rank where kept[axis] == 1 && shape[axis] > 1 && strides[axis] == 0 {
            repeats *= Double(shape[axis])
            source.shape[axis] = 1
        }
        var runs: [Int] = [], runIsReduced: [Bool] = []
        for (axis, size) in source.shape.enumerated() where size != 1 {
            let reduced = kept[axis] == 1
            if runIsReduced.last == reduced { runs[runs.count - 1] *= size } else {
                runs.append(size); runIsReduced.append(reduced)
            }
        }
        let x = source.contiguousData()
        guard x.count > 0, let innerReduced = runIsReduced.lastIndex(of: true) else {
            if x.count > 0 {
                x.withDataPointer { px in out.withDataPointer { po in for i in 0..<out.count { po[i] = Float(Double(px[i]) * repeats) } } }
            }
            return out
        }
        // Blocks of `rows x columns` contiguous elements (columns == 1: rows summed whole),
        // visited by an odometer over the outer runs.
        let rows = runs[innerReduced], columns = innerReduced == runs.count - 1 ? 1 : runs[runs.count - 1]
        let outer = Array(runs[..<innerReduced])
        var inStrides = [Int](repeating: 0, count: outer.count), outStrides = inStrides
        var inStride = rows * columns, outStride = columns
        for run in stride(from: outer.count - 1, through: 0, by: -1) {
            inStrides[run] = inStride; inStride *= outer[run]
            if !runIsReduced[run] { outStrides[run] = outStride; outStride *= outer[run] }
        }
        var sums = [Double](repeating: 0, count: out.count)
        let region = KernelProfile.begin()
        defer { KernelProfile.end(region, .elementwise) }
        x.withDataPointer { px in sums.withUnsafeMutableBufferPointer { ps in
            let sum = ps.baseAddress!
            var index = [Int](repeating: 0, count: outer.count)
            var inOffset = 0, outOffset = 0
            while true {
                if columns == 1 {
                    sum[outOffset] += Double(Kernels.sum(px + inOffset, count: rows))
                } else {
                    Kernels.addColumnSums(px + inOffset, rows: rows, columns: columns, rowStride: columns, into: sum + outOffset)
                }
                var run = outer.count - 1
                while run >= 0 {
                    index[run] += 1; inOffset += inStrides[run]; outOffset += outStrides[run]
                    if index[run] < outer[run] { break }
                    inOffset -= inStrides[run] * outer[run]; outOffset -= outStrides[run] * outer[run]
                    index[run] = 0
                    run -= 1
                }
                if run < 0 { break }
            }
        }}
        out.withDataPointer { po in for i in 0..<out.count { po[i] = Float(sums[i] * repeats) } }
        return out
    }
}
