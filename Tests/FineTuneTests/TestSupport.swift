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

/// Finite-difference gradient check.
///
/// The scalar checked is `L = sum(f(inputs) * R)` for a fixed random `R`, accumulated in Double,
/// so every output element's Jacobian row is exercised. Central differences with step `eps`.
func gradCheck(_ inputs: [Tensor], eps: Float = 1e-2, atol: Float = 2e-3, rtol: Float = 2e-2,
               _ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation,
               _ f: ([Tensor]) -> Tensor) {
    let leaves = inputs.map { t -> Tensor in var l = t.contiguous().detached(); l.requiresGrad = true; return l }
    let output = f(leaves)
    let weights = randomTensor(output.shape, seed: 977, low: 0.5, high: 1.5)
    (output * weights).sum().backward()

    func loss(_ values: [Tensor]) -> Double {
        let out = withoutGradients { f(values) }
        let w = weights.scalars
        return zip(out.scalars, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    }

    for (index, leaf) in leaves.enumerated() {
        guard let analytic = leaf.grad?.scalars else {
            Issue.record("\(comment): input \(index) received no gradient", sourceLocation: sourceLocation)
            continue
        }
        var numeric = [Float](repeating: 0, count: leaf.count)
        let base = leaf.scalars
        for i in 0..<leaf.count {
            var plus = leaves.map { $0.detached() }, minus = plus
            var p = base, m = base
            p[i] += eps; m[i] -= eps
            plus[index] = Tensor(shape: leaf.shape, scalars: p)
            minus[index] = Tensor(shape: leaf.shape, scalars: m)
            numeric[i] = Float((loss(plus) - loss(minus)) / (2 * Double(eps)))
        }
        expectClose(analytic, numeric, atol: atol, rtol: rtol, "\(comment) input \(index)", sourceLocation: sourceLocation)
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
