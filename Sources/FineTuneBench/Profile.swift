import FineTune
import Foundation

/// `--profile`: where one run of a case spends its time, from a few extra runs with
/// `KernelProfile` switched on (after the timed runs, which it does not affect).
struct ProfileBreakdown {
    /// One line of the breakdown.
    struct Line {
        /// `KernelProfile.Category` name, or `framework` for the unmeasured rest.
        var key: String
        var label: String
        var msPerRun: Double
        /// Fraction of the summed time (0...1).
        var share: Double
        var callsPerRun: Double
    }

    /// Profiled runs the totals are divided by.
    var runs: Int
    var threads: Int
    /// Wall time per profiled run (the instrumentation's cost shows against the timed median).
    var wallMsPerRun: Double
    /// Categories with time or calls, then `framework`; they sum to `totalMsPerRun`.
    var lines: [Line]
    /// Summed CPU time per run: every thread's measured kernels plus the framework time.
    var totalMsPerRun: Double

    /// Profiles `workload` for about `seconds` (at least 3 and at most 50 runs, given the median
    /// time of one run).
    static func measure(_ workload: any Workload, threads: Int, median: Double, seconds: Double) -> ProfileBreakdown {
        let runs = Swift.max(3, Swift.min(50, Int(seconds / Swift.max(median, 1e-9))))
        KernelProfile.start()
        for _ in 0..<runs { workload.run(threads: threads) }
        let report = KernelProfile.stop()
        let total = Swift.max(report.totalMilliseconds, 1e-9), perRun = 1 / Double(runs)
        var lines = KernelProfile.Category.allCases.compactMap { category -> Line? in
            let calls = report.calls[category] ?? 0
            guard calls > 0 else { return nil }
            let ms = report.milliseconds(category)
            return Line(key: String(describing: category), label: category.label, msPerRun: ms * perRun,
                        share: ms / total, callsPerRun: Double(calls) * perRun)
        }
        lines.append(Line(key: "framework", label: "framework/other", msPerRun: report.frameworkMilliseconds * perRun,
                          share: report.frameworkMilliseconds / total, callsPerRun: 0))
        return ProfileBreakdown(runs: runs, threads: threads, wallMsPerRun: report.wallMilliseconds * perRun,
                                lines: lines, totalMsPerRun: report.totalMilliseconds * perRun)
    }

    /// What the shares are of.
    var basis: String { threads == 1 ? "wall time" : "CPU time summed over \(threads) threads" }

    /// The indented table printed under the case's row.
    var text: String {
        let width = lines.map(\.label.count).max() ?? 0
        let rows = lines.map { line in
            let calls = line.key == "framework" ? "" : String(format: "  %8.0f calls/run", line.callsPerRun)
            return "      " + line.label.padding(toLength: width, withPad: " ", startingAt: 0)
                + String(format: "  %10.3f ms  %5.1f%%", line.msPerRun, 100 * line.share) + calls
        }
        return (["    profile: \(runs) runs, \(formatMilliseconds(wallMsPerRun)) ms wall per run; shares of \(basis)"] + rows)
            .joined(separator: "\n")
    }

    /// The `"profile"` object of a case in `--json` output.
    struct JSON: Encodable {
        struct Entry: Encodable {
            var label: String, ms: Double, share: Double, callsPerRun: Double
            enum CodingKeys: String, CodingKey { case label, ms, share, callsPerRun = "calls_per_run" }
        }
        var runs: Int
        var wallMs: Double, totalMs: Double
        /// What the shares are of: `"wall time"` (1 thread) or `"CPU time summed over N threads"`.
        var basis: String
        var categories: [String: Entry]
        enum CodingKeys: String, CodingKey { case runs, wallMs = "wall_ms", totalMs = "total_ms", basis, categories }
    }

    var json: JSON {
        func round(_ x: Double, _ places: Double) -> Double { (x * pow(10, places)).rounded() / pow(10, places) }
        var categories: [String: JSON.Entry] = [:]
        for line in lines {
            categories[line.key] = JSON.Entry(label: line.label, ms: round(line.msPerRun, 6), share: round(line.share, 4),
                                              callsPerRun: round(line.callsPerRun, 2))
        }
        return JSON(runs: runs, wallMs: round(wallMsPerRun, 6), totalMs: round(totalMsPerRun, 6), basis: basis,
                    categories: categories)
    }
}
