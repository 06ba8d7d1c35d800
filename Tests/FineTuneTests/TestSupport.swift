import Foundation
import Testing
@testable import FineTune

/// Deterministic test data.
func randomTensor(_ shape: [Int], seed: UInt64 = 1, low: Float = -1, high: Float = 1) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    return Tensor.randomUniform(shape, low: low, high: high, generator: &rng)
}

/// Random values whose magnitude is at least `margin`, so kinks (relu, abs, max) are never
/// within a finite-difference step.
func awayFromZero(_ shape: [Int], seed: UInt64 = 1, margin: Float = 0.1) -> Tensor {
    let t = randomTensor(shape, seed: seed)
    return Tensor(shape: shape, scalars: t.scalars.map { $0 >= 0 ? $0 + margin : $0 - margin })
}

/// `|a - b| <= atol + rtol * |b|` elementwise.
func expectClose(_ a: [Float], _ b: [Float], atol: Float = 1e-5, rtol: Float = 1e-4,
                 _ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.count == b.count, "\(comment): counts \(a.count) vs \(b.count)", sourceLocation: sourceLocation)
    var worst: (Int, Float, Float)?
    for i in 0..<min(a.count, b.count) {
        let ok = abs(a[i] - b[i]) <= atol + rtol * abs(b[i]) || (a[i].isNaN && b[i].isNaN) || a[i] == b[i]
        if !ok { worst = (i, a[i], b[i]); break }
    }
    #expect(worst == nil, "\(comment): first mismatch at \(worst.map { "\($0.0): \($0.1) vs \($0.2)" } ?? "")",
            sourceLocation: sourceLocation)
}

/// How ``gradCheck(_:eps:atol:rtol:layouts:linearInEachInput:sampled:_:sourceLocation:_:)`` lays out an input in memory:
/// the checked function reads a contiguous tensor, a transposed view (axes reversed; rank >= 2),
/// or a strided view (a slice taking every second element of a buffer twice the size, rank >= 1).
enum GradCheckLayout: CaseIterable, CustomStringConvertible, Sendable {
    case contiguous, transposed, strided

    var description: String {
        switch self {
        case .contiguous: "contiguous"
        case .transposed: "transposed view"
        case .strided: "strided view"
        }
    }

    /// Whether this layout differs from a contiguous one for a tensor of `rank`.
    func applies(toRank rank: Int) -> Bool {
        switch self {
        case .contiguous: true
        case .transposed: rank >= 2
        case .strided: rank >= 1
        }
    }

    /// The buffer (a leaf) holding `values` in this layout.
    func leaf(holding values: Tensor) -> Tensor {
        let rank = values.rank
        guard applies(toRank: rank) else { return values.contiguousCopy() }
        switch self {
        case .contiguous:
            return values.contiguousCopy()
        case .transposed:
            return values.permuted(Array((0..<rank).reversed())).contiguousCopy()
        case .strided:
            // Element i of `values` at 2i; the odd slots hold a value the function must never read.
            let padding = Tensor.full(values.shape + [1], 7)
            return Tensor.concat([values.unsqueezed(axis: rank), padding], axis: rank).detached()
        }
    }

    /// The view of `leaf` that the checked function reads (non-contiguous unless the layout does
    /// not apply to this rank).
    func view(of leaf: Tensor, rank: Int) -> Tensor {
        guard applies(toRank: rank) else { return leaf }
        switch self {
        case .contiguous: return leaf
        case .transposed: return leaf.permuted(Array((0..<rank).reversed()))
        case .strided: return leaf.select(axis: rank, 0)
        }
    }

    /// Whether this layout must give `view` gaps or a non-row-major order: a strided view of at
    /// least 2 elements, a transposed view with at least 2 dimensions longer than 1.
    func expectsNonContiguous(_ view: Tensor) -> Bool {
        switch self {
        case .contiguous: false
        case .transposed: view.shape.filter { $0 > 1 }.count >= 2
        case .strided: view.count >= 2
        }
    }

    /// Whether element `i` of the leaf is one the view reads.
    func isRead(_ i: Int, rank: Int) -> Bool {
        self != .strided || !applies(toRank: rank) || i % 2 == 0
    }
}

