// Scaled dot-product attention, forward and backward, per (batch, head) on sgemm calls:
//
//   S = scale * Q K^T + mask      (L x S scores, causal entries above the diagonal left out)
//   P = softmax(S) per row        (rows with every key hidden give P = 0, as PyTorch)
//   O = (P * dropout) V
//
// Q, K, V and O are read and written in place through (batch, head, row) strides with unit
// column stride, so the `[B, T, H, D]` layout of projected activations needs no copies. Query
// head h reads key/value head h / (Hq / Hkv) (grouped-query attention, PyTorch's mapping).
//
// Causal attention runs in blocks of query rows, each against the keys it can see only (about
// half the work). Threads take whole (batch, head) problems with single-threaded sgemm calls
// when there are enough of them; otherwise problems run in sequence with threaded sgemm calls.
// Each output element is computed by the same operations whatever the thread count.

/// The sizes of one attention call.
public struct AttentionGeometry: Hashable, Sendable {
    /// Independent problems (all leading axes flattened).
    public var batch: Int
    /// Query heads Hq and key/value heads Hkv (Hq a multiple of Hkv).
    public var queryHeads: Int, keyValueHeads: Int
    /// Query length L and key length S.
    public var queryLength: Int, keyLength: Int
    /// Width of a query/key head E and of a value head Ev.
    public var headDim: Int, valueDim: Int
    /// Factor on the scores, usually `1 / sqrt(headDim)`.
    public var scale: Float
    /// Query `i` sees keys `0...i` only (top-left aligned, PyTorch's `is_causal`).
    public var isCausal: Bool

    public init(batch: Int, queryHeads: Int, keyValueHeads: Int, queryLength: Int, keyLength: Int,
                headDim: Int, valueDim: Int, scale: Float, isCausal: Bool) {
        precondition(batch >= 0 && queryHeads > 0 && keyValueHeads > 0 && queryHeads % keyValueHeads == 0,
                     "AttentionGeometry: query heads (\(queryHeads)) must be a positive multiple of key/value heads (\(keyValueHeads))")
        self.batch = batch; self.queryHeads = queryHeads; self.keyValueHeads = keyValueHeads
        self.queryLength = queryLength; self.keyLength = keyLength
        self.headDim = headDim; self.valueDim = valueDim; self.scale = scale; self.isCausal = isCausal
    }

    /// Query heads per key/value head.
    public var groupSize: Int { queryHeads / keyValueHeads }

    /// Elements of the `[batch, Hq, L, S]` probability (or score-gradient) buffer.
    public var scoreCount: Int { batch * queryHeads * queryLength * keyLength }

    /// Multiply-adds of the forward pass times two (both products, causal entries excluded).
    public var forwardFlops: Double {
        var pairs = Double(queryLength * keyLength)
        if isCausal {
            pairs = 0
            for i in 0..<queryLength { pairs += Double(Swift.min(i + 1, keyLength)) }
        }
        return 2 * Double(batch * queryHeads) * pairs * Double(headDim + valueDim)
    }

    /// Query rows per block: causal attention works in blocks, each against the keys it sees.
    var rowBlock: Int { isCausal ? 64 : Swift.max(queryLength, 1) }

    /// Keys visible to any row of the block starting at `r0`.
    @inline(__always)
    func keyEnd(blockStart r0: Int) -> Int {
        isCausal ? Swift.min(keyLength, Swift.min(r0 + rowBlock, queryLength)) : keyLength
    }

    /// `rows` rows of `floats` floats of the head at `start`, asked for a share per query row.
    func headRows(_ start: UnsafePointer<Float>, _ layout: AttentionLayout, rows: Int, floats: Int) -> PrefetchRows {
        PrefetchRows(base: start, rows: rows, stride: layout.rowStride, floats: floats, parts: queryLength)
    }

    /// Keys visible to row `i`.
    @inline(__always)
    func visibleKeys(row i: Int) -> Int { isCausal ? Swift.min(i + 1, keyLength) : keyLength }
}

/// Where the matrices of one operand live: element `(b, h, i, j)` is at
/// `pointer[b * batchStride + h * headStride + i * rowStride + j]`.
public struct AttentionLayout: Hashable, Sendable {
    public var batchStride: Int, headStride: Int, rowStride: Int

    public init(batchStride: Int, headStride: Int, rowStride: Int) {
        self.batchStride = batchStride; self.headStride = headStride; self.rowStride = rowStride
    }

