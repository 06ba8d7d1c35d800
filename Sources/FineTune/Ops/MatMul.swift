/// How one operand's last two axes map onto a GEMM argument without copying.
struct MatrixOperand {
    var tensor: Tensor   // detached data
    var transposed: Bool
    var leadingDimension: Int

    /// Uses the view's strides as-is when they describe a (possibly transposed) row-major matrix.
    init(_ t: Tensor) {
        let r = t.rank, rows = t.shape[r - 2], cols = t.shape[r - 1]
        let sr = t.strides[r - 2], sc = t.strides[r - 1]
        if sc == 1 || cols == 1, sr >= cols || rows == 1 {
            tensor = t.detached(); transposed = false; leadingDimension = Swift.max(rows == 1 ? cols : sr, 1)
        } else if sr == 1 || rows == 1, sc >= rows {
            tensor = t.detached(); transposed = true; leadingDimension = Swift.max(sc, 1)
        } else {
            tensor = t.contiguousCopy(); transposed = false; leadingDimension = Swift.max(cols, 1)
        }
    }
}

extension Tensor {
    /// Matrix product with NumPy / PyTorch semantics. 2-D: `[m, k] x [k, n]`. Batched: leading
    /// dimensions broadcast (`[b, m, k] x [k, n]`, `[b, m, k] x [b, k, n]`, ...). A 1-D operand is a
    /// vector: `[k] x [k]` is the dot product (0-D), `[k] x [..., k, n]` gives `[..., n]` and
    /// `[..., m, k] x [k]` gives `[..., m]`. Transposed views are read in place.
    ///
    /// ```swift
    /// let y = x.matmul(w.transposed())   // no transpose is materialised
    /// ```
    public func matmul(_ other: Tensor) -> Tensor {
        Shape.check(rank >= 1 && other.rank >= 1, op: "matmul", shapes: [shape, other.shape], "operands must not be scalars")
        let k = shape[rank - 1], otherK = other.shape[Swift.max(other.rank - 2, 0)]
        Shape.check(otherK == k, op: "matmul", shapes: [shape, other.shape], "inner dimensions \(k) and \(otherK) differ")
        switch (rank, other.rank) {
        case (1, 1):
            return reshaped([1, k]).matmul(other.reshaped([k, 1])).reshaped([])
        case (1, _):
            let product = reshaped([1, k]).matmul(other)     // [..., 1, n]
            return product.reshaped(Array(product.shape.dropLast(2)) + [product.shape[product.rank - 1]])
        case (_, 1):
            return matmul(other.reshaped([k, 1])).reshaped(Array(shape.dropLast()))
        default:
            break
        }
        if other.rank == 2 && rank > 2 {
            // Fold the batch into rows: one large GEMM instead of many small ones.
            let lead = Array(shape.dropLast())
            return reshaped([-1, k]).matmul(other).reshaped(lead + [other.shape[1]])
        }
        return Tensor.batchedMatmul(self, other)
    }

    static func batchedMatmul(_ a: Tensor, _ b: Tensor) -> Tensor {
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
        let batchShape = Shape.broadcastOrFail(Array(a.shape.dropLast(2)), Array(b.shape.dropLast(2)), op: "matmul")
        let batchCount = Shape.count(batchShape)
        let opA = MatrixOperand(a), opB = MatrixOperand(b)
        let batchStridesA = Array(Broadcasting.strides(of: opA.tensor, broadcastTo: batchShape + [m, k]).dropLast(2))
        let batchStridesB = Array(Broadcasting.strides(of: opB.tensor, broadcastTo: batchShape + [k, n]).dropLast(2))
        let out = Tensor(uninitialized: batchShape + [m, n])
        opA.tensor.withDataPointer { pa in opB.tensor.withDataPointer { pb in out.withDataPointer { pc in
            var index = [Int](repeating: 0, count: batchShape.count)
            for batch in 0..<batchCount {
                var oa = 0, ob = 0, rest = batch
                for axis in stride(from: batchShape.count - 1, through: 0, by: -1) {
                    index[axis] = rest % batchShape[axis]; rest /= batchShape[axis]
                    oa += index[axis] * batchStridesA[axis]; ob += index[axis] * batchStridesB[axis]
                }
                Kernels.sgemm(transA: opA.transposed, transB: opB.transposed, m: m, n: n, k: k,
                              alpha: 1, a: pa + oa, lda: opA.leadingDimension, b: pb + ob, ldb: opB.leadingDimension,
                              beta: 0, c: pc + batch * m * n, ldc: n)
            }
        }}}
        let ad = a.detached(), bd = b.detached()
        let missingTranspose = GradientMutation.isActive(.matmulMissingTranspose)
        return Tensor.record(out, op: "matmul", inputs: [a, b]) { g, needs in
            if missingTranspose {
                return [needs[0] ? g.matmul(bd.reinterpretedAsTranspose()) : nil,
                        needs[1] ? ad.reinterpretedAsTranspose().matmul(g) : nil]
            }
            return [needs[0] ? g.matmul(bd.transposed()) : nil,
                    needs[1] ? ad.transposed().matmul(g) : nil]
        }
    }

