import Foundation

extension Kernels {
    /// Which SIMD code path this build of FineTune runs on this CPU, and its SGEMM tile, e.g.
    /// `"x86-64 AVX2+FMA, 6x16 SGEMM micro-kernel (host CPU build)"`.
    ///
    /// FineTuneBench prints it. A `portable` build on x86-64 runs SSE without FMA, several
    /// times slower than a host-CPU build (`-target-cpu native -DFINETUNE_NATIVE`).
    public static var simdPath: String {
        let (mr, nr) = microKernelShape
        let tile = "\(mr)x\(nr) SGEMM micro-kernel"
        #if FINETUNE_NATIVE
        let build = "host CPU build"
        #else
        let build = "portable build"
        #endif
        #if arch(x86_64)
        #if FINETUNE_NATIVE
        let isa: String
        if GEMMKernelKind.active == .tile12x32 {
            isa = "AVX-512"
        } else if let flags = CPUFeatures.flags, !(flags.contains("avx2") && flags.contains("fma")) {
            isa = "without AVX2+FMA"
        } else {
            isa = "AVX2+FMA"
        }
        return "x86-64 \(isa), \(tile) (\(build))"
        #else
        return "x86-64 SSE, \(tile) (\(build): no FMA; build with -target-cpu native for full speed)"
        #endif
        #elseif arch(arm64)
        return "arm64 NEON FMA, \(tile) (\(build))"
        #else
        return "generic SIMD, \(tile) (\(build))"
        #endif
    }
}

/// CPU features of the machine we run on, read once.
enum CPUFeatures {
    /// The x86 feature flags the kernel reports (Linux: the `flags` line of /proc/cpuinfo), or
    /// `nil` where they are not probed (other systems and architectures).
    static let flags: Set<Substring>? = {
        #if os(Linux) && arch(x86_64)
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":")
        else { return nil }
        return Set(line[line.index(after: colon)...].split(separator: " "))
        #else
        return nil
        #endif
    }()

    /// Whether the CPU (and kernel) support AVX-512 Foundation; `false` where not probed.
    static let hasAVX512F: Bool = flags?.contains("avx512f") ?? false
}
