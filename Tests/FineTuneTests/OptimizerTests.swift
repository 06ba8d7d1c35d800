import Foundation
import Testing
@testable import FineTune

// MARK: - Test modules (no dependency on the layer library)

/// One free parameter vector, for update-rule checks with hand-set gradients.
private final class Holder: Module {
    let w: Parameter
    init(_ values: [Float], role: Parameter.Role = .weight) { w = Parameter(Tensor(values), role: role) }
}

/// `x W^T + b`.
private final class Dense: Module {
    let weight: Parameter
    let bias: Parameter
    init(_ inputs: Int, _ outputs: Int, seed: UInt64, scale: Float = 0.5) {
        weight = Parameter(randomTensor([outputs, inputs], seed: seed, low: -scale, high: scale))
        bias = Parameter(Tensor.zeros([outputs]), role: .bias)
    }
    override func forward(_ x: Tensor) -> Tensor { Tensor.linear(x, weight: weight.value, bias: bias.value) }
}

/// A 2-layer MLP whose head can be replaced.
private final class TwoLayer: Module {
    let fc1: Dense
    @Child var head: Dense
    init(hidden: Int = 8, outputs: Int = 2) {
        fc1 = Dense(3, hidden, seed: 11)
        head = Dense(hidden, outputs, seed: 12)
    }
    override func forward(_ x: Tensor) -> Tensor { head(fc1(x).tanh()) }
}

/// One parameter of each role.
private final class Roles: Module {
    let weight = Parameter(Tensor([1, -2]))
    let bias = Parameter(Tensor([1, -2]), role: .bias)
    let norm = Parameter(Tensor([1, -2]), role: .normalization)
    let embedding = Parameter(Tensor([1, -2]), role: .embedding)
}

// MARK: - Double-precision references (PyTorch's algorithms, written out)

private func referenceSGD(_ w0: [Double], _ grads: [[Double]], lr: Double, momentum: Double, dampening: Double,
                          nesterov: Bool, weightDecay: Double) -> [[Double]] {
    var w = w0
    var buffer: [Double]?
    var trajectory: [[Double]] = []
    for g in grads {
        var d = zip(g, w).map { $0 + weightDecay * $1 }
        if momentum != 0 {
            if let b = buffer {
                buffer = zip(b, d).map { momentum * $0 + (1 - dampening) * $1 }
            } else {
                buffer = d
            }
            d = nesterov ? zip(d, buffer!).map { $0 + momentum * $1 } : buffer!
        }
        w = zip(w, d).map { $0 - lr * $1 }
        trajectory.append(w)
    }
    return trajectory
}

private func referenceAdam(_ w0: [Double], _ grads: [[Double]], lr: Double, beta1: Double, beta2: Double,
                           eps: Double, weightDecay: Double, decoupled: Bool) -> [[Double]] {
    var w = w0
    var m = [Double](repeating: 0, count: w0.count), v = m
    var trajectory: [[Double]] = []
    for (index, g) in grads.enumerated() {
        let t = Double(index + 1)
        for i in w.indices {
            var gi = g[i]
            if decoupled { w[i] *= 1 - lr * weightDecay } else { gi += weightDecay * w[i] }
            m[i] = beta1 * m[i] + (1 - beta1) * gi
            v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
            let mHat = m[i] / (1 - pow(beta1, t)), vHat = v[i] / (1 - pow(beta2, t))
            w[i] -= lr * mHat / (vHat.squareRoot() + eps)
        }
        trajectory.append(w)
    }
    return trajectory
}

// 13 elements: one 8-wide vector body plus a scalar tail in the kernels.
private let w0: [Float] = [0.5, -0.25, 1.0, -0.75, 0.125, 0.3, -1.2, 0.05, 0.9, -0.4, 0.0, 2.0, -0.6]
private let gradientSequence: [[Float]] = [
    [0.1, -0.2, 0.3, 0.05, -0.4, 0.7, -0.01, 0.25, -0.3, 0.15, 0.5, -0.8, 0.02],
    [-0.3, 0.1, 0.25, -0.15, 0.2, -0.6, 0.03, 0.4, 0.1, -0.2, -0.5, 0.9, 0.0],
    [0.2, 0.2, -0.1, 0.35, -0.05, 0.1, 0.04, -0.3, 0.6, 0.25, 0.45, -0.7, -0.02],
]

private func doubles(_ x: [Float]) -> [Double] { x.map(Double.init) }

private func expectMatches(_ actual: [Float], _ reference: [Double], _ comment: String,
                           sourceLocation: SourceLocation = #_sourceLocation) {
    expectClose(actual, reference.map { Float($0) }, atol: 1e-6, rtol: 1e-6, comment, sourceLocation: sourceLocation)
}

/// Sets the gradient of `p` (which must be trainable).
private func setGrad(_ p: Parameter, _ values: [Float]) {
    p.grad = Tensor(shape: p.shape, scalars: values)
}

// MARK: - Fixed data

