import Foundation
import Testing
@testable import FineTune

// Losses of the op set: crossEntropy (weights, ignoreIndex, reductions, sequence logits, label
// smoothing), nllLoss, klDiv (every reduction, log targets), huber and smoothL1. Relations
// between the options here; PyTorch's numbers in TorchOpFixtureTests.

@Suite("Loss ops")
struct LossOpTests {
    let logits = randomTensor([6, 4], seed: 1) * 3
    let targets = [0, 3, -100, 2, 2, 1]
    let weight = Tensor([0.5, 2, 1, 3])

    /// -w[t] * logSoftmax(x)[t] per row, 0 for ignored rows (direct loop, in Double).
    func weightedNLL(_ x: Tensor, _ t: [Int], _ w: [Float]?) -> (losses: [Double], weights: [Double]) {
        let c = x.shape[1], logp = x.logSoftmax(axis: 1).scalars
        var losses: [Double] = [], weights: [Double] = []
        for (i, target) in t.enumerated() {
            guard target >= 0 else { losses.append(0); weights.append(0); continue }
            let wt = Double(w?[target] ?? 1)
            losses.append(-wt * Double(logp[i * c + target]))
            weights.append(wt)
        }
        return (losses, weights)
    }

    @Test func crossEntropyWeightsIgnoreIndexAndReductions() {
        let (losses, weights) = weightedNLL(logits, targets, weight.scalars)
        let none = Tensor.crossEntropy(logits, targets: targets, weight: weight, reduction: .none)
        #expect(none.shape == [6])
        expectClose(none.scalars, losses.map(Float.init))
        expectClose([Tensor.crossEntropy(logits, targets: targets, weight: weight, reduction: .sum).item()],
                    [Float(losses.reduce(0, +))])
        // The weighted mean divides by the weights of the counted targets, not by their number.
        expectClose([Tensor.crossEntropy(logits, targets: targets, weight: weight).item()],
                    [Float(losses.reduce(0, +) / weights.reduce(0, +))])
        // A custom ignore index; without weights the mean is over the counted rows.
        expectClose([Tensor.crossEntropy(logits, targets: [0, 3, 1, 7, 7, 1], ignoreIndex: 7).item()],
                    [Float(weightedNLL(logits, [0, 3, 1, -1, -1, 1], nil).losses.reduce(0, +) / 4)])
        #expect(Tensor.crossEntropy(logits, targets: Array(repeating: -100, count: 6)).item().isNaN)   // 0 / 0, as PyTorch
        gradCheck([logits], "crossEntropy weighted mean") { Tensor.crossEntropy($0[0], targets: targets, weight: weight) }
        gradCheck([logits], "crossEntropy none") { Tensor.crossEntropy($0[0], targets: targets, reduction: .none) }
        gradCheck([logits], "crossEntropy sum, smoothing, weights") {
            Tensor.crossEntropy($0[0], targets: targets, weight: weight, reduction: .sum, labelSmoothing: 0.2)
        }
    }

    @Test func crossEntropyKeepsItsOriginalSignatureAndSmoothing() {
        let t = [1, 0, 3, 3, 2, 0], eps: Float = 0.1
        let logp = logits.logSoftmax(axis: 1)
        let nll = Tensor.nllLoss(logp, targets: t).item()
        let uniform = -logp.mean(axis: 1).mean().item()
        expectClose([Tensor.crossEntropy(logits, targets: t, labelSmoothing: eps).item()], [(1 - eps) * nll + eps * uniform])
        expectClose([Tensor.crossEntropy(logits, targets: t).item()], [nll])
        // The ignore index may be a valid class: those rows are ignored.
        expectClose([Tensor.crossEntropy(logits, targets: t, ignoreIndex: 3).item()],
                    [Tensor.crossEntropy(logits, targets: t.map { $0 == 3 ? -100 : $0 }).item()])
    }

