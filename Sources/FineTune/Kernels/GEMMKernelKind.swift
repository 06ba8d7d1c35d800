// Which SGEMM micro-kernel runs: chosen once from the build (host-CPU or portable, the
// architecture) and the CPU's features (CPU.swift).

/// The micro-kernels compiled into FineTune, one per tile shape.
enum GEMMKernelKind: CaseIterable, Sendable {
    /// 6 x 16: AVX2 + FMA, or arm64 NEON.
    case tile6x16
    /// 12 x 32: AVX-512.
    case tile12x32
    /// 6 x 8: portable (baseline x86-64 SSE).
    case tile6x8

    /// The kernel for this build and CPU, decided once.
    ///
    /// x86-64 host-CPU builds (`FINETUNE_NATIVE`) take the AVX-512 tile when the CPU reports
    /// `avx512f`, else the AVX2 tile; portable x86-64 builds take the SSE tile; arm64 always
    /// has NEON FMA and takes the 6 x 16 tile. (Swift cannot test the compile target's CPU
    /// features, so a build for an older CPU than the host, e.g. `FINETUNE_TARGET_CPU=x86-64-v3`
    /// on an AVX-512 machine, still picks the 12 x 32 tile: correct, but it spills.)
    static let active: GEMMKernelKind = {
        #if arch(arm64)
        return .tile6x16
        #elseif arch(x86_64) && FINETUNE_NATIVE
        return CPUFeatures.hasAVX512F ? .tile12x32 : .tile6x16
        #else
        return .tile6x8
        #endif
    }()

    /// Register tile: `mr` rows by `nr` columns of C.
    var shape: (mr: Int, nr: Int) {
        switch self {
        case .tile6x16: (GEMMKernel6x16.mr, GEMMKernel6x16.nr)
        case .tile12x32: (GEMMKernel12x32.mr, GEMMKernel12x32.nr)
        case .tile6x8: (GEMMKernel6x8.mr, GEMMKernel6x8.nr)
        }
    }

    /// Cache block sizes of the blocked algorithm with this kernel.
    var blocking: GEMMBlocking {
        switch self {
        case .tile6x16: GEMMKernel6x16.blocking
        case .tile12x32: GEMMKernel12x32.blocking
        case .tile6x8: GEMMKernel6x8.blocking
        }
    }

    /// Runs the blocked algorithm with this kernel on one thread.
    func runBlocked(_ problem: GEMMProblem) {
        switch self {
        case .tile6x16: GEMMBlocked<GEMMKernel6x16>.run(problem)
        case .tile12x32: GEMMBlocked<GEMMKernel12x32>.run(problem)
        case .tile6x8: GEMMBlocked<GEMMKernel6x8>.run(problem)
        }
    }

    /// Runs the blocked algorithm with this kernel on `threads` threads sharing the packed
    /// blocks of op(B); false, having done nothing, when the worker pool is busy.
    func runShared(_ problem: GEMMProblem, threads: Int) -> Bool {
        switch self {
        case .tile6x16: GEMMBlocked<GEMMKernel6x16>.runShared(problem, threads: threads)
        case .tile12x32: GEMMBlocked<GEMMKernel12x32>.runShared(problem, threads: threads)
        case .tile6x8: GEMMBlocked<GEMMKernel6x8>.runShared(problem, threads: threads)
        }
    }
}
