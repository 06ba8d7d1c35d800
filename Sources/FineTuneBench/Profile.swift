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
    /// How fast the GEMM ran while it ran; `nil` when the case does no GEMM.
    var gemmRate: GEMMRate?

    /// The GEMM flops over the GEMM time. With several threads that time is summed over them, so
    /// the rate is per thread and is compared with one core's (the 1-thread) peak. The
    /// micro-kernel time excludes packing and the waits for other threads, so the rate with
    /// packing is given too.
    struct GEMMRate {
        /// GFLOP of GEMM per run (`2 m n k` per product).
        var gflopPerRun: Double
        /// GFLOP/s during GEMM time (per thread).
        var gflops: Double
        /// GFLOP/s during GEMM and GEMM packing time (per thread).
        var gflopsWithPacking: Double
        /// One core's multiply-add peak (the 1-thread peak), if measured.
        var threadPeakGFLOPS: Double?
        /// `gflops` over `threadPeakGFLOPS`.
        var peakShare: Double? { threadPeakGFLOPS.map { gflops / $0 } }
    }

    /// Profiles `workload` for about `seconds` (at least 3 and at most 50 runs, given the median
    /// time of one run); the GEMM rate is given as a share of `threadPeakGFLOPS` (one core's peak).
    static func measure(_ workload: any Workload, threads: Int, median: Double, seconds: Double,
                        threadPeakGFLOPS: Double?) -> ProfileBreakdown {
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
        let gemmFlops = Double(report.flops[.gemm] ?? 0)
        let withPacking = gemmFlops / Swift.max(1, Double((report.nanoseconds[.gemm] ?? 0) + (report.nanoseconds[.packing] ?? 0)))
        let gemmRate = report.gigaflopsPerSecond(.gemm).map {
            GEMMRate(gflopPerRun: gemmFlops / 1e9 * perRun, gflops: $0, gflopsWithPacking: withPacking,
                     threadPeakGFLOPS: threadPeakGFLOPS)
        }
        return ProfileBreakdown(runs: runs, threads: threads, wallMsPerRun: report.wallMilliseconds * perRun,
                                lines: lines, totalMsPerRun: report.totalMilliseconds * perRun, gemmRate: gemmRate)
    }

    /// What the shares are of.
    var basis: String { threads == 1 ? "wall time" : "CPU time summed over \(threads) threads" }

    /// What the GEMM rate is of.
    var gemmRateBasis: String {
        threads == 1 ? "GEMM flops over GEMM time, against the 1-thread peak"
            : "GEMM flops over GEMM time summed over \(threads) threads (a per-thread rate), against the 1-thread peak"
    }

    /// The GEMM rate line printed under the GEMM row, e.g.
    /// `GEMM rate 94.20 GFLOPS = 85.6% of the 1-thread peak 110.0, 80.1% with packing (3.712 GFLOP per run)`.
    var gemmRateText: String? {
        guard let rate = gemmRate else { return nil }
        let perThread = threads == 1 ? "" : " per thread"
        let share = rate.threadPeakGFLOPS.map {
            String(format: " = %.1f%% of the 1-thread peak ", 100 * rate.gflops / $0) + formatPeak($0)
                + String(format: ", %.1f%% with packing", 100 * rate.gflopsWithPacking / $0)
        } ?? ""
        let basis = threads == 1 ? "" : "; time summed over \(threads) threads"
        return String(format: "GEMM rate %.2f GFLOPS", rate.gflops) + perThread + share
            + String(format: " (%.3f GFLOP per run", rate.gflopPerRun) + basis + ")"
    }

    /// The indented table printed under the case's row.
    var text: String {
        let width = lines.map(\.label.count).max() ?? 0
        let rows = lines.flatMap { line in
            let calls = line.key == "framework" ? "" : String(format: "  %8.0f calls/run", line.callsPerRun)
            let row = "      " + line.label.padding(toLength: width, withPad: " ", startingAt: 0)
                + String(format: "  %10.3f ms  %5.1f%%", line.msPerRun, 100 * line.share) + calls
            let rate = line.key == "gemm" ? gemmRateText.map { "        " + $0 } : nil
            return [row] + (rate.map { [$0] } ?? [])
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
        /// Absent when the case does no GEMM.
        var gemmRate: Rate?
        /// The GEMM rate: `gflops` is GEMM flops over GEMM time (summed over threads, so per
        /// thread), `peak_share` that over the 1-thread peak `peak_gflops`; `gflops_with_packing`
        /// counts the packing time too.
        struct Rate: Encodable {
            var gflopPerRun: Double, gflops: Double, gflopsWithPacking: Double, peakGFLOPS: Double?, peakShare: Double?,
                basis: String
            enum CodingKeys: String, CodingKey {
                case gflopPerRun = "gflop_per_run", gflops, gflopsWithPacking = "gflops_with_packing", peakGFLOPS = "peak_gflops",
                     peakShare = "peak_share", basis
            }
        }
        enum CodingKeys: String, CodingKey {
            case runs, wallMs = "wall_ms", totalMs = "total_ms", basis, categories, gemmRate = "gemm_rate"
        }
    }

    var json: JSON {
        func round(_ x: Double, _ places: Double) -> Double { (x * pow(10, places)).rounded() / pow(10, places) }
        var categories: [String: JSON.Entry] = [:]
        for line in lines {
            categories[line.key] = JSON.Entry(label: line.label, ms: round(line.msPerRun, 6), share: round(line.share, 4),
                                              callsPerRun: round(line.callsPerRun, 2))
        }
        let rate = gemmRate.map {
            JSON.Rate(gflopPerRun: round($0.gflopPerRun, 6), gflops: round($0.gflops, 3),
                      gflopsWithPacking: round($0.gflopsWithPacking, 3), peakGFLOPS: $0.threadPeakGFLOPS.map { round($0, 3) },
                      peakShare: $0.peakShare.map { round($0, 4) }, basis: gemmRateBasis)
        }
        return JSON(runs: runs, wallMs: round(wallMsPerRun, 6), totalMs: round(totalMsPerRun, 6), basis: basis,
                    categories: categories, gemmRate: rate)
    }
}