    @Test func sequenceLogitsHaveTheClassAxisLast() {
        let lm = randomTensor([2, 3, 5], seed: 2) * 2          // [B, T, V]
        let next = [4, 0, -100, 2, 2, 1]
        let flat = Tensor.crossEntropy(lm.reshaped([6, 5]), targets: next)
        expectClose([Tensor.crossEntropy(lm, targets: next).item()], [flat.item()])
        let perToken = Tensor.crossEntropy(lm, targets: next, reduction: .none)
        #expect(perToken.shape == [2, 3] && perToken.scalars[2] == 0)
        gradCheck([lm], "crossEntropy [B, T, V]") { Tensor.crossEntropy($0[0], targets: next, labelSmoothing: 0.1) }
        // One unbatched row [C] with a single target gives a 0-D loss.
        #expect(Tensor.crossEntropy(Tensor([1, 2, 3]), targets: [2], reduction: .none).shape == [])
    }

    @Test func nllLoss() {
        let logp = logits.logSoftmax(axis: 1)
        expectClose([Tensor.nllLoss(logp, targets: targets, weight: weight).item()],
                    [Tensor.crossEntropy(logits, targets: targets, weight: weight).item()])
        #expect(Tensor.nllLoss(logp, targets: targets, reduction: .none).shape == [6])
        gradCheck([logp], "nllLoss") { Tensor.nllLoss($0[0], targets: targets, weight: weight) }
        gradCheck([logp], "nllLoss sum") { Tensor.nllLoss($0[0], targets: targets, reduction: .sum) }
    }

    @Test func klDivReductionsAndLogTarget() {
        let input = randomTensor([3, 4], seed: 3).logSoftmax(axis: 1)
        var q = randomTensor([3, 4], seed: 4).softmax(axis: 1).scalars
        q[5] = 0                                                    // 0 * log 0 = 0
        let target = Tensor(shape: [3, 4], scalars: q)
        let terms = zip(q, input.scalars).map { t, x in t == 0 ? 0 : Double(t) * (Foundation.log(Double(t)) - Double(x)) }
        let total = terms.reduce(0, +)
        expectClose(Tensor.klDiv(input, target, reduction: .none).scalars, terms.map(Float.init))
        expectClose([Tensor.klDiv(input, target, reduction: .sum).item()], [Float(total)])
        expectClose([Tensor.klDiv(input, target).item()], [Float(total / 12)])               // mean over all elements
        expectClose([Tensor.klDiv(input, target, reduction: .batchMean).item()], [Float(total / 3)])
        let logTarget = target.clamped(min: 1e-6).log()
        expectClose(Tensor.klDiv(input, logTarget, reduction: .none, logTarget: true).scalars,
                    Tensor.klDiv(input, target.clamped(min: 1e-6), reduction: .none).scalars, atol: 1e-5)
        let positive = randomTensor([3, 4], seed: 5).softmax(axis: 1)
        gradCheck([input, positive], "klDiv") { Tensor.klDiv($0[0], $0[1], reduction: .batchMean) }
        gradCheck([input, positive.log()], "klDiv logTarget") { Tensor.klDiv($0[0], $0[1], reduction: .sum, logTarget: true) }
    }

    @Test func huberAndSmoothL1() {
        let p = Tensor([0, 0.5, -2, 3]), t = Tensor([0, 0, 0, 0.5])
        expectClose(Tensor.huber(p, t, delta: 1, reduction: .none).scalars, [0, 0.125, 1.5, 2])
        expectClose(Tensor.huber(p, t, delta: 2, reduction: .none).scalars, [0, 0.125, 2, 3])
        expectClose(Tensor.smoothL1(p, t, beta: 2, reduction: .none).scalars, [0, 0.0625, 1, 1.5])
        expectClose(Tensor.smoothL1(p, t, beta: 0, reduction: .none).scalars, [0, 0.5, 2, 2.5])      // L1
        expectClose([Tensor.huber(p, t).item()], [(0 + 0.125 + 1.5 + 2) / 4])
        expectClose([Tensor.smoothL1(p, t, reduction: .sum).item()], [0 + 0.125 + 1.5 + 2])
        let a = awayFromZero([3, 4], seed: 6) * 2, b = randomTensor([3, 4], seed: 7) * 0.05
        gradCheck([a, b], eps: 1e-3, "huber") { Tensor.huber($0[0], $0[1], delta: 0.8) }
        gradCheck([a, b], eps: 1e-3, "smoothL1") { Tensor.smoothL1($0[0], $0[1], beta: 0.5, reduction: .sum) }
        gradCheck([a, b], eps: 1e-3, "smoothL1 none") { Tensor.smoothL1($0[0], $0[1], reduction: .none) }
    }
}
