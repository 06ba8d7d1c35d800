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
            if let scope = currentScope { return scope.threads }
            let value = threadLimit.load(ordering: .relaxed)
            return value > 0 ? value : ProcessInfoCores.active
        }
        set { threadLimit.store(max(1, newValue), ordering: .relaxed) }
    }

    /// The settings of a ``withMaxThreads(_:parallelThresholdsDividedBy:_:)`` scope.
    private struct ThreadScope: Sendable {
        var threads: Int
        var thresholdDivisor: Int
    }
    /// The innermost scope of the current task (nil outside one).
    @TaskLocal private static var scope: ThreadScope?
    /// How many scopes are open in the process: while none is, nothing looks the task-local up.
    private static let openScopes = Atomic<Int>(0)

    private static var currentScope: ThreadScope? {
        openScopes.load(ordering: .relaxed) > 0 ? scope : nil
    }

    /// Runs `body` with ``maxThreads`` reading `threads` (at least 1) on the current task only,
    /// leaving the process-wide value to other tasks: tests that compare thread counts use it
    /// while other tests run. With a `divisor` above 1, every size threshold below which work
    /// stays on one thread is divided by it (``parallelThresholdDivisor``), so small test shapes
    /// split as large ones do. Only kernels called from this task see the scope (helper threads
    /// read the process-wide settings).
    @discardableResult
    static func withMaxThreads<R>(_ threads: Int, parallelThresholdsDividedBy divisor: Int = 1,
                                  _ body: () throws -> R) rethrows -> R {
        openScopes.add(1, ordering: .relaxed)
        defer { openScopes.subtract(1, ordering: .relaxed) }
        return try $scope.withValue(ThreadScope(threads: max(1, threads), thresholdDivisor: max(1, divisor)), operation: body)
    }

    /// What the size thresholds of parallel splits are divided by: 1 unless a
    /// ``withMaxThreads(_:parallelThresholdsDividedBy:_:)`` scope of this task sets more.
    static var parallelThresholdDivisor: Int { currentScope?.thresholdDivisor ?? 1 }

    /// `threshold` divided by ``parallelThresholdDivisor`` (at least 1).
    @inline(__always)
    static func parallelThreshold(_ threshold: Int) -> Int {
        openScopes.load(ordering: .relaxed) > 0 ? max(1, threshold / parallelThresholdDivisor) : threshold
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
    /// cache lines and vectors). For element-wise kernels; each call of `body` is profiled as
    /// `category`.
    @inline(__always)
    static func parallelChunks(_ n: Int, category: KernelProfile.Category = .elementwise, _ body: (Int, Int) -> Void) {
        let threads = Kernels.maxThreads, threshold = parallelThreshold(elementwiseParallelThreshold)
        guard n > threshold, threads > 1 else {
            KernelProfile.measure(category) { body(0, n) }
            return
        }
        let chunks = min(threads, (n + threshold - 1) / threshold)
        let size = ((n + chunks - 1) / chunks + 63) & ~63
        parallelFor(chunks, threads: threads) { c in
            let start = c * size
            if start < n { KernelProfile.measure(category) { body(start, min(n, start + size)) } }
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