private var inputs: Tensor { randomTensor([32, 3], seed: 21) }
private var targets: Tensor {
    withoutGradients {
        let w = randomTensor([2, 3], seed: 22)
        return Tensor.linear(inputs, weight: w, bias: Tensor([0.5, -0.3])).tanh()
    }
}

private func lossAndBackward(_ model: Module) -> Float {
    let loss = Tensor.mse(model(inputs), targets)
    loss.backward()
    return loss.item()
}

// MARK: - Update rules

struct SGDCase: Sendable, CustomTestStringConvertible {
    var name: String
    var lr: Float = 0.1
    var momentum: Float = 0
    var dampening: Float = 0
    var nesterov = false
    var weightDecay: Float = 0
    var testDescription: String { name }
}

struct AdamCase: Sendable, CustomTestStringConvertible {
    var name: String
    var decoupled: Bool
    var weightDecay: Float
    var testDescription: String { name }
}

@Suite("Optimizers")
struct OptimizerTests {
    @Test(arguments: [
        SGDCase(name: "plain"),
        SGDCase(name: "momentum", momentum: 0.9),
        SGDCase(name: "nesterov", momentum: 0.9, nesterov: true),
        SGDCase(name: "weight decay", weightDecay: 0.1),
        SGDCase(name: "dampening", momentum: 0.8, dampening: 0.5),
        SGDCase(name: "everything", lr: 0.05, momentum: 0.7, nesterov: true, weightDecay: 0.2),
    ])
    func sgdMatchesReference(_ c: SGDCase) {
        let model = Holder(w0)
        let sgd = SGD(model, lr: c.lr, momentum: c.momentum, dampening: c.dampening, nesterov: c.nesterov,
                      weightDecay: c.weightDecay)
        let reference = referenceSGD(doubles(w0), gradientSequence.map(doubles), lr: Double(c.lr),
                                     momentum: Double(c.momentum), dampening: Double(c.dampening),
                                     nesterov: c.nesterov, weightDecay: Double(c.weightDecay))
        for (step, g) in gradientSequence.enumerated() {
            setGrad(model.w, g)
            sgd.step()
            expectMatches(model.w.value.scalars, reference[step], "\(c.name) step \(step)")
        }
        #expect(sgd.stepCount == 3)
        #expect(sgd.stateCount == (c.momentum == 0 ? 0 : 1))
    }

    @Test(arguments: [
        AdamCase(name: "Adam", decoupled: false, weightDecay: 0),
        AdamCase(name: "Adam with L2", decoupled: false, weightDecay: 0.1),
        AdamCase(name: "AdamW", decoupled: true, weightDecay: 0.1),
        AdamCase(name: "AdamW no decay", decoupled: true, weightDecay: 0),
    ])
    func adamMatchesReference(_ c: AdamCase) {
        let model = Holder(w0)
        let lr: Float = 0.01
        let optimizer: any Optimizer = if c.decoupled {
            AdamW(model, lr: lr, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: c.weightDecay)
        } else {
            Adam(model, lr: lr, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: c.weightDecay)
        }
        let reference = referenceAdam(doubles(w0), gradientSequence.map(doubles), lr: Double(lr), beta1: 0.8,
                                      beta2: 0.95, eps: 1e-6, weightDecay: Double(c.weightDecay), decoupled: c.decoupled)
        for (step, g) in gradientSequence.enumerated() {
            setGrad(model.w, g)
            optimizer.step()
            expectMatches(model.w.value.scalars, reference[step], "\(c.name) step \(step)")
        }
        let state = optimizer.state(for: "w")
        #expect(state?.step == 3)
        #expect(state?.tensors.keys.sorted() == ["exp_avg", "exp_avg_sq"])
    }

    @Test func defaultHyperparametersMatchPyTorch() {
        let model = Holder(w0)
        let adam = Adam(model), adamW = AdamW(model), sgd = SGD(model)
        #expect(adam.learningRate == 1e-3 && adam.beta1 == 0.9 && adam.beta2 == 0.999 && adam.eps == 1e-8)
        #expect(adam.weightDecay == 0 && adamW.weightDecay == 0.01)
        #expect(sgd.momentum == 0 && sgd.dampening == 0 && !sgd.nesterov && sgd.weightDecay == 0)
    }

    @Test func updatesWriteInPlace() {
        let model = Holder(w0)
        let adam = Adam(model, lr: 0.01)
        setGrad(model.w, gradientSequence[0])
        adam.step()
        let storage = ObjectIdentifier(model.w.value.storage)
        let moment = ObjectIdentifier(adam.state(for: "w")!.tensors["exp_avg"]!.storage)
        setGrad(model.w, gradientSequence[1])
        adam.step()
        #expect(ObjectIdentifier(model.w.value.storage) == storage)
        #expect(ObjectIdentifier(adam.state(for: "w")!.tensors["exp_avg"]!.storage) == moment)
        #expect(model.w.value.requiresGrad && model.w.value.isLeaf)
    }

