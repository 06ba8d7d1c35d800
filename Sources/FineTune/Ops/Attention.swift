/// A mask for ``Tensor/scaledDotProductAttention(query:key:value:mask:isCausal:dropout:scale:generator:)``,
/// broadcastable to the scores `[..., Hq, L, S]` (`[L, S]`, `[B, 1, 1, S]` for key padding, ...).
///
/// The case names say which convention a tensor follows, because the two PyTorch APIs disagree:
/// `F.scaled_dot_product_attention` treats a boolean `True` as "may attend", while
/// `nn.MultiheadAttention` (and FineTune's ``MultiHeadAttention``) treats `True` as "hidden".
public enum AttentionMask {
    /// Added to the scaled scores: 0 keeps a key, `-inf` hides it, other values bias it (ALiBi,
    /// T5 relative positions). It may require a gradient (a learned bias gets one).
    case additive(Tensor)
    /// Non-zero where the query may attend to the key (PyTorch SDPA's boolean `attn_mask`).
    case allowed(Tensor)
    /// Non-zero where the key is hidden from the query (`nn.MultiheadAttention`'s boolean masks).
    case hidden(Tensor)
}

extension Tensor {
    /// Scaled dot-product attention (PyTorch's `F.scaled_dot_product_attention`):
    /// `softmax(query key^T * scale + mask) value` per batch and head, with the fused kernel of
    /// Kernels/Attention.swift (no `[L, S]` intermediate other than the probabilities kept for
    /// backward).
    ///
    /// - Shapes: `query [..., Hq, L, E]`, `key [..., Hkv, S, E]`, `value [..., Hkv, S, Ev]`
    ///   (the leading axes equal; `[L, E]` without heads works too); the result is `[..., Hq, L, Ev]`.
    /// - Grouped-query attention: with `Hkv < Hq` (a divisor), query head `h` uses key/value head
    ///   `h / (Hq / Hkv)`, PyTorch's `enable_gqa=True` mapping (`repeat_interleave` of the
    ///   key/value heads), inferred from the shapes.
    /// - `isCausal`: query `i` sees keys `0...i` (top-left aligned, as PyTorch). FineTune also
    ///   accepts a mask together with `isCausal` and applies both (PyTorch rejects the pair).
    /// - A query that sees no key at all (every key masked) gets a zero output and zero
    ///   gradients, as in PyTorch 2.5+ (not NaN).
    /// - `dropout` drops attention weights after the softmax (inverted scaling) whenever it is
    ///   positive; pass 0 in evaluation, as with PyTorch's `dropout_p`.
    /// - `scale` defaults to `1 / sqrt(E)`.
    ///
    /// Inputs in the layout of projected activations (`x.reshaped([B, T, H, D]).transposed(1, 2)`)
    /// are read in place, and the result (and the gradients) come back as views of that layout,
    /// so `y.transposed(1, 2).reshaped([B, T, H * D])` is free.
    ///
    /// ```swift
    /// let q = queryProj(x).reshaped([b, t, 8, 64]).transposed(1, 2)     // [B, 8, T, 64]
    /// let k = keyProj(x).reshaped([b, t, 2, 64]).transposed(1, 2)       // [B, 2, T, 64]: 4 query heads per KV head
    /// let v = valueProj(x).reshaped([b, t, 2, 64]).transposed(1, 2)
    /// let y = Tensor.scaledDotProductAttention(query: q, key: k, value: v, isCausal: true)
    /// let merged = y.transposed(1, 2).reshaped([b, t, 512])
    /// ```
    public static func scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, mask: AttentionMask? = nil,
                                                 isCausal: Bool = false, dropout: Float = 0, scale: Float? = nil,
                                                 generator: inout RandomGenerator) -> Tensor {
        precondition(dropout >= 0 && dropout < 1, "scaledDotProductAttention: dropout must be in [0, 1), got \(dropout)")
        if query.rank == 2 {
            // [L, E] without heads: one head.
            return scaledDotProductAttention(query: query.unsqueezed(axis: 0), key: key.unsqueezed(axis: 0),
                                             value: value.unsqueezed(axis: 0), mask: mask, isCausal: isCausal,
                                             dropout: dropout, scale: scale, generator: &generator).squeezed(axis: 0)
        }
        let op = "scaledDotProductAttention"
        let r = query.rank
        Shape.check(r >= 3 && key.rank == r && value.rank == r, op: op, shapes: [query.shape, key.shape, value.shape],
                    "expected query [..., Hq, L, E], key [..., Hkv, S, E] and value [..., Hkv, S, Ev] of one rank")
        let lead = Array(query.shape.prefix(r - 3))
        let (hq, l, e) = (query.shape[r - 3], query.shape[r - 2], query.shape[r - 1])
        let (hkv, s) = (key.shape[r - 3], key.shape[r - 2]), ev = value.shape[r - 1]
        Shape.check(Array(key.shape.prefix(r - 3)) == lead && Array(value.shape.prefix(r - 3)) == lead, op: op,
                    shapes: [query.shape, key.shape, value.shape], "the leading (batch) axes must be equal")
        Shape.check(key.shape[r - 1] == e && value.shape[r - 3] == hkv && value.shape[r - 2] == s, op: op,
                    shapes: [query.shape, key.shape, value.shape], "key must be [..., Hkv, S, \(e)] and value [..., Hkv, S, Ev]")
        Shape.check(hq > 0 && hkv > 0 && hq % hkv == 0, op: op, shapes: [query.shape, key.shape],
                    "query heads (\(hq)) must be a multiple of key/value heads (\(hkv))")
        let geometry = AttentionGeometry(batch: Shape.count(lead), queryHeads: hq, keyValueHeads: hkv, queryLength: l,
                                         keyLength: s, headDim: e, valueDim: ev,
                                         scale: scale ?? 1 / Float(Swift.max(e, 1)).squareRoot(), isCausal: isCausal)
        let scoresShape = lead + [hq, l, s]

        let q = AttentionOperand(query), k = AttentionOperand(key), v = AttentionOperand(value)
        var additive: Tensor?
        switch mask {
        case .additive(let m)?: additive = m
        case .allowed(let m)?: additive = Broadcasting.unary(m.detached()) { $0 != 0 ? 0 : -.infinity }
        case .hidden(let m)?: additive = Broadcasting.unary(m.detached()) { $0 != 0 ? -.infinity : 0 }
        case nil: break
        }
        let maskLayout = additive.map { AttentionScoreMask($0, scoresShape: scoresShape, op: op) }
        let dropoutMask = dropout > 0 ? Tensor.dropoutMask(scoresShape, p: dropout, generator: &generator) : nil

        let inputs = [query, key, value] + (additive.map { [$0] } ?? [])
        let recording = willRecord(inputs: inputs)
        let probabilities = recording ? Tensor(uninitialized: scoresShape) : nil
        let out = AttentionOperand.sequenceMajor(lead: lead, heads: hq, rows: l, width: ev)
        q.data.withDataPointer { pq in k.data.withDataPointer { pk in v.data.withDataPointer { pv in
        out.data.withDataPointer { po in
            AttentionScoreMask.withLayout(maskLayout) { layout in
                dropoutMask.withOptionalPointer { pd in
                    probabilities.withOptionalPointer { pp in
                        Kernels.attentionForward(geometry, query: pq, q.layout, key: pk, k.layout, value: pv, v.layout,
                                                 mask: layout, dropoutMask: pd.map { UnsafePointer($0) },
                                                 output: po, out.layout, probabilities: pp)
                    }
                }
            }
        }}}}
        guard let probabilities else { return out.data }
        return record(out.data, op: op, inputs: inputs) { g, needs in
            let dO = AttentionOperand(g)
            let dQ = needs[0] ? AttentionOperand.sequenceMajor(lead: lead, heads: hq, rows: l, width: e) : nil
            let dK = needs[1] ? AttentionOperand.sequenceMajor(lead: lead, heads: hkv, rows: s, width: e) : nil
            let dV = needs[2] ? AttentionOperand.sequenceMajor(lead: lead, heads: hkv, rows: s, width: ev) : nil
            let dScores = needs.count > 3 && needs[3] ? Tensor(uninitialized: scoresShape) : nil
            q.data.withDataPointer { pq in k.data.withDataPointer { pk in v.data.withDataPointer { pv in
            probabilities.withDataPointer { pp in dO.data.withDataPointer { pg in
                dropoutMask.withOptionalPointer { pd in
                    (dQ?.data).withOptionalPointer { pdq in
                        (dK?.data).withOptionalPointer { pdk in
                            (dV?.data).withOptionalPointer { pdv in
                                dScores.withOptionalPointer { pds in
                                    Kernels.attentionBackward(
                                        geometry, query: pq, q.layout, key: pk, k.layout, value: pv, v.layout,
                                        probabilities: pp, dropoutMask: pd.map { UnsafePointer($0) },
                                        gradOutput: pg, dO.layout,
                                        gradQuery: pdq, dQ?.layout ?? q.layout, gradKey: pdk, dK?.layout ?? k.layout,
                                        gradValue: pdv, dV?.layout ?? v.layout, gradScores: pds)
                                }
                            }
                        }
                    }
                }
            }}}}}
            return [dQ?.data, dK?.data, dV?.data, dScores]
        }
    }

    /// Scaled dot-product attention drawing its dropout mask from the global generator (see
    /// ``RandomGenerator/seed(_:)``); see ``scaledDotProductAttention(query:key:value:mask:isCausal:dropout:scale:generator:)``.
    public static func scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, mask: AttentionMask? = nil,
                                                 isCausal: Bool = false, dropout: Float = 0, scale: Float? = nil) -> Tensor {
        if dropout == 0 {
            var unused = RandomGenerator(seed: 0)
            return scaledDotProductAttention(query: query, key: key, value: value, mask: mask, isCausal: isCausal,
                                             dropout: 0, scale: scale, generator: &unused)
        }
        return RandomGenerator.withGlobal {
            scaledDotProductAttention(query: query, key: key, value: value, mask: mask, isCausal: isCausal,
                                      dropout: dropout, scale: scale, generator: &$0)
        }
    }
}