/// Finite-difference gradient check with per-element tolerances.
///
/// The scalar checked is `L = sum(f(inputs) * R)` for fixed random weights `R` (``lossWeights(count:)``),
/// accumulated in Double, so every output element's Jacobian row is exercised. Every input element gets a
/// fourth-order central difference: with `D(s) = (L(x + s) - L(x - s)) / 2s` for the steps Float
/// actually takes, the estimate is `n = (4 D(h) - D(2h)) / 3`, `h = eps` (exact for piecewise-linear
/// functions; truncation error ~h^4, so `h` can be large enough to keep Float rounding in `L` small).
/// Each element of the backward gradient `a` must then satisfy `|a - n| <= atol + rtol * |n|`.
///
/// The defaults (eps 1e-2, atol 1e-4, rtol 1e-3) are tight enough that a rule off by 1%, or a mean
/// divided by `n - 1` over up to 64 elements, fails (MutationTests proves it on the suite's own
/// calls). Keep the tensors small, so Float rounding in `L` stays far below these tolerances and
/// reductions stay within 64 elements per output, and inputs of piecewise-linear functions (relu,
/// abs, max, clamp) at least `2 eps` away from their kinks.
///
/// The check runs once per layout, by default on contiguous inputs and on transposed and strided
/// views of them, so every op is also checked on non-contiguous inputs: there the output must
/// match the contiguous one and the gradient the same numeric estimate, and the elements of a
/// strided buffer that the view skips must get a gradient of exactly 0. (A function that routes
/// its inputs into `Parameter`s, which keep only leaves, checks `layouts: [.contiguous]`.)
///
/// Debug-build kernels are slow, so two options save evaluations where that loses nothing:
/// `linearInEachInput` (matmul, conv2d, linear, average pooling: f is linear in each input when the
/// others are fixed) takes the plain central difference `D(2h)`, exact up to rounding for such f,
/// at two evaluations per element instead of four; `sampled` limits the numeric check to that many
/// elements per input, evenly spread from the first to the last, for inputs too large to difference whole.
func gradCheck(_ inputs: [Tensor], eps: Float = 1e-2, atol: Float = 1e-4, rtol: Float = 1e-3,
               layouts: [GradCheckLayout] = GradCheckLayout.allCases, linearInEachInput: Bool = false, sampled: Int? = nil,
               _ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation,
               _ f: ([Tensor]) -> Tensor) {
    let values = inputs.map { $0.contiguousCopy() }
    let reference = withoutGradients { f(values) }
    let weights = lossWeights(count: reference.count)
    let checked = values.map { t -> [Int] in
        guard let sampled, sampled < t.count else { return Array(0..<t.count) }
        return (0..<sampled).map { $0 * (t.count - 1) / Swift.max(sampled - 1, 1) }
    }
    let numeric = numericGradients(values, elements: checked, weights: weights, eps: eps, richardson: !linearInEachInput, f)
    for layout in layouts where layout == .contiguous || inputs.contains(where: { layout.applies(toRank: $0.rank) }) {
        let context = "\(comment) [\(layout)]"
        let ranks = inputs.map(\.rank)
        let leaves = values.map { t -> Tensor in var l = layout.leaf(holding: t); l.requiresGrad = true; return l }
        let views = zip(leaves, ranks).map { layout.view(of: $0, rank: $1) }
        for (index, view) in views.enumerated() where layout.expectsNonContiguous(view) && view.isContiguous {
            Issue.record("\(context): input \(index) \(view.shape) should be a non-contiguous view", sourceLocation: sourceLocation)
        }
        let output = f(views)
        if layout != .contiguous {
            expectClose(output.scalars, reference.scalars, atol: 1e-6, rtol: 1e-5, "\(context) output vs contiguous",
                        sourceLocation: sourceLocation)
        }
        (output * Tensor(shape: output.shape, scalars: weights)).sum().backward()
        for (index, leaf) in leaves.enumerated() {
            guard let grad = leaf.grad else {
                Issue.record("\(context): input \(index) received no gradient", sourceLocation: sourceLocation)
                continue
            }
            var failures: [String] = []
            let stored = grad.scalars
            for i in stored.indices where !layout.isRead(i, rank: ranks[index]) && stored[i] != 0 {
                failures.append("unread buffer element \(i) got gradient \(stored[i])")
            }
            let analytic = layout.view(of: grad, rank: ranks[index]).scalars
            for (i, n) in zip(checked[index], numeric[index]) {
                let error = abs(Double(analytic[i]) - n), allowed = Double(atol) + Double(rtol) * abs(n)
                if !(error <= allowed) {
                    failures.append("element \(i): analytic \(analytic[i]) vs numeric \(Float(n)) " +
                                    "(|error| \(Float(error)) > atol \(atol) + rtol \(rtol) * |numeric|)")
                }
            }
            if let first = failures.first {
                Issue.record("\(context) input \(index): \(failures.count) of \(leaf.count) elements wrong, first: \(first)",
                             sourceLocation: sourceLocation)
            }
        }
    }
}

