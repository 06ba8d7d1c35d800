import Testing
@testable import FineTune

/// Runs `f` and `g` on the same inputs (as fresh leaves) and expects the same outputs and the
/// same gradient of every input for one fixed output gradient: a fused op against the same math
/// written with primitive ops.
func expectSameValuesAndGradients(_ inputs: [Tensor], atol: Float = 1e-5, rtol: Float = 1e-4, _ comment: String,
                                  sourceLocation: SourceLocation = #_sourceLocation,
                                  _ f: ([Tensor]) -> Tensor, _ g: ([Tensor]) -> Tensor) {
    func run(_ body: ([Tensor]) -> Tensor) -> (Tensor, [Tensor]) {
        let leaves = inputs.map { t -> Tensor in var l = t.detached(); l.requiresGrad = true; return l }
        let out = body(leaves)
        out.backward(randomTensor(out.shape, seed: 1234))
        return (out, leaves.map { $0.grad ?? Tensor.zeros($0.shape) })
    }
    let (a, da) = run(f), (b, db) = run(g)
    #expect(a.shape == b.shape, "\(comment): shapes \(a.shape) vs \(b.shape)", sourceLocation: sourceLocation)
    expectClose(a.scalars, b.scalars, atol: atol, rtol: rtol, "\(comment) output", sourceLocation: sourceLocation)
    for i in inputs.indices {
        expectClose(da[i].scalars, db[i].scalars, atol: atol, rtol: rtol, "\(comment) gradient \(i)", sourceLocation: sourceLocation)
    }
}
