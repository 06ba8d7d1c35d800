import FineTune
import Foundation
import Synchronization

// The machine's floating-point peak for the SIMD path this build compiles: a loop of 12
// independent multiply-add chains that never touches memory, run on 1 thread and on N threads
// at once. "% peak" in the report is a case's GFLOPS over this figure at the same thread count.
//
// The vector is the widest the kernels use (GEMMMicroKernel.swift): SIMD16<Float> (one zmm) on
// AVX-512, SIMD8<Float> (one ymm) on AVX2 + FMA, SIMD8<Float> (two NEON q registers) on arm64,
// SIMD4<Float> (one xmm, multiply then add) in a portable x86-64 build. 12 chains cover FMA
// latency x throughput on these cores (4 cycles x 2 pipes = 8 in flight) and, with the two loop
// constants, fit in the register file without spills: 14 of 16 ymm, 14 of 32 zmm, 26 of 32 q.
// scripts/check-codegen.sh checks the x86-64 loop: `vfmadd213ps` on zmm (ymm) registers, unrolled
// by LLVM, and a counter; no memory access, no call.

/// The multiply-add peak of this machine for the compiled SIMD path.
enum FMAPeak {
    /// The loop's vector, for the report, e.g. "SIMD16<Float> (zmm, AVX-512)".
    static var vectorDescription: String {
        #if arch(x86_64) && FINETUNE_NATIVE
        return usesAVX512 ? "SIMD16<Float> FMA (zmm, AVX-512)" : "SIMD8<Float> FMA (ymm, AVX2)"
        #elseif arch(x86_64)
        return "SIMD4<Float> multiply + add (xmm, SSE, no FMA)"
        #elseif arch(arm64)
        return "SIMD8<Float> FMA (2 NEON q registers)"
        #else
        return "SIMD4<Float> multiply-add"
        #endif
    }

    /// Independent accumulator chains in the loop.
    static let chains = 12

    /// Peak GFLOP/s with `threads` threads each running the loop, best of `repetitions` runs of
    /// about `seconds` each: many short runs, so that on a shared machine some run undisturbed.
    static func gflops(threads: Int, seconds: Double = 0.01, repetitions: Int = 20) -> Double {
        let iterations = calibratedIterations(seconds: seconds)
        let flops = Double(threads) * Double(iterations) * flopsPerIteration
        var best = 0.0
        for _ in 0..<repetitions {
            best = max(best, flops / timeConcurrently(threads: threads, iterations: iterations))
        }
        return best / 1e9
    }

    /// Flops of one loop iteration: one multiply and one add per lane and chain.
    private static var flopsPerIteration: Double { Double(2 * chains * lanes) }

    private static var usesAVX512: Bool { Kernels.microKernelShape == (12, 32) }

    private static var lanes: Int {
        #if arch(x86_64) && FINETUNE_NATIVE
        return usesAVX512 ? 16 : 8
        #elseif arch(arm64)
        return 8
        #else
        return 4
        #endif
    }

    /// Runs the loop of the active vector width `iterations` times; returns a value that depends
    /// on every chain, so nothing is optimised away.
    private static func run(iterations: Int) -> Float {
        #if arch(x86_64) && FINETUNE_NATIVE
        return usesAVX512 ? chains16(iterations: iterations) : chains8(iterations: iterations)
        #elseif arch(arm64)
        return chains8(iterations: iterations)
        #else
        return chains4(iterations: iterations)
        #endif
    }

    /// Iterations for one run of about `seconds` on one thread.
    private static func calibratedIterations(seconds: Double) -> Int {
        var iterations = 1 << 14
        while true {
            let elapsed = timeConcurrently(threads: 1, iterations: iterations)
            if elapsed >= seconds / 4 { return max(1, Int(Double(iterations) * seconds / elapsed)) }
            iterations *= 4
        }
    }

    /// Wall time of `threads` threads each running the loop `iterations` times.
    private static func timeConcurrently(threads: Int, iterations: Int) -> Double {
        let clock = ContinuousClock()
        if threads == 1 {
            let start = clock.now
            sink(run(iterations: iterations))
            return (clock.now - start).seconds
        }
        let group = DispatchGroup()
        let start = clock.now
        for _ in 0..<threads {
            group.enter()
            Thread {
                sink(run(iterations: iterations))
                group.leave()
            }.start()
        }
        group.wait()
        return (clock.now - start).seconds
    }

    /// Keeps the loop's result observable.
    private static let observed = Mutex<Float>(0)
    private static func sink(_ value: Float) { observed.withLock { $0 += value } }

    @inline(never)
    static func chains16(iterations: Int) -> Float { chainLoop(SIMD16<Float>.self, iterations: iterations) }
    @inline(never)
    static func chains8(iterations: Int) -> Float { chainLoop(SIMD8<Float>.self, iterations: iterations) }
    @inline(never)
    static func chains4(iterations: Int) -> Float { chainLoop(SIMD4<Float>.self, iterations: iterations) }

    /// 12 chains `c = c * m + a`, converging to `a / (1 - m)`: no overflow, no subnormals.
    @inline(__always)
    private static func chainLoop<V: SIMD>(_: V.Type, iterations: Int) -> Float where V.Scalar == Float {
        // Derived from `iterations` so that the compiler cannot fold the loop.
        let m = V(repeating: 0.999 - Float(iterations & 1) * 1e-7), a = V(repeating: 1e-3)
        var c0 = V(repeating: 0.0), c1 = V(repeating: 0.1), c2 = V(repeating: 0.2), c3 = V(repeating: 0.3)
        var c4 = V(repeating: 0.4), c5 = V(repeating: 0.5), c6 = V(repeating: 0.6), c7 = V(repeating: 0.7)
        var c8 = V(repeating: 0.8), c9 = V(repeating: 0.9), c10 = V(repeating: 1.0), c11 = V(repeating: 1.1)
        for _ in 0..<iterations {
            c0 = multiplyAdd(c0, m, a); c1 = multiplyAdd(c1, m, a); c2 = multiplyAdd(c2, m, a)
            c3 = multiplyAdd(c3, m, a); c4 = multiplyAdd(c4, m, a); c5 = multiplyAdd(c5, m, a)
            c6 = multiplyAdd(c6, m, a); c7 = multiplyAdd(c7, m, a); c8 = multiplyAdd(c8, m, a)
            c9 = multiplyAdd(c9, m, a); c10 = multiplyAdd(c10, m, a); c11 = multiplyAdd(c11, m, a)
        }
        let total = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)) + ((c8 + c9) + (c10 + c11))
        return total.sum()
    }

    /// `c * m + a` as the kernels compute it (GEMMSIMD.multiplyAdd): one FMA where the build
    /// has FMA, a multiply and an add in a portable x86-64 build (where LLVM would otherwise
    /// call libm's `fmaf` per lane).
    @inline(__always)
    private static func multiplyAdd<V: SIMD>(_ c: V, _ m: V, _ a: V) -> V where V.Scalar == Float {
        #if FINETUNE_NATIVE || arch(arm64)
        return a.addingProduct(c, m)
        #else
        return c * m + a
        #endif
    }
}
