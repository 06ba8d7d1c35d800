import FineTune
import Foundation

/// Unbuffered writes to stdout and stderr (`print` buffers when piped; C's `stderr` is a global var).
enum Console {
    static func out(_ text: String) { FileHandle.standardOutput.write(Data((text + "\n").utf8)) }
    static func error(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }
}

/// Facts about this run that every report starts with.
struct BenchEnvironment {
    var simd = Kernels.simdPath
    var cores = ProcessInfo.processInfo.activeProcessorCount
    var budget: Double
    var threadCounts: [Int]
    /// The machine's multiply-add peak in GFLOP/s per thread count (``FMAPeak``).
    var peakGFLOPS: [Int: Double] = [:]

    #if DEBUG
    static let isDebugBuild = true
    #else
    static let isDebugBuild = false
    #endif
    var build: String { Self.isDebugBuild ? "debug" : "release" }

    static let debugWarning = """
        WARNING: FineTuneBench is a DEBUG build. Its numbers are NOT representative.
        WARNING: Run it in release:  swift run -c release FineTuneBench
        """

    /// The one-line header of the table.
    var headline: String {
        let threads = threadCounts.map(String.init).joined(separator: " and ")
        return "FineTuneBench · SIMD: \(simd) · \(cores) cores · \(build) build"
            + " · threads: \(threads) · budget \(budget) s per case"
    }

    /// The line under the headline: the peaks that "% peak" divides by (and, with `--profile`,
    /// the 1-thread peak the GEMM rate is compared with).
    var peakLine: String {
        let peaks = peakGFLOPS.keys.sorted().compactMap { n in
            peakGFLOPS[n].map { "\(threadsText(n)) \(formatPeak($0))" }
        }
        return "Machine peak GFLOPS, \(FMAPeak.chains) independent \(FMAPeak.vectorDescription) chains: "
            + peaks.joined(separator: ", ")
    }

    /// A result's GFLOPS as a fraction of the peak at its thread count.
    func peakShare(_ result: CaseResult) -> Double? {
        guard let gflops = result.gflops, let peak = peakGFLOPS[result.threads], peak > 0 else { return nil }
        return gflops / peak
    }
}

/// The aligned text table, printed one row at a time as results arrive.
struct Table {
    private let suiteWidth: Int, nameWidth: Int
    private let environment: BenchEnvironment
    private static let numericWidths = [7, 11, 11, 9, 7, 7]

    /// Sizes the columns for the given suite and case names; "% peak" divides by `environment`'s peaks.
    init(suiteNames: [String], caseNames: [String], environment: BenchEnvironment) {
        suiteWidth = max(5, suiteNames.map(\.count).max() ?? 0)
        nameWidth = max(4, caseNames.map(\.count).max() ?? 0)
        self.environment = environment
    }

    var header: String {
        let titles = ["threads", "median ms", "min ms", "GFLOPS", "% peak", "reps"]
        let columns = line(suite: "suite", name: "case", titles)
        let rule = line(suite: String(repeating: "-", count: suiteWidth), name: String(repeating: "-", count: nameWidth),
                        Self.numericWidths.map { String(repeating: "-", count: $0) })
        return columns + "\n" + rule
    }

    func row(_ r: CaseResult) -> String {
        line(suite: r.suite, name: r.name, [
            String(r.threads), formatMilliseconds(r.ms), formatMilliseconds(r.minMs),
            r.gflops.map { String(format: "%.2f", $0) } ?? "-",
            environment.peakShare(r).map { String(format: "%.1f%%", 100 * $0) } ?? "-", String(r.timing.repetitions),
        ])
    }

    private func line(suite: String, name: String, _ numbers: [String]) -> String {
        let numeric = zip(numbers, Self.numericWidths).map { pad($0, to: $1, left: true) }
        return ([pad(suite, to: suiteWidth), pad(name, to: nameWidth)] + numeric).joined(separator: "  ")
    }
}

/// Formats the ratio lines under the table.
func ratioLines(_ ratios: [Ratio]) -> String {
    guard !ratios.isEmpty else { return "" }
    return "\nRatios (speedup, from median times):\n"
        + ratios.map { "  \($0.label) = \(String(format: "%.2f", $0.value))x" }.joined(separator: "\n")
}

/// A peak in GFLOP/s: one decimal, three below 1 (debug builds).
func formatPeak(_ gflops: Double) -> String { String(format: gflops < 1 ? "%.3f" : "%.1f", gflops) }

/// Four significant digits at most, keeping small times readable: 0.01234, 2.170, 1234.5.
func formatMilliseconds(_ ms: Double) -> String {
    switch ms {
    case ..<1: String(format: "%.5f", ms)
    case ..<100: String(format: "%.3f", ms)
    default: String(format: "%.1f", ms)
    }
}

