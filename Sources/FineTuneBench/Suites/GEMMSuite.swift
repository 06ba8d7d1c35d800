import FineTune

/// `Kernels.sgemm` on square matrices and on the three GEMMs of two Linear layers, plus a
/// plain Swift triple loop as the reference for "FineTune GEMM vs naive loop".
struct GEMMSuite: BenchSuite {
    let name = "gemm"
    let summary = "Kernels.sgemm: square C = A·B, Linear 784->512 (batch 128) and 768->3072 (1024 tokens) fwd/dx/dw, naive loop reference"

    /// Linear layers (rows, in features, out features): an MLP's 784 -> 512 at batch 128, and
    /// BERT-base's feed-forward 768 -> 3072 over 1024 tokens (batch 8 x 128), the shape most of
    /// `bert_base_step_full`'s GEMM time goes to.
    private let linearShapes = [(128, 784, 512), (1024, 768, 3072)]

    func cases() -> [BenchCase] {
        var cases = [64, 256, 512, 1024].map { size in
            gemmCase(name: "sgemm_\(size)", detail: "C[\(size)x\(size)] = A[\(size)x\(size)]·B[\(size)x\(size)]",
                     GEMMShape(m: size, n: size, k: size))
        }
        cases.append(BenchCase(
            name: "sgemm_naive_256", detail: "the same as sgemm_256 with a plain i-k-j Swift loop",
            flops: GEMMShape(m: 256, n: 256, k: 256).flops, usesThreads: false,
            makeWorkload: { GEMMWorkload(GEMMShape(m: 256, n: 256, k: 256), naive: true) }))

        for (b, i, o) in linearShapes {
            let suffix = "\(b)x\(i)x\(o)"
            cases.append(gemmCase(name: "linear_fwd_\(suffix)", detail: "Y[\(b)x\(o)] = X[\(b)x\(i)]·W[\(o)x\(i)]^T",
                                  GEMMShape(m: b, n: o, k: i, transB: true)))
            cases.append(gemmCase(name: "linear_dx_\(suffix)", detail: "dX[\(b)x\(i)] = dY[\(b)x\(o)]·W[\(o)x\(i)]",
                                  GEMMShape(m: b, n: i, k: o)))
            cases.append(gemmCase(name: "linear_dw_\(suffix)", detail: "dW[\(o)x\(i)] = dY[\(b)x\(o)]^T·X[\(b)x\(i)]",
                                  GEMMShape(m: o, n: i, k: b, transA: true)))
        }
        return cases
    }

    var extraRatios: [RatioSpec] {
        [.speedup(of: "sgemm_256", over: "sgemm_naive_256", label: "naive loop")]
    }

    private func gemmCase(name: String, detail: String, _ shape: GEMMShape) -> BenchCase {
        BenchCase(name: name, detail: detail, flops: shape.flops, makeWorkload: { GEMMWorkload(shape) })
    }
}

/// `C[m x n] = op(A)[m x k] · op(B)[k x n]` on row-major matrices, as `Kernels.sgemm` sees it.
struct GEMMShape {
    var m: Int, n: Int, k: Int
    var transA = false, transB = false

    /// Row-major rows x columns of the stored A and B.
    var aRows: Int { transA ? k : m }
    var aColumns: Int { transA ? m : k }
    var bRows: Int { transB ? n : k }
    var bColumns: Int { transB ? k : n }
    var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
}

/// Buffers for one GEMM, run either through `Kernels.sgemm` or the naive reference loop.
final class GEMMWorkload: Workload {
    private let shape: GEMMShape
    private let naive: Bool
    private let a: FloatBuffer, b: FloatBuffer, c: FloatBuffer

    init(_ shape: GEMMShape, naive: Bool = false) {
        precondition(!naive || (!shape.transA && !shape.transB), "the naive loop handles untransposed A and B only")
        self.shape = shape
        self.naive = naive
        a = FloatBuffer(count: shape.aRows * shape.aColumns, seed: 1)
        b = FloatBuffer(count: shape.bRows * shape.bColumns, seed: 2)
        c = FloatBuffer(count: shape.m * shape.n)
    }

    func run(threads: Int) {
        Kernels.maxThreads = threads    // for the kernels it calls without a thread count
        let s = shape
        if naive {
            naiveGEMM(m: s.m, n: s.n, k: s.k, a: a.readOnly, b: b.readOnly, c: c.pointer)
        } else {
            Kernels.sgemm(transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k,
                          alpha: 1, a: a.readOnly, lda: s.aColumns, b: b.readOnly, ldb: s.bColumns,
                          beta: 0, c: c.pointer, ldc: s.n, threads: threads)
        }
    }

    func checksum() -> Double { c.sum() }
}

/// The reference: `C = A·B` with the textbook i-k-j loop (row-major, contiguous inner loop),
/// as someone would write it without a GEMM library.
@inline(never)
func naiveGEMM(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
               c: UnsafeMutablePointer<Float>) {
    for i in 0..<m {
        let cRow = c + i * n
        cRow.update(repeating: 0, count: n)
        for p in 0..<k {
            let aip = a[i * k + p]
            let bRow = b + p * n
            for j in 0..<n { cRow[j] += aip * bRow[j] }
        }
    }
}
