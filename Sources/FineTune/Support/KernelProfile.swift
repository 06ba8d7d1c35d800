import Dispatch
import Foundation
import Synchronization

/// Where the time of a training step goes: nanoseconds per kind of kernel work, so the next
/// bottleneck is visible (`FineTuneBench --profile` prints it per case).
///
/// Off by default. While off, an instrumented kernel pays one relaxed atomic load per call (not
/// per element). ``start()`` resets the totals and switches profiling on; ``stop()`` switches it
/// off and returns what was measured since, with the wall time.
///
/// ```swift
/// KernelProfile.start()
/// for _ in 0..<5 { trainingStep() }
/// let report = KernelProfile.stop()
/// print(report.milliseconds(.gemm) / 5, report.frameworkMilliseconds / 5)
/// print(report.gigaflopsPerSecond(.gemm) ?? 0)   // how fast the GEMM ran while it ran
/// ```
///
/// The kernels are timed where they run, so work split across threads adds up CPU time: with
/// more than one thread the categories can sum to more than the wall time. One profile runs at
/// a time, for the whole process.
public enum KernelProfile {
    /// The kinds of work a step is split into.
    public enum Category: Int, CaseIterable, Sendable, Hashable {
        /// The GEMM micro- and macro-kernels and the direct matrix-vector path (with their flops).
        case gemm
        /// Copying GEMM operands into the micro-kernel's panel layout.
        case packing
        /// Convolution data movement: im2col, col2im, shifted and padded copies.
        case convolutionData
        /// Convolutions computed by direct loops (depthwise).
        case directConvolution
        /// Batch, layer, group and RMS normalization (and a convolution epilogue's batch norm, residual and ReLU).
        case normalization
        /// Element-wise arithmetic and activations, row softmax, reductions and pooling.
        case elementwise
        /// The softmax, mask and dropout rows inside the attention kernel (its products count as GEMM).
        case attention
        /// Optimizer updates and gradient clipping.
        case optimizer
        /// Strided tensor copies (making a transposed or sliced view contiguous).
        case copy
        /// The calling thread waiting for helper threads to finish their part of a parallel loop.
        case threadWait

        /// A short name for reports.
        public var label: String {
            switch self {
            case .gemm: "GEMM"
            case .packing: "GEMM packing"
            case .convolutionData: "im2col/col2im, conv copies"
            case .directConvolution: "depthwise conv"
            case .normalization: "normalization"
            case .elementwise: "element-wise, pooling"
            case .attention: "attention softmax"
            case .optimizer: "optimizer"
            case .copy: "tensor copies"
            case .threadWait: "waiting for threads"
            }
        }
    }

    /// The totals of one profile, from ``start()`` to ``stop()``.
    public struct Report: Sendable, Equatable {
        /// Wall-clock time between ``KernelProfile/start()`` and ``KernelProfile/stop()``.
        public var wallNanoseconds: Int
        /// Measured time per category, summed over threads.
        public var nanoseconds: [Category: Int]
        /// Measured regions per category.
        public var calls: [Category: Int]
        /// Floating-point operations done in the measured regions per category: `2 m n k` per
        /// `m x n x k` product for ``Category/gemm`` (every sgemm path: the blocked kernels, the
        /// direct matrix-vector path, the attention kernel's products), 0 for the other categories.
        public var flops: [Category: Int]
        /// The measured time on the thread that called ``KernelProfile/start()`` (its share of
        /// parallel kernels and its waits for helpers included).
        public var callingThreadNanoseconds: Int

        /// The wall time the calling thread spent outside measured kernels: autograd, allocation,
        /// tensor bookkeeping and loops that are not instrumented.
        public var frameworkNanoseconds: Int { Swift.max(0, wallNanoseconds - callingThreadNanoseconds) }

        /// Every category plus the framework time: CPU time of all threads (the wall time on one thread).
        public var totalNanoseconds: Int { nanoseconds.values.reduce(0, +) + frameworkNanoseconds }

        /// The rate of `category` while it ran: ``flops`` over ``nanoseconds`` in GFLOP/s, `nil`
        /// without flops or time. With several threads the time is summed over them, so this is
        /// the rate per thread (compare it with one core's peak).
        public func gigaflopsPerSecond(_ category: Category) -> Double? {
            guard let flops = flops[category], flops > 0, let time = nanoseconds[category], time > 0 else { return nil }
            return Double(flops) / Double(time)
        }

