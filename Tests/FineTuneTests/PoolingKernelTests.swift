import Testing
@testable import FineTune

// Tests for the pooling kernels in Kernels/Pooling.swift against direct window-loop references:
// max pooling (with NaN, infinities and ties), average pooling with and without counting padding,
// adaptive average pooling (windows that overlap, shrink and grow), and 1 vs 2 threads.

// MARK: - Naive references

private struct Reference {
    static func maxPool(_ g: Pool2dGeometry, _ x: [Float]) -> (values: [Float], indices: [Int32]) {
        let oh = g.outHeight, ow = g.outWidth
        var out = [Float](repeating: 0, count: g.planes * oh * ow), idx = [Int32](repeating: 0, count: out.count)
        for p in 0..<g.planes { for y in 0..<oh { for xo in 0..<ow {
            var best = -Float.infinity, bi: Int32 = -1
            for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
                let iy = y * g.strideH - g.padH + ky, ix = xo * g.strideW - g.padW + kx
                if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                let v = x[(p * g.height + iy) * g.width + ix]
                if v > best || bi < 0 || v.isNaN { best = v; bi = Int32(iy * g.width + ix) }
            }}
            out[(p * oh + y) * ow + xo] = best; idx[(p * oh + y) * ow + xo] = bi
        }}}
        return (out, idx)
    }

    static func maxPoolBackward(_ g: Pool2dGeometry, _ dy: [Float], _ idx: [Int32]) -> [Float] {
        let outPlane = g.outHeight * g.outWidth, plane = g.height * g.width
        var dx = [Float](repeating: 0, count: g.planes * plane)
        for p in 0..<g.planes { for o in 0..<outPlane { dx[p * plane + Int(idx[p * outPlane + o])] += dy[p * outPlane + o] } }
        return dx
    }

    /// The window of output (y, x) clipped to the image, and the divisor.
    static func window(_ g: Pool2dGeometry, _ y: Int, _ x: Int, countIncludePad: Bool) -> ([(Int, Int)], Double) {
        var cells: [(Int, Int)] = []
        for ky in 0..<g.kernelHeight { for kx in 0..<g.kernelWidth {
            let iy = y * g.strideH - g.padH + ky, ix = x * g.strideW - g.padW + kx
            if iy >= 0 && iy < g.height && ix >= 0 && ix < g.width { cells.append((iy, ix)) }
        }}
        return (cells, Double(countIncludePad ? g.kernelHeight * g.kernelWidth : max(cells.count, 1)))
    }

    static func avgPool(_ g: Pool2dGeometry, _ x: [Float], countIncludePad: Bool) -> [Float] {
        let oh = g.outHeight, ow = g.outWidth
        var out = [Float](repeating: 0, count: g.planes * oh * ow)
        for p in 0..<g.planes { for y in 0..<oh { for xo in 0..<ow {
            let (cells, divisor) = window(g, y, xo, countIncludePad: countIncludePad)
            let sum = cells.reduce(0.0) { $0 + Double(x[(p * g.height + $1.0) * g.width + $1.1]) }
            out[(p * oh + y) * ow + xo] = Float(sum / divisor)
        }}}
        return out
    }

    static func avgPoolBackward(_ g: Pool2dGeometry, _ dy: [Float], countIncludePad: Bool) -> [Float] {
        let oh = g.outHeight, ow = g.outWidth
        var dx = [Double](repeating: 0, count: g.planes * g.height * g.width)
        for p in 0..<g.planes { for y in 0..<oh { for xo in 0..<ow {
            let (cells, divisor) = window(g, y, xo, countIncludePad: countIncludePad)
            for (iy, ix) in cells { dx[(p * g.height + iy) * g.width + ix] += Double(dy[(p * oh + y) * ow + xo]) / divisor }
        }}}
        return dx.map { Float($0) }
    }

    /// PyTorch's adaptive window: floor(o * size / n) ..< ceil((o + 1) * size / n).
    static func adaptiveWindow(_ o: Int, _ size: Int, _ n: Int) -> Range<Int> {
        (o * size / n)..<(((o + 1) * size + n - 1) / n)
    }

    static func adaptiveAvgPool(_ s: AdaptiveCase, _ x: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: s.planes * s.outHeight * s.outWidth)
        for p in 0..<s.planes { for y in 0..<s.outHeight { for xo in 0..<s.outWidth {
            let ys = adaptiveWindow(y, s.height, s.outHeight), xs = adaptiveWindow(xo, s.width, s.outWidth)
            var sum = 0.0
            for iy in ys { for ix in xs { sum += Double(x[(p * s.height + iy) * s.width + ix]) } }
            out[(p * s.outHeight + y) * s.outWidth + xo] = Float(sum / Double(ys.count * xs.count))
        }}}
        return out
    }

    static func adaptiveAvgPoolBackward(_ s: AdaptiveCase, _ dy: [Float]) -> [Float] {
        var dx = [Double](repeating: 0, count: s.planes * s.height * s.width)
        for p in 0..<s.planes { for y in 0..<s.outHeight { for xo in 0..<s.outWidth {
            let ys = adaptiveWindow(y, s.height, s.outHeight), xs = adaptiveWindow(xo, s.width, s.outWidth)
            let share = Double(dy[(p * s.outHeight + y) * s.outWidth + xo]) / Double(ys.count * xs.count)
            for iy in ys { for ix in xs { dx[(p * s.height + iy) * s.width + ix] += share } }
        }}}
        return dx.map { Float($0) }
    }
}

