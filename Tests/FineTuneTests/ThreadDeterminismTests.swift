import Testing
@testable import FineTune

// A whole training step gives the same bits whatever the thread count: every kernel splits its
// work by the shapes (threads take whole elements, rows, planes, samples or blocks of C) and sums
// in an order the thread count does not change. The kernel tests check this kernel by kernel with
// an explicit thread count; this suite checks a step of a small CNN end to end.
//
// `Kernels.withMaxThreads` sets the thread count for this test's task only (other suites run at
// the same time and read the process-wide `Kernels.maxThreads`), and divides every size threshold
// below which work stays on one thread, so that a CNN small enough for a debug build (whose
// kernels run at ~15 MFLOP/s) splits its work as a large one does. Where the work is cut then
// differs from a release run at real sizes; that the result does not depend on it is the point.

/// Every size threshold of a parallel split is divided by this in the tests below: the
/// convolutions' 4 MFLOP becomes ~1 kFLOP, the GEMM's 192^3 multiply-adds 1728, the element-wise
/// kernels' 2^18 elements 64.
private let thresholdDivisor = 4096

/// A CNN with every convolution method, BatchNorm, max and average pooling and Linear (no bias
/// before a BatchNorm, as in ResNet: its gradient is ~0 and the update would not move it).
private func determinismCNN() -> Sequential {
    Sequential(
        Conv2d(3, 16, kernelSize: 3, padding: 1, bias: false),     // 0: columns (3 input channels), 12x12
        BatchNorm2d(16), ReLU(),                                    // 1, 2
        Conv2d(16, 16, kernelSize: 2, padding: 1, bias: false),     // 3: shifted copies, 13x13
        BatchNorm2d(16), ReLU(),                                    // 4, 5
        MaxPool2d(kernelSize: 2),                                   // 6: 6x6
        Conv2d(16, 64, kernelSize: 1),                              // 7: pointwise
        Conv2d(64, 64, kernelSize: 3, padding: 1, groups: 64, bias: false),  // 8: depthwise
        Conv2d(64, 64, kernelSize: 3, padding: 1, bias: false),     // 9: Winograd
        BatchNorm2d(64), ReLU(),                                    // 10, 11
        AvgPool2d(kernelSize: 2),                                   // 12: 3x3
        Flatten(),                                                  // 13
        Linear(64 * 3 * 3, 64), ReLU(),                             // 14, 15
        Linear(64, 10))                                             // 16
}

/// A convolution of `determinismCNN` and the methods its forward, input gradient and weight gradient must use.
private struct ConvolutionCase {
    var geometry: Conv2dGeometry
    var methods: [ConvPlan.Method]

    init(geometry: Conv2dGeometry, method: ConvPlan.Method) { self.init(geometry: geometry, methods: [method, method, method]) }
    init(geometry: Conv2dGeometry, methods: [ConvPlan.Method]) { self.geometry = geometry; self.methods = methods }
}

/// The convolutions of `determinismCNN` on a batch of `batch`.
private func convolutions(batch: Int) -> [ConvolutionCase] {
    let columns = Conv2dGeometry(batch: batch, inChannels: 3, height: 12, width: 12, outChannels: 16,
                                 kernelHeight: 3, kernelWidth: 3, padding: (1, 1))
    let shifted = Conv2dGeometry(batch: batch, inChannels: 16, height: 12, width: 12, outChannels: 16,
                                 kernelHeight: 2, kernelWidth: 2, padding: (1, 1))
    let pointwise = Conv2dGeometry(batch: batch, inChannels: 16, height: 6, width: 6, outChannels: 64,
                                   kernelHeight: 1, kernelWidth: 1)
    let depthwise = Conv2dGeometry(batch: batch, inChannels: 64, height: 6, width: 6, outChannels: 64,
                                   kernelHeight: 3, kernelWidth: 3, padding: (1, 1), groups: 64)
    let winograd = Conv2dGeometry(batch: batch, inChannels: 64, height: 6, width: 6, outChannels: 64,
                                  kernelHeight: 3, kernelWidth: 3, padding: (1, 1))
    return [ConvolutionCase(geometry: columns, method: .columns), ConvolutionCase(geometry: shifted, method: .shifted),
            ConvolutionCase(geometry: pointwise, method: .pointwise), ConvolutionCase(geometry: depthwise, method: .depthwise),
            ConvolutionCase(geometry: winograd, method: .winograd)]
}

