import Foundation

// `--compare FILE`: the times of another run in FineTuneBench's JSON schema (written by
// `FineTuneBench --json` or by scripts/torch_bench.py) next to this run's, case by case.

/// The cases of a baseline run read from a JSON file, keyed by suite, case name and threads.
struct Baseline {
    /// What produced the file (its `framework` field, e.g. "PyTorch 2.9.0"), else the file name.
    var label: String
    var path: String
    var cases: [Key: Entry]

    struct Key: Hashable { var suite: String, name: String, threads: Int }
    struct Entry { var ms: Double, minMs: Double? }

    /// The fields FineTuneBench reads; every other field of the report is ignored.
    private struct Document: Decodable {
        var framework: String?
        var cases: [Case]
        struct Case: Decodable {
            var suite: String, name: String, threads: Int, ms: Double
            var minMs: Double?
            enum CodingKeys: String, CodingKey { case suite, name, threads, ms, minMs = "min_ms" }
        }
    }

    /// Reads and validates `path`.
    init(contentsOf path: String) throws(BaselineError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw .unreadable(path: path, reason: "it is a directory")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw .unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        let document: Document
        do { document = try JSONDecoder().decode(Document.self, from: data) } catch {
            throw .invalid(path: path, reason: Self.describe(error))
        }
        var cases: [Key: Entry] = [:]
        for c in document.cases {
            guard c.threads >= 1 else { throw .invalid(path: path, reason: "case '\(c.name)' has \(c.threads) threads") }
            guard c.ms.isFinite, c.ms > 0 else {
                throw .invalid(path: path, reason: "case '\(c.name)' (\(threadsText(c.threads))) has time \(c.ms) ms")
            }
            cases[Key(suite: c.suite, name: c.name, threads: c.threads)] = Entry(ms: c.ms, minMs: c.minMs)
        }
        label = document.framework ?? URL(fileURLWithPath: path).lastPathComponent
        self.path = path
        self.cases = cases
    }

    /// This run's results that the baseline also measured, in result order.
    func comparisons(with results: [CaseResult]) -> [Comparison] {
        results.compactMap { r in
            guard let other = cases[Key(suite: r.suite, name: r.name, threads: r.threads)] else { return nil }
            return Comparison(suite: r.suite, name: r.name, threads: r.threads, ms: r.ms, baselineMs: other.ms,
                              minRatio: other.minMs.flatMap { $0 > 0 ? r.minMs / $0 : nil })
        }
    }

    /// A one-line reason from a `DecodingError`: what is wrong and where.
    private static func describe(_ error: any Error) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return keys.isEmpty ? "" : " at \(keys)"
        }
        func sentence(_ context: DecodingError.Context) -> String {
            var text = context.debugDescription
            if text.hasSuffix(".") { text.removeLast() }
            return text.prefix(1).lowercased() + text.dropFirst()
        }
        switch error {
        case DecodingError.dataCorrupted(let context): return "not valid JSON\(path(context))"
        case DecodingError.keyNotFound(let key, let context): return "missing field '\(key.stringValue)'\(path(context))"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "\(sentence(context))\(path(context))"
        default: return "\(error)"
        }
    }
}

/// Why `--compare` could not use a file; FineTuneBench prints `message` and exits with status 2.
enum BaselineError: Error {
    case unreadable(path: String, reason: String)
    case invalid(path: String, reason: String)

    var message: String {
        switch self {
        case .unreadable(let path, let reason): "cannot read the --compare file '\(path)': \(reason)"
        case .invalid(let path, let reason): "the --compare file '\(path)' is not a FineTuneBench JSON report: \(reason)"
        }
    }
}

/// One case measured by both runs.
struct Comparison {
    var suite: String, name: String, threads: Int
    /// This run's median, ms.
    var ms: Double
    /// The baseline's median, ms.
    var baselineMs: Double
    /// Fastest run over the baseline's fastest run, when the baseline has `min_ms`.
    var minRatio: Double?

    /// This run's median time over the baseline's: below 1, FineTune is faster.
    var ratio: Double { ms / baselineMs }
}

/// The comparison lines under the table.
func comparisonLines(_ comparisons: [Comparison], baseline: Baseline) -> String {
    let header = "\nTime ratio FineTune / \(baseline.label) (\(baseline.path)), medians; < 1 means FineTune is faster:"
    guard !comparisons.isEmpty else { return header + "\n  no case of this run is in the file (same suite, name and threads)" }
    let width = comparisons.map { $0.name.count }.max() ?? 0
    return header + "\n" + comparisons.map { c in
        let name = c.name.padding(toLength: width, withPad: " ", startingAt: 0)
        let fastest = c.minRatio.map { String(format: "  (fastest runs %.2f)", $0) } ?? ""
        return "  \(name)  \(threadsText(c.threads)): \(formatMilliseconds(c.ms)) vs \(formatMilliseconds(c.baselineMs)) ms = "
            + String(format: "%.2f", c.ratio) + fastest
    }.joined(separator: "\n")
}
