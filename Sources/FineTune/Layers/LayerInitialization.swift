/// A layer that can draw its parameters' default initial values again (PyTorch's `reset_parameters()`).
///
/// A layer's `resetParameters(generator:)` touches only its *own* parameters and draws in the
/// same order as its initialiser, which calls it with the global generator. Children are
/// reset by ``Module/reinitialize(generator:)``, which walks the tree children-first, so
///
/// ```swift
/// RandomGenerator.seed(7); let a = makeModel()
/// var rng = RandomGenerator(seed: 7); let b = makeModel(); b.reinitialize(generator: &rng)
/// // a and b hold the same parameters
/// ```
///
/// (the second form does not depend on the process-wide generator, so it is also immune to
/// other threads drawing from it).
public protocol ParameterInitializing: AnyObject {
    /// Redraws this layer's own parameters (not its children's) with its default initialisation.
    func resetParameters(generator: inout RandomGenerator)
}

extension ParameterInitializing {
    /// Redraws this layer's own parameters from the global generator (see ``RandomGenerator/seed(_:)``).
    public func resetParameters() {
        RandomGenerator.withGlobal { resetParameters(generator: &$0) }
    }
}

extension Module {
    /// Re-initialises every layer of the tree that has a default initialisation, drawing from
    /// `generator`. Children come before their parent, in declaration order, which is the order
    /// in which constructing the model draws from the global generator; so a model re-initialised
    /// from `RandomGenerator(seed: s)` equals one constructed right after `RandomGenerator.seed(s)`.
    ///
    /// ```swift
    /// var rng = RandomGenerator(seed: 42)
    /// model.reinitialize(generator: &rng)
    /// ```
    public func reinitialize(generator: inout RandomGenerator) {
        for (_, child) in namedChildren() { child.reinitialize(generator: &generator) }
        (self as? ParameterInitializing)?.resetParameters(generator: &generator)
    }

    /// Re-initialises every layer of the tree from the global generator.
    public func reinitialize() {
        RandomGenerator.withGlobal { reinitialize(generator: &$0) }
    }
}

extension Initializer {
    /// PyTorch's default for `Linear` and `Conv*d`: weight kaiming-uniform with `a = sqrt(5)`,
    /// which is U(-1/sqrt(fanIn), 1/sqrt(fanIn)), then bias U(-1/sqrt(fanIn), 1/sqrt(fanIn)).
    static func pytorchDefault(weight shape: [Int], bias: Bool,
                               generator: inout RandomGenerator) -> (weight: Tensor, bias: Tensor?) {
        let weight = kaimingUniform(shape, a: Float(5).squareRoot(), generator: &generator)
        guard bias else { return (weight, nil) }
        let fanIn = fans(shape).fanIn
        let bound: Float = fanIn > 0 ? 1 / Float(fanIn).squareRoot() : 0
        return (weight, Tensor.randomUniform([shape[0]], low: -bound, high: bound, generator: &generator))
    }
}

/// Formatting of layer arguments in error messages.
enum LayerFormat {
    /// `"3"` for `(3, 3)`, `"(3, 1)"` otherwise.
    static func size(_ p: (Int, Int)) -> String { p.0 == p.1 ? "\(p.0)" : "(\(p.0), \(p.1))" }
}