private func pad(_ text: String, to width: Int, left: Bool = false) -> String {
    let padding = String(repeating: " ", count: max(0, width - text.count))
    return left ? padding + text : text + padding
}

// MARK: - JSON

/// The `--json` document: `{"simd": ..., "peakGFLOPS": {"1": ...}, "cases": [...], "ratios": [...], ...}`.
/// scripts/torch_bench.py writes the same schema (with `framework` "PyTorch ..."), so either
/// file can be given to `--compare`.
struct JSONReport: Encodable {
    var framework = "FineTune"
    var simd: String
    var cores: Int
    var build: String
    var budgetSeconds: Double
    /// The machine peak per thread count, keyed by the count as text ("1", "2").
    var peakGFLOPS: [String: Double]
    var cases: [Case]
    var ratios: [RatioEntry]
    /// Present with `--compare`.
    var comparison: ComparisonEntries?

    struct Case: Encodable {
        var suite: String, name: String, threads: Int
        /// `null` for cases without a flop count.
        var gflops: Double?
        /// `gflops` over the machine peak at this thread count; `null` without a flop count.
        var peakShare: Double?
        var ms: Double, minMs: Double, reps: Int, checksum: Double
        /// `--profile` only.
        var profile: ProfileBreakdown.JSON?

        enum CodingKeys: String, CodingKey {
            case suite, name, threads, gflops, peakShare, ms, minMs = "min_ms", reps, checksum, profile
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(suite, forKey: .suite)
            try container.encode(name, forKey: .name)
            try container.encode(threads, forKey: .threads)
            try container.encode(gflops, forKey: .gflops)  // explicit null when nil
            try container.encode(peakShare, forKey: .peakShare)
            try container.encode(ms, forKey: .ms)
            try container.encode(minMs, forKey: .minMs)
            try container.encode(reps, forKey: .reps)
            try container.encode(checksum, forKey: .checksum)
            try container.encodeIfPresent(profile, forKey: .profile)
        }
    }

    struct RatioEntry: Encodable {
        var suite: String, name: String, value: Double
    }

    /// `{"baseline": "PyTorch 2.9.0", "file": "torch.json", "cases": [...]}`.
    struct ComparisonEntries: Encodable {
        var baseline: String, file: String
        var cases: [Entry]

        /// `ratio` = `ms` / `baseline_ms` (below 1: FineTune is faster); `min_ratio` from the fastest runs.
        struct Entry: Encodable {
            var suite: String, name: String, threads: Int
            var ms: Double, baselineMs: Double, ratio: Double
            var minRatio: Double?
            enum CodingKeys: String, CodingKey {
                case suite, name, threads, ms, baselineMs = "baseline_ms", ratio, minRatio = "min_ratio"
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case framework, simd, cores, build, budgetSeconds = "budget_s", peakGFLOPS, cases, ratios, comparison
    }

    init(environment: BenchEnvironment, results: [CaseResult], ratios: [Ratio],
         comparisons: (baseline: Baseline, cases: [Comparison])? = nil) {
        simd = environment.simd
        cores = environment.cores
        build = environment.build
        budgetSeconds = environment.budget
        peakGFLOPS = Dictionary(uniqueKeysWithValues: environment.peakGFLOPS.map { (String($0.key), rounded($0.value, places: 3)) })
        cases = results.map {
            Case(suite: $0.suite, name: $0.name, threads: $0.threads, gflops: $0.gflops.map { rounded($0, places: 3) },
                 peakShare: environment.peakShare($0).map { rounded($0, places: 4) },
                 ms: rounded($0.ms, places: 6), minMs: rounded($0.minMs, places: 6),
                 reps: $0.timing.repetitions, checksum: $0.checksum, profile: $0.profile?.json)
        }
        self.ratios = ratios.map { RatioEntry(suite: $0.suite, name: $0.label, value: rounded($0.value, places: 3)) }
        comparison = comparisons.map { baseline, cases in
            ComparisonEntries(baseline: baseline.label, file: baseline.path, cases: cases.map {
                .init(suite: $0.suite, name: $0.name, threads: $0.threads, ms: rounded($0.ms, places: 6),
                      baselineMs: $0.baselineMs, ratio: rounded($0.ratio, places: 4),
                      minRatio: $0.minRatio.map { rounded($0, places: 4) })
            })
        }
    }

    /// Pretty-printed JSON text; non-finite numbers (a broken kernel's checksum) become strings.
    func text() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

private func rounded(_ value: Double, places: Int) -> Double {
    guard value.isFinite else { return value }
    let scale = pow(10, Double(places))
    return (value * scale).rounded() / scale
}