        /// Measured time of `category` in milliseconds.
        public func milliseconds(_ category: Category) -> Double { Double(nanoseconds[category] ?? 0) / 1e6 }

        /// ``frameworkNanoseconds`` in milliseconds.
        public var frameworkMilliseconds: Double { Double(frameworkNanoseconds) / 1e6 }

        /// ``totalNanoseconds`` in milliseconds.
        public var totalMilliseconds: Double { Double(totalNanoseconds) / 1e6 }

        /// ``wallNanoseconds`` in milliseconds.
        public var wallMilliseconds: Double { Double(wallNanoseconds) / 1e6 }
    }

    /// Whether a profile is running.
    public static var isRunning: Bool { enabled.load(ordering: .relaxed) }

    /// Resets the totals and starts measuring. The calling thread is the one whose unmeasured
    /// time counts as framework time; call ``stop()`` from it.
    public static func start() { start(callingThreadOnly: false) }

    /// Stops measuring and returns the totals since ``start()``.
    @discardableResult
    public static func stop() -> Report {
        enabled.store(false, ordering: .sequentiallyConsistent)
        let wall = Int(clamping: now() &- startTime.load(ordering: .relaxed))
        ThreadFlags.current &= ~ThreadFlags.profilingThread
        let totals = Totals.ring[generation.load(ordering: .relaxed) % Totals.ring.count]
        var nanoseconds: [Category: Int] = [:], calls: [Category: Int] = [:], flops: [Category: Int] = [:]
        for category in Category.allCases {
            nanoseconds[category] = totals.nanoseconds[category.rawValue].load()
            calls[category] = totals.calls[category.rawValue].load()
            flops[category] = totals.flops[category.rawValue].load()
        }
        return Report(wallNanoseconds: wall, nanoseconds: nanoseconds, calls: calls, flops: flops,
                      callingThreadNanoseconds: totals.callingThread.load())
    }

    /// `start()`, where `callingThreadOnly` records only the calling thread's regions (tests use
    /// it to ignore other tests' kernels running at the same time).
    static func start(callingThreadOnly: Bool) {
        // Published by the generation's release store: a region that sees the new generation
        // sees these too.
        let next = generation.load(ordering: .relaxed) &+ 1
        onlyProfilingThread.store(callingThreadOnly, ordering: .relaxed)
        Totals.ring[next % Totals.ring.count].reset()
        generation.store(next, ordering: .releasing)
        ThreadFlags.current |= ThreadFlags.profilingThread
        startTime.store(now(), ordering: .relaxed)
        enabled.store(true, ordering: .sequentiallyConsistent)
    }

    // MARK: Instrumentation

    /// An open measured region, from ``begin()``; `start == 0` when there is nothing to record
    /// (profiling off, or the region is nested in another one on the same thread).
    struct Region {
        let start: UInt64
        /// The profile it belongs to (its totals), so a region still open when a new profile
        /// starts adds to the old one.
        let generation: Int
    }

    /// Opens a region: one relaxed atomic load when profiling is off. Close it with
    /// ``end(_:_:)`` on the same thread, and do not run a parallel loop inside it (its helper
    /// threads measure their own regions; the caller's wait counts as `.threadWait`).
    ///
    /// ```swift
    /// let region = KernelProfile.begin()
    /// writeShiftedCopies(...)
    /// KernelProfile.end(region, .convolutionData)
    /// ```
    @inline(__always)
    static func begin() -> Region {
        enabled.load(ordering: .relaxed) ? beginMeasuring() : Region(start: 0, generation: 0)
    }

    /// Closes `region`, adding its time to `category` (nothing when `begin()` recorded nothing).
    @inline(__always)
    static func end(_ region: Region, _ category: Category) {
        if region.start != 0 { endMeasuring(region, category, flops: 0) }
    }

