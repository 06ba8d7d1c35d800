import Foundation

/// How a loss combines its per-element (or per-sample) values (PyTorch's `reduction`).
public enum LossReduction: Sendable, Equatable {
    /// No reduction: one value per sample (per element for element-wise losses).
    case none
    /// The sum of the values.
    case sum
    /// The mean; for `crossEntropy` and `nllLoss` with class weights, the weighted mean (divided
    /// by the sum of the counted samples' weights, as in PyTorch).
    case mean
}

/// How ``Tensor/klDiv(_:_:reduction:logTarget:)`` combines its element-wise terms (PyTorch's
/// `F.kl_div` reductions).
public enum KLDivReduction: Sendable, Equatable {
    /// One value per element.
    case none
    /// The sum of all terms.
    case sum
    /// The mean over **all elements** (PyTorch's default `'mean'`): the KL divergence divided by
    /// the number of classes too, which is rarely what is wanted.
    case mean
    /// The sum divided by the batch size (the first axis): the mathematical KL divergence per
    /// sample (PyTorch's `'batchmean'`).
    case batchMean
}

/// Targets of a classification loss over class scores `[..., C]` (class axis last).
private struct ClassTargets {
    let rows: Int, classes: Int
    let targets: [Int]
    /// Per class, or nil for 1.
    let classWeights: [Float]?
    /// Per row: whether the target counts (it is not `ignoreIndex`).
    let isCounted: [Bool]
    /// Per row: the target's class weight, 0 where the target is `ignoreIndex`.
    let rowWeights: [Float]
    /// The shape of an unreduced result (the scores' leading axes).
    let rowShape: [Int]

    init(_ op: String, scores: Tensor, targets: [Int], weight: Tensor?, ignoreIndex: Int) {
        Shape.check(scores.rank >= 1, op: op, shapes: [scores.shape], "expected class scores [..., C]")
        classes = scores.shape[scores.rank - 1]
        rowShape = Array(scores.shape.dropLast())
        rows = Shape.count(rowShape)
        Shape.check(targets.count == rows, op: op, shapes: [scores.shape, [targets.count]],
                    "expected one target per row of [..., C]: \(rows) targets")
        for t in targets where t != ignoreIndex && (t < 0 || t >= classes) {
            Shape.fail(ShapeError(op: op, shapes: [scores.shape], reason: "target \(t) out of range 0..<\(classes)"))
        }
        if let weight {
            Shape.check(weight.shape == [classes], op: op, shapes: [scores.shape, weight.shape], "weight must be [C] = [\(classes)]")
        }
        let w = weight?.scalars
        classWeights = w
        self.targets = targets
        isCounted = targets.map { $0 != ignoreIndex }
        rowWeights = targets.map { $0 == ignoreIndex ? 0 : (w?[$0] ?? 1) }
    }

    /// Per-row loss `-(1 - eps) w[t] logp[t] - eps / C * sum_c w[c] logp[c]` (0 for ignored rows).
    func losses(logProbabilities logp: Tensor, labelSmoothing eps: Float) -> Tensor {
        let out = Tensor(uninitialized: rowShape)
        let uniform = eps / Float(classes)
        logp.withDataPointer { pl in out.withDataPointer { po in
            classWeights.withOptionalPointer { pw in
                for i in 0..<rows {
                    guard isCounted[i] else { po[i] = 0; continue }
                    let row = pl + i * classes
                    var loss = -(1 - eps) * rowWeights[i] * row[targets[i]]
                    if uniform != 0 {
                        let total = pw.map { Kernels.dot(row, $0, count: classes) } ?? Kernels.sum(row, count: classes)
                        loss -= uniform * total
                    }
                    po[i] = loss
                }
            }
        }}
        return out
    }

    /// d(loss row i)/d logp, scaled by `gradOutput[i]` (per-row gradient of ``losses``).
    func lossGradient(gradOutput: Tensor, labelSmoothing eps: Float) -> Tensor {
        let g = gradOutput.contiguousData(), d = Tensor(zeros: rowShape + [classes])
        let uniform = eps / Float(classes)
        g.withDataPointer { pg in d.withDataPointer { pd in
            classWeights.withOptionalPointer { pw in
                for i in 0..<rows where isCounted[i] {
                    let row = pd + i * classes, scale = pg[i]
                    if uniform != 0 {
                        if let pw {
                            for c in 0..<classes { row[c] = -uniform * scale * pw[c] }
                        } else {
                            row.update(repeating: -uniform * scale, count: classes)
                        }
                    }
                    row[targets[i]] -= (1 - eps) * rowWeights[i] * scale
                }
            }
        }}
        return d
    }