    /// Contiguous `[batch, heads, rows, width]`.
    public static func contiguous(heads: Int, rows: Int, width: Int) -> AttentionLayout {
        AttentionLayout(batchStride: heads * rows * width, headStride: rows * width, rowStride: width)
    }

    /// Contiguous `[batch, rows, heads, width]` (projected activations before the head transpose).
    public static func sequenceMajor(heads: Int, rows: Int, width: Int) -> AttentionLayout {
        AttentionLayout(batchStride: rows * heads * width, headStride: width, rowStride: heads * width)
    }

    @inline(__always)
    func offset(_ b: Int, _ h: Int) -> Int { b * batchStride + h * headStride }
}

/// An additive mask broadcast over `[batch, Hq, L, S]`: element `(b, h, i, j)` is at
/// `pointer[batchOffsets[b] + h * headStride + i * rowStride + j * columnStride]` (strides may be 0).
public struct AdditiveMaskLayout {
    public var pointer: UnsafePointer<Float>
    public var batchOffsets: UnsafePointer<Int>
    public var headStride: Int, rowStride: Int, columnStride: Int

    public init(pointer: UnsafePointer<Float>, batchOffsets: UnsafePointer<Int>, headStride: Int, rowStride: Int,
                columnStride: Int) {
        self.pointer = pointer; self.batchOffsets = batchOffsets
        self.headStride = headStride; self.rowStride = rowStride; self.columnStride = columnStride
    }
}

extension Kernels {
    /// `output = softmax(scale * query key^T + mask) (dropout) value` for every batch and query head.
    ///
    /// `dropoutMask` (`[batch, Hq, L, S]` contiguous, 0 or `1 / (1 - p)`) scales the
    /// probabilities after the softmax. `probabilities` (same layout), when given, receives the
    /// softmax before dropout, which ``attentionBackward`` needs. Overwrites `output`.
    public static func attentionForward(_ g: AttentionGeometry,
                                        query: UnsafePointer<Float>, _ queryLayout: AttentionLayout,
                                        key: UnsafePointer<Float>, _ keyLayout: AttentionLayout,
                                        value: UnsafePointer<Float>, _ valueLayout: AttentionLayout,
                                        mask: AdditiveMaskLayout?, dropoutMask: UnsafePointer<Float>?,
                                        output: UnsafeMutablePointer<Float>, _ outputLayout: AttentionLayout,
                                        probabilities: UnsafeMutablePointer<Float>?, threads: Int = Kernels.maxThreads) {
        let L = g.queryLength, S = g.keyLength, plane = L * S
        if g.batch == 0 || L == 0 { return }
        // Scratch per worker: the scores (unless they go to `probabilities`) and the dropped-out copy.
        let scratch = (probabilities == nil ? plane : 0) + (dropoutMask == nil ? 0 : plane)
        AttentionWork.run(problems: g.batch * g.queryHeads, scratch: scratch, threads: threads) { problem, buffer, inner in
            let b = problem / g.queryHeads, h = problem % g.queryHeads, kv = h / g.groupSize
            let p = probabilities.map { $0 + problem * plane } ?? buffer
            let dropped = dropoutMask == nil ? nil : buffer + (probabilities == nil ? plane : 0)
            let q = query + queryLayout.offset(b, h), k = key + keyLayout.offset(b, kv), v = value + valueLayout.offset(b, kv)
            let o = output + outputLayout.offset(b, h)
            let nb = (problem + 1) / g.queryHeads, nh = (problem + 1) % g.queryHeads, nkv = nh / g.groupSize
            var next = problem + 1 < g.batch * g.queryHeads
                ? AttentionNextHeads(g, query: query + queryLayout.offset(nb, nh), queryLayout,
                                     key: key + keyLayout.offset(nb, nkv), keyLayout, value: value + valueLayout.offset(nb, nkv), valueLayout)
                : nil
            var r0 = 0
            while r0 < L {
                let r1 = Swift.min(L, r0 + g.rowBlock), kEnd = g.keyEnd(blockStart: r0)
                if kEnd == 0 {
                    for i in r0..<r1 { (o + i * outputLayout.rowStride).update(repeating: 0, count: g.valueDim) }
                    for i in r0..<r1 { (p + i * S).update(repeating: 0, count: S) }
                    r0 = r1
                    continue
                }
                // Scores of the block against its visible keys.
                sgemm(transA: false, transB: true, m: r1 - r0, n: kEnd, k: g.headDim, alpha: g.scale,
                      a: q + r0 * queryLayout.rowStride, lda: queryLayout.rowStride, b: k, ldb: keyLayout.rowStride,
                      beta: 0, c: p + r0 * S, ldc: S, threads: inner)
                let softmax = KernelProfile.begin()
                for i in r0..<r1 {
                    next?.fetchNextShare()
                    let row = p + i * S, n = g.visibleKeys(row: i)
                    if let mask {
                        let m = mask.pointer + mask.batchOffsets[b] + h * mask.headStride + i * mask.rowStride
                        AttentionRows.addMask(row, m, n, stride: mask.columnStride)
                    }
                    AttentionRows.safeSoftmax(row, n)
                    if n < S { (row + n).update(repeating: 0, count: S - n) }
                    if let dropped, let dropoutMask {
                        Kernels.mul(row, dropoutMask + problem * plane + i * S, dropped + i * S, count: n)
                        if n < S { (dropped + i * S + n).update(repeating: 0, count: S - n) }
                    }
                }
                KernelProfile.end(softmax, .attention)
                let weights = dropped ?? p
                sgemm(transA: false, transB: false, m: r1 - r0, n: g.valueDim, k: kEnd, alpha: 1,
                      a: weights + r0 * S, lda: S, b: v, ldb: valueLayout.rowStride,
                      beta: 0, c: o + r0 * outputLayout.rowStride, ldc: outputLayout.rowStride, threads: inner)
                r0 = r1
            }
        }
    }

