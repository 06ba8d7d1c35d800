// Vectorized reductions: sum, dot, sum of squares, max.
//
// Accuracy scheme for the sums: the input is cut into blocks of `reductionBlock` (2048)
// elements. Inside a block, four SIMD16 accumulators (64 independent Float partial sums of
// at most 32 terms each) are combined as a balanced tree into one Float; the per-block
// results are then accumulated in Double. The error therefore grows like ~(32 + 6) ulp of
// the block magnitudes rather than with `count`, at Float SIMD speed.

/// One reduction's per-element contribution, added into a vector accumulator. Concrete
/// conformers are small structs of pointers (generic specialization, no closures).
protocol VectorSumTerm {
    /// acc + contribution of the 16 elements at offset `i`.
    func adding(to acc: VectorMath.V, at i: Int) -> VectorMath.V
    /// acc + contribution of the `n < 16` elements at offset `i` (other lanes add 0).
    func addingPartial(to acc: VectorMath.V, at i: Int, count n: Int) -> VectorMath.V
}

extension VectorMath {
    /// Elements per Float block before the partial sum is folded into a Double.
    static let reductionBlock = 2048
    /// Rows per Float partial of a column sum: as many terms as one accumulator lane of
    /// ``blockedSum(_:_:)`` takes per block.
    static let columnBlockRows = 32
    /// Columns of one pass of a column sum: a 4 KB partial-sum row.
    static let columnChunk = 1024

    /// Sums `term` over `count` elements: four accumulators per block, Double across blocks.
    @inline(__always)
    static func blockedSum<T: VectorSumTerm>(_ count: Int, _ term: T) -> Float {
        Float(blockedTotal(count, term))
    }

    /// ``blockedSum(_:_:)`` before the final rounding to Float, for callers that add up several.
    @inline(__always)
    static func blockedTotal<T: VectorSumTerm>(_ count: Int, _ term: T) -> Double {
        var total: Double = 0
        var start = 0
        while start < count {
            let end = Swift.min(start &+ reductionBlock, count)
            var a0 = V(), a1 = V(), a2 = V(), a3 = V()
            var i = start
            while i &+ 64 <= end {
                a0 = term.adding(to: a0, at: i)
                a1 = term.adding(to: a1, at: i &+ 16)
                a2 = term.adding(to: a2, at: i &+ 32)
                a3 = term.adding(to: a3, at: i &+ 48)
                i &+= 64
            }
            while i &+ 16 <= end {
                a0 = term.adding(to: a0, at: i)
                i &+= 16
            }
            if i < end { a1 = term.addingPartial(to: a1, at: i, count: end &- i) }
            total += Double(horizontalSum((a0 + a1) + (a2 + a3)))
            start = end
        }
        return total
    }

    /// Σ x
    struct SumTerm: VectorSumTerm {
        let x: UnsafePointer<Float>
        @inline(__always) func adding(to acc: V, at i: Int) -> V { acc + load(x + i) }
        @inline(__always) func addingPartial(to acc: V, at i: Int, count n: Int) -> V { acc + loadPartial(x + i, n) }
    }

    /// Σ a b
    struct DotTerm: VectorSumTerm {
        let a: UnsafePointer<Float>, b: UnsafePointer<Float>
        @inline(__always) func adding(to acc: V, at i: Int) -> V { fma(load(a + i), load(b + i), acc) }
        @inline(__always) func addingPartial(to acc: V, at i: Int, count n: Int) -> V {
            fma(loadPartial(a + i, n), loadPartial(b + i, n), acc)
        }
    }

    /// Σ ((x - shift) * scale)²; with shift = mean, scale = 1 this is the variance numerator.
    struct SquaredDeviationTerm: VectorSumTerm {
        let x: UnsafePointer<Float>, shift: Float, scale: Float
        @inline(__always) func adding(to acc: V, at i: Int) -> V {
            let d = (load(x + i, as: V.self) - shift) * scale
            return fma(d, d, acc)
        }
        @inline(__always) func addingPartial(to acc: V, at i: Int, count n: Int) -> V {
            let d = (loadPartial(x + i, n, pad: shift) - shift) * scale     // padding contributes 0
            return fma(d, d, acc)
        }
    }

    /// Σ g ((x - shift) * scale), i.e. Σ g·xhat for the layer-norm backward.
    struct GradXhatTerm: VectorSumTerm {
        let g: UnsafePointer<Float>, x: UnsafePointer<Float>, shift: Float, scale: Float
        @inline(__always) func adding(to acc: V, at i: Int) -> V {
            fma(load(g + i), (load(x + i) - shift) * scale, acc)
        }
        @inline(__always) func addingPartial(to acc: V, at i: Int, count n: Int) -> V {
            fma(loadPartial(g + i, n), (loadPartial(x + i, n) - shift) * scale, acc)
        }
    }
}

