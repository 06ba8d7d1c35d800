import FineTune

// The op set at the tensor level (what a model calls, autograd included): scaled dot-product
// attention at BERT-base and LLaMA-style shapes, RMSNorm, SiLU and GroupNorm, each forward only
// (no graph, as under torch.no_grad) and forward + backward from a fixed output gradient.
// scripts/bench-ops-vs-torch.py times the same cases in PyTorch in the same run.

/// One op on fixed inputs: `forward` without a graph, or forward and backward from a fixed seed.
final class OpWorkload: Workload {
    private var inputs: [Tensor]
    private let op: ([Tensor]) -> Tensor
    private let backward: Bool
    private var seed: Tensor?
    private var last = 0.0

    /// `trainable` marks which inputs get gradients in the backward cases (parameters and activations).
    init(inputs: [Tensor], trainable: [Bool], backward: Bool, _ op: @escaping ([Tensor]) -> Tensor) {
        self.inputs = zip(inputs, trainable).map { t, train in
            var leaf = t
            leaf.requiresGrad = backward && train
            return leaf
        }
        self.op = op
        self.backward = backward
    }

    func run(threads: Int) {
        Kernels.maxThreads = threads
        if !backward {
            let y = withoutGradients { op(inputs) }
            last = Double(y.withUnsafeBufferPointer { $0[0] })
            return
        }
        for input in inputs where input.requiresGrad { input.grad = nil }
        let y = op(inputs)
        if seed == nil { seed = TrainingData.inputs(y.shape, seed: 99) }
        y.backward(seed)
        last = Double(inputs[0].grad!.withUnsafeBufferPointer { $0[0] })
    }

    func checksum() -> Double { last }
}

/// Attention shapes: batch, query heads, key/value heads, sequence length, head width, causal.
struct AttentionShape {
    var batch: Int, queryHeads: Int, keyValueHeads: Int, length: Int, headDim: Int, causal: Bool

    var geometry: AttentionGeometry {
        AttentionGeometry(batch: batch, queryHeads: queryHeads, keyValueHeads: keyValueHeads, queryLength: length, keyLength: length,
                          headDim: headDim, valueDim: headDim, scale: 1 / Float(headDim).squareRoot(), isCausal: causal)
    }

    var text: String {
        "B \(batch), \(queryHeads) query / \(keyValueHeads) KV heads, T \(length), D \(headDim)\(causal ? ", causal" : "")"
    }

    /// The query, key and value projections `[B, T, H * D]`.
    func projections() -> [Tensor] {
        [(queryHeads, 1), (keyValueHeads, 2), (keyValueHeads, 3)].map { heads, seed in
            TrainingData.inputs([batch, length, heads * headDim], seed: UInt64(seed))
        }
    }

    /// Attention over projections as a model runs it: split into heads, attend, merge the heads.
    func attend(_ projections: [Tensor], mask: AttentionMask?) -> Tensor {
        func heads(_ x: Tensor, _ count: Int) -> Tensor { x.reshaped([batch, length, count, headDim]).transposed(1, 2) }
        let y = Tensor.scaledDotProductAttention(query: heads(projections[0], queryHeads), key: heads(projections[1], keyValueHeads),
                                                 value: heads(projections[2], keyValueHeads), mask: mask, isCausal: causal)
        return y.transposed(1, 2).reshaped([batch, length, queryHeads * headDim])
    }
}

/// Scaled dot-product attention, BERT-base (12 heads of 64, T 128, key padding mask) and a
/// LLaMA-style block (12 query heads sharing 4 KV heads, T 256, causal).
struct AttentionSuite: BenchSuite {
    let name = "attention"
    let summary = "Tensor.scaledDotProductAttention on [B, T, H * D] projections (heads split and merged as views): BERT-base (B 8, 12 heads, T 128, D 64, padding mask), "
        + "LLaMA-small (B 4, 12 query / 4 KV heads, T 256, D 64, causal)"

    static let bert = AttentionShape(batch: 8, queryHeads: 12, keyValueHeads: 12, length: 128, headDim: 64, causal: false)
    static let llama = AttentionShape(batch: 4, queryHeads: 12, keyValueHeads: 4, length: 256, headDim: 64, causal: true)