    /// Gradients of ``attentionForward`` from its saved `probabilities` (and `dropoutMask`).
    ///
    /// Overwrites `gradQuery`, `gradKey` and `gradValue` (each optional) and, when given,
    /// `gradScores` (`[batch, Hq, L, S]` contiguous: the gradient of the masked, scaled scores,
    /// which is the gradient of an additive mask before its broadcast is summed).
    public static func attentionBackward(_ g: AttentionGeometry,
                                         query: UnsafePointer<Float>, _ queryLayout: AttentionLayout,
                                         key: UnsafePointer<Float>, _ keyLayout: AttentionLayout,
                                         value: UnsafePointer<Float>, _ valueLayout: AttentionLayout,
                                         probabilities: UnsafePointer<Float>, dropoutMask: UnsafePointer<Float>?,
                                         gradOutput: UnsafePointer<Float>, _ gradOutputLayout: AttentionLayout,
                                         gradQuery: UnsafeMutablePointer<Float>?, _ gradQueryLayout: AttentionLayout,
                                         gradKey: UnsafeMutablePointer<Float>?, _ gradKeyLayout: AttentionLayout,
                                         gradValue: UnsafeMutablePointer<Float>?, _ gradValueLayout: AttentionLayout,
                                         gradScores: UnsafeMutablePointer<Float>?, threads: Int = Kernels.maxThreads) {
        let L = g.queryLength, S = g.keyLength, plane = L * S
        if g.batch == 0 { return }
        // Problems are (batch, key/value head): one worker owns a key/value head's gradients.
        let scratch = plane + (dropoutMask == nil ? 0 : plane)
        AttentionWork.run(problems: g.batch * g.keyValueHeads, scratch: scratch, threads: threads) { problem, buffer, inner in
            let b = problem / g.keyValueHeads, kv = problem % g.keyValueHeads
            let dP = buffer, dropped = dropoutMask == nil ? nil : buffer + plane
            let k = key + keyLayout.offset(b, kv), v = value + valueLayout.offset(b, kv)
            let dK = gradKey.map { $0 + gradKeyLayout.offset(b, kv) }, dV = gradValue.map { $0 + gradValueLayout.offset(b, kv) }
            for j in 0..<S {
                if let dK { (dK + j * gradKeyLayout.rowStride).update(repeating: 0, count: g.headDim) }
                if let dV { (dV + j * gradValueLayout.rowStride).update(repeating: 0, count: g.valueDim) }
            }
            for h in (kv * g.groupSize)..<((kv + 1) * g.groupSize) {
                let head = b * g.queryHeads + h
                let p = probabilities + head * plane, q = query + queryLayout.offset(b, h)
                let dO = gradOutput + gradOutputLayout.offset(b, h), dQ = gradQuery.map { $0 + gradQueryLayout.offset(b, h) }
                let dScores = gradScores.map { $0 + head * plane }
                let drop = dropoutMask.map { $0 + head * plane }
                // The last head of the group asks for the next problem's heads.
                var next: AttentionNextHeads?
                if h == (kv + 1) * g.groupSize - 1 && problem + 1 < g.batch * g.keyValueHeads {
                    let nb = (problem + 1) / g.keyValueHeads, nkv = (problem + 1) % g.keyValueHeads, nh = nkv * g.groupSize
                    var heads = AttentionNextHeads(g, query: query + queryLayout.offset(nb, nh), queryLayout,
                                                   key: key + keyLayout.offset(nb, nkv), keyLayout,
                                                   value: value + valueLayout.offset(nb, nkv), valueLayout)
                    // The gradients' rows too: zeroing or writing them waited on each line.
                    heads.addGradients(g, output: gradOutput + gradOutputLayout.offset(nb, nh), gradOutputLayout,
                                       query: gradQuery.map { UnsafePointer($0 + gradQueryLayout.offset(nb, nh)) }, gradQueryLayout,
                                       key: gradKey.map { UnsafePointer($0 + gradKeyLayout.offset(nb, nkv)) }, gradKeyLayout,
                                       value: gradValue.map { UnsafePointer($0 + gradValueLayout.offset(nb, nkv)) }, gradValueLayout)
                    next = heads
                }
                var r0 = 0
                while r0 < L {
                    let r1 = Swift.min(L, r0 + g.rowBlock), kEnd = g.keyEnd(blockStart: r0), rows = r1 - r0
                    defer { r0 = r1 }
                    if kEnd == 0 {
                        if let dQ { for i in r0..<r1 { (dQ + i * gradQueryLayout.rowStride).update(repeating: 0, count: g.headDim) } }
                        if let dScores { (dScores + r0 * S).update(repeating: 0, count: rows * S) }
                        continue
                    }
                    // dV += (P * dropout)^T dO
                    if let dV {
                        var weights = p
                        if let dropped, let drop {
                            KernelProfile.measure(.attention) {
                                for i in r0..<r1 { Kernels.mul(p + i * S, drop + i * S, dropped + i * S, count: kEnd) }
                            }
                            weights = UnsafePointer(dropped)
                        }
                        sgemm(transA: true, transB: false, m: kEnd, n: g.valueDim, k: rows, alpha: 1,
                              a: weights + r0 * S, lda: S, b: dO + r0 * gradOutputLayout.rowStride, ldb: gradOutputLayout.rowStride,
                              beta: 1, c: dV, ldc: gradValueLayout.rowStride, threads: inner)
                    }
                    if dQ == nil && dK == nil && dScores == nil { continue }
                    // dP = dO V^T (times the dropout mask), then dS = P * (dP - rowsum(dP * P)).
                    sgemm(transA: false, transB: true, m: rows, n: kEnd, k: g.valueDim, alpha: 1,
                          a: dO + r0 * gradOutputLayout.rowStride, lda: gradOutputLayout.rowStride, b: v, ldb: valueLayout.rowStride,
                          beta: 0, c: dP + r0 * S, ldc: S, threads: inner)
                    let softmaxGradient = KernelProfile.begin()
                    for i in r0..<r1 {
                        next?.fetchNextShare()
                        let row = dP + i * S, prow = p + i * S, n = g.visibleKeys(row: i)
                        if let drop { Kernels.mul(row, drop + i * S, row, count: n) }
                        VectorMath.softmaxBackwardApply(prow, row, row, n, d: Kernels.dot(row, prow, count: n))
                        if n < kEnd { (row + n).update(repeating: 0, count: kEnd - n) }
                        if let dScores {
                            (dScores + i * S).update(from: row, count: kEnd)
                            if kEnd < S { (dScores + i * S + kEnd).update(repeating: 0, count: S - kEnd) }
                        }
                    }
                    KernelProfile.end(softmaxGradient, .attention)
                    if let dQ {
                        sgemm(transA: false, transB: false, m: rows, n: g.headDim, k: kEnd, alpha: g.scale,
                              a: dP + r0 * S, lda: S, b: k, ldb: keyLayout.rowStride,
                              beta: 0, c: dQ + r0 * gradQueryLayout.rowStride, ldc: gradQueryLayout.rowStride, threads: inner)
                    }
                    if let dK {
                        sgemm(transA: true, transB: false, m: kEnd, n: g.headDim, k: rows, alpha: g.scale,
                              a: dP + r0 * S, lda: S, b: q + r0 * queryLayout.rowStride, ldb: queryLayout.rowStride,
                              beta: 1, c: dK, ldc: gradKeyLayout.rowStride, threads: inner)
                    }
                }
            }
        }
    }
}