    @Test func largeParametersUpdateEveryElementOnce() {
        // Large enough to be split into chunks across threads: every element must be updated
        // exactly once and identically to a small tensor's.
        let n = 2 * Kernels.elementwiseParallelThreshold + 77
        let big = Holder([Float](repeating: 0.5, count: n)), small = Holder([0.5, 0.5, 0.5])
        let optimizers: [(any Optimizer, any Optimizer)] = [
            (SGD(big, lr: 0.1, momentum: 0.9, weightDecay: 0.01), SGD(small, lr: 0.1, momentum: 0.9, weightDecay: 0.01)),
            (AdamW(big, lr: 0.1), AdamW(small, lr: 0.1)),
        ]
        for (a, b) in optimizers {
            for _ in 0..<2 {
                setGrad(big.w, [Float](repeating: 0.3, count: n)); setGrad(small.w, [0.3, 0.3, 0.3])
                a.step(); b.step()
            }
            let expected = small.w.value.scalars[0]
            #expect(big.w.value.scalars.allSatisfy { $0 == expected }, "\(type(of: a))")
            #expect(small.w.value.scalars.allSatisfy { $0 == expected })
        }
    }

    // MARK: Training

    @Test(arguments: ["SGD", "SGD nesterov", "Adam", "AdamW"])
    func trainsTinyMLPToLowLoss(_ kind: String) {
        let model = TwoLayer()
        let optimizer: any Optimizer = switch kind {
        case "SGD": SGD(model, lr: 0.2, momentum: 0.9)
        case "SGD nesterov": SGD(model, lr: 0.2, momentum: 0.9, nesterov: true, weightDecay: 1e-5)
        case "Adam": Adam(model, lr: 0.04)
        default: AdamW(model, lr: 0.04, weightDecay: 1e-3)
        }
        var first: Float = 0, last: Float = 0
        for step in 0..<200 {
            optimizer.zeroGrad()
            let loss = lossAndBackward(model)
            if step == 0 { first = loss }
            last = loss
            optimizer.step()
        }
        #expect(first > 0.1, "\(kind): initial loss \(first)")
        #expect(last < 1e-3, "\(kind): final loss \(last) (initial \(first))")
    }

    // MARK: Frozen parameters

    static let schedules: [any LearningRateSchedule] = [
        LambdaLR { step in 1 / Float(1 + step) }, StepLR(stepSize: 10, gamma: 0.5), ExponentialLR(gamma: 0.98),
        CosineWithWarmup(warmupSteps: 10, totalSteps: 100, minLR: 1e-3),
        LinearWarmupDecay(warmupSteps: 10, totalSteps: 100), OneCycleLR(maxLR: 0.05, totalSteps: 100),
        SlantedTriangular(totalSteps: 100),
    ]

    @Test(arguments: ["SGD", "Adam", "AdamW"], [UnfreezePolicy.reset, .keep])
    func frozenParametersAreBitIdentical(_ kind: String, _ policy: UnfreezePolicy) {
        // Every schedule with the default policy; `.keep` with two of them (to keep debug runs fast).
        let schedules = policy == .reset ? Self.schedules : [Self.schedules[0], Self.schedules[5]]
        for schedule in schedules {
            let model = TwoLayer()
            let optimizer: any Optimizer = switch kind {
            case "SGD": SGD(model, lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0.1, decayBiasesAndNorms: true,
                            schedule: schedule, unfreezePolicy: policy)
            case "Adam": Adam(model, lr: 0.05, weightDecay: 0.1, decayBiasesAndNorms: true, schedule: schedule, unfreezePolicy: policy)
            default: AdamW(model, lr: 0.05, weightDecay: 0.1, decayBiasesAndNorms: true, schedule: schedule, unfreezePolicy: policy)
            }
            // Train everything for a few steps so fc1 has state and a gradient when it is frozen.
            for _ in 0..<3 {
                optimizer.zeroGrad()
                _ = lossAndBackward(model)
                optimizer.step()
            }
            _ = lossAndBackward(model)              // a gradient on fc1 when it is frozen
            model.fc1.freeze()
            let frozenWeight = model.fc1.weight.value.scalars, frozenBias = model.fc1.bias.value.scalars
            let head = model.head.weight.value.scalars
            let stateAtFreeze = optimizer.state(for: "fc1.weight")
            let parameters = model.parameters()
            for _ in 0..<100 {
                optimizer.zeroGrad()
                // Synthetic gradients (a quadratic pull towards 0.1), cheaper than backward in debug
                // builds; the ones set on the frozen parameters are ignored.
                for p in parameters {
                    setGrad(p, p.value.scalars.map { $0 - 0.1 })
                }
                optimizer.step()
            }
            let name = "\(kind) \(policy) \(type(of: schedule))"
            #expect(model.fc1.weight.value.scalars == frozenWeight, "\(name): frozen weight changed")
            #expect(model.fc1.bias.value.scalars == frozenBias, "\(name): frozen bias changed")
            #expect(model.head.weight.value.scalars != head, "\(name): the head did not train")
            let withState = optimizer.parameterNamesWithState
            if policy == .reset {
                #expect(!withState.contains { $0.hasPrefix("fc1.") }, "\(name): state kept for frozen parameters: \(withState)")
            } else {
                // Kept, and untouched: no momentum drift while frozen.
                let kept = optimizer.state(for: "fc1.weight")
                #expect(kept?.step == stateAtFreeze?.step, "\(name)")
                #expect(kept?.tensors.mapValues(\.scalars) == stateAtFreeze?.tensors.mapValues(\.scalars), "\(name)")
            }
            #expect(optimizer.stepCount == 103)
        }
    }

