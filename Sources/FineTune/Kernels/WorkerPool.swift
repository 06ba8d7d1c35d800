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
        workerLock.withLock { started in
            while started < n {
                let worker = Worker()
                workers.append(worker)
                let index = started
                let thread = Thread { [unowned self] in self.loop(worker, index: index) }
                thread.stackSize = 1 << 20
                thread.start()
                started += 1
            }
        }
    }

    private func loop(_ worker: Worker, index: Int) {
        var seen = generation.load(ordering: .acquiring)
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
