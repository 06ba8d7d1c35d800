import Foundation
import Dispatch
import Synchronization

/// Persistent worker threads for ``Kernels/parallelFor(_:threads:_:)``.
///
/// Dispatch's `concurrentPerform` wakes its threads for every call, which costs tens of
/// microseconds in a VM: as much as a whole mid-size GEMM. These workers spin for a short
/// while after each job, so the back-to-back kernels of a training step find them awake (as
/// OpenBLAS's threads do), then sleep on a semaphore. One job runs at a time; a call made
/// while the pool is busy (from a worker, or from another thread) falls back to Dispatch.
///
/// Protocol: the caller writes the job, sets `open`, bumps `generation` and wakes sleeping
/// workers; everyone takes iterations from the shared `next` counter. When all `count` are
/// done the caller clears `open`, waits until no worker is `active`, and only then drops the
/// body. A worker counts itself `active` before it looks at `open` and reads the job, so it
/// either sees the job open (and the caller waits for it) or closed (and reads nothing): the
/// non-escaping body is never called after the caller returns.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()

    /// How long an idle worker polls for the next job before sleeping (nanoseconds).
    static let spinNanoseconds: UInt64 = 50_000

    private let generation = Atomic<Int>(0)
    private let next = Atomic<Int>(0)
    private let done = Atomic<Int>(0)
    private let active = Atomic<Int>(0)
    private let open = Atomic<Bool>(false)
    private let busy = Atomic<Bool>(false)
    /// The current job: written by the caller before `generation` is bumped (release), read by
    /// workers after they see the bump (acquire).
    private nonisolated(unsafe) var body: ((Int) -> Void)?
    private nonisolated(unsafe) var count = 0
    /// Workers with an index below this join the current job.
    private nonisolated(unsafe) var participants = 0

    /// A worker's sleep flag and wake-up semaphore.
    private final class Worker: Sendable {
        let sleeping = Atomic<Bool>(false)
        let wake = DispatchSemaphore(value: 0)
    }
    private let workerLock = Locked<Int>(0)    // number of started workers
    /// Started workers (appended only by the caller holding `busy`).
    private nonisolated(unsafe) var workers: [Worker] = []

    /// Runs `body(i)` for `i` in `0..<count` on the caller plus up to `threads - 1` workers.
    /// Returns false (having done nothing) when the pool is busy.
    func run(_ count: Int, threads: Int, _ body: (Int) -> Void) -> Bool {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        let helpers = min(threads, count) - 1
        ensureWorkers(helpers)
        withoutActuallyEscaping(body) { body in
            self.body = body
            self.count = count
            participants = helpers
            next.store(0, ordering: .relaxed)
            done.store(0, ordering: .relaxed)
            open.store(true, ordering: .sequentiallyConsistent)
            generation.add(1, ordering: .sequentiallyConsistent)
            for w in workers.prefix(helpers) where w.sleeping.exchange(false, ordering: .sequentiallyConsistent) {
                w.wake.signal()
            }
            work()
            let wait = KernelProfile.begin()
            while done.load(ordering: .acquiring) < count {}
            open.store(false, ordering: .sequentiallyConsistent)
            while active.load(ordering: .sequentiallyConsistent) > 0 {}
            KernelProfile.end(wait, .threadWait)
            self.body = nil
        }
        return true
    }

    /// Runs `body(member)` for `member` in `0..<threads` on `threads` different threads at once
    /// (the caller and `threads - 1` workers), so the members may wait for each other (a
    /// ``SpinBarrier``). Returns false, having done nothing, when the pool is busy.
    ///
    /// Each of the `threads` iterations of ``run(_:threads:_:)`` is taken by the caller or a
    /// participating worker, and a thread takes its next iteration only after its body returns:
    /// while every body waits for all the others, each must have been taken by another thread.
    /// (Dispatch's fallback gives no such promise, so there is none here.)
    func runTogether(_ threads: Int, _ body: (Int) -> Void) -> Bool {
        run(threads, threads: threads, body)
    }

    /// Takes iterations until none is left.
    private func work() {
        guard let body else { return }
        while true {
            let i = next.add(1, ordering: .relaxed).oldValue
            if i >= count { return }
            body(i)
            done.add(1, ordering: .releasing)
        }
    }

    private func ensureWorkers(_ n: Int) {
        // A new worker starts from the generation before the caller's bump, so it joins the job
        // being started even if its thread runs only after the bump (``runTogether(_:_:)``
        // needs every participant).
        let current = generation.load(ordering: .acquiring)
        workerLock.withLock { started in
            while started < n {
                let worker = Worker()
                workers.append(worker)
                let index = started
                let thread = Thread { [unowned self] in self.loop(worker, index: index, seen: current) }
                thread.stackSize = 1 << 20
                thread.start()
                started += 1
            }
        }
    }

    private func loop(_ worker: Worker, index: Int, seen initialGeneration: Int) {
        var seen = initialGeneration
        while true {
            // Poll for a new job for a short while, then sleep until a caller wakes us.
            let start = DispatchTime.now().uptimeNanoseconds
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spins &+= 1
                if spins & 255 == 0 && DispatchTime.now().uptimeNanoseconds - start > Self.spinNanoseconds {
                    worker.sleeping.store(true, ordering: .sequentiallyConsistent)
                    if generation.load(ordering: .sequentiallyConsistent) == seen {
                        worker.wake.wait()
                    } else if !worker.sleeping.exchange(false, ordering: .sequentiallyConsistent) {
                        worker.wake.wait()    // a caller already cleared the flag: take its signal
                    }
                    break
                }
            }
            active.add(1, ordering: .sequentiallyConsistent)
            let current = generation.load(ordering: .sequentiallyConsistent)
            if current != seen {
                seen = current
                if open.load(ordering: .sequentiallyConsistent) && index < participants { work() }
            }
            active.subtract(1, ordering: .releasing)
        }
    }
}

/// A reusable barrier for the threads of a ``WorkerPool/runTogether(_:_:)`` job: each call of
/// ``wait()`` returns once `count` threads have called it. Waiters spin (the phases between
/// barriers are short), yielding the core now and then in case there are more threads than cores.
final class SpinBarrier: Sendable {
    private let count: Int
    private let arrived = Atomic<Int>(0)
    private let phase = Atomic<Int>(0)

    init(count: Int) { self.count = count }

    /// Waits for the other threads. Everything a thread wrote before its call is visible to all
    /// of them after theirs.
    func wait() {
        let current = phase.load(ordering: .acquiring)
        if arrived.add(1, ordering: .acquiringAndReleasing).newValue == count {
            // The last one: reset for the next use before releasing the others (who can only
            // arrive again after they see the new phase).
            arrived.store(0, ordering: .relaxed)
            phase.store(current &+ 1, ordering: .releasing)
            return
        }
        var spins = 0
        while phase.load(ordering: .acquiring) == current {
            spins &+= 1
            if spins & 1023 == 0 { sched_yield() }
        }
    }
}
