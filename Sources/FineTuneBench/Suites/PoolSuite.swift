import FineTune

/// Pooling kernels on the CNN's first activation: batch 64, 32 channels, 28x28.
struct PoolSuite: BenchSuite {
    let name = "pool"
    let summary = "Kernels.*Pool2d*: batch 64 x 32 channels x 28x28; GFLOPS = window elements visited per second"

    func cases() -> [BenchCase] {
        let planes = 64 * 32
        let square = Pool2dGeometry(planes: planes, height: 28, width: 28, kernel: (2, 2), stride: (2, 2))
        let overlapping = Pool2dGeometry(planes: planes, height: 28, width: 28, kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        func windowWork(_ g: Pool2dGeometry) -> Double {
            Double(g.planes * g.outHeight * g.outWidth * g.kernelHeight * g.kernelWidth)
        }
        return [
            BenchCase(name: "maxpool2x2_fwd", detail: "max pooling 2x2/s2 with winner indices (training)",
                      flops: windowWork(square)) { PoolWorkload(square, kind: .max, backward: false) },
            BenchCase(name: "maxpool2x2_fwd_bwd", detail: "the same plus the gradient scatter",
                      flops: 2 * windowWork(square)) { PoolWorkload(square, kind: .max, backward: true) },
            BenchCase(name: "avgpool2x2_fwd_bwd", detail: "average pooling 2x2/s2, forward and backward",
                      flops: 2 * windowWork(square)) { PoolWorkload(square, kind: .average, backward: true) },
            BenchCase(name: "avgpool3x3s2_fwd_bwd", detail: "average pooling 3x3/s2/p1 (overlapping), forward and backward",
                      flops: 2 * windowWork(overlapping)) { PoolWorkload(overlapping, kind: .average, backward: true) },
        ]
    }
}

/// Buffers for one pooling case.
final class PoolWorkload: Workload {
    enum Kind { case max, average }
    private let g: Pool2dGeometry
    private let kind: Kind
    private let backward: Bool
    private let input: FloatBuffer, output: FloatBuffer, gradOutput: FloatBuffer, gradInput: FloatBuffer
    private let indices: UnsafeMutablePointer<Int32>

    init(_ g: Pool2dGeometry, kind: Kind, backward: Bool) {
        self.g = g
        self.kind = kind
        self.backward = backward
        let inputCount = g.planes * g.height * g.width, outputCount = g.planes * g.outHeight * g.outWidth
        input = FloatBuffer(count: inputCount, seed: 21)
        output = FloatBuffer(count: outputCount)
        gradOutput = FloatBuffer(count: outputCount, seed: 22)
        gradInput = FloatBuffer(count: inputCount)
        indices = .allocate(capacity: outputCount)
        indices.initialize(repeating: 0, count: outputCount)
    }

    deinit { indices.deallocate() }

    func run(threads: Int) {
        Kernels.maxThreads = threads    // for the kernels it calls without a thread count
        switch kind {
        case .max:
            Kernels.maxPool2dForward(g, input: input.readOnly, output: output.pointer, indices: indices, threads: threads)
            if backward {
                Kernels.maxPool2dBackward(g, gradOutput: gradOutput.readOnly, indices: indices, gradInput: gradInput.pointer,
                                          threads: threads)
            }
        case .average:
            Kernels.avgPool2dForward(g, countIncludePad: true, input: input.readOnly, output: output.pointer, threads: threads)
            if backward {
                Kernels.avgPool2dBackward(g, countIncludePad: true, gradOutput: gradOutput.readOnly, gradInput: gradInput.pointer,
                                          threads: threads)
            }
        }
    }

    func checksum() -> Double { output.sum() + gradInput.sum() }
}