    @Test func frozenFromTheStartAllocatesNoState() {
        let model = TwoLayer()
        model.fc1.freeze()
        let optimizers: [any Optimizer] = [SGD(model, momentum: 0.9), Adam(model), AdamW(model)]
        let before = model.fc1.weight.value.scalars
        for optimizer in optimizers {
            for _ in 0..<5 {
                optimizer.zeroGrad()
                _ = lossAndBackward(model)
                optimizer.step()
            }
            #expect(optimizer.parameterNamesWithState == ["head.bias", "head.weight"])
            #expect(optimizer.stateCount == 2)
        }
        #expect(model.fc1.weight.value.scalars == before)
    }

    @Test func parametersWithoutGradientAreSkipped() {
        let model = TwoLayer()
        let sgd = SGD(model, lr: 0.1, momentum: 0.9, weightDecay: 0.5)
        let adamW = AdamW(model, lr: 0.1, weightDecay: 0.5)
        let before = model.parameters().map(\.value.scalars)
        setGrad(model.head.weight, Array(repeating: 0.1, count: model.head.weight.count))
        sgd.step()
        adamW.step()
        let after = model.parameters().map(\.value.scalars)
        #expect(after[0] == before[0] && after[1] == before[1] && after[3] == before[3])
        #expect(after[2] != before[2])
        #expect(sgd.parameterNamesWithState == ["head.weight"])
        #expect(adamW.parameterNamesWithState == ["head.weight"])
    }

    @Test func zeroGradClearsEveryGradient() {
        let model = TwoLayer()
        let sgd = SGD(model)
        _ = lossAndBackward(model)
        #expect(model.parameters().allSatisfy { $0.grad != nil })
        sgd.zeroGrad()
        #expect(model.parameters().allSatisfy { $0.grad == nil })
    }

    // MARK: Multipliers and weight decay

    @Test func learningRateMultiplierScalesTheUpdate() {
        let g: [Float] = [0.3, -0.7, 0.11, 2.5, -1.3]
        let zeros = [Float](repeating: 0, count: g.count)
        let slow = Holder(zeros), fast = Holder(zeros)
        slow.w.lrMultiplier = 0.1
        let sgdSlow = SGD(slow, lr: 0.5), sgdFast = SGD(fast, lr: 0.5)
        setGrad(slow.w, g); setGrad(fast.w, g)
        sgdSlow.step(); sgdFast.step()
        let uSlow = slow.w.value.scalars, uFast = fast.w.value.scalars
        for i in g.indices {
            let expected = 0.1 * Double(uFast[i])
            #expect(abs(Double(uSlow[i]) - expected) <= 1e-7 * abs(expected), "element \(i): \(uSlow[i]) vs \(expected)")
            #expect(uFast[i] == -0.5 * g[i])
        }
        // The multiplier is read live: changing it needs no rebuild.
        slow.w.lrMultiplier = 0
        setGrad(slow.w, g)
        sgdSlow.step()
        #expect(slow.w.value.scalars == uSlow)
    }

    @Test func weightDecaySkipsBiasesAndNormsByDefault() {
        // Zero gradients: each parameter moves by its weight decay alone.
        for configured in [false, true] {
            for kind in ["SGD", "AdamW"] {
                let model = Roles()
                let optimizer: any Optimizer = if kind == "SGD" {
                    SGD(model, lr: 0.5, weightDecay: 0.1, decayBiasesAndNorms: configured)
                } else {
                    AdamW(model, lr: 0.5, weightDecay: 0.1, decayBiasesAndNorms: configured)
                }
                model.embedding.weightDecayMultiplier = 2
                for p in model.parameters() { setGrad(p, [0, 0]) }
                optimizer.step()
                let decayed: [Float] = [0.95, -1.9], doubleDecayed: [Float] = [0.9, -1.8], kept: [Float] = [1, -2]
                expectClose(model.weight.value.scalars, decayed, atol: 1e-7, rtol: 1e-6, "\(kind) weight")
                expectClose(model.embedding.value.scalars, doubleDecayed, atol: 1e-7, rtol: 1e-6, "\(kind) embedding")
                for p in [model.bias, model.norm] {
                    if configured {
                        expectClose(p.value.scalars, decayed, atol: 1e-7, rtol: 1e-6, "\(kind) \(p.role) configured")
                    } else {
                        #expect(p.value.scalars == kept, "\(kind) \(p.role) decayed by default")
                    }
                }
            }
        }
    }

    // MARK: Freezing and unfreezing mid-training