/// One `[..., H, rows, width]` operand of the attention kernels: its data and strides.
private struct AttentionOperand {
    let data: Tensor
    let layout: AttentionLayout

    /// Reads `t` in place when its heads/rows/columns have usable strides and its leading axes
    /// flatten into one batch stride; otherwise a contiguous copy.
    init(_ t: Tensor) {
        let r = t.rank, width = t.shape[r - 1], rows = t.shape[r - 2]
        let rowStride = rows == 1 ? Swift.max(width, 1) : t.strides[r - 2]
        var batchStride: Int? = Shape.count(Array(t.shape.suffix(3)))
        var expected: Int?
        for axis in stride(from: r - 4, through: 0, by: -1) where t.shape[axis] != 1 {
            if let expected, t.strides[axis] != expected { batchStride = nil; break }
            if expected == nil { batchStride = t.strides[axis] }
            expected = t.strides[axis] * t.shape[axis]
        }
        if let batchStride, width <= 1 || t.strides[r - 1] == 1, rowStride >= Swift.max(width, 1) {
            data = t.detached()
            layout = AttentionLayout(batchStride: batchStride, headStride: t.strides[r - 3], rowStride: rowStride)
        } else {
            data = t.contiguousCopy()
            layout = .contiguous(heads: t.shape[r - 3], rows: rows, width: width)
        }
    }