// MARK: - Helpers

/// Deterministic multiples of 1/8 in [-1, 1) (few distinct values, so max pooling sees ties).
private func values(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(Int(state >> 60) - 8) / 8
    }
}

private func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

/// Calls `body` with pointers to copies of `inputs` and an output of `count` elements pre-filled
/// with `fill` (NaN for floats, so a kernel that reads its output is caught).
private func run<T>(_ inputs: [[Float]], count: Int, fill: T,
                    _ body: ([UnsafePointer<Float>], UnsafeMutablePointer<T>) -> Void) -> [T] {
    let pointers = inputs.map { v -> UnsafeMutablePointer<Float> in
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(v.count, 1))
        p.initialize(from: v, count: v.count)
        return p
    }
    let out = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
    out.initialize(repeating: fill, count: count)
    defer { out.deallocate(); pointers.forEach { $0.deallocate() } }
    body(pointers.map { UnsafePointer($0) }, out)
    return Array(UnsafeBufferPointer(start: out, count: count))
}

private func int32s(_ v: [Int32]) -> [Float] { v.map { Float(bitPattern: UInt32(bitPattern: $0)) } }

private struct PoolCase: CustomStringConvertible, Sendable {
    var planes: Int, height: Int, width: Int, kernel: (Int, Int), stride: (Int, Int), padding = (0, 0)
    var geometry: Pool2dGeometry {
        Pool2dGeometry(planes: planes, height: height, width: width, kernel: kernel, stride: stride, padding: padding)
    }
    var description: String { "\(planes)x\(height)x\(width) k\(kernel) s\(stride) p\(padding)" }
}

