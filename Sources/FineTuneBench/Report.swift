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
}

/// The aligned text table, printed one row at a time as results arrive.
struct Table {
    private let suiteWidth: Int, nameWidth: Int
    private static let numericWidths = [7, 11, 11, 9, 7]

    /// Sizes the columns for the given suite and case names.
    init(suiteNames: [String], caseNames: [String]) {
        suiteWidth = max(5, suiteNames.map(\.count).max() ?? 0)
        nameWidth = max(4, caseNames.map(\.count).max() ?? 0)
    }

    var header: String {
        let titles = ["threads", "median ms", "min ms", "GFLOPS", "reps"]
        let columns = line(suite: "suite", name: "case", titles)
        let rule = line(suite: String(repeating: "-", count: suiteWidth), name: String(repeating: "-", count: nameWidth),
                        Self.numericWidths.map { String(repeating: "-", count: $0) })
        return columns + "\n" + rule
    }

    func row(_ r: CaseResult) -> String {
        line(suite: r.suite, name: r.name, [
            String(r.threads), formatMilliseconds(r.ms), formatMilliseconds(r.minMs),
            r.gflops.map { String(format: "%.2f", $0) } ?? "-", String(r.timing.repetitions),
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

/// The `--json` document: `{"simd": ..., "cases": [...], "ratios": [...], ...}`.
struct JSONReport: Encodable {
    var simd: String
    var cores: Int
    var build: String
    var budgetSeconds: Double
    var cases: [Case]
    var ratios: [RatioEntry]

    struct Case: Encodable {
        var suite: String, name: String, threads: Int
        /// `null` for cases without a flop count.
        var gflops: Double?
        var ms: Double, minMs: Double, reps: Int, checksum: Double
        /// `--profile` only.
        var profile: ProfileBreakdown.JSON?

        enum CodingKeys: String, CodingKey { case suite, name, threads, gflops, ms, minMs = "min_ms", reps, checksum, profile }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(suite, forKey: .suite)
            try container.encode(name, forKey: .name)
            try container.encode(threads, forKey: .threads)
            try container.encode(gflops, forKey: .gflops)  // explicit null when nil
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

    enum CodingKeys: String, CodingKey { case simd, cores, build, budgetSeconds = "budget_s", cases, ratios }

    init(environment: BenchEnvironment, results: [CaseResult], ratios: [Ratio]) {
        simd = environment.simd
        cores = environment.cores
        build = environment.build
        budgetSeconds = environment.budget
        cases = results.map {
            Case(suite: $0.suite, name: $0.name, threads: $0.threads, gflops: $0.gflops.map { rounded($0, places: 3) },
                 ms: rounded($0.ms, places: 6), minMs: rounded($0.minMs, places: 6),
                 reps: $0.timing.repetitions, checksum: $0.checksum, profile: $0.profile?.json)
        }
        self.ratios = ratios.map { RatioEntry(suite: $0.suite, name: $0.label, value: rounded($0.value, places: 3)) }
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