/// The fixed weights `R` of a gradient check's loss: magnitudes in [0.5, 1.5] so every output's
/// Jacobian row counts, with random signs so rounding errors that all outputs share
/// (a softmax's or a norm's statistics) largely cancel in `L` instead of adding up.
func lossWeights(count: Int) -> [Float] {
    var rng = RandomGenerator(seed: 977)
    return (0..<count).map { _ in
        let magnitude = 0.5 + rng.nextUniform()
        return rng.nextUniform() < 0.5 ? -magnitude : magnitude
    }
}

/// `dL/dx` for the given (row-major) elements of every input, by the fourth-order central
/// difference of ``gradCheck(_:eps:atol:rtol:layouts:linearInEachInput:sampled:_:sourceLocation:_:)``
/// (or `D(2h)` alone without `richardson`).
private func numericGradients(_ values: [Tensor], elements: [[Int]], weights: [Float], eps: Float, richardson: Bool,
                              _ f: ([Tensor]) -> Tensor) -> [[Double]] {
    func loss(_ inputs: [Tensor]) -> Double {
        let out = withoutGradients { f(inputs) }
        return zip(out.scalars, weights).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    }
    return values.indices.map { index in
        let base = values[index].scalars, shape = values[index].shape
        return elements[index].map { i in
            func difference(_ step: Float) -> Double {
                var plus = base, minus = base
                plus[i] += step; minus[i] -= step
                var inputs = values
                inputs[index] = Tensor(shape: shape, scalars: plus)
                let up = loss(inputs)
                inputs[index] = Tensor(shape: shape, scalars: minus)
                return (up - loss(inputs)) / (Double(plus[i]) - Double(minus[i]))
            }
            return richardson ? (4 * difference(eps) - difference(2 * eps)) / 3 : difference(2 * eps)
        }
    }
}

/// Checks that an exit test's child process wrote every one of `fragments` to standard error
/// (the message of the precondition that stopped it).
func expectStandardError(_ result: ExitTest.Result?, contains fragments: [String],
                         sourceLocation: SourceLocation = #_sourceLocation) {
    guard let result else { return }     // the exit expectation itself already failed
    let message = String(decoding: result.standardErrorContent, as: UTF8.self)
    for fragment in fragments {
        #expect(message.contains(fragment), "standard error lacks \"\(fragment)\": \(message.prefix(600))",
                sourceLocation: sourceLocation)
    }
}

/// A file of the test bundle's Fixtures folder.
func fixtureURL(_ path: String) -> URL {
    Bundle.module.resourceURL!.appendingPathComponent("Fixtures").appendingPathComponent(path)
}

/// A fresh empty directory for one test.
func temporaryDirectory() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-tests-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The digits CNN of the `torch-digits-cnn` fixture (PyTorch `nn.Sequential` indices).
func digitsCNN() -> Sequential {
    Sequential(Conv2d(1, 16, kernelSize: 3, padding: 1), BatchNorm2d(16), ReLU(), MaxPool2d(kernelSize: 2),
               Conv2d(16, 32, kernelSize: 3, padding: 1), ReLU(), MaxPool2d(kernelSize: 2),
               Flatten(), Linear(128, 64), ReLU(), Linear(64, 10))
}
