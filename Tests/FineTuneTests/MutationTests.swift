import Foundation
import Testing
@testable import FineTune

#if DEBUG
/// Deliberately wrong backward rules (``GradientMutation``, debug builds only), each run through
/// the gradient checks GradientCheckTests runs for the ops involved: every one must be caught.
///
/// A mutation is caught when the check records an issue; the issue is expected here, so it does not
/// fail this suite, while a check that stays silent does. Cases where a mutation changes nothing
/// (transposing a 1x1 matrix, reducing a broadcast that did not happen) must stay silent, which
/// shows the checks do not fail on everything.
@Suite("Mutations: the gradient checks catch wrong rules")
struct MutationTests {
    private let suite = GradientCheckTests()

    /// Whether `check` records an issue while `mutation` is switched on.
    private func isCaught(_ mutation: GradientMutation, _ check: () -> Void) -> Bool {
        let issues = Locked(0)
        GradientMutation.$active.withValue(mutation) {
            withKnownIssue("deliberately wrong rule: \(mutation)", isIntermittent: true) {
                check()
            } matching: { _ in
                issues.withLock { $0 += 1 }
                return true
            }
        }
        return issues.withLock { $0 } > 0
    }

    @Test(arguments: GradientCheckTests.reductionCases)
    func meanDividingByCountMinusOne(_ shape: [Int], _ axes: [Int]) {
        #expect(isCaught(.meanDividesByCountMinusOne) { suite.reductions(shape, axes) }, "reductions \(shape) \(axes)")
    }

    @Test func meanDividingByCountMinusOneInsideOtherOps() {
        #expect(isCaught(.meanDividesByCountMinusOne) { suite.pooling() }, "globalAvgPool2d")
        #expect(isCaught(.meanDividesByCountMinusOne) { suite.losses() }, "mse")
    }

    /// A matrix operand (1-D ones promoted) with at least 2 rows and 2 columns: only then is its
    /// transpose different from its data read with the transposed shape.
    private func transposeMatters(_ a: [Int], _ b: [Int]) -> Bool {
        let left = a.count == 1 ? [1] + a : a, right = b.count == 1 ? b + [1] : b
        return [left, right].contains { $0.suffix(2).allSatisfy { $0 > 1 } }
    }

    @Test(arguments: GradientCheckTests.matmulSizes)
    func matmulMissingTranspose(_ m: Int, _ k: Int, _ n: Int) {
        #expect(isCaught(.matmulMissingTranspose) { suite.matmul2D(m, k, n) } == transposeMatters([m, k], [k, n]),
                "matmul [\(m), \(k)] x [\(k), \(n)]")
    }

    @Test(arguments: GradientCheckTests.vectorMatmulShapes)
    func matmulMissingTransposeWithVectors(_ a: [Int], _ b: [Int]) {
        #expect(isCaught(.matmulMissingTranspose) { suite.matmulWithVectors(a, b) } == transposeMatters(a, b), "matmul \(a) x \(b)")
    }

    @Test func matmulMissingTransposeBatched() {
        #expect(isCaught(.matmulMissingTranspose) { suite.matmulBatched() })
    }

    @Test(arguments: GradientCheckTests.broadcastPairs)
    func broadcastNotReduced(_ a: [Int], _ b: [Int]) {
        let broadcasts = a != b
        #expect(isCaught(.broadcastNotReduced) { suite.add(a, b) } == broadcasts, "add \(a) \(b)")
        #expect(isCaught(.broadcastNotReduced) { suite.sub(a, b) } == broadcasts, "sub \(a) \(b)")
        #expect(isCaught(.broadcastNotReduced) { suite.mul(a, b) } == broadcasts, "mul \(a) \(b)")
        #expect(isCaught(.broadcastNotReduced) { suite.div(a, b) } == broadcasts, "div \(a) \(b)")
    }

    /// Every op (as its graph nodes name it) that the suite checks.
    static let checkedOps: [String] = [
        "add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "pow", "abs", "clamp", "sigmoid", "tanh", "relu",
        "leakyRelu", "gelu", "softmax", "logSoftmax", "sum", "mean", "max", "matmul", "linear", "reshape", "permute",
        "contiguous", "expand", "slice", "concat", "setElement", "embedding", "where", "conv2d", "maxPool2d",
        "avgPool2d", "adaptiveAvgPool2d", "layerNorm", "batchNorm", "crossEntropy", "binaryCrossEntropyWithLogits",
    ]

    /// The suite's checks that run `op`.
    private func checks(running op: String) -> [() -> Void] {
        let suite = self.suite
        switch op {
        case "add": return GradientCheckTests.broadcastPairs.map { c in { suite.add(c.0, c.1) } }
        case "sub": return GradientCheckTests.broadcastPairs.map { c in { suite.sub(c.0, c.1) } }
        case "mul": return GradientCheckTests.broadcastPairs.map { c in { suite.mul(c.0, c.1) } } + [suite.dropoutUsesItsMask]
        case "div": return GradientCheckTests.broadcastPairs.map { c in { suite.div(c.0, c.1) } } + [suite.scalarOperators]
        case "neg", "exp", "log", "sqrt", "abs", "clamp", "sigmoid", "tanh", "relu", "leakyRelu", "gelu":
            return GradientCheckTests.pointwiseShapes.map { shape in { suite.pointwise(shape) } }
        case "pow": return GradientCheckTests.pointwiseShapes.map { shape in { suite.pointwise(shape) } } + [suite.powTensorExponent]
        case "softmax", "logSoftmax": return GradientCheckTests.softmaxCases.map { c in { suite.softmaxFamily(c.0, c.1) } }
        case "sum", "mean", "max": return GradientCheckTests.reductionCases.map { c in { suite.reductions(c.0, c.1) } }
        case "matmul":
            return GradientCheckTests.matmulSizes.map { c in { suite.matmul2D(c.0, c.1, c.2) } }
                + GradientCheckTests.vectorMatmulShapes.map { c in { suite.matmulWithVectors(c.0, c.1) } } + [suite.matmulBatched]
        case "linear": return [suite.linear]
        case "reshape", "permute", "contiguous", "expand", "slice", "concat": return [suite.shapeOps]
        case "setElement": return [suite.subscriptWrite]
        case "embedding", "where": return [suite.indexing]
        case "conv2d": return GradientCheckTests.convCases.map { c in { suite.conv2d(c) } } + [suite.conv2dShiftedCopies]
        case "maxPool2d", "avgPool2d", "adaptiveAvgPool2d": return [suite.pooling]
        case "layerNorm", "batchNorm": return [suite.normalization]
        case "crossEntropy", "binaryCrossEntropyWithLogits": return [suite.losses]
        default: return []
        }
    }

    /// Each op's rule returning gradients 1% too large is caught by the checks of that op.
    @Test(arguments: checkedOps)
    func onePercentScaleError(op: String) {
        let checks = checks(running: op)
        #expect(!checks.isEmpty, "no checks listed for \(op)")
        #expect(checks.contains { isCaught(.scaledRule(op: op), $0) }, "a 1% error in \(op)'s rule passes all \(checks.count) of its checks")
    }

    /// A mutation of an op the checks do not run changes nothing, and nothing is caught.
    @Test func mutationsOfOtherOpsAreNotCaught() {
        #expect(!isCaught(.scaledRule(op: "conv2d")) { suite.matmul2D(3, 5, 2) })
        #expect(!isCaught(.scaledRule(op: "matmul")) { suite.reductions([2, 3, 4], [1, 2]) })
        #expect(!isCaught(.meanDividesByCountMinusOne) { suite.add([4, 1], [1, 5]) })
    }
}
#endif
