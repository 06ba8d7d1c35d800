import Foundation

/// Multi-head scaled dot-product attention (PyTorch's `nn.MultiheadAttention` with
/// `batch_first=True`): `softmax(Q K^T / sqrt(d) + mask) V` per head, heads concatenated and
/// projected by `out_proj`.
///
/// Parameters as in PyTorch: `in_proj_weight` `[3E, E]` (rows: query, key, value projections;
/// xavier-uniform), `in_proj_bias` `[3E]` (zeros), `out_proj.weight` `[E, E]` (Linear's default)
/// and `out_proj.bias` `[E]` (zeros). Inputs are batch-first: query `[B, T, E]`, key and value
/// `[B, S, E]` (or unbatched `[T, E]`, `[S, E]`).
///
/// ```swift
/// let attn = MultiHeadAttention(embedDim: 64, numHeads: 4)
/// let y = attn(x)                                    // self-attention, [B, T, 64] -> [B, T, 64]
/// let z = attn(x, memory, memory, mask: causal)      // cross-attention with a mask
/// ```
open class MultiHeadAttention: Module, ParameterInitializing {
    /// `[3E, E]`: the query, key and value projections stacked.
    public let inProjWeight: Parameter
    /// `[3E]`, or nil without bias.
    public let inProjBias: Parameter?
    /// The output projection `[E, E]`.
    @Child public var outProj: Linear

    /// E, the model width.
    public let embedDim: Int
    /// Number of heads; `embedDim` is a multiple of it.
    public let numHeads: Int
    /// Dropout probability on the attention weights (training mode only).
    public let dropout: Float

    /// Width of one head, `embedDim / numHeads`.
    public var headDim: Int { embedDim / numHeads }

    /// Attention of width `embedDim` split into `numHeads` heads.
    public init(embedDim: Int, numHeads: Int, bias: Bool = true, dropout: Float = 0) {
        precondition(embedDim > 0 && numHeads > 0 && embedDim % numHeads == 0,
                     "MultiHeadAttention: embedDim (\(embedDim)) must be a positive multiple of numHeads (\(numHeads))")
        precondition(dropout >= 0 && dropout < 1, "MultiHeadAttention: dropout must be in [0, 1), got \(dropout)")
        self.embedDim = embedDim
        self.numHeads = numHeads
        self.dropout = dropout
        inProjWeight = Parameter(Tensor.zeros([3 * embedDim, embedDim]), role: .weight)
        inProjBias = bias ? Parameter(Tensor.zeros([3 * embedDim]), role: .bias) : nil
        outProj = Linear(embedDim, embedDim, bias: bias)
        super.init()
        resetParameters()
    }

    /// PyTorch's `_reset_parameters`: `in_proj_weight` xavier-uniform, `in_proj_bias` and
    /// `out_proj.bias` zeros (`out_proj.weight` keeps its Linear initialisation).
    open func resetParameters(generator: inout RandomGenerator) {
        inProjWeight.value = Initializer.xavierUniform(inProjWeight.shape, generator: &generator)
        if let inProjBias { inProjBias.value = Tensor.zeros(inProjBias.shape) }
        if let b = outProj.bias { b.value = Tensor.zeros(b.shape) }
    }

    var name: String { "MultiHeadAttention(embedDim: \(embedDim), numHeads: \(numHeads))" }

    /// Self-attention: `x` is query, key and value.
    open override func forward(_ x: Tensor) -> Tensor {
        attention(x, x, x, needsWeights: false).output
    }

    /// Attention of `query` `[B, T, E]` over `key` and `value` `[B, S, E]`; returns `[B, T, E]`.
    ///
    /// `mask` is boolean: a non-zero element hides that key from that query. It is `[T, S]`,
    /// `[B * numHeads, T, S]` (PyTorch's layout), `[B, T, S]`, or anything that broadcasts to
    /// `[B, numHeads, T, S]`. `additiveMask` (same shapes) is added to the scores (use `-inf`
    /// to hide). `keyPaddingMask` `[B, S]` hides padded keys (non-zero = padding).
    public func callAsFunction(_ query: Tensor, _ key: Tensor, _ value: Tensor, mask: Tensor? = nil,
                               additiveMask: Tensor? = nil, keyPaddingMask: Tensor? = nil) -> Tensor {
        completeCall(attention(query, key, value, mask: mask, additiveMask: additiveMask, keyPaddingMask: keyPaddingMask,
                               needsWeights: false).output)
    }