    /// BERT's additive key padding mask `[B, 1, 1, T]`: the last 16 positions of every other sequence hidden.
    static func bertPaddingMask() -> Tensor {
        let s = bert
        var scalars = [Float](repeating: 0, count: s.batch * s.length)
        for b in stride(from: 1, to: s.batch, by: 2) { for t in (s.length - 16)..<s.length { scalars[b * s.length + t] = -.infinity } }
        return Tensor(shape: [s.batch, 1, 1, s.length], scalars: scalars)
    }

    func cases() -> [BenchCase] {
        func attention(_ shape: AttentionShape, backward: Bool) -> any Workload {
            let mask = shape.causal ? nil : AttentionMask.additive(AttentionSuite.bertPaddingMask())
            return OpWorkload(inputs: shape.projections(), trainable: [true, true, true], backward: backward) {
                shape.attend($0, mask: mask)
            }
        }
        let bert = AttentionSuite.bert, llama = AttentionSuite.llama
        return [
            BenchCase(name: "sdpa_bert_fwd", detail: "\(bert.text), forward", flops: bert.geometry.forwardFlops) {
                attention(bert, backward: false)
            },
            BenchCase(name: "sdpa_bert_fwd_bwd", detail: "\(bert.text), forward + backward (3x forward flops)",
                      flops: 3 * bert.geometry.forwardFlops) { attention(bert, backward: true) },
            BenchCase(name: "sdpa_llama_fwd", detail: "\(llama.text), forward", flops: llama.geometry.forwardFlops) {
                attention(llama, backward: false)
            },
            BenchCase(name: "sdpa_llama_fwd_bwd", detail: "\(llama.text), forward + backward (3x forward flops)",
                      flops: 3 * llama.geometry.forwardFlops) { attention(llama, backward: true) },
        ]
    }
}

/// RMSNorm over LLaMA-small activations, SiLU on its feed-forward width, GroupNorm on a U-Net feature map.
struct NormActivationSuite: BenchSuite {
    let name = "ops"
    let summary = "RMSNorm [4, 256, 768] (weight), SiLU [4, 256, 2048], GroupNorm [8, 128, 32, 32] in 32 groups (weight, bias)"

    func cases() -> [BenchCase] {
        func rmsNorm(_ backward: Bool) -> any Workload {
            OpWorkload(inputs: [TrainingData.inputs([4, 256, 768], seed: 11), TrainingData.inputs([768], seed: 12)],
                       trainable: [true, true], backward: backward) { Tensor.rmsNorm($0[0], weight: $0[1], eps: 1e-6) }
        }
        func silu(_ backward: Bool) -> any Workload {
            OpWorkload(inputs: [TrainingData.inputs([4, 256, 2048], seed: 13)], trainable: [true], backward: backward) { $0[0].silu() }
        }
        func groupNorm(_ backward: Bool) -> any Workload {
            OpWorkload(inputs: [TrainingData.inputs([8, 128, 32, 32], seed: 14), TrainingData.inputs([128], seed: 15),
                                TrainingData.inputs([128], seed: 16)],
                       trainable: [true, true, true], backward: backward) {
                Tensor.groupNorm($0[0], groups: 32, weight: $0[1], bias: $0[2])
            }
        }
        return [
            BenchCase(name: "rmsnorm_fwd", detail: "Tensor.rmsNorm [4, 256, 768], eps 1e-6", flops: nil) { rmsNorm(false) },
            BenchCase(name: "rmsnorm_fwd_bwd", detail: "the same, forward + backward (input and weight)", flops: nil) { rmsNorm(true) },
            BenchCase(name: "silu_fwd", detail: "Tensor.silu [4, 256, 2048]", flops: nil) { silu(false) },
            BenchCase(name: "silu_fwd_bwd", detail: "the same, forward + backward", flops: nil) { silu(true) },
            BenchCase(name: "groupnorm_fwd", detail: "Tensor.groupNorm [8, 128, 32, 32], 32 groups", flops: nil) { groupNorm(false) },
            BenchCase(name: "groupnorm_fwd_bwd", detail: "the same, forward + backward (input, weight, bias)", flops: nil) {
                groupNorm(true)
            },
        ]
    }
}
