// Packing for the blocked SGEMM: copies a block of op(A) or op(B) into the contiguous
// micro-panel layout that the micro-kernel streams through (GEMMMicroKernel.swift).
//
// Both operands are packed by the same routine. A block is `extent x depth`: `extent` runs
// over the rows of op(A) (panel width MR) or the columns of op(B) (panel width NR), `depth`
// over k. Panel `q` holds extent indices `q*W ..< q*W + W`, element `(x, p)` at `p * W + x`,
// so one k-step of a panel is W consecutive floats. The last panel is padded with zeros.
//
// Transposes are absorbed here, never materialised. Element `(x, p)` of the source is
//   src[p * ld + x]   when the extent index is contiguous (A with transA, B without transB):
//                     each k-step is a straight copy of W floats;
//   src[x * ld + p]   otherwise (A without transA, B with transB): the block is transposed
//                     on the fly, 8 x 8 tiles at a time in SIMD registers.
// Both walk the source so that each cache line is used up as soon as it is loaded (rows with
// a power-of-two stride would otherwise evict each other from L1 before being reused).

/// Packing routines for the blocked SGEMM (internal).
enum GEMMPacking {
    /// Packs rows `0..<mc`, depth `0..<kc` of op(A) into MR-row micro-panels at `dst`.
    /// `a` points at op(A)'s element (0, 0) of the block.
    /// With `panelDepth`, packs the depth steps `0..<kc` of panels that are `panelDepth` steps
    /// deep (a run of a deeper block, `dst` at its first step).
    static func packA<Kernel: GEMMMicroKernel>(
        _: Kernel.Type, mc: Int, kc: Int, panelDepth: Int? = nil, a: UnsafePointer<Float>, lda: Int, transA: Bool,
        into dst: UnsafeMutablePointer<Float>
    ) {
        packPanels(width: Kernel.mr, extent: mc, depth: kc, panelDepth: panelDepth ?? kc, src: a, ld: lda,
                   extentContiguous: transA, dst: dst)
    }

    /// Packs depth `0..<kc`, columns `0..<nc` of op(B) into NR-column micro-panels at `dst`.
    /// `b` points at op(B)'s element (0, 0) of the block.
    /// `panelDepth` as in ``packA(_:mc:kc:panelDepth:a:lda:transA:into:)``.
    static func packB<Kernel: GEMMMicroKernel>(
        _: Kernel.Type, kc: Int, nc: Int, panelDepth: Int? = nil, b: UnsafePointer<Float>, ldb: Int, transB: Bool,
        into dst: UnsafeMutablePointer<Float>
    ) {
        packPanels(width: Kernel.nr, extent: nc, depth: kc, panelDepth: panelDepth ?? kc, src: b, ld: ldb,
                   extentContiguous: !transB, dst: dst)
    }

    /// Packs an `extent x depth` block into panels of `width` (see the file comment), each
    /// `panelDepth` steps deep (`depth` of them filled). `width` is a compile-time constant
    /// after inlining into `packA`/`packB`.
    @inline(__always)
    static func packPanels(
        width: Int, extent: Int, depth: Int, panelDepth: Int, src: UnsafePointer<Float>, ld: Int, extentContiguous: Bool,
        dst: UnsafeMutablePointer<Float>
    ) {
        let fullPanels = extent / width
        if extentContiguous {
            // Source rows are depth steps: walk 8 of them at a time across all panels, so each
            // cache line of a row is used up as soon as it is loaded.
            var p = 0
            while p < depth {
                let steps = min(8, depth &- p)
                for q in 0..<fullPanels {
                    copySteps(width: width, steps: steps, src: src + (p &* ld &+ q &* width), ld: ld,
                              dst: dst + (q &* width &* panelDepth &+ p &* width))
                }
                p &+= 8
            }
        } else {
            for q in 0..<fullPanels {
                transposePanel(width: width, depth: depth, src: src + q &* width &* ld, ld: ld,
                               dst: dst + q &* width &* panelDepth)
            }
        }
        let rest = extent - fullPanels &* width
        if rest > 0 {
            let x0 = fullPanels &* width
            edgePanel(width: width, valid: rest, depth: depth,
                      src: extentContiguous ? src + x0 : src + x0 &* ld, ld: ld,
                      extentContiguous: extentContiguous, dst: dst + fullPanels &* width &* panelDepth)
        }
    }