    /// Like ``callAsFunction(_:_:_:mask:additiveMask:keyPaddingMask:)`` and also returns the
    /// attention weights per head, `[B, numHeads, T, S]` (before dropout). Every call form
    /// finishes through ``Module/completeCall(_:)`` (output adapters, summaries).
    public func attend(_ query: Tensor, _ key: Tensor, _ value: Tensor, mask: Tensor? = nil,
                       additiveMask: Tensor? = nil, keyPaddingMask: Tensor? = nil) -> (output: Tensor, weights: Tensor) {
        let (output, weights) = attention(query, key, value, mask: mask, additiveMask: additiveMask,
                                          keyPaddingMask: keyPaddingMask, needsWeights: true)
        return (completeCall(output), weights!)
    }

    /// The attention computation behind every call form (subclasses override this one). Without
    /// `needsWeights` it runs the fused ``Tensor/scaledDotProductAttention(query:key:value:mask:isCausal:dropout:scale:)``
    /// (the masks combined into one additive mask) and returns no weights; with it, the same
    /// maths step by step, keeping the softmax weights.
    open func attention(_ query: Tensor, _ key: Tensor, _ value: Tensor, mask: Tensor? = nil,
                        additiveMask: Tensor? = nil, keyPaddingMask: Tensor? = nil,
                        needsWeights: Bool) -> (output: Tensor, weights: Tensor?) {
        if query.rank == 2 {
            // Unbatched: [T, E] with key and value [S, E].
            Shape.check(key.rank == 2 && value.rank == 2, op: name, shapes: [query.shape, key.shape, value.shape],
                        "unbatched query [T, E] needs unbatched key and value [S, E]")
            let r = attention(query.unsqueezed(axis: 0), key.unsqueezed(axis: 0), value.unsqueezed(axis: 0), mask: mask,
                              additiveMask: additiveMask, keyPaddingMask: keyPaddingMask?.reshaped([1, -1]),
                              needsWeights: needsWeights)
            return (r.output.squeezed(axis: 0), r.weights?.squeezed(axis: 0))
        }
        let e = embedDim, h = numHeads, d = headDim
        Shape.check(query.rank == 3 && query.shape[2] == e, op: name, shapes: [query.shape, inProjWeight.shape],
                    "expected query [B, T, \(e)]")
        Shape.check(key.rank == 3 && key.shape[2] == e && key.shape[0] == query.shape[0], op: name,
                    shapes: [query.shape, key.shape], "expected key [B, S, \(e)] with the query's batch size")
        Shape.check(value.shape == key.shape, op: name, shapes: [key.shape, value.shape], "key and value shapes differ")
        let b = query.shape[0], t = query.shape[1], s = key.shape[1]
        if let keyPaddingMask {
            Shape.check(keyPaddingMask.shape == [b, s], op: name, shapes: [keyPaddingMask.shape, key.shape],
                        "keyPaddingMask must be [B, S] = [\(b), \(s)]")
        }
        let hidden = mask.map { attentionMask($0, "mask", b: b, t: t, s: s) }
        let added = additiveMask.map { attentionMask($0, "additiveMask", b: b, t: t, s: s) }
        let padding = keyPaddingMask?.reshaped([b, 1, 1, s])

        // Three projections with views of the stacked weight: no activation is copied.
        func project(_ x: Tensor, _ part: Int) -> Tensor {
            let rows = (part * e)..<((part + 1) * e)
            let y = Tensor.linear(x, weight: inProjWeight.value.slice(axis: 0, rows),
                                  bias: inProjBias?.value.slice(axis: 0, rows))
            return y.reshaped([b, x.shape[1], h, d]).permuted([0, 2, 1, 3])    // [B, H, L, D]
        }
        let q = project(query, 0), k = project(key, 1), v = project(value, 2)
        let dropoutRate = isTraining ? dropout : 0

        guard needsWeights else {
            // The fused op, with the boolean masks as -inf and the additive one added.
            var combined: Tensor?
            func add(_ m: Tensor) { combined = combined.map { $0 + m } ?? m }
            if let hidden { add(withoutGradients { Tensor.zeros(hidden.shape).maskedFill(hidden, -.infinity) }) }
            if let added { add(added) }
            if let padding { add(withoutGradients { Tensor.zeros(padding.shape).maskedFill(padding, -.infinity) }) }
            let heads = Tensor.scaledDotProductAttention(query: q, key: k, value: v, mask: combined.map { .additive($0) },
                                                         dropout: dropoutRate)
            return (outProj(heads.permuted([0, 2, 1, 3]).reshaped([b, t, e])), nil)
        }
        var scores = q.matmul(k.transposed()) * (1 / Float(d).squareRoot())   // [B, H, T, S]
        if let hidden { scores = scores.maskedFill(hidden, -.infinity) }
        if let added { scores = scores + added }
        if let padding { scores = scores.maskedFill(padding, -.infinity) }
        let weights = scores.softmax(axis: -1)
        let dropped = dropoutRate > 0 ? weights.dropout(p: dropoutRate) : weights
        let heads = dropped.matmul(v)                                          // [B, H, T, D]
        let merged = heads.permuted([0, 2, 1, 3]).reshaped([b, t, e])
        return (outProj(merged), weights)
    }

