import Foundation

/// The result of a learning-rate range test (``Trainer/findLearningRate(_:from:to:steps:)``).
public struct LearningRateSearch: Equatable, Sendable {
    /// The rate of each step taken, increasing geometrically.
    public var rates: [Float]
    /// The exponentially smoothed, bias-corrected training loss after each step (fastai's
    /// smoothing, beta 0.98).
    public var losses: [Float]
    /// Whether the search stopped early because the loss diverged (over 4x its best, or not finite).
    public var diverged: Bool

    /// The rate where the smoothed loss falls fastest against log(rate) (fastai's "steep"
    /// suggestion): a good maximum rate for one-cycle training.
    public var steepest: Float? {
        guard losses.count >= 3 else { return nil }
        var best: (slope: Float, index: Int)?
        for i in 1..<losses.count - 1 {
            let slope = (losses[i + 1] - losses[i - 1]) / (Foundation.log(rates[i + 1]) - Foundation.log(rates[i - 1]))
            if slope.isFinite, best == nil || slope < best!.slope { best = (slope, i) }
        }
        return best.map { rates[$0.index] }
    }

    /// A tenth of the rate at the smallest smoothed loss (fastai's "minimum / 10" rule).
    public var minimumDividedByTen: Float? {
        guard let i = losses.indices.filter({ losses[$0].isFinite }).min(by: { losses[$0] < losses[$1] }) else { return nil }
        return rates[i] / 10
    }
}

extension Trainer {
    /// Leslie Smith's learning-rate range test, as fastai's `lr_find`: trains for up to `steps`
    /// mini-batches while the rate grows geometrically from `start` to `end`, records the
    /// smoothed loss, and stops once it diverges. The model's weights and buffers, and the
    /// optimizer's state, rate, schedule and step count, are restored afterwards, so the
    /// search leaves no trace; every module's mode is restored too (pinned modules keep theirs
    /// throughout). Frozen parameters stay frozen (it searches the rate for what trains).
    ///
    /// ```swift
    /// let search = try trainer.findLearningRate(train)
    /// let rate = search.steepest ?? 1e-3
    /// ```
    public func findLearningRate(_ data: TensorDataset, from start: Float = 1e-7, to end: Float = 10,
                                 steps: Int = 100) throws(TrainingError) -> LearningRateSearch {
        precondition(start > 0 && end > start && steps >= 2, "findLearningRate: need 0 < start < end and steps >= 2")
        guard data.count > 0 else { throw .emptyDataset }
        return model.preservingModes { searchLearningRate(data, from: start, to: end, steps: steps) }
    }

    private func searchLearningRate(_ data: TensorDataset, from start: Float, to end: Float, steps: Int) -> LearningRateSearch {
        // Snapshot everything the search changes.
        let weights = model.stateDict().mapValues { $0.contiguousCopy() }
        let optimizerState = optimizer.exportState()
        let rate = optimizer.learningRate, schedule = optimizer.schedule
        defer {
            try! model.loadStateDict(weights)    // the same model: same keys and shapes
            do {
                try optimizer.importState(optimizerState)
            } catch {
                preconditionFailure("findLearningRate: the optimizer's state cannot be restored (\(error)); the search must not change its parameters")
            }
            optimizer.schedule = schedule
            optimizer.learningRate = rate
            for p in model.parameters() { p.grad = nil }
        }
        optimizer.schedule = nil
        model.train()

        var search = LearningRateSearch(rates: [], losses: [], diverged: false)
        var average: Double = 0, best = Float.infinity
        var batches: [(inputs: Tensor, labels: [Int])] = []
        for step in 0..<steps {
            if batches.isEmpty { batches = data.batches(size: batchSize, shuffle: true, seed: seed &+ UInt64(step)).reversed() }
            let batch = batches.removeLast()
            let lr = Float(Double(start) * Foundation.pow(Double(end) / Double(start), Double(step) / Double(steps - 1)))
            optimizer.learningRate = lr
            optimizer.zeroGrad()
            let loss = Tensor.crossEntropy(model(batch.inputs), targets: batch.labels, labelSmoothing: labelSmoothing)
            let value = loss.scalars[0]
            guard value.isFinite else { search.diverged = true; break }
            loss.backward()
            optimizer.step()
            average = 0.98 * average + 0.02 * Double(value)
            let smoothed = Float(average / (1 - Foundation.pow(0.98, Double(step + 1))))
            search.rates.append(lr)
            search.losses.append(smoothed)
            best = min(best, smoothed)
            if smoothed > 4 * best { search.diverged = true; break }
        }
        return search
    }
}