    @Test func unfreezingResetsMomentumByDefault() {
        let g = gradientSequence[0]
        for policy in [UnfreezePolicy.reset, .keep] {
            let model = Holder(w0)
            let sgd = SGD(model, lr: 0.1, momentum: 0.9, unfreezePolicy: policy)
            for _ in 0..<5 { setGrad(model.w, g); sgd.step() }
            let buffer = sgd.state(for: "w")!.tensors["momentum_buffer"]!.scalars
            model.w.isFrozen = true
            for _ in 0..<3 { sgd.step() }
            #expect(sgd.state(for: "w") == nil ? policy == .reset : policy == .keep, "\(policy)")
            model.w.isFrozen = false
            let before = model.w.value.scalars
            setGrad(model.w, g)
            sgd.step()
            let update = zip(before, model.w.value.scalars).map { Double($0) - Double($1) }
            let expected: [Double] = policy == .reset
                ? g.map { 0.1 * Double($0) }                                            // fresh buffer = g
                : zip(buffer, g).map { 0.1 * (0.9 * Double($0) + Double($1)) }          // continued
            expectClose(update.map { Float($0) }, expected.map { Float($0) }, atol: 1e-6, rtol: 1e-4, "\(policy)")
        }
    }

    @Test func unfreezingRestartsAdamBiasCorrection() {
        let g = gradientSequence[0]
        for policy in [UnfreezePolicy.reset, .keep] {
            let model = Holder(w0)
            let adam = Adam(model, lr: 0.01, unfreezePolicy: policy)
            for _ in 0..<50 { setGrad(model.w, g.map { -$0 }); adam.step() }
            model.w.isFrozen = true
            adam.step()
            model.w.isFrozen = false
            let before = model.w.value.scalars
            setGrad(model.w, g)
            adam.step()
            #expect(adam.stepCount == 52)
            #expect(adam.state(for: "w")?.step == (policy == .reset ? 1 : 51))
            let update = zip(before, model.w.value.scalars).map { $0 - $1 }
            if policy == .reset {
                // A fresh Adam's first step moves every element by lr against its gradient's sign.
                expectClose(update, g.map { 0.01 * ($0 > 0 ? 1 : -1) }, atol: 1e-6, rtol: 1e-4, "reset")
            } else {
                // The kept first moment still points the other way.
                #expect(zip(update, g).allSatisfy { $0 * $1 < 0 }, "keep: \(update)")
            }
        }
    }

    @Test func freezingMidTrainingNeedsNoRebuild() throws {
        let model = TwoLayer()
        let adam = Adam(model, lr: 0.01)
        for _ in 0..<3 { adam.zeroGrad(); _ = lossAndBackward(model); adam.step() }
        #expect(adam.stateCount == 4)
        try model.freeze(matching: "fc1.*")
        let frozen = model.fc1.weight.value.scalars
        for _ in 0..<3 { adam.zeroGrad(); _ = lossAndBackward(model); adam.step() }
        #expect(model.fc1.weight.value.scalars == frozen)
        #expect(adam.parameterNamesWithState == ["head.bias", "head.weight"])
        model.unfreeze()
        for _ in 0..<2 { adam.zeroGrad(); _ = lossAndBackward(model); adam.step() }
        #expect(model.fc1.weight.value.scalars != frozen)
        #expect(adam.state(for: "fc1.weight")?.step == 2)
        #expect(adam.state(for: "head.weight")?.step == 8)
    }

    // MARK: Head replacement

    @Test func replacedHeadStartsWithFreshState() {
        let model = TwoLayer()
        let sgd = SGD(model, lr: 0.1, momentum: 0.9)
        for _ in 0..<3 { sgd.zeroGrad(); _ = lossAndBackward(model); sgd.step() }
        #expect(sgd.state(for: "head.weight")?.step == 3)

        // Same names, same shapes, new parameter objects.
        model.head = Dense(8, 2, seed: 99)
        sgd.zeroGrad()
        _ = lossAndBackward(model)
        let before = model.head.weight.value.scalars, g = model.head.weight.grad!.scalars
        sgd.step()
        let update = zip(before, model.head.weight.value.scalars).map { $0 - $1 }
        expectClose(update, g.map { 0.1 * $0 }, atol: 1e-7, rtol: 1e-5, "fresh momentum buffer")
        #expect(sgd.state(for: "head.weight")?.step == 1)
        #expect(sgd.state(for: "fc1.weight")?.step == 4)

        // A new shape under the same name.
        model.head = Dense(8, 5, seed: 98)
        let adam = Adam(model)
        sgd.zeroGrad()
        _ = Tensor.mse(model(inputs), Tensor.zeros([32, 5])).backward()
        sgd.step()
        #expect(sgd.state(for: "head.weight")?.tensors["momentum_buffer"]?.shape == [5, 8])
        #expect(sgd.state(for: "head.weight")?.step == 1)
        adam.step()
        #expect(adam.stateCount == 4)
    }

