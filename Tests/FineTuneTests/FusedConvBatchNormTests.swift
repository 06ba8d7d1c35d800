import Testing
@testable import FineTune

// `Conv2d.callAsFunction(_:then:adding:activation:)`: where the batch norm uses fixed statistics
// the convolution, batch norm, residual and ReLU run as one op ("conv2d+batchNorm"); its values and
// gradients must be the separate modules' bit for bit, and every other case must run the modules.

private func identical(_ a: Tensor?, _ b: Tensor?) -> Bool {
    guard let a, let b else { return a == nil && b == nil }
    return a.shape == b.shape && zip(a.scalars, b.scalars).allSatisfy { $0.bitPattern == $1.bitPattern }
}

/// One layer pair to fuse.
private struct FusedCase: CustomStringConvertible, Sendable {
    var inChannels: Int, outChannels: Int, size: Int, kernel: Int, stride = 1, padding = 0, bias = false
    var residual = true, relu = true, affine = true

    var description: String {
        "\(inChannels)->\(outChannels) \(size)x\(size) k\(kernel) s\(stride) p\(padding)" + (bias ? " bias" : "")
            + (residual ? " +residual" : "") + (relu ? " relu" : "") + (affine ? "" : " no affine")
    }

    var outSize: Int { (size + 2 * padding - kernel) / stride + 1 }

    /// The layers, with random weights, running statistics and affine parameters.
    func layers(seed: UInt64) -> (Conv2d, BatchNorm2d) {
        var rng = RandomGenerator(seed: seed)
        let conv = Conv2d(inChannels, outChannels, kernelSize: kernel, stride: stride, padding: padding, bias: bias)
        conv.reinitialize(generator: &rng)
        let bn = BatchNorm2d(outChannels, affine: affine)
        bn.runningMean!.value = randomTensor([outChannels], seed: seed + 1) * 0.3
        bn.runningVar!.value = randomTensor([outChannels], seed: seed + 2, low: 0.2, high: 2)
        bn.weight?.value = randomTensor([outChannels], seed: seed + 3)
        bn.bias?.value = randomTensor([outChannels], seed: seed + 4)
        return (conv, bn)
    }
}

// Each convolution method of the forward kernel: pointwise (one sample per sgemm, and sample
// groups on a small plane), column matrices (stride 2), shifted copies (16 channels), Winograd
// (32 channels), direct (the stem-like last case); depthwise-like groups are covered by the kernel test.
private let fusedCases: [FusedCase] = [
    FusedCase(inChannels: 5, outChannels: 6, size: 24, kernel: 1, bias: true),
    FusedCase(inChannels: 6, outChannels: 7, size: 5, kernel: 1, residual: false),
    FusedCase(inChannels: 3, outChannels: 4, size: 9, kernel: 3, stride: 2, padding: 1, residual: false, affine: false),
    FusedCase(inChannels: 16, outChannels: 16, size: 10, kernel: 3, padding: 1, relu: false),
    FusedCase(inChannels: 32, outChannels: 32, size: 6, kernel: 3, padding: 1, bias: true),
    FusedCase(inChannels: 4, outChannels: 4, size: 7, kernel: 3, padding: 1, residual: false, relu: false),
    // A stem: the direct method (AVX-512 builds), epilogue per group of tiles.
    FusedCase(inChannels: 3, outChannels: 6, size: 32, kernel: 7, stride: 2, padding: 3, bias: true),
]

