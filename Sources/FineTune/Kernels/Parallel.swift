import Foundation
import Dispatch
import Synchronization

/// Low-level compute kernels on raw pointers. They know nothing about tensors or autograd.
public enum Kernels {
    private static let threadLimit = Atomic<Int>(0)

    /// The number of threads large kernels may use (default: all active cores).
    ///
    /// ```swift
    /// Kernels.maxThreads = 1   // single-threaded, e.g. for benchmarking
    /// ```
    public static var maxThreads: Int {
        get {
            let value = threadLimit.load(ordering: .relaxed)
            return value > 0 ? value : ProcessInfoCores.active
        }
        set { threadLimit.store(max(1, newValue), ordering: .relaxed) }
    }

    /// Runs `body(i)` for `i` in `0..<count`, spreading iterations over at most `threads` threads.
    /// With one thread (or one iteration) it runs inline, with no dispatch overhead.
    static func parallelFor(_ count: Int, threads: Int = Kernels.maxThreads, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if threads <= 1 || count == 1 {
            for i in 0..<count { body(i) }
            return
        }
        if WorkerPool.shared.run(count, threads: threads, body) { return }
        // The pool is busy (a nested call, or another thread's): Dispatch instead.
        withoutActuallyEscaping(body) { body in
            let box = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: count) { i in box.value(i) }
        }
    }
}

extension Kernels {
    /// Element-wise loops over more than this many elements are split across threads
    /// (results are identical: every element is computed the same way).
    static let elementwiseParallelThreshold = 1 << 18

    /// Runs `body(start, end)` over `0..<n`: in one call for small `n`, else in up to
    /// `maxThreads` chunks in parallel, with boundaries on multiples of 64 elements (whole
    /// cache lines and vectors). For element-wise kernels.
    @inline(__always)
    static func parallelChunks(_ n: Int, _ body: (Int, Int) -> Void) {
        let threads = Kernels.maxThreads
        guard n > elementwiseParallelThreshold, threads > 1 else { body(0, n); return }
        let chunks = min(threads, (n + elementwiseParallelThreshold - 1) / elementwiseParallelThreshold)
        let size = ((n + chunks - 1) / chunks + 63) & ~63
        parallelFor(chunks, threads: threads) { c in
            let start = c * size
            if start < n { body(start, min(n, start + size)) }
        }
    }
}

@usableFromInline
enum ProcessInfoCores {
    @usableFromInline static let active: Int = {
        #if canImport(Foundation)
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
        #else
        return 1
        #endif
    }()
}