    /// The reduced loss: the weighted mean divides by the counted rows' total weight.
    func reduce(_ losses: Tensor, _ reduction: LossReduction) -> Tensor {
        switch reduction {
        case .none: return losses
        case .sum: return losses.sum()
        case .mean: return losses.sum() / Float(rowWeights.reduce(0.0) { $0 + Double($1) })
        }
    }
}

extension Optional where Wrapped == [Float] {
    /// Calls `body` with a pointer to the array's elements, or nil.
    fileprivate func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let array = self else { return body(nil) }
        return array.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}

extension Tensor {
    /// Cross-entropy between class logits and class indices (PyTorch's `F.cross_entropy`), with
    /// a fused log-softmax.
    ///
    /// - `logits` is `[..., C]` with the **class axis last**: `[N, C]` for classification,
    ///   `[B, T, V]` for sequence models (language-model logits as they come out of the head);
    ///   `targets` holds one class per row of the leading axes, row-major (`B * T` for `[B, T, V]`).
    ///   PyTorch puts classes on axis 1 (`[B, V, T]`) and wants `logits.transpose(1, 2)` there;
    ///   FineTune takes the natural layout and no transpose is needed.
    /// - `weight` `[C]` scales each class's loss; `.mean` then divides by the total weight of
    ///   the counted targets (PyTorch's weighted mean), not by their number.
    /// - Targets equal to `ignoreIndex` (PyTorch's default -100, e.g. padding) contribute nothing
    ///   and do not count in the mean. If every target is ignored the mean is NaN, as in PyTorch.
    /// - `reduction: .none` returns the per-row losses, shaped like the leading axes.
    /// - `labelSmoothing` mixes the one-hot target with the uniform distribution (PyTorch's rule,
    ///   including its weighting of the uniform part with `weight`).
    ///
    /// ```swift
    /// let loss = Tensor.crossEntropy(lmLogits, targets: nextTokens, ignoreIndex: padID)   // [B, T, V]
    /// let perSample = Tensor.crossEntropy(logits, targets: y, reduction: .none)           // [N]
    /// ```
    public static func crossEntropy(_ logits: Tensor, targets: [Int], weight: Tensor? = nil, ignoreIndex: Int = -100,
                                    reduction: LossReduction = .mean, labelSmoothing: Float = 0) -> Tensor {
        precondition(labelSmoothing >= 0 && labelSmoothing <= 1, "crossEntropy: labelSmoothing must be in [0, 1]")
        let rule = ClassTargets("crossEntropy", scores: logits, targets: targets, weight: weight, ignoreIndex: ignoreIndex)
        let x = logits.contiguousData()
        let logp = Tensor(uninitialized: logits.shape)
        x.withDataPointer { px in logp.withDataPointer { pl in
            Kernels.logSoftmaxRows(px, pl, rows: rule.rows, cols: rule.classes)
        }}
        let losses = Tensor.record(rule.losses(logProbabilities: logp, labelSmoothing: labelSmoothing), op: "crossEntropy",
                                   inputs: [logits]) { g, _ in
            // d/dlogits = log-softmax backward of d/dlogp.
            let dlogp = rule.lossGradient(gradOutput: g, labelSmoothing: labelSmoothing)
            let dx = Tensor(uninitialized: logp.shape)
            logp.withDataPointer { pl in dlogp.withDataPointer { pg in dx.withDataPointer { pd in
                Kernels.logSoftmaxRowsBackward(y: pl, gradOutput: pg, gradInput: pd, rows: rule.rows, cols: rule.classes)
            }}}
            return [dx]
        }
        return rule.reduce(losses, reduction)
    }