/// Padding is at most half the kernel (PyTorch's rule, enforced by Tensor.maxPool2d / avgPool2d).
private let poolCases: [PoolCase] = [
    PoolCase(planes: 1, height: 1, width: 1, kernel: (1, 1), stride: (1, 1)),
    PoolCase(planes: 3, height: 5, width: 7, kernel: (2, 2), stride: (2, 2)),
    PoolCase(planes: 2, height: 6, width: 39, kernel: (2, 2), stride: (2, 2)),   // 8-wide 2x2 path + tail
    PoolCase(planes: 2, height: 7, width: 7, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),
    PoolCase(planes: 7, height: 17, width: 5, kernel: (3, 3), stride: (1, 1), padding: (1, 1)),
    PoolCase(planes: 3, height: 17, width: 17, kernel: (5, 3), stride: (3, 2), padding: (2, 1)),
    PoolCase(planes: 2, height: 1, width: 17, kernel: (1, 3), stride: (1, 3), padding: (0, 1)),
    PoolCase(planes: 2, height: 5, width: 5, kernel: (5, 5), stride: (1, 1), padding: (2, 2)),
    PoolCase(planes: 1, height: 7, width: 5, kernel: (4, 2), stride: (3, 1), padding: (2, 1)),
    // Average-pooling gradient paths: windows that tile the image (with padding, ragged edges,
    // strides 1 to 3 per axis, rows wide enough for every vector step) and overlapping or gapped ones.
    PoolCase(planes: 3, height: 33, width: 33, kernel: (2, 2), stride: (2, 2)),
    PoolCase(planes: 2, height: 17, width: 70, kernel: (2, 2), stride: (2, 2), padding: (1, 1)),
    PoolCase(planes: 2, height: 7, width: 17, kernel: (3, 3), stride: (3, 3), padding: (1, 1)),
    PoolCase(planes: 2, height: 7, width: 33, kernel: (2, 3), stride: (2, 3), padding: (1, 1)),
    PoolCase(planes: 2, height: 17, width: 7, kernel: (3, 1), stride: (3, 1)),
    PoolCase(planes: 2, height: 33, width: 70, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),
    PoolCase(planes: 3, height: 17, width: 17, kernel: (3, 3), stride: (2, 2)),
    PoolCase(planes: 2, height: 7, width: 33, kernel: (1, 1), stride: (2, 2)),
    PoolCase(planes: 2, height: 17, width: 33, kernel: (2, 2), stride: (3, 3), padding: (1, 1)),
]

private struct AdaptiveCase: CustomStringConvertible, Sendable {
    var planes: Int, height: Int, width: Int, outHeight: Int, outWidth: Int
    var description: String { "\(planes)x\(height)x\(width) -> \(outHeight)x\(outWidth)" }
}

private let adaptiveCases: [AdaptiveCase] = [
    AdaptiveCase(planes: 3, height: 7, width: 7, outHeight: 1, outWidth: 1),
    AdaptiveCase(planes: 2, height: 7, width: 5, outHeight: 3, outWidth: 2),
    AdaptiveCase(planes: 2, height: 5, width: 17, outHeight: 5, outWidth: 4),
    AdaptiveCase(planes: 1, height: 5, width: 3, outHeight: 7, outWidth: 4),
    AdaptiveCase(planes: 3, height: 1, width: 1, outHeight: 2, outWidth: 3),
]

// MARK: - Tests

@Suite("Pooling kernels")
struct PoolingKernelTests {
    @Test("max pooling: values, indices and gradient match the reference", arguments: poolCases)
    fileprivate func maxPool(_ c: PoolCase) {
        let g = c.geometry
        let x = values(g.planes * g.height * g.width, seed: 1)
        let dy = values(g.planes * g.outHeight * g.outWidth, seed: 2)
        let expected = Reference.maxPool(g, x)
        let outCount = g.planes * g.outHeight * g.outWidth
        var indices: [Int32] = []
        let got = run([x], count: outCount, fill: Float.nan) { p, out in
            indices = run([], count: outCount, fill: Int32(-7)) { _, idx in
                Kernels.maxPool2dForward(g, input: p[0], output: out, indices: idx)
            }
        }
        #expect(sameBits(got, expected.values), "\(c): values")
        #expect(indices == expected.indices, "\(c): indices")
        let dx = run([dy, int32s(indices)], count: g.planes * g.height * g.width, fill: Float.nan) { p, out in
            p[1].withMemoryRebound(to: Int32.self, capacity: outCount) { idx in
                Kernels.maxPool2dBackward(g, gradOutput: p[0], indices: idx, gradInput: out)
            }
        }
        expectClose(dx, Reference.maxPoolBackward(g, dy, expected.indices), atol: 1e-6, rtol: 1e-6, "\(c): gradient")
    }