/// Two SGD steps with momentum and weight decay (the second reads the momentum buffer) on a batch
/// of 4 (with 2 threads, each thread takes whole samples) and a batch of 1 (the threads share the
/// sample), from the same initial weights. Returns every parameter and buffer, and the losses, as bits.
private func trainedState(threads: Int) -> (tensors: [String: [UInt32]], losses: [UInt32]) {
    Kernels.withMaxThreads(threads, parallelThresholdsDividedBy: thresholdDivisor) {
        #expect(Kernels.maxThreads == threads)
        let model = RandomGenerator.withSeed(11) { determinismCNN() }
        let optimizer = SGD(model, lr: 0.05, momentum: 0.9, weightDecay: 1e-3)
        var losses: [UInt32] = []
        for (step, batch) in [4, 1].enumerated() {
            let x = randomTensor([batch, 3, 12, 12], seed: 40 + UInt64(step))
            let labels: [Int] = (0..<batch).map { sample in (sample * 7 + step) % 10 }
            optimizer.zeroGrad()
            let loss = Tensor.crossEntropy(model(x), targets: labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item().bitPattern)
        }
        let tensors: [String: [UInt32]] = model.stateDict().mapValues { tensor in tensor.scalars.map(\.bitPattern) }
        return (tensors, losses)
    }
}

@Suite("Thread determinism")
struct ThreadDeterminismTests {
    @Test("a training step gives bit-identical weights, BatchNorm statistics and losses on 1 and 2 threads")
    func trainingStepOneVersusTwoThreads() {
        let one = trainedState(threads: 1), two = trainedState(threads: 2)
        #expect(one.losses == two.losses)
        let tensorCount = 16 + 3 * 3    // 10 weights, 6 biases, 3 BatchNorms' statistics and counts
        #expect(Set(one.tensors.keys) == Set(two.tensors.keys) && one.tensors.count == tensorCount)
        for (name, bits) in one.tensors.sorted(by: { $0.key < $1.key }) {
            let other = two.tensors[name] ?? []
            let differing = zip(bits, other).filter { $0.0 != $0.1 }.count
            #expect(bits.count == other.count && differing == 0, "\(name): \(differing) of \(bits.count) values differ")
        }
        // The steps did train: every parameter and running statistic moved.
        let initial = RandomGenerator.withSeed(11) { determinismCNN() }.stateDict()
        for (name, tensor) in initial where !name.hasSuffix("num_batches_tracked") {
            let before: [UInt32] = tensor.scalars.map(\.bitPattern)
            #expect(before != one.tensors[name], "\(name) did not change")
        }
    }

    @Test("within the test's scope, two threads split every kernel of the CNN")
    func sizesSplitTheWork() {
        Kernels.withMaxThreads(2, parallelThresholdsDividedBy: thresholdDivisor) {
            // Each convolution method on threads that own samples (batch 4) and that share one (batch 1).
            for convolution in convolutions(batch: 4) + convolutions(batch: 1) {
                let plan = ConvPlan.current(convolution.geometry)
                let methods = [plan.forwardMethod, plan.backwardInputMethod, plan.backwardWeightMethod]
                #expect(methods == convolution.methods, "\(convolution.geometry)")
                // Whole sample groups per thread, or threads sharing a group (small planes group
                // all 4 samples into one); Winograd splits channels and its 16 products.
                #expect(plan.workers * plan.gemmThreads == 2 && plan.threads == 2, "\(convolution.geometry)")
                if convolution.geometry.batch == 1 { #expect(plan.workers == 1, "\(convolution.geometry)") }
            }
            // Element-wise kernels (a ReLU: 4 x 16 x 12 x 12 values; the update of the first Linear's
            // weight: 64 x 288), the softmax rows of the loss (4 x 10), pooling (the average pool
            // reads 4 x 32 x 6 x 6 values), and the weight gradient of the first Linear (64 x 288,
            // depth 4) on the blocked GEMM.
            let reluValues = 9216, linearWeights = 18432, softmaxValues = 40, averagePoolReads = 4608
            #expect(Kernels.parallelThreshold(Kernels.elementwiseParallelThreshold) < Swift.min(reluValues, linearWeights))
            #expect(Kernels.parallelThreshold(VectorMath.rowParallelThreshold) < softmaxValues)
            #expect(Kernels.parallelThreshold(1 << 16) < averagePoolReads)
            let gemmThreshold = Kernels.parallelThreshold(GEMM.parallelThreshold)
            let grid = GEMM.threadGrid(m: 64, n: 288, k: 4, threads: 2, tile: GEMMKernelKind.active.shape,
                                       parallelThreshold: gemmThreshold)
            #expect(grid.rows * grid.columns == 2 && !GEMMDirect.handles(m: 64, n: 288, k: 4))
        }
        // Outside the scope the thresholds are the real ones: these shapes would not split.
        #expect(Kernels.parallelThreshold(GEMM.parallelThreshold) == GEMM.parallelThreshold)
        let plan = ConvPlan.current(convolutions(batch: 4)[1].geometry)
        #expect(plan.workers == 1 && plan.gemmThreads == 1)
    }
}
