import Dispatch
import Testing
@testable import FineTune

// KernelProfile: regions add their time to their category once (nested regions count towards the
// outer one), the calling thread's unmeasured time is the framework time, nothing is recorded while
// it is off, and a training step splits into the categories its kernels belong to. The profile is
// process-wide, so the suite runs serialized, and the tests that need exact counts record only their
// own thread (`callingThreadOnly`), which other suites' kernels never run on. GEMM regions also
// count their flops, 2 m n k per product on every sgemm path.

/// Busy-waits `milliseconds` on the calling thread.
private func spin(milliseconds: Double) {
    let end = DispatchTime.now().uptimeNanoseconds + UInt64(milliseconds * 1e6)
    while DispatchTime.now().uptimeNanoseconds < end {}
}

@Suite("Kernel profile", .serialized)
struct KernelProfileTests {
    @Test("a region's time goes to its category once; nested regions count towards the outer one")
    func regionsAndNesting() {
        KernelProfile.start(callingThreadOnly: true)
        #expect(KernelProfile.isRunning)
        KernelProfile.measure(.elementwise) {
            spin(milliseconds: 2)
            KernelProfile.measure(.gemm) { spin(milliseconds: 1) }
        }
        let region = KernelProfile.begin()
        spin(milliseconds: 1)
        KernelProfile.end(region, .packing)
        spin(milliseconds: 2)    // outside any region: framework time
        let report = KernelProfile.stop()
        #expect(!KernelProfile.isRunning)

        #expect(report.calls[.elementwise] == 1 && report.calls[.packing] == 1 && report.calls[.gemm] == 0)
        #expect(report.nanoseconds[.gemm] == 0)
        let elementwise = report.nanoseconds[.elementwise] ?? 0, packing = report.nanoseconds[.packing] ?? 0
        #expect(elementwise >= 3_000_000 && packing >= 1_000_000)
        #expect(report.callingThreadNanoseconds == elementwise + packing)
        #expect(report.frameworkNanoseconds >= 2_000_000)
        #expect(report.frameworkNanoseconds == report.wallNanoseconds - elementwise - packing)
        #expect(report.totalNanoseconds == report.wallNanoseconds)
        #expect(abs(report.milliseconds(.elementwise) - Double(elementwise) / 1e6) < 1e-9)
    }

    @Test("nothing is recorded while profiling is off, and start() resets the totals")
    func offRecordsNothing() {
        KernelProfile.start(callingThreadOnly: true)
        KernelProfile.measure(.optimizer) { spin(milliseconds: 1) }
        #expect(KernelProfile.stop().calls[.optimizer] == 1)
        KernelProfile.measure(.optimizer) { spin(milliseconds: 1) }
        #expect(KernelProfile.begin().start == 0)
        #expect(KernelProfile.stop().calls[.optimizer] == 1)    // the totals since the last start
        KernelProfile.start(callingThreadOnly: true)
        let report = KernelProfile.stop()
        #expect(report.calls.values.allSatisfy { $0 == 0 } && report.nanoseconds.values.allSatisfy { $0 == 0 })
    }

    @Test("regions on helper threads add to their category but not to the calling thread's time")
    func helperThreads() {
        KernelProfile.start()
        Kernels.parallelFor(2, threads: 2) { _ in KernelProfile.measure(.directConvolution) { spin(milliseconds: 2) } }
        let report = KernelProfile.stop()
        // Other suites' kernels may add to the categories meanwhile (this test only adds).
        #expect(report.calls[.directConvolution]! >= 2 && report.nanoseconds[.directConvolution]! >= 4_000_000)
        #expect(report.callingThreadNanoseconds <= report.wallNanoseconds)
        #expect(report.totalNanoseconds >= report.nanoseconds[.directConvolution]! + report.frameworkNanoseconds)
    }

    @Test("a training step splits into GEMM, packing, im2col, normalization, element-wise, copies and optimizer")
    func trainingStepCategories() {
        let model = RandomGenerator.withSeed(5) {
            Sequential(Conv2d(3, 8, kernelSize: 3, stride: 2, padding: 1), BatchNorm2d(8), ReLU(), MaxPool2d(kernelSize: 2),
                       Flatten(), Linear(8 * 4 * 4, 10))
        }
        let optimizer = SGD(model, lr: 0.1, momentum: 0.9)
        let x = randomTensor([2, 3, 16, 16], seed: 6)
        KernelProfile.start(callingThreadOnly: true)
        Kernels.withMaxThreads(1) {
            let loss = Tensor.crossEntropy(model(x), targets: [1, 7])
            loss.backward()
            optimizer.step()
            _ = randomTensor([6, 5], seed: 7).transposed(0, 1).contiguous()
        }
        let report = KernelProfile.stop()
        for category in [KernelProfile.Category.gemm, .packing, .convolutionData, .normalization, .elementwise, .optimizer, .copy] {
            #expect((report.calls[category] ?? 0) > 0 && (report.nanoseconds[category] ?? 0) > 0, "\(category.label)")
        }
        for category in [KernelProfile.Category.attention, .directConvolution, .threadWait] {
            #expect(report.calls[category] == 0, "\(category.label)")
        }
        #expect(report.callingThreadNanoseconds == report.nanoseconds.values.reduce(0, +))
        #expect(report.frameworkNanoseconds > 0 && report.totalNanoseconds == report.wallNanoseconds)
    }