    private init(data: Tensor, layout: AttentionLayout) { self.data = data; self.layout = layout }

    /// A new `[..., heads, rows, width]` tensor stored as `[..., rows, heads, width]`: the layout
    /// that merging the heads (`transposed(-3, -2).reshaped(...)`) reads without a copy.
    static func sequenceMajor(lead: [Int], heads: Int, rows: Int, width: Int) -> AttentionOperand {
        let storage = Tensor(uninitialized: lead + [rows, heads, width])
        var strides = Shape.contiguousStrides(lead + [rows, heads, width])
        strides.swapAt(lead.count, lead.count + 1)
        let view = Tensor(storage: storage.storage, shape: lead + [heads, rows, width], strides: strides, offset: 0)
        return AttentionOperand(data: view, layout: .sequenceMajor(heads: heads, rows: rows, width: width))
    }
}

/// An additive mask's strides against the scores `[..., Hq, L, S]` (for ``AdditiveMaskLayout``).
private struct AttentionScoreMask {
    let data: Tensor
    let batchOffsets: [Int]
    let headStride: Int, rowStride: Int, columnStride: Int

    init(_ mask: Tensor, scoresShape: [Int], op: String) {
        let full = Shape.broadcastOrFail(mask.shape, scoresShape, op: op)
        Shape.check(full == scoresShape, op: op, shapes: [mask.shape, scoresShape],
                    "the mask must broadcast to the scores [..., Hq, L, S]")
        data = mask.detached()
        let strides = Broadcasting.strides(of: data, broadcastTo: scoresShape), r = scoresShape.count
        let lead = Array(scoresShape.prefix(r - 3))
        var offsets = [Int](repeating: 0, count: Swift.max(Shape.count(lead), 1))
        for b in 0..<offsets.count {
            var rest = b, offset = 0
            for axis in stride(from: lead.count - 1, through: 0, by: -1) {
                offset += (rest % lead[axis]) * strides[axis]
                rest /= lead[axis]
            }
            offsets[b] = offset
        }
        batchOffsets = offsets
        headStride = strides[r - 3]; rowStride = strides[r - 2]; columnStride = strides[r - 1]
    }

    /// Calls `body` with the kernel's view of `mask` (nil without a mask).
    static func withLayout<R>(_ mask: AttentionScoreMask?, _ body: (AdditiveMaskLayout?) -> R) -> R {
        guard let mask else { return body(nil) }
        return mask.data.withDataPointer { p in
            mask.batchOffsets.withUnsafeBufferPointer { offsets in
                body(AdditiveMaskLayout(pointer: p, batchOffsets: offsets.baseAddress!, headStride: mask.headStride,
                                        rowStride: mask.rowStride, columnStride: mask.columnStride))
            }
        }
    }
}