    @Test("max pooling propagates NaN (last NaN wins) and handles infinities")
    func maxPoolSpecialValues() {
        let g = Pool2dGeometry(planes: 1, height: 4, width: 4, kernel: (2, 2), stride: (2, 2))
        let x: [Float] = [
            .nan, 1, -.infinity, -.infinity,
            2, .nan, -.infinity, -.infinity,
            -.infinity, 3, .infinity, 5,
            -1, .infinity, 7, .nan,
        ]
        var indices: [Int32] = []
        let got = run([x], count: 4, fill: Float(0)) { p, out in
            indices = run([], count: 4, fill: Int32(-7)) { _, idx in
                Kernels.maxPool2dForward(g, input: p[0], output: out, indices: idx)
            }
        }
        #expect(got[0].isNaN && got[1] == -.infinity && got[2] == .infinity && got[3].isNaN)
        #expect(indices == [5, 2, 13, 15])
        #expect(indices == Reference.maxPool(g, x).indices)
    }

    @Test("8-lane rows (strides 1 and 2) match the reference, with NaN, infinities and ties",
          arguments: [(1, 0), (2, 0), (2, 1), (1, 1)])
    func wideRows(_ strideAndPadding: (Int, Int)) {
        let (stride, pad) = strideAndPadding
        for kernel in [2, 3] where pad * 2 <= kernel {
            let g = Pool2dGeometry(planes: 2, height: 6, width: 41, kernel: (kernel, kernel), stride: (stride, stride),
                                   padding: (pad, pad))
            var x = values(g.planes * g.height * g.width, seed: 9)
            for (k, special) in [Float.nan, -.infinity, .infinity, .nan, -.infinity].enumerated() { x[(k * 97 + 13) % x.count] = special }
            for i in 0..<41 { x[41 * 3 + i] = -.infinity }    // a whole row of -inf: first index wins
            let outCount = g.planes * g.outHeight * g.outWidth
            var indices: [Int32] = []
            let got = run([x], count: outCount, fill: Float(0)) { p, out in
                indices = run([], count: outCount, fill: Int32(-7)) { _, idx in
                    Kernels.maxPool2dForward(g, input: p[0], output: out, indices: idx)
                }
            }
            let expected = Reference.maxPool(g, x)
            let same = sameBits(got.map { $0.isNaN ? .nan : $0 }, expected.values.map { $0.isNaN ? .nan : $0 })
            #expect(same, "max k\(kernel) s\(stride) p\(pad): values")
            #expect(indices == expected.indices, "max k\(kernel) s\(stride) p\(pad): indices")
            let finite = values(x.count, seed: 10)
            for countIncludePad in [true, false] {
                let y = run([finite], count: outCount, fill: Float.nan) { p, out in
                    Kernels.avgPool2dForward(g, countIncludePad: countIncludePad, input: p[0], output: out)
                }
                expectClose(y, Reference.avgPool(g, finite, countIncludePad: countIncludePad), atol: 1e-6, rtol: 1e-5,
                            "avg k\(kernel) s\(stride) p\(pad) countIncludePad \(countIncludePad)")
            }
        }
    }

    @Test("a window larger than the padded input gives no output positions (not one)")
    func oversizedWindows() {
        #expect(Pool2dGeometry(planes: 1, height: 2, width: 1, kernel: (2, 2), stride: (2, 2)).outWidth == 0)
        #expect(Pool2dGeometry(planes: 1, height: 3, width: 3, kernel: (3, 3), stride: (2, 2)).outWidth == 1)
        let conv = Conv2dGeometry(batch: 1, inChannels: 1, height: 2, width: 4, outChannels: 1, kernelHeight: 3, kernelWidth: 3,
                                  stride: (2, 2), padding: (0, 0), dilation: (1, 1), groups: 1)
        #expect(conv.outHeight == 0 && conv.outWidth == 1)
    }

