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

    /// `out[i] = F(a[i], b[i])` with NumPy broadcasting; returns a new contiguous tensor.
    /// Contiguous rows (and rows against a broadcast scalar) run on explicit SIMD vectors.
    static func binary<F: BinaryFunction>(_ a: Tensor, _ b: Tensor, op: String, _: F.Type) -> Tensor {
        let shape = a.shape == b.shape ? a.shape : Shape.broadcastOrFail(a.shape, b.shape, op: op)
        let out = Tensor(uninitialized: shape)
        if a.shape == b.shape && a.isContiguous && b.isContiguous {
            // Same layout: one flat row, split across threads when large.
            a.withDataPointer { pa in b.withDataPointer { pb in out.withDataPointer { po in
                Kernels.parallelChunks(out.count) { start, end in
                    row(F.self, pa + start, pb + start, po + start, end - start, 1, 1)
                }
            }}}
            return out
        }
        let sa = strides(of: a, broadcastTo: shape), sb = strides(of: b, broadcastTo: shape)
        a.withDataPointer { pa in b.withDataPointer { pb in out.withDataPointer { po in
            forEachRow(shape: shape, stridesA: sa, stridesB: sb) { oa, ob, oo, n, ia, ib in
                row(F.self, pa + oa, pb + ob, po + oo, n, ia, ib)
            }
        }}}
        return out
    }

    /// `z[i] = F(x[i * ia], y[i * ib])` for `i < n`, vectorised when both steps are 0 or 1.
    @inline(__always)
    private static func row<F: BinaryFunction>(_: F.Type, _ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                               _ z: UnsafeMutablePointer<Float>, _ n: Int, _ ia: Int, _ ib: Int) {
        var i = 0
        if ia == 1 && ib == 1 {
            while i &+ 16 <= n {
                SIMDMemory.store(F.apply(SIMDMemory.load(x + i), SIMDMemory.load(y + i)), z + i)
                i &+= 16
            }
            while i < n { z[i] = F.apply(x[i], y[i]); i &+= 1 }
        } else if ia == 1 && ib == 0 {
            let s = y[0], v = SIMD16<Float>(repeating: s)
            while i &+ 16 <= n { SIMDMemory.store(F.apply(SIMDMemory.load(x + i), v), z + i); i &+= 16 }
            while i < n { z[i] = F.apply(x[i], s); i &+= 1 }
        } else if ia == 0 && ib == 1 {
            let s = x[0], v = SIMD16<Float>(repeating: s)
            while i &+ 16 <= n { SIMDMemory.store(F.apply(v, SIMDMemory.load(y + i)), z + i); i &+= 16 }
            while i < n { z[i] = F.apply(s, y[i]); i &+= 1 }
        } else {
            while i < n { z[i] = F.apply(x[i &* ia], y[i &* ib]); i &+= 1 }
        }
    }

    /// `out[i] = f(a[i], b[i])` with NumPy broadcasting, for the less common pointwise functions.
    @inline(__always)
    static func binary(_ a: Tensor, _ b: Tensor, op: String, _ f: (Float, Float) -> Float) -> Tensor {
        let shape = a.shape == b.shape ? a.shape : Shape.broadcastOrFail(a.shape, b.shape, op: op)
        let out = Tensor(uninitialized: shape)
        let sa = strides(of: a, broadcastTo: shape), sb = strides(of: b, broadcastTo: shape)
        a.withDataPointer { pa in b.withDataPointer { pb in out.withDataPointer { po in
            forEachRow(shape: shape, stridesA: sa, stridesB: sb) { oa, ob, oo, n, ia, ib in
                let x = pa + oa, y = pb + ob, z = po + oo
                for i in 0..<n { z[i] = f(x[i &* ia], y[i &* ib]) }
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
            for i in 0..<out.count { z[i] = f(x[i]) }
        }}
        return out
    }
}

/// A pointwise binary function with a scalar and a 16-lane form (the same arithmetic), so
/// `Broadcasting.binary` can specialise its loops on it.
protocol BinaryFunction {
    static func apply(_ a: Float, _ b: Float) -> Float
    static func apply(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float>
}

enum AddFunction: BinaryFunction {
    @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a + b }
    @inline(__always) static func apply(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> { a + b }
}

enum SubtractFunction: BinaryFunction {
    @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a - b }
    @inline(__always) static func apply(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> { a - b }
}

enum MultiplyFunction: BinaryFunction {
    @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a * b }
    @inline(__always) static func apply(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> { a * b }
}

enum DivideFunction: BinaryFunction {
    @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a / b }
    @inline(__always) static func apply(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> { a / b }
}

/// Unaligned 16-lane loads and stores.
enum SIMDMemory {
    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }

    @inline(__always)
    static func load(_ p: UnsafeMutablePointer<Float>) -> SIMD16<Float> { load(UnsafePointer(p)) }

    @inline(__always)
    static func store(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
    }
}
