/// Command-line options of FineTuneBench, parsed by hand (no dependencies).
///
///     FineTuneBench [suite ...] [--threads N] [--json] [--budget SECONDS]
///                   [--filter TEXT] [--compare FILE] [--profile] [--list] [--help]
struct Options: Equatable {
    /// Suites to run, in command-line order without duplicates; empty means all suites.
    var suites: [String] = []
    /// Fixed thread count (`--threads N`); `nil` runs each case with 1 thread and with all cores.
    var threads: Int?
    /// Print one JSON object on stdout instead of the table.
    var json = false
    /// Seconds of timed repetitions per case and thread count.
    var budget: Double = 1.0
    /// Run only the cases whose name contains this text.
    var filter: String?
    /// A JSON report (FineTuneBench's or scripts/torch_bench.py's) to compare this run's times with.
    var compare: String?
    /// After timing a case, run it a few more times with `KernelProfile` on and print where its time goes.
    var profile = false
    /// List suites and cases, then exit.
    var list = false
    /// Print usage, then exit.
    var help = false

    /// Parses `arguments` (without the executable name). `validSuites` are the registered suite names.
    static func parse(_ arguments: [String], validSuites: [String]) throws(OptionsError) -> Options {
        var options = Options()
        var remaining = arguments[...]
        while let argument = remaining.popFirst() {
            // Accept both `--flag value` and `--flag=value`.
            var flag = argument
            var inlineValue: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                flag = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            func value() throws(OptionsError) -> String {
                if let inlineValue { return inlineValue }
                guard let next = remaining.popFirst() else { throw .missingValue(flag: flag) }
                return next
            }
            func noValue() throws(OptionsError) {
                if inlineValue != nil { throw .unexpectedValue(flag: flag) }
            }

            switch flag {
            case "--help", "-h":
                try noValue()
                options.help = true
            case "--list":
                try noValue()
                options.list = true
            case "--json":
                try noValue()
                options.json = true
            case "--threads":
                let text = try value()
                guard let n = Int(text), n >= 1 else { throw .invalidValue(flag: flag, value: text, expected: "an integer >= 1") }
                options.threads = n
            case "--budget":
                let text = try value()
                guard let seconds = Double(text), seconds.isFinite, seconds > 0 else {
                    throw .invalidValue(flag: flag, value: text, expected: "a number of seconds > 0")
                }
                options.budget = seconds
            case "--filter":
                options.filter = try value()
            case "--compare":
                options.compare = try value()
            case "--profile":
                try noValue()
                options.profile = true
            default:
                if argument.hasPrefix("-") { throw .unknownFlag(argument) }
                guard validSuites.contains(argument) else { throw .unknownSuite(argument) }
                if !options.suites.contains(argument) { options.suites.append(argument) }
            }
        }
        return options
    }

    /// The usage text printed by `--help`.
    static func usage(suites: [String]) -> String {
        """
        Usage: FineTuneBench [suite ...] [options]

        Measures FineTune's CPU kernels. Without suite names, runs every suite.
        Suites: \(suites.joined(separator: ", ")) (all but models and resnet-convs when none is named)

        Options:
          --threads N        run every case with N threads (default: 1 thread and all cores)
          --budget SECONDS   timed repetitions per case and thread count (default: 1.0)
          --filter TEXT      run only the cases whose name contains TEXT
          --profile          after timing a case, profile a few more runs: time per kernel
                             category (GEMM, packing, im2col, ...) and framework overhead
          --json             print one JSON object on stdout (progress goes to stderr)
          --compare FILE     after the run, time ratios to the same cases in FILE, a --json report
                             of FineTuneBench or of scripts/torch_bench.py (< 1: FineTune faster)
          --list             list the suites named (without names: every suite) and their
                             cases, then exit
          -h, --help         show this help

        Build in release for meaningful numbers: swift run -c release FineTuneBench
        """
    }
}

/// A command-line error; FineTuneBench prints `message` and exits with status 2.
enum OptionsError: Error, Equatable {
    case unknownFlag(String)
    case unknownSuite(String)
    case missingValue(flag: String)
    case unexpectedValue(flag: String)
    case invalidValue(flag: String, value: String, expected: String)

    /// A one-line description of the problem.
    var message: String {
        switch self {
        case .unknownFlag(let flag): "unknown option '\(flag)'"
        case .unknownSuite(let name): "unknown suite '\(name)'"
        case .missingValue(let flag): "option '\(flag)' needs a value"
        case .unexpectedValue(let flag): "option '\(flag)' takes no value"
        case .invalidValue(let flag, let value, let expected): "invalid value '\(value)' for '\(flag)': expected \(expected)"
        }
    }
}