    @Test func stateOfRemovedParametersIsDropped() {
        final class WithOptionalHead: Module {
            let body = Dense(3, 4, seed: 1)
            @Child var head: Dense? = Dense(4, 2, seed: 2)
            override func forward(_ x: Tensor) -> Tensor { head.map { $0(body(x)) } ?? body(x) }
        }
        let model = WithOptionalHead()
        let adam = Adam(model)
        _ = model(inputs).sum().backward()
        adam.step()
        #expect(adam.parameterNamesWithState == ["body.bias", "body.weight", "head.bias", "head.weight"])
        model.head = nil
        adam.step()
        #expect(adam.parameterNamesWithState == ["body.bias", "body.weight"])
    }

    @Test func movedParameterKeepsItsState() {
        final class Slots: Module {
            @Child var first: Dense? = Dense(3, 2, seed: 1)
            @Child var second: Dense? = nil
        }
        let model = Slots()
        let sgd = SGD(model, lr: 0.1, momentum: 0.9)
        for _ in 0..<3 { setGrad(model.first!.weight, Array(repeating: 0.1, count: 6)); sgd.step() }
        let buffer = sgd.state(for: "first.weight")!.tensors["momentum_buffer"]!.scalars
        model.second = model.first          // the same objects under new names
        model.first = nil
        setGrad(model.second!.weight, Array(repeating: 0.1, count: 6))
        sgd.step()
        #expect(sgd.parameterNamesWithState == ["second.weight"])
        #expect(sgd.state(for: "second.weight")?.step == 4)
        expectClose(sgd.state(for: "second.weight")!.tensors["momentum_buffer"]!.scalars,
                    buffer.map { 0.9 * $0 + 0.1 }, atol: 1e-7, rtol: 1e-6)
    }

    @Test func namedParameterListSource() {
        let model = TwoLayer()
        let headOnly = model.namedParameters().filter { $0.name.hasPrefix("head.") }
        let sgd = SGD(parameters: headOnly + headOnly, lr: 0.1, momentum: 0.9)
        let body = model.fc1.weight.value.scalars
        _ = lossAndBackward(model)
        sgd.step()
        #expect(model.fc1.weight.value.scalars == body)
        #expect(sgd.parameterNamesWithState == ["head.bias", "head.weight"])
    }

    // MARK: Schedules driving the optimizer

    @Test func scheduleScalesTheOptimizersLearningRate() {
        // One source for the base rate, as in PyTorch: the optimizer's lr, which the schedule scales
        // and never overwrites.
        let model = Holder([0, 0])
        let sgd = SGD(model, lr: 2, schedule: StepLR(stepSize: 2, gamma: 0.5))
        #expect(sgd.learningRate == 2 && sgd.learningRate(at: 0) == 2 && sgd.learningRate(at: 4) == 0.5)
        func stepDeltas(_ count: Int) -> [Float] {
            (0..<count).map { _ in
                let before = model.w.value.scalars[0]
                setGrad(model.w, [1, 1])
                sgd.step()
                return before - model.w.value.scalars[0]
            }
        }
        #expect(stepDeltas(5) == [2, 2, 1, 1, 0.5])
        #expect(sgd.learningRate == 2)                   // the schedule did not change lr
        sgd.learningRate = 4                             // a new base rate is scaled from the current step on
        #expect(stepDeltas(1) == [1])                    // step 5: 4 * 0.5^2
        sgd.schedule = nil
        #expect(stepDeltas(1) == [4] && sgd.learningRate(at: 100) == 4)
        // OneCycleLR sets its own rates from maxLR, whatever lr is (PyTorch's OneCycleLR does too).
        let cycled = SGD(Holder([0]), lr: 123, momentum: 0.9, schedule: OneCycleLR(maxLR: 1, totalSteps: 100))
        #expect(abs(cycled.learningRate(at: 29) - 1) < 1e-6 && abs(cycled.learningRate(at: 0) - 0.04) < 1e-7)
    }
}

// MARK: - Schedules

