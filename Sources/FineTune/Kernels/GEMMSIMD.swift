// SIMD building blocks shared by the SGEMM files (loads and stores are VectorMath's): multiply-add
// (fused only where the build target has FMA), a horizontal sum with a fixed order, and an
// 8 x 8 transpose used by the packing routines.
//
// Everything is `@inline(__always)` and generic over the vector type, so after specialisation
// the callers compile to straight-line vector code with no calls.

/// Vector helpers for the GEMM kernels (internal).
enum GEMMSIMD {
    // MARK: Memory

    /// Stores the first `count` (1...8) lanes of `v`. `count` is a constant at every call site,
    /// so the branches fold away.
    @inline(__always)
    static func storePrefix(_ v: SIMD8<Float>, count: Int, _ p: UnsafeMutablePointer<Float>) {
        if count == 8 { VectorMath.store(v, p); return }
        var rest = count, q = p, half = v.lowHalf
        if rest >= 4 { VectorMath.store(half, q); rest -= 4; q += 4; half = v.highHalf }
        if rest >= 2 { VectorMath.store(half.lowHalf, q); rest -= 2; q += 2; half.lowHalf = half.highHalf }
        if rest == 1 { q.pointee = half[0] }
    }

    /// Copies `count` (0...7) floats. `count` is a constant at every call site.
    @inline(__always)
    static func copyPrefix(count: Int, from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>) {
        var rest = count, s = src, d = dst
        if rest >= 4 { VectorMath.store(VectorMath.load(s, as: SIMD4<Float>.self), d); rest -= 4; s += 4; d += 4 }
        if rest >= 2 { VectorMath.store(VectorMath.load(s, as: SIMD2<Float>.self), d); rest -= 2; s += 2; d += 2 }
        if rest == 1 { d.pointee = s.pointee }
    }

    // MARK: Arithmetic

    /// `acc + a * b`: one fused multiply-add per lane where the target has FMA (host-CPU x86
    /// builds, arm64). For baseline x86-64, LLVM would lower a vector FMA to one libm `fmaf`
    /// call per lane, so there it is a separate multiply and add.
    @inline(__always)
    static func multiplyAdd<V: SIMD>(_ a: V, _ b: V, _ acc: V) -> V where V.Scalar == Float {
        #if FINETUNE_NATIVE || arch(arm64)
        return acc.addingProduct(a, b)
        #else
        return acc + a * b
        #endif
    }

    /// The scalar `acc + a * b` with the same rounding as a lane of the vector one, for loop
    /// tails whose elements must round as the vector body's would (wherever a call splits its rows).
    @inline(__always)
    static func multiplyAdd(_ a: Float, _ b: Float, _ acc: Float) -> Float {
        #if FINETUNE_NATIVE || arch(arm64)
        return acc.addingProduct(a, b)
        #else
        return acc + a * b
        #endif
    }

    /// `c = alpha * acc + beta * c` on `acc.scalarCount` floats at `c`; with `beta == 0`, `c` is
    /// only written. Rounds exactly like the scalar `GEMMSIMD.combine`.
    @inline(__always)
    static func update<V: SIMD>(_ acc: V, _ c: UnsafeMutablePointer<Float>, alpha: Float, beta: Float)
    where V.Scalar == Float {
        if beta == 0 {
            VectorMath.store(acc * alpha, c)
        } else {
            VectorMath.store(acc * alpha + VectorMath.load(c, as: V.self) * beta, c)
        }
    }

    /// Scalar form of `update`: `alpha * t + beta * c`, or `alpha * t` when `beta == 0`.
    @inline(__always)
    static func combine(_ t: Float, _ c: Float, alpha: Float, beta: Float) -> Float {
        beta == 0 ? alpha * t : alpha * t + beta * c
    }

    /// Sum of the 16 lanes as a fixed pairwise tree (the same result on every target).
    @inline(__always)
    static func sum(_ v: SIMD16<Float>) -> Float {
        let v8 = v.lowHalf + v.highHalf
        let v4 = v8.lowHalf + v8.highHalf
        let v2 = v4.lowHalf + v4.highHalf
        return v2[0] + v2[1]
    }

    // MARK: Transpose

    /// Transposes the 8 x 8 block whose rows are `r`: on return `r[t][i]` is the old `r[i][t]`.
    ///
    /// Written as the classic unpack / shuffle / 128-bit-permute sequence (24 shuffles), which
    /// LLVM maps to `vunpcklps`, `vshufps` and `vperm2f128` on AVX.
    @inline(__always)
    static func transpose(
        _ r0: inout SIMD8<Float>, _ r1: inout SIMD8<Float>, _ r2: inout SIMD8<Float>, _ r3: inout SIMD8<Float>,
        _ r4: inout SIMD8<Float>, _ r5: inout SIMD8<Float>, _ r6: inout SIMD8<Float>, _ r7: inout SIMD8<Float>
    ) {
        // Interleave pairs of rows within each 128-bit half.
        @inline(__always) func unpackLow(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
            SIMD8(a[0], b[0], a[1], b[1], a[4], b[4], a[5], b[5])
        }
        @inline(__always) func unpackHigh(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
            SIMD8(a[2], b[2], a[3], b[3], a[6], b[6], a[7], b[7])
        }
        // Pick 64-bit pairs (low pair / high pair of each 128-bit half) from two vectors.
        @inline(__always) func pairsLow(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
            SIMD8(a[0], a[1], b[0], b[1], a[4], a[5], b[4], b[5])
        }
        @inline(__always) func pairsHigh(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
            SIMD8(a[2], a[3], b[2], b[3], a[6], a[7], b[6], b[7])
        }
        let t0 = unpackLow(r0, r1), t1 = unpackHigh(r0, r1)
        let t2 = unpackLow(r2, r3), t3 = unpackHigh(r2, r3)
        let t4 = unpackLow(r4, r5), t5 = unpackHigh(r4, r5)
        let t6 = unpackLow(r6, r7), t7 = unpackHigh(r6, r7)
        let s0 = pairsLow(t0, t2), s1 = pairsHigh(t0, t2)
        let s2 = pairsLow(t1, t3), s3 = pairsHigh(t1, t3)
        let s4 = pairsLow(t4, t6), s5 = pairsHigh(t4, t6)
        let s6 = pairsLow(t5, t7), s7 = pairsHigh(t5, t7)
        // Join the 128-bit halves: rows 0-3 come from s0...s3, rows 4-7 from s4...s7.
        r0 = SIMD8(lowHalf: s0.lowHalf, highHalf: s4.lowHalf)
        r1 = SIMD8(lowHalf: s1.lowHalf, highHalf: s5.lowHalf)
        r2 = SIMD8(lowHalf: s2.lowHalf, highHalf: s6.lowHalf)
        r3 = SIMD8(lowHalf: s3.lowHalf, highHalf: s7.lowHalf)
        r4 = SIMD8(lowHalf: s0.highHalf, highHalf: s4.highHalf)
        r5 = SIMD8(lowHalf: s1.highHalf, highHalf: s5.highHalf)
        r6 = SIMD8(lowHalf: s2.highHalf, highHalf: s6.highHalf)
        r7 = SIMD8(lowHalf: s3.highHalf, highHalf: s7.highHalf)
    }
}
