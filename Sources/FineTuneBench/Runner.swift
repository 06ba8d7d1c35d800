import FineTune

/// The measurement of one case at one thread count: one row of the report.
struct CaseResult {
    var suite: String
    var name: String
    var threads: Int
    var timing: Timing
    /// Floating-point operations of one run, if the case defines them.
    var flops: Double?
    /// Sum of the outputs after the last run (keeps the work observable).
    var checksum: Double
    /// Where a run's time goes (`--profile`).
    var profile: ProfileBreakdown? = nil

    /// Median time in milliseconds.
    var ms: Double { timing.median * 1e3 }
    /// Fastest run in milliseconds.
    var minMs: Double { timing.min * 1e3 }
    /// Throughput at the median time, in GFLOP/s.
    var gflops: Double? { flops.map { $0 / timing.median / 1e9 } }
}

/// Runs the selected cases of each suite at each thread count.
struct Runner {
    /// Seconds of timed repetitions per case and thread count.
    var budget: Double
    /// Thread counts to run every threaded case with, e.g. `[1, 2]`.
    var threadCounts: [Int]
    /// Profile each case after timing it (`--profile`).
    var profile = false
    /// The 1-thread (one core's) multiply-add peak the profile compares its per-thread GEMM rate
    /// with. (With every core busy a core peaks ~2% lower, but the N-thread peak of a shared
    /// machine is what the threads got, often far less: a yardstick that moves with the load
    /// would put a loaded run above 100%.)
    var threadPeakGFLOPS: Double? = nil

    /// Measures `cases` of `suite`, calling `report` after each measurement.
    func run(_ suite: any BenchSuite, cases: [BenchCase], report: (CaseResult) -> Void) throws -> [CaseResult] {
        var results: [CaseResult] = []
        for benchCase in cases {
            let workload = try benchCase.makeWorkload()
            for threads in benchCase.usesThreads ? threadCounts : [1] {
                let timing = measure(budget: budget) { workload.run(threads: threads) }
                var result = CaseResult(suite: suite.name, name: benchCase.name, threads: threads, timing: timing,
                                        flops: benchCase.flops, checksum: workload.checksum())
                if profile {
                    result.profile = ProfileBreakdown.measure(workload, threads: threads, median: timing.median, seconds: budget / 2,
                                                              threadPeakGFLOPS: threadPeakGFLOPS)
                }
                report(result)
                results.append(result)
            }
        }
        return results
    }
}