    /// `steps` depth steps of a full panel whose extent index is contiguous in memory: each
    /// step is a copy of `width` floats.
    @inline(__always)
    static func copySteps(width: Int, steps: Int, src: UnsafePointer<Float>, ld: Int,
                          dst: UnsafeMutablePointer<Float>) {
        var s = src, d = dst
        for _ in 0..<steps {
            var x = 0
            while x &+ 8 <= width {
                VectorMath.store(VectorMath.load(s + x, as: SIMD8<Float>.self), d + x)
                x &+= 8
            }
            GEMMSIMD.copyPrefix(count: width &- x, from: s + x, to: d + x)
            s += ld
            d += width
        }
    }

    /// A full panel whose depth index is contiguous in memory (`src[x * ld + p]`): transposed
    /// through 8 x 8 register tiles. Each group of 8 source rows is read 16 depth steps (one
    /// cache line) at a time.
    @inline(__always)
    static func transposePanel(width: Int, depth: Int, src: UnsafePointer<Float>, ld: Int,
                               dst: UnsafeMutablePointer<Float>) {
        var p = 0
        while p &+ 16 <= depth {
            var x = 0
            while x &+ 8 <= width {
                transposeBlock(rows: 8, src: src + (x &* ld &+ p), ld: ld, dst: dst + (p &* width &+ x), width: width)
                transposeBlock(rows: 8, src: src + (x &* ld &+ p &+ 8), ld: ld,
                               dst: dst + ((p &+ 8) &* width &+ x), width: width)
                x &+= 8
            }
            if x < width {
                let rows = width &- x
                transposeBlock(rows: rows, src: src + (x &* ld &+ p), ld: ld, dst: dst + (p &* width &+ x), width: width)
                transposeBlock(rows: rows, src: src + (x &* ld &+ p &+ 8), ld: ld,
                               dst: dst + ((p &+ 8) &* width &+ x), width: width)
            }
            p &+= 16
        }
        // The last depth % 16 steps, one element at a time.
        while p < depth {
            let d = dst + p &* width
            for x in 0..<width { d[x] = src[x &* ld &+ p] }
            p &+= 1
        }
    }

    /// Transposes `rows` (1...8, a constant at each call site) source rows of 8 depth steps
    /// into 8 panel steps: `dst[t * width + i] = src[i * ld + t]`. Missing rows read as zero.
    @inline(__always)
    static func transposeBlock(rows: Int, src: UnsafePointer<Float>, ld: Int,
                               dst: UnsafeMutablePointer<Float>, width: Int) {
        @inline(__always) func row(_ i: Int) -> SIMD8<Float> {
            i < rows ? VectorMath.load(src + i &* ld, as: SIMD8<Float>.self) : SIMD8()
        }
        var r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3)
        var r4 = row(4), r5 = row(5), r6 = row(6), r7 = row(7)
        GEMMSIMD.transpose(&r0, &r1, &r2, &r3, &r4, &r5, &r6, &r7)
        GEMMSIMD.storePrefix(r0, count: rows, dst)
        GEMMSIMD.storePrefix(r1, count: rows, dst + width)
        GEMMSIMD.storePrefix(r2, count: rows, dst + 2 &* width)
        GEMMSIMD.storePrefix(r3, count: rows, dst + 3 &* width)
        GEMMSIMD.storePrefix(r4, count: rows, dst + 4 &* width)
        GEMMSIMD.storePrefix(r5, count: rows, dst + 5 &* width)
        GEMMSIMD.storePrefix(r6, count: rows, dst + 6 &* width)
        GEMMSIMD.storePrefix(r7, count: rows, dst + 7 &* width)
    }

    /// The last, partial panel: `valid < width` extent indices, zero padding for the rest.
    /// `src` points at the panel's first element.
    static func edgePanel(width: Int, valid: Int, depth: Int, src: UnsafePointer<Float>, ld: Int,
                          extentContiguous: Bool, dst: UnsafeMutablePointer<Float>) {
        for p in 0..<depth {
            let d = dst + p &* width
            if extentContiguous {
                let s = src + p &* ld
                for x in 0..<valid { d[x] = s[x] }
            } else {
                for x in 0..<valid { d[x] = src[x &* ld &+ p] }
            }
            for x in valid..<width { d[x] = 0 }
        }
    }
}
