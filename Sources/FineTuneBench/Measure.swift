/// Timing statistics of one case at one thread count.
struct Timing {
    /// Median of the timed repetitions, in seconds.
    var median: Double
    /// Fastest repetition, in seconds.
    var min: Double
    /// Number of timed repetitions.
    var repetitions: Int
}

/// Times `body` on the monotonic `ContinuousClock`.
///
/// Warm-up: runs `body` at least once and until `warmup` seconds have passed. Then repeats it
/// until `budget` seconds of timed runs have accumulated (at least once, at most
/// `maxRepetitions` times) and returns the median and minimum of the individual runs.
func measure(budget: Double, warmup: Double = 0.2, maxRepetitions: Int = 1_000_000,
             _ body: () -> Void) -> Timing {
    let clock = ContinuousClock()

    let warmupStart = clock.now
    repeat { body() } while (clock.now - warmupStart).seconds < Swift.min(warmup, budget)

    var samples: [Double] = []
    var total = 0.0
    repeat {
        let start = clock.now
        body()
        let elapsed = (clock.now - start).seconds
        samples.append(elapsed)
        total += elapsed
    } while total < budget && samples.count < maxRepetitions

    samples.sort()
    let middle = samples.count / 2
    let median = samples.count.isMultiple(of: 2) ? (samples[middle - 1] + samples[middle]) / 2 : samples[middle]
    return Timing(median: median, min: samples[0], repetitions: samples.count)
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }
}