    @Test("2x2 stride-2 max and average pooling: every row width (scalar, 4-lane, 8-lane and ragged paths)")
    func plain2x2Widths() {
        for width in 1...37 {
            for height in [2, 5] {
                let g = Pool2dGeometry(planes: 3, height: height, width: width, kernel: (2, 2), stride: (2, 2))
                guard g.outWidth > 0 else { continue }
                var x = values(g.planes * g.height * g.width, seed: UInt64(width))
                for (k, special) in [Float.nan, .infinity, -.infinity].enumerated() where x.count > 7 {
                    x[(k * 31 + width) % x.count] = special
                }
                let outCount = g.planes * g.outHeight * g.outWidth
                var indices: [Int32] = []
                let withIndices = run([x], count: outCount, fill: Float.nan) { p, out in
                    indices = run([], count: outCount, fill: Int32(-7)) { _, idx in
                        Kernels.maxPool2dForward(g, input: p[0], output: out, indices: idx)
                    }
                }
                let withoutIndices = run([x], count: outCount, fill: Float.nan) { p, out in
                    Kernels.maxPool2dForward(g, input: p[0], output: out, indices: nil)
                }
                let expected = Reference.maxPool(g, x)
                #expect(sameBits(withIndices, expected.values), "width \(width) height \(height): values")
                #expect(sameBits(withoutIndices, expected.values), "width \(width) height \(height): values without indices")
                #expect(indices == expected.indices, "width \(width) height \(height): indices")
                let finite = values(x.count, seed: UInt64(width) + 100)
                for countIncludePad in [true, false] {
                    let mean = run([finite], count: outCount, fill: Float.nan) { p, out in
                        Kernels.avgPool2dForward(g, countIncludePad: countIncludePad, input: p[0], output: out)
                    }
                    #expect(sameBits(mean, Reference.avgPool(g, finite, countIncludePad: countIncludePad)),
                            "width \(width) height \(height): average")
                }
            }
        }
    }

    @Test("average pooling matches the reference, with and without counting padding", arguments: poolCases)
    fileprivate func avgPool(_ c: PoolCase) {
        let g = c.geometry
        let x = values(g.planes * g.height * g.width, seed: 3)
        let dy = values(g.planes * g.outHeight * g.outWidth, seed: 4)
        for countIncludePad in [true, false] {
            let y = run([x], count: g.planes * g.outHeight * g.outWidth, fill: Float.nan) { p, out in
                Kernels.avgPool2dForward(g, countIncludePad: countIncludePad, input: p[0], output: out)
            }
            expectClose(y, Reference.avgPool(g, x, countIncludePad: countIncludePad), atol: 1e-6, rtol: 1e-5,
                        "\(c) countIncludePad \(countIncludePad)")
            let dx = run([dy], count: g.planes * g.height * g.width, fill: Float.nan) { p, out in
                Kernels.avgPool2dBackward(g, countIncludePad: countIncludePad, gradOutput: p[0], gradInput: out)
            }
            expectClose(dx, Reference.avgPoolBackward(g, dy, countIncludePad: countIncludePad), atol: 1e-6, rtol: 1e-5,
                        "\(c) countIncludePad \(countIncludePad): gradient")
        }
    }

    @Test("average-pooling gradient: every row width and height 1...37 (2x2/s2, 3x3/s2/p1, 3x3/s1/p1)")
    func avgPoolBackwardWidths() {
        for (kernel, stride, pad) in [(2, 2, 0), (3, 2, 1), (3, 1, 1)] {
            for size in 1...37 {
                let g = Pool2dGeometry(planes: 4, height: size, width: size, kernel: (kernel, kernel), stride: (stride, stride),
                                       padding: (pad, pad))
                let dy = values(g.planes * g.outHeight * g.outWidth, seed: UInt64(size))
                for countIncludePad in [true, false] {
                    let label = "k\(kernel) s\(stride) p\(pad) size \(size) countIncludePad \(countIncludePad)"
                    let dx = run([dy], count: g.planes * g.height * g.width, fill: Float.nan) { p, out in
                        Kernels.avgPool2dBackward(g, countIncludePad: countIncludePad, gradOutput: p[0], gradInput: out)
                    }
                    expectClose(dx, Reference.avgPoolBackward(g, dy, countIncludePad: countIncludePad), atol: 1e-6, rtol: 1e-5,
                                label)
                }
            }
        }
    }

    @Test("adaptive average pooling matches the reference", arguments: adaptiveCases)
    fileprivate func adaptiveAvgPool(_ c: AdaptiveCase) {
        let x = values(c.planes * c.height * c.width, seed: 5)
        let dy = values(c.planes * c.outHeight * c.outWidth, seed: 6)
        let y = run([x], count: c.planes * c.outHeight * c.outWidth, fill: Float.nan) { p, out in
            Kernels.adaptiveAvgPool2dForward(planes: c.planes, height: c.height, width: c.width,
                                             outHeight: c.outHeight, outWidth: c.outWidth, input: p[0], output: out)
        }
        expectClose(y, Reference.adaptiveAvgPool(c, x), atol: 1e-6, rtol: 1e-5, "\(c)")
        let dx = run([dy], count: c.planes * c.height * c.width, fill: Float.nan) { p, out in
            Kernels.adaptiveAvgPool2dBackward(planes: c.planes, height: c.height, width: c.width,
                                              outHeight: c.outHeight, outWidth: c.outWidth, gradOutput: p[0], gradInput: out)
        }
        expectClose(dx, Reference.adaptiveAvgPoolBackward(c, dy), atol: 1e-6, rtol: 1e-5, "\(c): gradient")
    }

    @Test("every pooling kernel gives the same bits with 1 and 2 threads")
    func threadsAgree() {
        // Large enough (64 planes of 32x32) to take the threaded path.
        let g = Pool2dGeometry(planes: 64, height: 32, width: 32, kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        let inCount = g.planes * g.height * g.width, outCount = g.planes * g.outHeight * g.outWidth
        let x = values(inCount, seed: 7), dy = values(outCount, seed: 8)
        func outputs(threads: Int) -> [[Float]] {
            var indices: [Int32] = []
            let maxY = run([x], count: outCount, fill: Float.nan) { p, out in
                indices = run([], count: outCount, fill: Int32(-7)) { _, idx in
                    Kernels.maxPool2dForward(g, input: p[0], output: out, indices: idx, threads: threads)
                }
            }
            let maxDx = run([dy, int32s(indices)], count: inCount, fill: Float.nan) { p, out in
                p[1].withMemoryRebound(to: Int32.self, capacity: outCount) { idx in
                    Kernels.maxPool2dBackward(g, gradOutput: p[0], indices: idx, gradInput: out, threads: threads)
                }
            }
            let avgY = run([x], count: outCount, fill: Float.nan) { p, out in
                Kernels.avgPool2dForward(g, countIncludePad: false, input: p[0], output: out, threads: threads)
            }
            let avgDx = run([dy], count: inCount, fill: Float.nan) { p, out in
                Kernels.avgPool2dBackward(g, countIncludePad: true, gradOutput: p[0], gradInput: out, threads: threads)
            }
            // Windows that tile the image take another path.
            let tiles = Pool2dGeometry(planes: 64, height: 32, width: 32, kernel: (2, 2), stride: (2, 2))
            let tilesDx = run([values(64 * 16 * 16, seed: 9)], count: inCount, fill: Float.nan) { p, out in
                Kernels.avgPool2dBackward(tiles, countIncludePad: false, gradOutput: p[0], gradInput: out, threads: threads)
            }
            let adaptiveY = run([x], count: g.planes * 25, fill: Float.nan) { p, out in
                Kernels.adaptiveAvgPool2dForward(planes: g.planes, height: g.height, width: g.width, outHeight: 5, outWidth: 5,
                                                 input: p[0], output: out, threads: threads)
            }
            let adaptiveDx = run([x], count: inCount, fill: Float.nan) { p, out in
                Kernels.adaptiveAvgPool2dBackward(planes: g.planes, height: g.height, width: g.width, outHeight: 5, outWidth: 5,
                                                  gradOutput: p[0], gradInput: out, threads: threads)
            }
            return [maxY, int32s(indices), maxDx, avgY, avgDx, adaptiveY, adaptiveDx, tilesDx]
        }
        let one = outputs(threads: 1), two = outputs(threads: 2)
        for (i, (a, b)) in zip(one, two).enumerated() {
            let same = sameBits(a, b)
            #expect(same, "output \(i) differs between 1 and 2 threads")
        }
        expectClose(one[3], Reference.avgPool(g, x, countIncludePad: false), atol: 1e-6, rtol: 1e-5, "avgPool 64 planes")
    }
}