@Suite("Conv2d then BatchNorm2d, residual and ReLU as one op")
struct FusedConvBatchNormTests {
    @Test("fixed statistics: one op, the separate modules' values and gradients bit for bit", arguments: fusedCases)
    fileprivate func matchesSeparateModules(_ c: FusedCase) {
        for frozenInTraining in [false, true] {
            let (conv, bn) = c.layers(seed: 21)
            let relu = ReLU()
            // Running statistics and a constant affine either way: a frozen layer in training mode,
            // or in evaluation mode.
            bn.freeze()
            if !frozenInTraining { bn.eval() }
            #expect(bn.effectiveStatistics == .running)
            var x = randomTensor([2, c.inChannels, c.size, c.size], seed: 22)
            x.requiresGrad = true
            var residual = randomTensor([2, c.outChannels, c.outSize, c.outSize], seed: 23)
            residual.requiresGrad = true
            let upstream = randomTensor([2, c.outChannels, c.outSize, c.outSize], seed: 24)
            let activation = c.relu ? relu : nil

            func run(fused: Bool) -> [Tensor?] {
                x.grad = nil; residual.grad = nil
                conv.weight.grad = nil; conv.bias?.grad = nil
                let y: Tensor
                if fused {
                    y = conv(x, then: bn, adding: c.residual ? residual : nil, activation: activation)
                    #expect(y.node?.op == "conv2d+batchNorm", "\(c): not fused")
                } else {
                    var z = bn(conv(x))
                    if c.residual { z = z + residual }
                    y = c.relu ? relu(z) : z
                }
                (y * upstream).sum().backward()
                return [y.detached(), x.grad, conv.weight.grad, conv.bias?.grad, c.residual ? residual.grad : nil]
            }
            let fused = run(fused: true), separate = run(fused: false)
            let names = ["output", "input gradient", "weight gradient", "bias gradient", "residual gradient"]
            for (name, (a, b)) in zip(names, zip(fused, separate)) {
                #expect(identical(a, b), "\(c) frozen in training \(frozenInTraining): \(name) differs")
            }
            #expect(separate[1] != nil && separate[2] != nil, "\(c): gradients missing")
        }
    }

    @Test("batch statistics, a trainable batch norm or a LoRA convolution run the separate modules")
    func fallsBack() throws {
        let c = FusedCase(inChannels: 4, outChannels: 4, size: 6, kernel: 3, padding: 1)
        let x = randomTensor([2, 4, 6, 6], seed: 31)
        // Training mode with batch statistics: the running statistics must move, as the module does.
        let (conv, bn) = c.layers(seed: 32)
        let before = bn.runningMean!.value.scalars
        let y = conv(x, then: bn, activation: ReLU())
        #expect(y.node?.op == "batchNorm+relu")
        #expect(bn.runningMean!.value.scalars != before)
        // Running statistics but a trainable affine: its gradients are needed.
        let (conv2, bn2) = c.layers(seed: 33)
        bn2.statistics = .running
        let z = conv2(x, then: bn2, activation: ReLU())
        #expect(z.node?.op == "batchNorm+relu")
        z.sum().backward()
        #expect(bn2.weight!.grad != nil)
        // ... which fuses when no graph is recorded.
        let inference = withoutGradients { conv2(x, then: bn2, activation: ReLU()) }
        #expect(identical(inference, withoutGradients { ReLU()(bn2(conv2(x))) }))
        // A LoRA convolution adds its low-rank path before the batch norm.
        let (conv3, bn3) = c.layers(seed: 34)
        bn3.eval()
        let lora = LoRAConv2d(conv3, rank: 2, alpha: 4)
        lora.loraB.weight.value = randomTensor(lora.loraB.weight.shape, seed: 35)
        let w = lora(x, then: bn3)
        #expect(w.node?.op == "batchNorm")
        // With batch statistics the batch norm, residual and ReLU still run as one op after the convolution.
        #expect(identical(w, bn3(lora(x))))
        // A residual of another shape broadcasts through the separate add.
        let (conv4, bn4) = c.layers(seed: 36)
        bn4.eval()
        let row = randomTensor([1, 4, 1, 6], seed: 37)
        let v = conv4(x, then: bn4, adding: row)
        #expect(v.node?.op != "conv2d+batchNorm")
        #expect(identical(v, bn4(conv4(x)) + row))
    }

    @Test("the fused op's gradients against finite differences (input, weight, bias, residual)")
    func gradientCheck() {
        let c = FusedCase(inChannels: 3, outChannels: 4, size: 5, kernel: 3, padding: 1, bias: true)
        let (conv, bn) = c.layers(seed: 41)
        bn.freeze()
        // A residual that keeps every pre-activation at least 0.2 from the ReLU kink, so differences
        // of eps 1e-3 never cross it.
        let x = randomTensor([2, 3, 5, 5], seed: 42), noise = randomTensor([2, 4, 5, 5], seed: 43)
        let normalized = withoutGradients { bn(conv(x)) }
        let residual = Tensor(shape: normalized.shape, scalars: normalized.scalars.map { $0 < 0 ? -0.3 : 0.3 }) + noise * 0.1
        let pre = withoutGradients { normalized + residual }
        #expect(pre.scalars.map(abs).min()! > 0.2 && pre.scalars.contains { $0 < 0 })
        gradCheck([x, conv.weight.value, conv.bias!.value, residual], eps: 1e-3, atol: 2e-3, rtol: 2e-2, layouts: [.contiguous],
                  "conv2d+batchNorm") { t in
            conv.weight.value = t[1]; conv.bias!.value = t[2]
            let y = conv(t[0], then: bn, adding: t[3], activation: ReLU())
            return y
        }
    }

