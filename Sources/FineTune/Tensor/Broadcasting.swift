/// Loops of elementwise and reducing ops over broadcast, possibly strided operands.
///
/// The output is contiguous; each operand has strides aligned to the output's rank, with 0 on
/// broadcast axes. Adjacent axes that are contiguous in every operand are merged, so same-shape
/// contiguous inputs become one long row that the compiler vectorises.
enum Broadcasting {
    /// Strides of `tensor` viewed at `shape` (which it broadcasts to): 0 on broadcast axes.
    static func strides(of tensor: Tensor, broadcastTo shape: [Int]) -> [Int] {
        let lead = shape.count - tensor.rank
        var result = [Int](repeating: 0, count: shape.count)
        for axis in 0..<tensor.rank where tensor.shape[axis] != 1 {
            result[lead + axis] = tensor.strides[axis]
        }
        return result
    }

    /// Merges adjacent axes that every operand traverses contiguously.
    static func coalesce(shape: [Int], strides: [[Int]]) -> (shape: [Int], strides: [[Int]]) {
        guard shape.count > 1 else { return (shape.isEmpty ? [1] : shape, strides.map { $0.isEmpty ? [0] : $0 }) }
        var outShape = [shape[shape.count - 1]]
        var outStrides = strides.map { [$0[shape.count - 1]] }
        for axis in stride(from: shape.count - 2, through: 0, by: -1) {
            let size = shape[axis]
            let mergeable = strides.indices.allSatisfy { k in
                strides[k][axis] == outStrides[k][0] * outShape[0]
            }
            if mergeable {
                outShape[0] *= size
            } else {
                outShape.insert(size, at: 0)
                for k in strides.indices { outStrides[k].insert(strides[k][axis], at: 0) }
            }
        }
        return (outShape, outStrides)
    }

    /// Calls `row(offsetA, offsetB, offsetOut, length, innerStrideA, innerStrideB)` for every
    /// row of the last (coalesced) axis of a contiguous output of `shape`.
    @inline(__always)
    static func forEachRow(shape: [Int], stridesA: [Int], stridesB: [Int],
                           _ row: (Int, Int, Int, Int, Int, Int) -> Void) {
        let total = Shape.count(shape)
        if total == 0 { return }
        let outStrides = Shape.contiguousStrides(shape)
        let merged = coalesce(shape: shape, strides: [stridesA, stridesB, outStrides])
        let dims = merged.shape, sa = merged.strides[0], sb = merged.strides[1]
        let rank = dims.count, inner = dims[rank - 1]
        let innerA = sa[rank - 1], innerB = sb[rank - 1]
        var index = [Int](repeating: 0, count: rank)
        var offA = 0, offB = 0, offOut = 0
        while offOut < total {
            row(offA, offB, offOut, inner, innerA, innerB)
            offOut += inner
            var axis = rank - 2
            while axis >= 0 {
                index[axis] += 1
                offA += sa[axis]; offB += sb[axis]
                if index[axis] < dims[axis] { break }
                offA -= sa[axis] * dims[axis]; offB -= sb[axis] * dims[axis]
                index[axis] = 0
                axis -= 1
            }
        }
    }

    /// `out[i] = Op(a[i], b[i])` with NumPy broadcasting; returns a new contiguous tensor.
    /// Contiguous rows (and rows against a broadcast scalar) run on the SIMD lane loops of
    /// `VectorMath` with the same lane op (`AddOp`, `SubtractOp`, `MultiplyOp`, `DivideOp`).
    static func binary<Op: LaneOp2>(_ a: Tensor, _ b: Tensor, op name: String, _ op: Op) -> Tensor {
        let shape = a.shape == b.shape ? a.shape : Shape.broadcastOrFail(a.shape, b.shape, op: name)
        let out = Tensor(uninitialized: shape)
        if a.shape == b.shape && a.isContiguous && b.isContiguous {
            // Same layout: one flat row, split across threads when large.
            a.withDataPointer { pa in b.withDataPointer { pb in out.withDataPointer { po in
                Kernels.parallelChunks(out.count) { start, end in
                    VectorMath.lanes2(pa + start, pb + start, po + start, end - start, op)
                }
            }}}
            return out
        }
        let sa = strides(of: a, broadcastTo: shape), sb = strides(of: b, broadcastTo: shape)
        a.withDataPointer { pa in b.withDataPointer { pb in out.withDataPointer { po in
            KernelProfile.measure(.elementwise) {
                forEachRow(shape: shape, stridesA: sa, stridesB: sb) { oa, ob, oo, n, ia, ib in
                    row(op, pa + oa, pb + ob, po + oo, n, ia, ib)
                }
            }
        }}}
        return out
    }

    /// `z[i] = Op(x[i * ia], y[i * ib])` for `i < n`, on SIMD lanes when both steps are 0 or 1.
    @inline(__always)
    private static func row<Op: LaneOp2>(_ op: Op, _ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                         _ z: UnsafeMutablePointer<Float>, _ n: Int, _ ia: Int, _ ib: Int) {
        if ia == 1 && ib == 1 {
            VectorMath.lanes2(x, y, z, n, op)
        } else if ia == 1 && ib == 0 {
            VectorMath.lanes2(x, scalar: y[0], z, n, op)
        } else if ia == 0 && ib == 1 {
            VectorMath.lanes2(scalar: x[0], y, z, n, op)
        } else {
            var i = 0
            while i < n { z[i] = op.scalar(x[i &* ia], y[i &* ib]); i &+= 1 }
        }
    }

    /// `out[i] = f(a[i], b[i])` with NumPy broadcasting, for the less common pointwise functions.
    @inline(__always)
    static func binary(_ a: Tensor, _ b: Tensor, op: String, _ f: (Float, Float) -> Float) -> Tensor {
        let shape = a.shape == b.shape ? a.shape : Shape.broadcastOrFail(a.shape, b.shape, op: op)
        let out = Tensor(uninitialized: shape)
        let sa = strides(of: a, broadcastTo: shape), sb = strides(of: b, broadcastTo: shape)
        a.withDataPointer { pa in b.withDataPointer { pb in out.withDataPointer { po in
            KernelProfile.measure(.elementwise) {
                forEachRow(shape: shape, stridesA: sa, stridesB: sb) { oa, ob, oo, n, ia, ib in
                    let x = pa + oa, y = pb + ob, z = po + oo
                    for i in 0..<n { z[i] = f(x[i &* ia], y[i &* ib]) }
                }
            }
        }}}
        return out
    }

    /// `out[i] = f(a[i])` over any layout; returns a new contiguous tensor.
    @inline(__always)
    static func unary(_ a: Tensor, _ f: (Float) -> Float) -> Tensor {
        let src = a.contiguousData()
        let out = Tensor(uninitialized: a.shape)
        src.withDataPointer { x in out.withDataPointer { z in
            KernelProfile.measure(.elementwise) {
                for i in 0..<out.count { z[i] = f(x[i]) }
            }
        }}
        return out
    }
}