/// The operand heads of the next problem, asked for a share per query row while this one
/// computes (``PrefetchRows`` over the L query rows): a head's rows are 64 floats in rows
/// thousands of floats apart, four lines each, too short a run for the hardware's stream
/// prefetch, and the products' packing waited on each line from L3 or memory (sdpa_bert_fwd
/// 0.85-0.87x the time with this, Sapphire Rapids Xeon, one and two threads). The backward also
/// asks for the output-gradient rows it reads and the gradient rows it writes.
struct AttentionNextHeads {
    private var query, key, value: PrefetchRows
    private var gradOutput, gradQuery, gradKey, gradValue: PrefetchRows

    /// The query head at `query` and the key and value heads (a head: rows of the layout's stride).
    init(_ g: AttentionGeometry, query: UnsafePointer<Float>, _ queryLayout: AttentionLayout,
         key: UnsafePointer<Float>, _ keyLayout: AttentionLayout, value: UnsafePointer<Float>, _ valueLayout: AttentionLayout) {
        self.query = g.headRows(query, queryLayout, rows: g.queryLength, floats: g.headDim)
        self.key = g.headRows(key, keyLayout, rows: g.keyLength, floats: g.headDim)
        self.value = g.headRows(value, valueLayout, rows: g.keyLength, floats: g.valueDim)
        let none = g.headRows(query, queryLayout, rows: 0, floats: 0)
        (gradOutput, gradQuery, gradKey, gradValue) = (none, none, none, none)
    }