    @Test("ResNet blocks and Sequential(Conv2d, BatchNorm2d, ReLU) in evaluation mode: fused, same values as the modules")
    func blocksUseTheFusedOp() {
        RandomGenerator.seed(51)
        let x = randomTensor([2, 8, 8, 8], seed: 52)
        for block in [ResidualBlock(8, 16, stride: 2), ResidualBlock(8, 8)] as [ResidualBlock] {
            block.freeze()
            var input = x
            input.requiresGrad = true
            let y = block(input)
            #expect(y.node?.op == "conv2d+batchNorm")
            let shortcut = block.downsample.map { d in d[1](d[0](x)) } ?? x
            let expected = block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))) + shortcut)
            #expect(identical(y, expected), "basic block \(block.stride)")
        }
        let bottleneck = Bottleneck(8, planes: 4, stride: 2)
        bottleneck.eval()   // trainable batch norms in evaluation mode: fused only without a graph
        let b = withoutGradients { bottleneck(x) }
        let shortcut = bottleneck.downsample.map { d in d[1](d[0](x)) } ?? x
        let r = bottleneck.relu
        let expected = withoutGradients { r(bottleneck.bn3(bottleneck.conv3(r(bottleneck.bn2(bottleneck.conv2(r(bottleneck.bn1(bottleneck.conv1(x))))))))
                         + shortcut) }
        #expect(identical(b, expected), "bottleneck")
        let stack = Sequential(Conv2d(8, 6, kernelSize: 3, padding: 1), BatchNorm2d(6), ReLU(), Conv2d(6, 5, kernelSize: 1),
                               BatchNorm2d(5))
        stack.freeze()
        var manual = x
        for layer in stack.layers { manual = layer(manual) }
        #expect(identical(stack(x), manual))
        var input = x
        input.requiresGrad = true
        #expect(stack(input).node?.op == "conv2d+batchNorm")
    }
}

@Suite("A frozen convolution keeps its transformed weights")
struct TransformedWeightCacheTests {
    private static func identical(_ a: Tensor?, _ b: Tensor?) -> Bool {
        guard let a, let b else { return a == nil && b == nil }
        return a.shape == b.shape && zip(a.scalars, b.scalars).allSatisfy { $0.bitPattern == $1.bitPattern }
    }

    /// The op without a cache, on the layer's current weight.
    private static func uncached(_ conv: Conv2d, _ x: Tensor) -> Tensor {
        Tensor.conv2d(x, weight: conv.weight.value, bias: conv.bias?.value, stride: conv.stride, padding: conv.padding)
    }

    /// The input gradient of `sum(conv(x) * upstream)` through the layer (its kept weights) and
    /// through the op without a cache: both present and bit-identical.
    private static func sameInputGradients(_ conv: Conv2d, _ x: Tensor, _ upstream: Tensor) -> Bool {
        var input = x.detached()
        input.requiresGrad = true
        (conv(input) * upstream).sum().backward()
        let cached = input.grad
        input.grad = nil
        (uncached(conv, input) * upstream).sum().backward()
        return cached != nil && identical(cached, input.grad)
    }