    /// A matrix's row-major data read with the transposed shape, not transposed: the wrong
    /// operand of ``GradientMutation/matmulMissingTranspose``.
    private func reinterpretedAsTranspose() -> Tensor {
        var swapped = shape
        swapped.swapAt(rank - 2, rank - 1)
        return contiguousData().reshapedView(swapped)
    }

    /// `x W^T + b` for `x [..., in]`, `weight [out, in]`, `bias [out]` (PyTorch's `F.linear`).
    ///
    /// One fused op: the forward is a single GEMM that starts from the bias; backward computes
    /// only the gradients that are needed (a frozen weight costs no `dW` GEMM).
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
        Shape.check(weight.rank == 2 && x.rank >= 1 && x.shape[x.rank - 1] == weight.shape[1], op: "linear",
                    shapes: [x.shape, weight.shape], "expected input [..., \(weight.shape.last ?? 0)] and weight [out, in]")
        let outFeatures = weight.shape[0], inFeatures = weight.shape[1]
        if let bias {
            Shape.check(bias.shape == [outFeatures], op: "linear", shapes: [weight.shape, bias.shape], "bias must be [out]")
        }
        let outShape = Array(x.shape.dropLast()) + [outFeatures]
        let rows = x.count / Swift.max(inFeatures, 1)
        let xd = x.contiguousData(), w = MatrixOperand(weight), bd = bias?.contiguousData()
        let out = Tensor(uninitialized: outShape)
        xd.withDataPointer { px in w.tensor.withDataPointer { pw in out.withDataPointer { py in
            if let bd {
                bd.withDataPointer { pb in for r in 0..<rows { (py + r * outFeatures).update(from: pb, count: outFeatures) } }
            }
            // y[rows, out] = x[rows, in] * W^T  (W stored [out, in], so op(B) = W^T)
            Kernels.sgemm(transA: false, transB: !w.transposed, m: rows, n: outFeatures, k: inFeatures,
                          alpha: 1, a: px, lda: inFeatures, b: pw, ldb: w.leadingDimension,
                          beta: bd == nil ? 0 : 1, c: py, ldc: outFeatures)
        }}}
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        let inputShape = x.shape
        return Tensor.record(out, op: "linear", inputs: inputs) { g, needs in
            let g2 = g.contiguousData()
            var grads: [Tensor?] = [nil, nil, nil]
            g2.withDataPointer { pg in
                if needs[0] {
                    let dx = Tensor(uninitialized: inputShape)
                    w.tensor.withDataPointer { pw in dx.withDataPointer { pdx in
                        // dx[rows, in] = g[rows, out] * W[out, in]
                        Kernels.sgemm(transA: false, transB: w.transposed, m: rows, n: inFeatures, k: outFeatures,
                                      alpha: 1, a: pg, lda: outFeatures, b: pw, ldb: w.leadingDimension,
                                      beta: 0, c: pdx, ldc: inFeatures)
                    }}
                    grads[0] = dx
                }
                if needs[1] {
                    let dw = Tensor(uninitialized: [outFeatures, inFeatures])
                    xd.withDataPointer { px in dw.withDataPointer { pdw in
                        // dW[out, in] = g^T[out, rows] * x[rows, in]
                        Kernels.sgemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows,
                                      alpha: 1, a: pg, lda: outFeatures, b: px, ldb: inFeatures,
                                      beta: 0, c: pdw, ldc: inFeatures)
                    }}
                    grads[1] = dw
                }
            }
            if needs.count > 2 && needs[2] { grads[2] = g2.reshapedView([rows, outFeatures]).reduceSum(to: [1, outFeatures]).reshapedView([outFeatures]) }
            return grads
        }
    }
}