extension Kernels {
    /// Sum of `x[0..<count]` (Float SIMD blocks combined in Double; 0 for `count == 0`).
    public static func sum(_ x: UnsafePointer<Float>, count: Int) -> Float {
        VectorMath.blockedSum(count, VectorMath.SumTerm(x: x))
    }

    /// Dot product of `a` and `b` (same accumulation scheme as ``sum(_:count:)``).
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        VectorMath.blockedSum(count, VectorMath.DotTerm(a: a, b: b))
    }

    /// Sum of `x[i]²` (same accumulation scheme as ``sum(_:count:)``).
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Float {
        VectorMath.blockedSum(count, VectorMath.SquaredDeviationTerm(x: x, shift: 0, scale: 1))
    }

    /// Adds the column sums of the `rows x columns` matrix at `x` (rows `rowStride` apart) into
    /// `sums[0..<columns]`, with the accuracy scheme of ``sum(_:count:)``: per column, Float partial
    /// sums of at most ``VectorMath/columnBlockRows`` terms, accumulated in Double. Reduces bias and
    /// broadcast gradients over their rows.
    ///
    /// The rows are read in memory order, up to ``VectorMath/columnChunk`` columns at a time, into
    /// a partial-sum row that stays in L1; walking down each column instead would touch a new page
    /// per row.
    static func addColumnSums(_ x: UnsafePointer<Float>, rows: Int, columns: Int, rowStride: Int,
                              into sums: UnsafeMutablePointer<Double>) {
        guard rows > 0 && columns > 0 else { return }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: Swift.min(columns, VectorMath.columnChunk)) { buffer in
            let partial = buffer.baseAddress!
            var c = 0
            while c < columns {
                let width = Swift.min(VectorMath.columnChunk, columns &- c)
                var r = 0
                while r < rows {
                    let end = Swift.min(r &+ VectorMath.columnBlockRows, rows)
                    partial.update(from: x + (r &* rowStride &+ c), count: width)
                    var i = r &+ 1
                    while i < end {
                        let row = x + (i &* rowStride &+ c)
                        var j = 0
                        while j &+ 16 <= width {
                            VectorMath.store(VectorMath.load(partial + j, as: VectorMath.V.self) + VectorMath.load(row + j, as: VectorMath.V.self), partial + j)
                            j &+= 16
                        }
                        while j < width { partial[j] += row[j]; j &+= 1 }
                        i &+= 1
                    }
                    let total = sums + c
                    for j in 0..<width { total[j] += Double(partial[j]) }
                    r = end
                }
                c &+= width
            }
        }
    }

    /// Maximum of `x[0..<count]`; NaN if any element is NaN, `-infinity` for `count == 0`.
    public static func maxValue(_ x: UnsafePointer<Float>, count: Int) -> Float {
        typealias V = VectorMath.V
        typealias VU = VectorMath.VU
        // Lane-wise max (a NaN in `v` is skipped here) plus a separate sticky NaN mask per
        // accumulator; keeping the masks separate lets LLVM emit one vcmpunordps + vorps each.
        @inline(__always) func fold(_ m: V, _ v: V) -> V { m.replacing(with: v, where: v .> m) }
        @inline(__always) func nanBits(_ v: V) -> VU { VectorMath.maskBits(v .!= v) }
        var m0 = V(repeating: -.infinity), m1 = m0
        var n0 = VU(), n1 = VU()
        var i = 0
        while i &+ 32 <= count {
            let v0 = VectorMath.load(x + i, as: V.self), v1 = VectorMath.load(x + (i &+ 16), as: V.self)
            m0 = fold(m0, v0); m1 = fold(m1, v1)
            n0 |= nanBits(v0); n1 |= nanBits(v1)
            i &+= 32
        }
        if i &+ 16 <= count {
            let v = VectorMath.load(x + i, as: V.self)
            m0 = fold(m0, v)
            n0 |= nanBits(v)
            i &+= 16
        }
        if i < count {
            let v = VectorMath.loadPartial(x + i, count &- i, pad: -.infinity)
            m1 = fold(m1, v)
            n1 |= nanBits(v)
        }
        if n0 | n1 != VU() { return .nan }
        let m = fold(m0, m1)
        let h8 = m.lowHalf.replacing(with: m.highHalf, where: m.highHalf .> m.lowHalf)
        let h4 = h8.lowHalf.replacing(with: h8.highHalf, where: h8.highHalf .> h8.lowHalf)
        let h2 = h4.lowHalf.replacing(with: h4.highHalf, where: h4.highHalf .> h4.lowHalf)
        return Swift.max(h2[0], h2[1])
    }
}