    /// The backward's heads too: the output gradient's, and those of the gradients it writes
    /// (nil: not computed).
    mutating func addGradients(_ g: AttentionGeometry, output: UnsafePointer<Float>, _ outputLayout: AttentionLayout,
                               query: UnsafePointer<Float>?, _ queryLayout: AttentionLayout,
                               key: UnsafePointer<Float>?, _ keyLayout: AttentionLayout,
                               value: UnsafePointer<Float>?, _ valueLayout: AttentionLayout) {
        gradOutput = g.headRows(output, outputLayout, rows: g.queryLength, floats: g.valueDim)
        if let query { gradQuery = g.headRows(query, queryLayout, rows: g.queryLength, floats: g.headDim) }
        if let key { gradKey = g.headRows(key, keyLayout, rows: g.keyLength, floats: g.headDim) }
        if let value { gradValue = g.headRows(value, valueLayout, rows: g.keyLength, floats: g.valueDim) }
    }

    /// One query row's share of every head.
    @inline(__always)
    mutating func fetchNextShare() {
        query.fetchNextShare(); key.fetchNextShare(); value.fetchNextShare()
        gradOutput.fetchNextShare(); gradQuery.fetchNextShare(); gradKey.fetchNextShare(); gradValue.fetchNextShare()
    }
}

/// Row helpers of the attention kernels.
enum AttentionRows {
    /// row[j] += mask[j * stride] for j < n.
    @inline(__always)
    static func addMask(_ row: UnsafeMutablePointer<Float>, _ mask: UnsafePointer<Float>, _ n: Int, stride: Int) {
        if stride == 1 {
            Kernels.add(row, mask, row, count: n)
        } else {
            for j in 0..<n { row[j] += mask[j * stride] }
        }
    }

    /// Softmax of `row[0..<n]` in place; a row whose entries are all -inf becomes zeros (the
    /// query sees no key), as PyTorch's scaled_dot_product_attention.
    @inline(__always)
    static func safeSoftmax(_ row: UnsafeMutablePointer<Float>, _ n: Int) {
        let m = Kernels.maxValue(row, count: n)
        if m == -.infinity {
            row.update(repeating: 0, count: n)
            return
        }
        let s = VectorMath.expShiftedStoreSum(row, row, n, shift: m)
        Kernels.scale(1 / s, row, count: n)
    }
}

/// Spreads independent attention problems over threads, each worker with its own scratch.
enum AttentionWork {
    /// Calls `body(problem, scratch, sgemmThreads)` for every problem. With at least as many
    /// problems as threads, workers take contiguous ranges and run sgemm on one thread;
    /// otherwise problems run in order and sgemm gets the threads.
    static func run(problems: Int, scratch: Int, threads: Int,
                    _ body: (Int, UnsafeMutablePointer<Float>, Int) -> Void) {
        let workers = problems >= threads ? threads : 1
        Kernels.parallelFor(workers, threads: workers) { w in
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(scratch, 1))
            defer { buffer.deallocate() }
            for problem in (problems * w / workers)..<(problems * (w + 1) / workers) {
                body(problem, buffer, workers > 1 ? 1 : threads)
            }
        }
    }
}
