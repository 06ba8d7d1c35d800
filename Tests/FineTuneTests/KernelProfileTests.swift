import Dispatch
import Testing
@testable import FineTune

// KernelProfile: regions add their time to their category once (nested regions count towards the
// outer one), the calling thread's unmeasured time is the framework time, nothing is recorded while
// it is off, and a training step splits into the categories its kernels belong to. The profile is
// process-wide, so the suite runs serialized, and the tests that need exact counts record only their
// own thread (`callingThreadOnly`), which other suites' kernels never run on.

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
}
