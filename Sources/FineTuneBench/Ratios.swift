/// A derived comparison line, e.g. `sgemm_1024: 2 threads / 1 thread = 1.93x`.
struct Ratio {
    var suite: String
    /// Everything before ` = `.
    var label: String
    /// Speedup factor (> 1 means faster).
    var value: Double
}

/// The ratios of one suite's results: thread scaling of every case measured with 1 thread and
/// more, then the suite's `extraRatios`. Ratios whose cases were not run are skipped.
func ratios(for suite: any BenchSuite, results: [CaseResult]) -> [Ratio] {
    var ratios: [Ratio] = []
    var seen: Set<String> = []
    for result in results where seen.insert(result.name).inserted {
        let runs = results.filter { $0.name == result.name }
        guard let single = runs.first(where: { $0.threads == 1 }),
              let multi = runs.filter({ $0.threads > 1 }).max(by: { $0.threads < $1.threads })
        else { continue }
        ratios.append(Ratio(suite: suite.name, label: "\(result.name): \(threadsText(multi.threads)) / 1 thread",
                            value: single.timing.median / multi.timing.median))
    }
    for spec in suite.extraRatios {
        switch spec {
        case .speedup(let name, let baselineName, let label):
            guard let fast = preferSingleThread(results, name), let slow = preferSingleThread(results, baselineName)
            else { continue }
            let threads = fast.threads == slow.threads
                ? "\(threadsText(fast.threads)) each"
                : "\(threadsText(fast.threads)) vs \(threadsText(slow.threads))"
            ratios.append(Ratio(suite: suite.name, label: "\(name) vs \(label), \(threads)",
                                value: slow.timing.median / fast.timing.median))
        }
    }
    return ratios
}

/// The 1-thread result of `name`, or else its first result.
private func preferSingleThread(_ results: [CaseResult], _ name: String) -> CaseResult? {
    let runs = results.filter { $0.name == name }
    return runs.first { $0.threads == 1 } ?? runs.first
}

/// "1 thread", "2 threads".
func threadsText(_ n: Int) -> String { n == 1 ? "1 thread" : "\(n) threads" }