    /// A mask as `[T, S]` or `[B, H, T, S]`-broadcastable.
    private func attentionMask(_ m: Tensor, _ label: String, b: Int, t: Int, s: Int) -> Tensor {
        Shape.check(m.rank >= 2 && m.rank <= 4 && Array(m.shape.suffix(2)) == [t, s], op: name,
                    shapes: [m.shape, [b, numHeads, t, s]], "\(label) must end with [T, S] = [\(t), \(s)]")
        switch m.rank {
        case 2:
            return m
        case 3:
            if m.shape[0] == b * numHeads { return m.reshaped([b, numHeads, t, s]) }
            Shape.check(m.shape[0] == b || m.shape[0] == 1, op: name, shapes: [m.shape, [b, numHeads, t, s]],
                        "a 3-D \(label) must be [B * numHeads, T, S], [B, T, S] or [1, T, S]")
            return m.unsqueezed(axis: 1)
        default:
            Shape.check((m.shape[0] == b || m.shape[0] == 1) && (m.shape[1] == numHeads || m.shape[1] == 1), op: name,
                        shapes: [m.shape, [b, numHeads, t, s]], "a 4-D \(label) must broadcast to [B, numHeads, T, S]")
            return m
        }
    }

    /// A causal mask `[length, length]` for ``callAsFunction(_:_:_:mask:additiveMask:keyPaddingMask:)``:
    /// 1 (hidden) above the diagonal, so position `i` attends to positions `0...i`.
    public static func causalMask(_ length: Int) -> Tensor {
        var scalars = [Float](repeating: 0, count: length * length)
        for i in 0..<length { for j in (i + 1)..<length { scalars[i * length + j] = 1 } }
        return Tensor(shape: [length, length], scalars: scalars)
    }
}

/// A transformer encoder layer (PyTorch's `nn.TransformerEncoderLayer` with `batch_first=True`),
/// pre-norm by default (`norm_first=True`):
///
///     x = x + dropout1(self_attn(norm1(x)))
///     x = x + dropout2(linear2(dropout(activation(linear1(norm2(x))))))
///
/// State-dict keys as PyTorch: `self_attn.*`, `linear1.*`, `linear2.*`, `norm1.*`, `norm2.*`.
///
/// ```swift
/// let block = TransformerEncoderBlock(dModel: 128, numHeads: 4, ffnDim: 512, activation: .gelu)
/// let y = block(x)                       // [B, T, 128] -> [B, T, 128]
/// ```
public final class TransformerEncoderBlock: Module {
    /// The feed-forward nonlinearity.
    public enum Activation: Sendable, Equatable {
        case relu
        /// Exact (erf) GELU.
        case gelu
    }