    @Test("a strided convolution keeps its indirect panels: bit-identical, never stale")
    func cachedIndirectPanels() {
        var rng = RandomGenerator(seed: 81)
        let conv = Conv2d(24, 40, kernelSize: 3, stride: 2, padding: 1)
        conv.reinitialize(generator: &rng)
        let geometry = Conv2dGeometry(batch: 2, inChannels: 24, height: 9, width: 9, outChannels: 40, kernelHeight: 3,
                                      kernelWidth: 3, stride: (2, 2), padding: (1, 1))
        let indirect = ConvPlan(geometry, threads: 1).forwardMethod == .indirect
        let x = randomTensor([2, 24, 9, 9], seed: 82)
        _ = conv(x)
        #expect(conv.transformedWeights.transforms == 0)
        conv.freeze()
        for _ in 0..<3 { #expect(Self.identical(conv(x), Self.uncached(conv, x))) }
        // Kept only where the indirect method runs (AVX-512 builds).
        #expect(conv.transformedWeights.transforms == (indirect ? 1 : 0))
        conv.weight.value = randomTensor([40, 24, 3, 3], seed: 83) * 0.1
        #expect(Self.identical(conv(x), Self.uncached(conv, x)))
        conv.weight.value.withUnsafeMutableBufferPointer { $0[3] -= 1 }
        #expect(Self.identical(conv(x), Self.uncached(conv, x)))
        #expect(conv.transformedWeights.transforms == (indirect ? 3 : 0))
        let bn = BatchNorm2d(40)
        bn.freeze()
        #expect(Self.identical(conv(x, then: bn), bn(Self.uncached(conv, x))))
        #expect(conv.transformedWeights.transforms == (indirect ? 3 : 0))
        // A gradient through the frozen layer: the input gradient's panels are kept too.
        let upstream = randomTensor([2, 40, 5, 5], seed: 84)
        for _ in 0..<2 { #expect(Self.sameInputGradients(conv, x, upstream)) }
        #expect(conv.transformedWeights.transforms == (indirect ? 4 : 0))
        conv.weight.value.withUnsafeMutableBufferPointer { $0[9] += 1 }
        #expect(Self.sameInputGradients(conv, x, upstream))
        #expect(conv.transformedWeights.transforms == (indirect ? 6 : 0))
    }

    @Test("transformed once, results bit-identical, and never stale after the weight changes")
    func cachedTransforms() {
        var rng = RandomGenerator(seed: 91)
        let conv = Conv2d(32, 32, kernelSize: 3, padding: 1)
        conv.reinitialize(generator: &rng)
        let geometry = Conv2dGeometry(batch: 2, inChannels: 32, height: 8, width: 8, outChannels: 32, kernelHeight: 3,
                                      kernelWidth: 3, padding: (1, 1))
        #expect(ConvPlan(geometry, threads: 1).forwardMethod == .winograd && ConvPlan(geometry, threads: 1).backwardInputMethod == .winograd)
        let x = randomTensor([2, 32, 8, 8], seed: 92)
        // Trainable: nothing is kept (the optimizer would have to copy a weight the cache holds).
        _ = conv(x)
        #expect(conv.transformedWeights.transforms == 0)
        conv.freeze()
        for _ in 0..<3 { #expect(Self.identical(conv(x), Self.uncached(conv, x))) }
        #expect(conv.transformedWeights.transforms == 1)
        // A gradient through the frozen layer: the turned weights are kept too.
        let upstream = randomTensor([2, 32, 8, 8], seed: 93)
        for _ in 0..<2 { #expect(Self.sameInputGradients(conv, x, upstream)) }
        #expect(conv.transformedWeights.transforms == 2)
        // A new weight tensor, then a write into the weight in place: both seen at once.
        conv.weight.value = randomTensor([32, 32, 3, 3], seed: 94) * 0.1
        #expect(Self.identical(conv(x), Self.uncached(conv, x)))
        conv.weight.value.withUnsafeMutableBufferPointer { $0[5] += 1 }
        let afterWrite = conv(x)
        #expect(Self.identical(afterWrite, Self.uncached(conv, x)))
        #expect(conv.transformedWeights.transforms == 4)
        // The fused conv + batch norm path uses the same weights.
        let bn = BatchNorm2d(32)
        bn.freeze()
        #expect(Self.identical(conv(x, then: bn), bn(Self.uncached(conv, x))))
        #expect(conv.transformedWeights.transforms == 4)
        // Switched off: what was kept is freed and nothing more is kept.
        #expect(conv.transformedWeights.count == 1)
        conv.keepsTransformedWeights = false
        #expect(conv.transformedWeights.count == 0)
        #expect(Self.identical(conv(x), Self.uncached(conv, x)))
        #expect(conv.transformedWeights.count == 0 && conv.transformedWeights.transforms == 4)
        conv.keepsTransformedWeights = true
        // A weight that is not finite: the exact method, as without the cache.
        conv.weight.value.withUnsafeMutableBufferPointer { $0[7] = .infinity }
        let infinite = conv(x), reference = Self.uncached(conv, x)
        #expect(infinite.scalars.map(\.bitPattern) == reference.scalars.map(\.bitPattern))
        #expect(infinite.scalars.contains { !$0.isFinite })
    }
}
