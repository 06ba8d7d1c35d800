/// A named group of benchmark cases, e.g. `gemm`.
///
/// To add a suite, write a type conforming to `BenchSuite` in `Suites/` and list it in
/// `SuiteRegistry.all`. The runner times every case (with 1 thread and all cores unless
/// `--threads` is given), prints the table or JSON, and adds the thread-scaling ratios.
protocol BenchSuite: Sendable {
    /// The name used on the command line and in the report.
    var name: String { get }
    /// One line describing the suite for `--list`.
    var summary: String { get }
    /// The cases, in report order. Building them must be cheap: inputs are allocated by
    /// `BenchCase.makeWorkload` only when the case runs.
    func cases() -> [BenchCase]
    /// Ratios beyond the automatic "N threads / 1 thread" lines, e.g. kernel vs naive loop.
    var extraRatios: [RatioSpec] { get }
    /// Whether a run that names no suite includes this one (heavy suites run only when named).
    var runsByDefault: Bool { get }
}

extension BenchSuite {
    var extraRatios: [RatioSpec] { [] }
    var runsByDefault: Bool { true }
}

/// Every suite FineTuneBench knows, in default run order.
enum SuiteRegistry {
    static let all: [any BenchSuite] = [
        GEMMSuite(),
        ConvSuite(),
        ResNetConvSuite(),
        PoolSuite(),
        MLPSuite(),
        CNNSuite(),
        TransformerSuite(),
        AttentionSuite(),
        NormActivationSuite(),
        ModelSuite(),
        TokenizerSuite(),
    ]

    /// The registered suite names.
    static var names: [String] { all.map(\.name) }
    /// The suites a run that names none includes.
    static var defaultNames: [String] { all.filter(\.runsByDefault).map(\.name) }
}

/// One measurable workload of a suite.
struct BenchCase {
    /// Unique within its suite, e.g. `sgemm_512`.
    var name: String
    /// What the case computes, for `--list`.
    var detail: String
    /// Floating-point operations of one run, or `nil` when not meaningful (no GFLOPS reported).
    var flops: Double?
    /// Whether the workload honours the thread count; single-threaded references run once, with 1 thread.
    var usesThreads = true
    /// Allocates and fills the inputs; called once per case, before timing.
    var makeWorkload: () throws -> any Workload
}

/// A benchmark body with its inputs allocated. The runner calls `run` repeatedly, then
/// `checksum` once.
protocol Workload: AnyObject {
    /// Runs the workload once with `threads` threads (passed to the kernels it calls, or set as
    /// `Kernels.maxThreads` for tensor-level work).
    func run(threads: Int)
    /// A value read back from the outputs, so the work cannot be optimised away.
    func checksum() -> Double
}

/// A derived comparison between two measured cases of the same suite.
enum RatioSpec: Sendable {
    /// How much faster `name` runs than `baseline`: `time(baseline) / time(name)`.
    /// Each side uses its 1-thread measurement when there is one. `label` names the baseline
    /// in the report, e.g. "naive loop".
    case speedup(of: String, over: String, label: String)
}
