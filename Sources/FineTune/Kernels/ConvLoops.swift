// Row loops shared by the convolution kernels (Im2col.swift, Conv2d*.swift).

/// Short row loops (copy, fill, add, axpy, dot) in 8-lane vectors with scalar tails. Rows of
/// images are often only a few dozen floats, where a library call costs more than the work.
enum ConvLoops {
    typealias V = SIMD8<Float>

    @inline(__always)
    static func zero(_ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        if n <= 0 { return }
        if n > 64 { dst.update(repeating: 0, count: n); return }
        var i = 0
        while i &+ 8 <= n {
            VectorMath.store(V(), dst + i)
            i &+= 8
        }
        // The last 0-7 floats as 4 + 2 + 1 straight-line stores: a scalar loop here becomes a
        // libc memset call per row, which costs more than the work for the 1-2 float padding
        // edges of im2col rows.
        let rest = n &- i, p = UnsafeMutableRawPointer(dst + i)
        if rest & 4 != 0 { p.storeBytes(of: SIMD4<Float>(), as: SIMD4<Float>.self) }
        if rest & 2 != 0 { p.storeBytes(of: SIMD2<Float>(), toByteOffset: (rest & 4) &* 4, as: SIMD2<Float>.self) }
        if rest & 1 != 0 { p.storeBytes(of: Float(0), toByteOffset: (rest & 6) &* 4, as: Float.self) }
    }

    /// Whether every one of the `n` floats at `p` is finite (no NaN, no infinity).
    static func allFinite(_ p: UnsafePointer<Float>, _ n: Int) -> Bool {
        typealias W = SIMD16<Float>
        // x - x is 0 for a finite x and NaN otherwise; the sums stay 0 exactly when all are finite.
        var a = W(), b = W(), i = 0
        while i &+ 32 <= n {
            let x = VectorMath.load(p + i, as: W.self), y = VectorMath.load(p + (i &+ 16), as: W.self)
            a += x - x; b += y - y
            i &+= 32
        }
        var tail: Float = 0
        while i < n { tail += p[i] - p[i]; i &+= 1 }
        return (a + b).sum() + tail == 0
    }

    @inline(__always)
    static func copy(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
        if n > 256 { dst.update(from: src, count: n); return }
        var i = 0
        while i &+ 8 <= n {
            let v = VectorMath.load(src + i, as: V.self)
            VectorMath.store(v, dst + i)
            i &+= 8
        }
        // The tail as straight-line 4 + 2 + 1 moves (a scalar loop becomes a memmove call).
        let rest = n &- i, from = UnsafeRawPointer(src + i), to = UnsafeMutableRawPointer(dst + i)
        if rest & 4 != 0 { to.storeBytes(of: from.loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self) }
        if rest & 2 != 0 {
            let at = (rest & 4) &* 4
            to.storeBytes(of: from.loadUnaligned(fromByteOffset: at, as: SIMD2<Float>.self), toByteOffset: at, as: SIMD2<Float>.self)
        }
        if rest & 1 != 0 {
            let at = (rest & 6) &* 4
            to.storeBytes(of: from.loadUnaligned(fromByteOffset: at, as: Float.self), toByteOffset: at, as: Float.self)
        }
    }

    /// `dst[i] = src[i] + value` for `i < n`.
    @inline(__always)
    static func copyAdding(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ value: Float, _ n: Int) {
        let b = V(repeating: value)
        var i = 0
        while i &+ 8 <= n {
            let v = VectorMath.load(src + i, as: V.self)
            VectorMath.store(v + b, dst + i)
            i &+= 8
        }
        while i < n { dst[i] = src[i] + value; i &+= 1 }
    }

    @inline(__always)
    static func fill(_ dst: UnsafeMutablePointer<Float>, _ value: Float, _ n: Int) {
        let v = V(repeating: value)
        var i = 0
        while i &+ 8 <= n {
            VectorMath.store(v, dst + i)
            i &+= 8
        }
        while i < n { dst[i] = value; i &+= 1 }
    }