@Suite("Optimizer schedules")
struct OptimizerScheduleTests {
    private func expectLR(_ s: some LearningRateSchedule, _ step: Int, _ expected: Double, base: Float = 1,
                          sourceLocation: SourceLocation = #_sourceLocation) {
        let actual = Double(s.learningRate(at: step, base: base))
        #expect(abs(actual - expected) <= 1e-7 + 1e-6 * abs(expected), "step \(step): \(actual) vs \(expected)",
                sourceLocation: sourceLocation)
    }

    @Test func stepAndExponential() {
        let s = StepLR(stepSize: 30, gamma: 0.1)
        expectLR(s, 0, 0.1, base: 0.1); expectLR(s, 29, 0.1, base: 0.1); expectLR(s, 30, 0.01, base: 0.1)
        expectLR(s, 65, 0.001, base: 0.1); expectLR(s, 65, 0.003, base: 0.3)
        let e = ExponentialLR(gamma: 0.9)
        expectLR(e, 0, 0.1, base: 0.1); expectLR(e, 3, 0.0729, base: 0.1); expectLR(e, 3, 0.729)
        // LambdaLR's closure is a factor of lr, as PyTorch's lr_lambda.
        expectLR(LambdaLR { Float(1) / Float($0 + 1) }, 3, 0.25); expectLR(LambdaLR { Float(1) / Float($0 + 1) }, 3, 0.5, base: 2)
    }

    @Test func cosineWithWarmup() {
        let s = CosineWithWarmup(warmupSteps: 10, totalSteps: 110, minLR: 0.1)
        expectLR(s, 0, 0); expectLR(s, 5, 0.5); expectLR(s, 10, 1)
        expectLR(s, 35, 0.1 + 0.9 * 0.5 * (1 + cos(Double.pi / 4)))
        expectLR(s, 60, 0.55); expectLR(s, 110, 0.1); expectLR(s, 500, 0.1)
        let hf = CosineWithWarmup(warmupSteps: 0, totalSteps: 100)
        expectLR(hf, 0, 2, base: 2); expectLR(hf, 50, 1, base: 2); expectLR(hf, 100, 0, base: 2)
        expectLR(s, 5, 1.5, base: 3); expectLR(s, 60, 0.1 + 2.9 * 0.5, base: 3)   // warmup and decay scale lr; minLR stays
    }

    @Test func linearWarmupDecay() {
        let s = LinearWarmupDecay(warmupSteps: 10, totalSteps: 110)
        expectLR(s, 0, 0); expectLR(s, 5, 0.5); expectLR(s, 10, 1); expectLR(s, 60, 0.5)
        expectLR(s, 110, 0); expectLR(s, 150, 0)
        expectLR(LinearWarmupDecay(warmupSteps: 0, totalSteps: 10, minLR: 0.2), 5, 0.6)
        expectLR(s, 5, 0.25, base: 0.5); expectLR(s, 60, 0.25, base: 0.5)
    }

    @Test func oneCycleMatchesPyTorch() {
        // torch.optim.lr_scheduler.OneCycleLR(max_lr=1, total_steps=100): phase ends at steps 29 and 99.
        let s = OneCycleLR(maxLR: 1, totalSteps: 100)
        let initial = 1.0 / 25, final = initial / 1e4
        func cosine(_ start: Double, _ end: Double, _ pct: Double) -> Double { end + (start - end) / 2 * (cos(.pi * pct) + 1) }
        expectLR(s, 0, initial); expectLR(s, 0, initial, base: 123)    // maxLR, not the optimizer's lr
        expectLR(s, 10, cosine(initial, 1, 10.0 / 29))
        expectLR(s, 29, 1)
        expectLR(s, 30, cosine(1, final, 1.0 / 70))
        expectLR(s, 64, (1 + final) / 2)
        expectLR(s, 99, final)
        expectLR(s, 150, final)
        #expect(abs(Double(s.initialLR) - initial) < 1e-9 && abs(Double(s.finalLR) - final) < 1e-12)
        let linear = OneCycleLR(maxLR: 1, totalSteps: 100, annealing: .linear)
        expectLR(linear, 10, initial + (1 - initial) * 10 / 29)
        expectLR(linear, 64, (1 + final) / 2)
    }

    @Test func oneCycleCyclesMomentumLikePyTorch() {
        // cycle_momentum=True: max_momentum (0.95) -> base_momentum (0.85) at the peak -> 0.95.
        let s = OneCycleLR(maxLR: 1, totalSteps: 100)
        func cosine(_ start: Double, _ end: Double, _ pct: Double) -> Double { end + (start - end) / 2 * (cos(.pi * pct) + 1) }
        func expectMomentum(_ step: Int, _ expected: Double) {
            let got = Double(s.momentum(at: step) ?? .nan)
            #expect(abs(got - expected) < 1e-6, "step \(step): \(got) vs \(expected)")
        }
        expectMomentum(0, 0.95); expectMomentum(10, cosine(0.95, 0.85, 10.0 / 29)); expectMomentum(29, 0.85)
        expectMomentum(64, 0.9); expectMomentum(99, 0.95)
        #expect(OneCycleLR(maxLR: 1, totalSteps: 100, cycleMomentum: false).momentum(at: 10) == nil)
        #expect(StepLR(stepSize: 1).momentum(at: 10) == nil && CosineWithWarmup(warmupSteps: 1, totalSteps: 9).momentum(at: 3) == nil)
    }

    @Test func cycledMomentumDrivesSGDMomentumAndAdamBeta1() {
        let schedule = OneCycleLR(maxLR: 0.1, totalSteps: 10)
        let g0: [Float] = [1, -2], g1: [Float] = [0.5, 4]
        // SGD: buf = g0 on the first step, then buf = m(1) * buf + g1 (momentum 0.5 is replaced).
        let model = Holder([0, 0])
        let sgd = SGD(model, momentum: 0.5, schedule: schedule)
        setGrad(model.w, g0); sgd.step()
        setGrad(model.w, g1); sgd.step()
        let m1 = schedule.momentum(at: 1)!
        let buffer = sgd.state(for: "w")!.tensors["momentum_buffer"]!.scalars
        #expect(m1 < 0.95 && m1 > 0.85)
        #expect(buffer == zip(g0, g1).map { m1 * $0 + $1 })
        // Adam: exp_avg = (1 - beta1) * g on the first step with beta1 = m(0) = 0.95.
        let adamModel = Holder([0, 0])
        let adam = Adam(adamModel, beta1: 0.5, schedule: schedule)
        setGrad(adamModel.w, g0); adam.step()
        let expAvg = adam.state(for: "w")!.tensors["exp_avg"]!.scalars
        #expect(zip(expAvg, g0).allSatisfy { abs($0 - (1 - 0.95) * $1) < 1e-7 })
    }

    @Test func slantedTriangular() {
        let s = SlantedTriangular(totalSteps: 1_000)    // the peak is the optimizer's lr
        expectLR(s, 0, 0.01, base: 0.32); expectLR(s, 50, 0.165, base: 0.32); expectLR(s, 100, 0.32, base: 0.32)
        expectLR(s, 550, 0.165, base: 0.32); expectLR(s, 1_000, 0.01, base: 0.32); expectLR(s, 2_000, 0.01, base: 0.32)
        expectLR(s, 100, 1)
    }
}