    /// Self-attention (`self_attn`).
    @Child public var selfAttn: MultiHeadAttention
    /// `dModel -> ffnDim`.
    @Child public var linear1: Linear
    /// Dropout inside the feed-forward network.
    @Child public var dropout: Dropout
    /// `ffnDim -> dModel`.
    @Child public var linear2: Linear
    /// Normalises the attention branch's input (pre-norm) or output (post-norm).
    @Child public var norm1: LayerNorm
    /// Normalises the feed-forward branch's input (pre-norm) or output (post-norm).
    @Child public var norm2: LayerNorm
    /// Dropout on the attention branch.
    @Child public var dropout1: Dropout
    /// Dropout on the feed-forward branch.
    @Child public var dropout2: Dropout

    /// The feed-forward nonlinearity.
    public let activation: Activation
    /// Pre-norm (true) or post-norm (`x = norm1(x + attn(x))`, PyTorch's default `norm_first=False`).
    public let normFirst: Bool

    /// An encoder layer of width `dModel` with a `ffnDim`-wide feed-forward network.
    /// `dropout` applies to the attention weights and to both residual branches, as in PyTorch.
    public init(dModel: Int, numHeads: Int, ffnDim: Int, dropout: Float = 0.1, activation: Activation = .relu,
                normFirst: Bool = true, eps: Float = 1e-5) {
        selfAttn = MultiHeadAttention(embedDim: dModel, numHeads: numHeads, dropout: dropout)
        linear1 = Linear(dModel, ffnDim)
        self.dropout = Dropout(p: dropout)
        linear2 = Linear(ffnDim, dModel)
        norm1 = LayerNorm(dModel, eps: eps)
        norm2 = LayerNorm(dModel, eps: eps)
        dropout1 = Dropout(p: dropout)
        dropout2 = Dropout(p: dropout)
        self.activation = activation
        self.normFirst = normFirst
        super.init()
    }

    /// Width of the model.
    public var dModel: Int { selfAttn.embedDim }

    public override func forward(_ x: Tensor) -> Tensor {
        encode(x, mask: nil, additiveMask: nil, keyPaddingMask: nil)
    }

    /// Runs the layer with attention masks (see ``MultiHeadAttention``): `mask` boolean
    /// (non-zero = hidden), `[T, T]` or per batch/head; `keyPaddingMask` `[B, T]`.
    public func callAsFunction(_ x: Tensor, mask: Tensor?, additiveMask: Tensor? = nil,
                               keyPaddingMask: Tensor? = nil) -> Tensor {
        completeCall(encode(x, mask: mask, additiveMask: additiveMask, keyPaddingMask: keyPaddingMask))
    }

    private func encode(_ x: Tensor, mask: Tensor?, additiveMask: Tensor?, keyPaddingMask: Tensor?) -> Tensor {
        Shape.check((x.rank == 3 || x.rank == 2) && x.shape[x.rank - 1] == dModel,
                    op: "TransformerEncoderBlock(dModel: \(dModel), numHeads: \(selfAttn.numHeads), ffnDim: \(linear1.outFeatures))",
                    shapes: [x.shape, [dModel]], "expected input [B, T, \(dModel)]")
        func attention(_ y: Tensor) -> Tensor {
            dropout1(selfAttn(y, y, y, mask: mask, additiveMask: additiveMask, keyPaddingMask: keyPaddingMask))
        }
        func feedForward(_ y: Tensor) -> Tensor {
            let hidden = linear1(y)
            let activated = activation == .gelu ? hidden.gelu() : hidden.relu()
            return dropout2(linear2(dropout(activated)))
        }
        if normFirst {
            let h = x + attention(norm1(x))
            return h + feedForward(norm2(h))
        }
        let h = norm1(x + attention(x))
        return norm2(h + feedForward(h))
    }
}
