// FineTuneBench: times FineTune's kernels and prints an aligned table or, with --json, one
// JSON object on stdout. Run `swift run -c release FineTuneBench --help` for usage.
import FineTune
import Foundation

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst()), validSuites: SuiteRegistry.names)
} catch {
    Console.error("FineTuneBench: \(error.message)")
    Console.error("Valid suites: \(SuiteRegistry.names.joined(separator: ", ")). Run with --help for usage.")
    exit(2)
}

if options.help {
    Console.out(Options.usage(suites: SuiteRegistry.names))
    exit(0)
}

/// The suites to run with their selected cases (after `--filter`), in command-line order. Without
/// suite names a run takes the default suites, and `--list` shows every suite.
let suiteNames = options.suites.isEmpty ? (options.list ? SuiteRegistry.names : SuiteRegistry.defaultNames) : options.suites
let selection: [(suite: any BenchSuite, cases: [BenchCase])] = suiteNames
    .compactMap { name in SuiteRegistry.all.first { $0.name == name } }
    .map { suite in (suite, suite.cases().filter { c in options.filter.map { c.name.contains($0) } ?? true }) }
    .filter { !$0.cases.isEmpty }

if selection.isEmpty {
    Console.error("FineTuneBench: no case name contains '\(options.filter ?? "")'. Run with --list to see the cases.")
    exit(2)
}

if options.list {
    for (suite, cases) in selection {
        Console.out("\(suite.name): \(suite.summary)\(suite.runsByDefault ? "" : " [runs only when named]")")
        let width = cases.map(\.name.count).max() ?? 0
        for c in cases {
            let threads = c.usesThreads ? "" : " [1 thread]"
            Console.out("  \(c.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(c.detail)\(threads)")
        }
    }
    exit(0)
}

// Read the --compare file before measuring: a bad file must not cost a whole run.
var baseline: Baseline?
if let path = options.compare {
    do { baseline = try Baseline(contentsOf: path) } catch {
        Console.error("FineTuneBench: \(error.message)")
        exit(2)
    }
}

let cores = ProcessInfo.processInfo.activeProcessorCount
let threadCounts = options.threads.map { [$0] } ?? (cores > 1 ? [1, cores] : [1])
var environment = BenchEnvironment(budget: options.budget, threadCounts: threadCounts)
// --profile compares the GEMM rate per thread with the 1-thread peak, also when only more threads run.
for threads in Set(threadCounts + (options.profile ? [1] : [])) { environment.peakGFLOPS[threads] = FMAPeak.gflops(threads: threads) }

// Rows go to stdout as they complete; with --json they are progress on stderr.
let emit: (String) -> Void = { [json = options.json] text in json ? Console.error(text) : Console.out(text) }
let table = Table(suiteNames: selection.map(\.suite.name), caseNames: selection.flatMap { $0.cases.map(\.name) },
                  environment: environment)
if BenchEnvironment.isDebugBuild { emit(BenchEnvironment.debugWarning) }
emit(environment.headline)
emit(environment.peakLine)
emit("")
emit(table.header)

let runner = Runner(budget: options.budget, threadCounts: threadCounts, profile: options.profile,
                    threadPeakGFLOPS: environment.peakGFLOPS[1])
var results: [CaseResult] = []
var allRatios: [Ratio] = []
for (suite, cases) in selection {
    let suiteResults: [CaseResult]
    do {
        suiteResults = try runner.run(suite, cases: cases) { emit(table.row($0) + ($0.profile.map { "\n" + $0.text } ?? "")) }
    } catch {
        Console.error("FineTuneBench: could not set up a \(suite.name) case: \(error)")
        exit(1)
    }
    results += suiteResults
    allRatios += ratios(for: suite, results: suiteResults)
}
if !allRatios.isEmpty { emit(ratioLines(allRatios)) }
let comparisons = baseline.map { ($0, $0.comparisons(with: results)) }
if let (baseline, cases) = comparisons { emit(comparisonLines(cases, baseline: baseline)) }
if BenchEnvironment.isDebugBuild { emit(BenchEnvironment.debugWarning) }

if options.json {
    do {
        Console.out(try JSONReport(environment: environment, results: results, ratios: allRatios, comparisons: comparisons).text())
    } catch {
        Console.error("FineTuneBench: could not encode JSON: \(error)")
        exit(1)
    }
}