// MARK: - Gradient clipping

@Suite("Optimizer gradient clipping")
struct OptimizerClippingTests {
    private func pair() -> (Holder, Holder) {
        let a = Holder([0, 0]), b = Holder([0])
        setGrad(a.w, [3, 4]); setGrad(b.w, [12])
        return (a, b)
    }

    @Test func clipGradNormScalesLikePyTorch() {
        let (a, b) = pair()
        let norm = clipGradNorm([a.w, b.w], maxNorm: 6.5)
        #expect(norm == 13)
        let coefficient = Float(6.5 / (13 + 1e-6))
        expectClose(a.w.grad!.scalars, [3 * coefficient, 4 * coefficient], atol: 0, rtol: 1e-6)
        expectClose(b.w.grad!.scalars, [12 * coefficient], atol: 0, rtol: 1e-6)

        let (c, d) = pair()
        #expect(clipGradNorm([c.w, d.w], maxNorm: 100) == 13)
        #expect(c.w.grad!.scalars == [3, 4] && d.w.grad!.scalars == [12])     // untouched below the limit

        let (e, f) = pair()
        #expect(clipGradNorm([e.w, f.w], maxNorm: 6, normType: .infinity) == 12)
        expectClose(f.w.grad!.scalars, [6], atol: 0, rtol: 1e-6)
        let (g, h) = pair()
        #expect(clipGradNorm([g.w, h.w], maxNorm: 100, normType: 1) == 19)
        let (i, j) = pair()
        #expect(abs(clipGradNorm([i.w, j.w], maxNorm: 100, normType: 3) - Float(pow(27.0 + 64 + 1728, 1.0 / 3))) < 1e-5)
    }

    @Test func clipGradNormSkipsFrozenAndMissingGradients() {
        let model = TwoLayer()
        _ = lossAndBackward(model)
        model.head.bias.grad = nil
        let expected = [model.fc1.weight, model.fc1.bias, model.head.weight].reduce(0.0) { total, p in
            total + p.grad!.scalars.reduce(0.0) { $0 + Double($1) * Double($1) }
        }.squareRoot()
        #expect(abs(Double(clipGradNorm(model, maxNorm: 1e9)) - expected) < 1e-6 * expected)
        model.fc1.freeze()
        let head = model.head.weight.grad!.scalars.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        #expect(abs(Double(clipGradNorm(model, maxNorm: 1e9)) - head) < 1e-6 * head)
        #expect(clipGradNorm(Holder([1]), maxNorm: 1) == 0)
        let long = Holder([Float](repeating: 0, count: 21))       // vector body and tail
        setGrad(long.w, [Float](repeating: 2, count: 21))
        #expect(abs(clipGradNorm(long, maxNorm: 1) - 2 * Float(21).squareRoot()) < 1e-5)
        expectClose(long.w.grad!.scalars, [Float](repeating: 1 / Float(21).squareRoot(), count: 21), atol: 0, rtol: 1e-5)
    }

    @Test func nonFiniteNorm() throws {
        let a = Holder([0, 0])
        setGrad(a.w, [.nan, 1])
        #expect(clipGradNorm([a.w], maxNorm: 1).isNaN)
        setGrad(a.w, [.infinity, 1])
        #expect(throws: GradientClippingError.self) { try clipGradNorm([a.w], maxNorm: 1, errorIfNonfinite: true) }
        #expect(a.w.grad!.scalars == [.infinity, 1])                      // unchanged when refused
        setGrad(a.w, [3, 4])
        #expect(try clipGradNorm(a, maxNorm: 10, errorIfNonfinite: true) == 5)
    }

    @Test func clipGradValueClamps() {
        let model = Holder([0, 0, 0, 0])
        setGrad(model.w, [-2, -0.25, 0.5, 3])
        clipGradValue(model, clipValue: 0.5)
        #expect(model.w.grad!.scalars == [-0.5, -0.25, 0.5, 0.5])
    }
}