    /// The next-token loss of a causal language model, as transformers computes it when
    /// `labels` are passed (`ForCausalLMLoss`): the logits at position `t` `[B, T, V]` are
    /// scored against `labels[:, t + 1]` `[B, T]` (integer-valued), the last position predicts
    /// nothing, and labels equal to `ignoreIndex` (padding, prompt tokens) are left out of the
    /// mean. Pass the token ids themselves as labels to train on every token.
    ///
    /// ```swift
    /// var labels = ids.scalars; labels.replaceSubrange(0..<promptLength, with: repeatElement(-100, count: promptLength))
    /// let loss = Tensor.causalLanguageModelingLoss(model(ids), labels: Tensor(shape: ids.shape, scalars: labels))
    /// ```
    public static func causalLanguageModelingLoss(_ logits: Tensor, labels: Tensor, ignoreIndex: Int = -100) -> Tensor {
        let op = "causalLanguageModelingLoss"
        Shape.check(logits.rank == 3 && labels.shape == Array(logits.shape.prefix(2)), op: op, shapes: [logits.shape, labels.shape],
                    "expected logits [B, T, V] and labels [B, T]")
        let t = labels.shape[1], values = labels.scalars
        let shifted = values.indices.map { i in i % t == t - 1 ? ignoreIndex : Int(values[i + 1]) }
        for (i, v) in values.enumerated() where v != v.rounded() {
            Shape.fail(ShapeError(op: op, shapes: [labels.shape], reason: "label \(v) at \(i) is not an integer"))
        }
        return crossEntropy(logits, targets: shifted, ignoreIndex: ignoreIndex)
    }

    /// Negative log-likelihood of class indices under log-probabilities `[..., C]` (PyTorch's
    /// `F.nll_loss`, class axis last as in ``crossEntropy(_:targets:weight:ignoreIndex:reduction:labelSmoothing:)``):
    /// `-weight[t] * logProbabilities[t]` per row, with the same `weight`, `ignoreIndex` and
    /// `reduction` rules. `crossEntropy(x)` equals `nllLoss(x.logSoftmax())`.
    ///
    /// ```swift
    /// let loss = Tensor.nllLoss(model(x).logSoftmax(axis: -1), targets: y)
    /// ```
    public static func nllLoss(_ logProbabilities: Tensor, targets: [Int], weight: Tensor? = nil, ignoreIndex: Int = -100,
                               reduction: LossReduction = .mean) -> Tensor {
        let rule = ClassTargets("nllLoss", scores: logProbabilities, targets: targets, weight: weight, ignoreIndex: ignoreIndex)
        let logp = logProbabilities.contiguousData()
        let losses = Tensor.record(rule.losses(logProbabilities: logp, labelSmoothing: 0), op: "nllLoss",
                                   inputs: [logProbabilities]) { g, _ in
            [rule.lossGradient(gradOutput: g, labelSmoothing: 0)]
        }
        return rule.reduce(losses, reduction)
    }

    /// Kullback-Leibler divergence `KL(target || exp(input))` with `input` as log-probabilities
    /// (PyTorch's `F.kl_div`, argument order included): element-wise
    /// `target * (log(target) - input)`, 0 where `target` is 0; with `logTarget` the target is
    /// given as log-probabilities too: `exp(target) * (target - input)`.
    ///
    /// The default `.mean` averages over every element, as PyTorch's default does; use
    /// `.batchMean` for the KL divergence per sample (what distillation recipes mean). Both
    /// arguments are differentiable (detach a teacher's target yourself).
    ///
    /// ```swift
    /// let distill = Tensor.klDiv((student / t).logSoftmax(), (teacher / t).softmax(), reduction: .batchMean) * (t * t)
    /// ```
    public static func klDiv(_ input: Tensor, _ target: Tensor, reduction: KLDivReduction = .mean,
                             logTarget: Bool = false) -> Tensor {
        Shape.check(input.shape == target.shape, op: "klDiv", shapes: [input.shape, target.shape],
                    "input and target must have the same shape")
        let x = input.contiguousData(), t = target.contiguousData()
        let terms = logTarget
            ? Broadcasting.binary(x, t, op: "klDiv") { x, t in Foundation.exp(t) * (t - x) }
            : Broadcasting.binary(x, t, op: "klDiv") { x, t in (t == 0 ? 0 : t * Foundation.log(t)) - t * x }
        let recorded = Tensor.record(terms, op: "klDiv", inputs: [input, target]) { g, needs in
            let dx = needs[0]
                ? (logTarget ? zipMap(g, t, t) { g, t, _ in -g * Foundation.exp(t) } : zipMap(g, t, t) { g, t, _ in -g * t })
                : nil
            let dt = needs[1]
                ? (logTarget
                    ? zipMap(g, x, t) { g, x, t in g * Foundation.exp(t) * (t - x + 1) }
                    : zipMap(g, x, t) { g, x, t in t == 0 ? 0 : g * (Foundation.log(t) + 1 - x) })
                : nil
            return [dx, dt]
        }
        switch reduction {
        case .none: return recorded
        case .sum: return recorded.sum()
        case .mean: return recorded.mean()
        case .batchMean: return recorded.sum() / Float(input.rank == 0 ? 1 : Swift.max(input.shape[0], 1))
        }
    }
}