    /// `y[i] += a * x[i]` for `i < n`.
    @inline(__always)
    static func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        let av = V(repeating: a)
        var i = 0
        while i &+ 8 <= n {
            let xv = VectorMath.load(x + i, as: V.self)
            let yv = VectorMath.load(y + i, as: V.self)
            VectorMath.store(GEMMSIMD.multiplyAdd(av, xv, yv), y + i)
            i &+= 8
        }
        while i < n { y[i] += a * x[i]; i &+= 1 }
    }

    /// `y[i] += a * x[i * stride]` for `i < n`.
    @inline(__always)
    static func axpy(_ a: Float, _ x: UnsafePointer<Float>, stride: Int, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0, j = 0
        while i < n { y[i] += a * x[j]; i &+= 1; j &+= stride }
    }

    /// `sum(x[i] * y[i * stride])` for `i < n`, in a fixed order (8 lanes, then the tail).
    @inline(__always)
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, stride: Int, _ n: Int) -> Float {
        var i = 0
        var sum: Float = 0
        if stride == 1 {
            var acc = V()
            while i &+ 8 <= n {
                let xv = VectorMath.load(x + i, as: V.self)
                let yv = VectorMath.load(y + i, as: V.self)
                acc = GEMMSIMD.multiplyAdd(xv, yv, acc)
                i &+= 8
            }
            sum = acc.sum()
        }
        var j = i &* stride
        while i < n { sum += x[i] * y[j]; i &+= 1; j &+= stride }
        return sum
    }

    /// How far ahead (floats) ``transpose`` prefetches its source rows when asked to.
    static let prefetchDistance = 256

    /// `dst[j * ldd + i] = src[i * lds + j]` for `i < rows`, `j < columns`: 8 x 8 blocks through
    /// SIMD registers (the last 1-7 rows too, with partial stores), the last columns element by
    /// element.
    /// With `prefetching`, the source rows' lines ``prefetchDistance`` floats ahead are prefetched
    /// (for sources that come from memory: a convolution's NCHW input).
    /// With `destinationRows`, the blocks run 8 destination rows at a time, each written from
    /// start to end (for a source in cache and a large destination: a channels-last result turned
    /// to NCHW planes). Row blocks first left a line half-written in each of `columns` destination
    /// rows, 8 floats at a time; on the Xeon, turning a 3136 x 128 channels-last plane this way
    /// took 0.46x the time (a C loop of the same blocks).
    static func transpose(rows: Int, columns: Int, _ src: UnsafePointer<Float>, lds: Int,
                          _ dst: UnsafeMutablePointer<Float>, ldd: Int, prefetching: Bool = false,
                          destinationRows: Bool = false) {
        @inline(__always) func block(_ i: Int, _ j: Int) {
            let from = src + (i &* lds &+ j)
            if prefetching && j & 15 == 0 {
                let ahead = from + ConvLoops.prefetchDistance
                Prefetch.toL2(ahead); Prefetch.toL2(ahead + lds); Prefetch.toL2(ahead + 2 &* lds)
                Prefetch.toL2(ahead + 3 &* lds); Prefetch.toL2(ahead + 4 &* lds); Prefetch.toL2(ahead + 5 &* lds)
                Prefetch.toL2(ahead + 6 &* lds); Prefetch.toL2(ahead + 7 &* lds)
            }
            var r0 = VectorMath.load(from, as: V.self), r1 = VectorMath.load(from + lds, as: V.self)
            var r2 = VectorMath.load(from + 2 &* lds, as: V.self), r3 = VectorMath.load(from + 3 &* lds, as: V.self)
            var r4 = VectorMath.load(from + 4 &* lds, as: V.self), r5 = VectorMath.load(from + 5 &* lds, as: V.self)
            var r6 = VectorMath.load(from + 6 &* lds, as: V.self), r7 = VectorMath.load(from + 7 &* lds, as: V.self)
            GEMMSIMD.transpose(&r0, &r1, &r2, &r3, &r4, &r5, &r6, &r7)
            let to = dst + (j &* ldd &+ i)
            VectorMath.store(r0, to); VectorMath.store(r1, to + ldd)
            VectorMath.store(r2, to + 2 &* ldd); VectorMath.store(r3, to + 3 &* ldd)
            VectorMath.store(r4, to + 4 &* ldd); VectorMath.store(r5, to + 5 &* ldd)
            VectorMath.store(r6, to + 6 &* ldd); VectorMath.store(r7, to + 7 &* ldd)
        }
        let fullRows = rows & ~7, fullColumns = columns & ~7
        /// The last 1-7 rows of columns `j..<j + 8`.
        @inline(__always) func partialRows(_ j: Int) {
            GEMMPacking.transposeBlock(rows: rows &- fullRows, src: src + (fullRows &* lds &+ j), ld: lds,
                                       dst: dst + (j &* ldd &+ fullRows), width: ldd)
        }
        if destinationRows {
            var j = 0
            while j < fullColumns {
                var i = 0
                while i < fullRows { block(i, j); i &+= 8 }
                if fullRows < rows { partialRows(j) }
                j &+= 8
            }
        } else {
            var i = 0
            while i < fullRows {
                var j = 0
                while j < fullColumns { block(i, j); j &+= 8 }
                i &+= 8
            }
            var j = 0
            while j < fullColumns && fullRows < rows {
                partialRows(j)
                j &+= 8
            }
        }
        for jj in fullColumns..<columns {
            for ii in 0..<rows { dst[jj &* ldd &+ ii] = src[ii &* lds &+ jj] }
        }
    }

    /// `dst[i] = src[i * stride]` for `i < n`.
    @inline(__always)
    static func gather(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int, stride: Int) {
        var i = 0, j = 0
        if stride == 2 {
            // The even lanes of 16 consecutive floats. While another element follows, the last
            // lane read (2i + 15) lies before the next element read (2i + 16).
            while i &+ 8 < n {
                VectorMath.store(VectorMath.load(src + j, as: SIMD16<Float>.self).evenHalf, dst + i)
                i &+= 8; j &+= 16
            }
        }
        while i < n { dst[i] = src[j]; i &+= 1; j &+= stride }
    }

    /// `dst[i * stride] = src[i]` for `i < n`.
    @inline(__always)
    static func scatter(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int, stride: Int) {
        var i = 0, j = 0
        while i < n { dst[j] = src[i]; i &+= 1; j &+= stride }
    }

    /// `dst[i] += src[i]` for `i < n`.
    @inline(__always)
    static func accumulate(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        while i &+ 8 <= n {
            let a = VectorMath.load(dst + i, as: V.self)
            let b = VectorMath.load(src + i, as: V.self)
            VectorMath.store(a + b, dst + i)
            i &+= 8
        }
        while i < n { dst[i] += src[i]; i &+= 1 }
    }

    /// `dst[i * stride] += src[i]` for `i < n`.
    @inline(__always)
    static func scatterAdd(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int, stride: Int) {
        var i = 0, j = 0
        if stride == 2 {
            // 16 consecutive floats, the even lanes added to and the odd ones stored back as
            // they were (lane 2i + 15 lies before the next element written while one follows):
            // the odd lanes add -0, which leaves every float as it was (-0 + -0 is -0). Not a
            // `replacing(with:where:)` with a lane mask: on AVX2 that mask was built lane by lane
            // through the stack on every call, 90% of col2im's time.
            let z: Float = -0.0
            while i &+ 8 < n {
                let s = VectorMath.load(src + i, as: SIMD8<Float>.self)
                let low = SIMD8<Float>(s[0], z, s[1], z, s[2], z, s[3], z)
                let high = SIMD8<Float>(s[4], z, s[5], z, s[6], z, s[7], z)
                VectorMath.store(VectorMath.load(dst + j, as: SIMD8<Float>.self) + low, dst + j)
                VectorMath.store(VectorMath.load(dst + (j &+ 8), as: SIMD8<Float>.self) + high, dst + (j &+ 8))
                i &+= 8; j &+= 16
            }
        }
        while i < n { dst[j] += src[i]; i &+= 1; j &+= stride }
    }
}
