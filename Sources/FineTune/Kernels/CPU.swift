import Foundation

extension Kernels {
    /// Which SIMD code path this build of FineTune runs, e.g. `"x86-64 AVX2+FMA (host CPU build)"`.
    ///
    /// FineTuneBench prints it; a `portable` build on x86-64 runs SSE without FMA.
    public static var simdPath: String {
        #if FINETUNE_NATIVE
        let build = "host CPU build"
        #else
        let build = "portable build"
        #endif
        #if arch(x86_64)
        return "x86-64 (\(build))"
        #elseif arch(arm64)
        return "arm64 NEON (\(build))"
        #else
        return "generic (\(build))"
        #endif
    }
}