    @Test("the attention kernel's softmax rows are their own category, its products GEMM")
    func attentionCategory() {
        let q = randomTensor([1, 2, 8, 4], seed: 8), k = randomTensor([1, 2, 8, 4], seed: 9), v = randomTensor([1, 2, 8, 4], seed: 10)
        KernelProfile.start(callingThreadOnly: true)
        Kernels.withMaxThreads(1) { _ = Tensor.scaledDotProductAttention(query: q, key: k, value: v) }
        let report = KernelProfile.stop()
        #expect(report.calls[.attention]! > 0 && report.calls[.gemm]! > 0)
    }

    // MARK: GEMM flops

    /// `2 m n k` summed over `cases`.
    private static func flops(_ cases: [SGEMMCase]) -> Int { cases.reduce(0) { $0 + 2 * $1.m * $1.n * $1.k } }

    @Test("GEMM flops are 2 m n k per product on every path: packed (blocks of depth and rows, edge tiles) and direct")
    func gemmFlopsPerProduct() {
        // Packed with edge tiles; packed over several depth blocks (k > KC) and row blocks (m > MC);
        // direct by rows, by columns and tiny; degenerate shapes (no products).
        let packed = [SGEMMCase(m: 37, n: 53, k: 29), SGEMMCase(m: 250, n: 13, k: 400, transA: true, transB: true)]
        let direct = [SGEMMCase(m: 3, n: 40, k: 17, transA: true), SGEMMCase(m: 40, n: 2, k: 9, transB: true),
                      SGEMMCase(m: 6, n: 6, k: 6)]
        let degenerate = [SGEMMCase(m: 5, n: 7, k: 0, beta: 2), SGEMMCase(m: 0, n: 7, k: 5)]
        // The direct shapes forced through packing too, as convolutions call it (tiles mostly edge).
        let forcedPacked = direct
        #expect(packed.allSatisfy { !GEMMDirect.handles(m: $0.m, n: $0.n, k: $0.k) })
        #expect(direct.allSatisfy { GEMMDirect.handles(m: $0.m, n: $0.n, k: $0.k) })

        KernelProfile.start(callingThreadOnly: true)
        for t in packed + direct + degenerate { _ = runSGEMM(t, SGEMMOperands(t)) }
        for t in forcedPacked { _ = runSGEMM(t, SGEMMOperands(t), kernel: .active, direct: false) }
        let report = KernelProfile.stop()

        #expect(report.flops[.gemm] == Self.flops(packed + direct + degenerate + forcedPacked))
        for category in KernelProfile.Category.allCases where category != .gemm { #expect(report.flops[category] == 0) }
        let rate = report.gigaflopsPerSecond(.gemm)
        #expect(rate != nil && abs(rate! - Double(report.flops[.gemm]!) / Double(report.nanoseconds[.gemm]!)) < 1e-9)
        #expect(report.gigaflopsPerSecond(.packing) == nil)
    }

    @Test("a Linear layer's forward and backward count their three GEMMs")
    func linearFlops() {
        // rows 3: forward and input gradient take the direct path, the weight gradient the packed one.
        let rows = 3, inFeatures = 20, outFeatures = 24
        let layer = RandomGenerator.withSeed(11) { Linear(inFeatures, outFeatures) }
        var x = randomTensor([rows, inFeatures], seed: 12)
        x.requiresGrad = true
        KernelProfile.start(callingThreadOnly: true)
        Kernels.withMaxThreads(1) { _ = layer(x).sum().backward() }
        let report = KernelProfile.stop()
        #expect(x.grad != nil && layer.weight.grad != nil)
        #expect(report.flops[.gemm] == Self.flops([SGEMMCase(m: rows, n: outFeatures, k: inFeatures),      // y = x W^T
                                                   SGEMMCase(m: rows, n: inFeatures, k: outFeatures),      // dx = g W
                                                   SGEMMCase(m: outFeatures, n: inFeatures, k: rows)]))    // dW = g^T x
    }

    @Test("the attention kernel's products count as GEMM flops")
    func attentionFlops() {
        let q = randomTensor([2, 3, 9, 5], seed: 13), k = randomTensor([2, 3, 11, 5], seed: 14)
        let v = randomTensor([2, 3, 11, 7], seed: 15)
        KernelProfile.start(callingThreadOnly: true)
        Kernels.withMaxThreads(1) { _ = Tensor.scaledDotProductAttention(query: q, key: k, value: v) }
        let report = KernelProfile.stop()
        let geometry = AttentionGeometry(batch: 2, queryHeads: 3, keyValueHeads: 3, queryLength: 9, keyLength: 11,
                                         headDim: 5, valueDim: 7, scale: 1, isCausal: false)
        #expect(report.flops[.gemm] == Int(geometry.forwardFlops))
        #expect(report.flops[.gemm] == 2 * 6 * 9 * 11 * (5 + 7))
    }

    @Test("a product split across threads counts every block (helper threads included)")
    func threadedGEMMFlops() {
        let t = SGEMMCase(m: 64, n: 96, k: 33)
        KernelProfile.start()
        _ = runSGEMM(t, SGEMMOperands(t), threads: 2, kernel: .active, splitAlways: true)
        let report = KernelProfile.stop()
        // Other suites' products may add to the count meanwhile (never subtract).
        #expect(report.flops[.gemm]! >= Self.flops([t]))
        #expect(GEMM.threadGrid(m: t.m, n: t.n, k: t.k, threads: 2, tile: GEMMKernelKind.active.shape,
                                parallelThreshold: 0) != (1, 1))
    }
}
