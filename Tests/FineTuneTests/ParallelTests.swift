import Foundation
import Synchronization
import Testing
@testable import FineTune

// Kernels.parallelFor on the persistent worker pool: every index exactly once, back-to-back
// jobs (workers awake), jobs after workers fell asleep, nested and concurrent calls (which
// fall back to Dispatch), and thread counts above the pool size.

/// Runs `parallelFor(count, threads:)` and returns how often each index ran.
private func hits(_ count: Int, threads: Int) -> [Int] {
    let counters = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: count)
    for i in 0..<count { (counters + i).initialize(to: Atomic(0)) }
    defer { counters.deallocate() }
    Kernels.parallelFor(count, threads: threads) { i in counters[i].add(1, ordering: .relaxed) }
    return (0..<count).map { counters[$0].load(ordering: .relaxed) }
}

@Suite("Parallel for")
struct ParallelTests {
    @Test("every index runs exactly once, over thousands of back-to-back jobs")
    func backToBack() {
        for round in 0..<3_000 {
            let count = 1 + round % 37
            #expect(hits(count, threads: 1 + round % 4) == Array(repeating: 1, count: count), "round \(round)")
        }
    }

    @Test("jobs after the workers went to sleep still run")
    func afterSleeping() throws {
        for _ in 0..<5 {
            Thread.sleep(forTimeInterval: 0.002)    // longer than the workers' spin
            #expect(hits(64, threads: 2) == Array(repeating: 1, count: 64))
        }
    }

    @Test("nested and concurrent calls complete (the busy pool falls back to Dispatch)")
    func nestedAndConcurrent() async {
        let inner = Atomic<Int>(0)
        Kernels.parallelFor(8, threads: 2) { _ in
            Kernels.parallelFor(5, threads: 2) { _ in inner.add(1, ordering: .relaxed) }
        }
        #expect(inner.load(ordering: .relaxed) == 40)
        await withTaskGroup(of: Bool.self) { group in
            for task in 0..<8 {
                group.addTask {
                    (0..<200).allSatisfy { round in
                        let count = 3 + (task * 7 + round) % 50
                        return hits(count, threads: 2) == Array(repeating: 1, count: count)
                    }
                }
            }
            for await ok in group { #expect(ok) }
        }
    }
}