    /// Closes a ``Category/gemm`` region that computed an `m x n x k` product: its time and
    /// `2 m n k` flops (nothing when `begin()` recorded nothing, like ``end(_:_:)``). Every GEMM
    /// kernel region ends here, so ``Report/flops`` counts each product once.
    @inline(__always)
    static func endProduct(_ region: Region, m: Int, n: Int, k: Int) {
        if region.start != 0 { endMeasuring(region, .gemm, flops: 2 &* m &* n &* k) }
    }

    /// Runs `body` as one measured region of `category`: ``begin()`` before, ``end(_:_:)`` after.
    /// A region inside another on the same thread counts towards the outer one only.
    ///
    /// ```swift
    /// KernelProfile.measure(.convolutionData) { writeShiftedCopies(...) }
    /// ```
    @inline(__always)
    static func measure<R>(_ category: Category, _ body: () throws -> R) rethrows -> R {
        let region = begin()
        defer { end(region, category) }
        return try body()
    }

    @inline(never)
    private static func beginMeasuring() -> Region {
        let flags = ThreadFlags.current
        if flags & ThreadFlags.inRegion != 0 { return Region(start: 0, generation: 0) }
        let profile = generation.load(ordering: .acquiring)
        if onlyProfilingThread.load(ordering: .relaxed) && flags & ThreadFlags.profilingThread == 0 {
            return Region(start: 0, generation: 0)
        }
        ThreadFlags.current = flags | ThreadFlags.inRegion
        return Region(start: now(), generation: profile)
    }

    @inline(never)
    private static func endMeasuring(_ region: Region, _ category: Category, flops: Int) {
        let elapsed = Int(clamping: now() &- region.start)
        let flags = ThreadFlags.current
        ThreadFlags.current = flags & ~ThreadFlags.inRegion
        let totals = Totals.ring[region.generation % Totals.ring.count]
        totals.nanoseconds[category.rawValue].add(elapsed)
        totals.calls[category.rawValue].add(1)
        if flops != 0 { totals.flops[category.rawValue].add(flops) }
        if flags & ThreadFlags.profilingThread != 0 { totals.callingThread.add(elapsed) }
    }

    // MARK: State

    private static let enabled = Atomic<Bool>(false)
    private static let onlyProfilingThread = Atomic<Bool>(false)
    private static let startTime = Atomic<UInt64>(0)
    /// Counts `start()` calls; profile `g` adds to `Totals.ring[g % 4]`.
    private static let generation = Atomic<Int>(0)

    /// The running totals of one profile. Four sets take turns, so a region that was open when
    /// the next profile started (on another thread, in a profile that has ended) adds to its own
    /// profile's set, not to the new one; only a region open across four starts could.
    private final class Totals: Sendable {
        /// A relaxed atomic count that an array can hold.
        final class Counter: Sendable {
            private let value = Atomic<Int>(0)
            func add(_ amount: Int) { value.add(amount, ordering: .relaxed) }
            func load() -> Int { value.load(ordering: .relaxed) }
            func reset() { value.store(0, ordering: .relaxed) }
        }
        /// Per category.
        let nanoseconds = Category.allCases.map { _ in Counter() }, calls = Category.allCases.map { _ in Counter() },
            flops = Category.allCases.map { _ in Counter() }
        /// Measured time on the thread that called `start()`.
        let callingThread = Counter()

        static let ring = (0..<4).map { _ in Totals() }

        func reset() {
            for counter in nanoseconds + calls + flops + [callingThread] { counter.reset() }
        }
    }

    /// Monotonic nanoseconds, never 0 (0 marks an empty region).
    private static func now() -> UInt64 { Swift.max(1, DispatchTime.now().uptimeNanoseconds) }
}

/// Per-thread profiling flags (bits of an `Int` in a pthread key; read only while a profile runs).
private enum ThreadFlags {
    /// The thread is inside a measured region.
    static let inRegion = 1
    /// The thread called `KernelProfile.start()`.
    static let profilingThread = 2

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let status = pthread_key_create(&key, nil)
        precondition(status == 0, "KernelProfile: pthread_key_create failed (\(status))")
        return key
    }()

    /// This thread's flags.
    static var current: Int {
        get { Int(bitPattern: pthread_getspecific(key)) }
        set { pthread_setspecific(key, UnsafeRawPointer(bitPattern: newValue)) }
    }
}
