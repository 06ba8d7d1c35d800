import Foundation
import Testing
@testable import FineTune

// Tests for the SIMD kernels in Kernels/VectorMath.swift, VectorReductions.swift,
// VectorArithmetic.swift and RowKernels.swift: every kernel against a scalar Double
// reference, on lengths that exercise the 16-lane main loop and the padded tail, with
// special values for the transcendentals and in-place (aliased) calls.

// MARK: - Helpers

private let lengths = [0, 1, 7, 15, 16, 17, 33, 257, 1000]
private let rowSizes = [1, 3, 17, 65]

/// Deterministic inputs: `n` values uniform in [lo, hi], with `specials` spliced in at evenly
/// spaced positions (as many as fit).
private func makeInputs(_ n: Int, _ lo: Float, _ hi: Float, specials: [Float] = [], seed: UInt64 = 1) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(n)
    var out = (0..<n).map { _ -> Float in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let unit = Float(state >> 40) / Float(1 << 24)
        return lo + (hi - lo) * unit
    }
    if n > 0 {
        for (k, s) in specials.prefix(n).enumerated() { out[(k * 7919) % n] = s }
    }
    return out
}

/// Copies `values` into fresh memory (never a nil base address, even when empty).
private func withBuffer<R>(_ values: [Float], _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
    defer { p.deallocate() }
    p.initialize(repeating: 0, count: max(values.count, 1))
    for (i, v) in values.enumerated() { p[i] = v }
    return body(p)
}

private func array(_ p: UnsafePointer<Float>, _ n: Int) -> [Float] { Array(UnsafeBufferPointer(start: p, count: n)) }

private func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) }
}

/// Runs a unary kernel out of place and in place; expects both to agree bit for bit.
private func runUnary(_ x: [Float], _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> [Float] {
    let n = x.count
    let out = withBuffer(x) { src in withBuffer([Float](repeating: 0, count: n)) { dst in kernel(src, dst, n); return array(dst, n) } }
    let inPlace = withBuffer(x) { buf in kernel(buf, buf, n); return array(buf, n) }
    #expect(sameBits(out, inPlace), "in-place result differs (n = \(n))")
    return out
}

/// Runs a binary kernel out of place and with the output aliasing each input in turn.
private func runBinary(_ a: [Float], _ b: [Float],
                       _ kernel: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> [Float] {
    let n = a.count
    let out = withBuffer(a) { pa in withBuffer(b) { pb in withBuffer([Float](repeating: 0, count: n)) { dst in
        kernel(pa, pb, dst, n); return array(dst, n) } } }
    let intoA = withBuffer(a) { pa in withBuffer(b) { pb in kernel(pa, pb, pa, n); return array(pa, n) } }
    let intoB = withBuffer(a) { pa in withBuffer(b) { pb in kernel(pa, pb, pb, n); return array(pb, n) } }
    #expect(sameBits(out, intoA) && sameBits(out, intoB), "aliased result differs (n = \(n))")
    return out
}

/// Size of one Float ulp at the magnitude of `r` (subnormal spacing below the normal range).
private func ulp(of r: Double) -> Double {
    let f = abs(Float(r))
    if f == 0 { return Double(Float.leastNonzeroMagnitude) }
    return Double((Double(f) > abs(r) ? f.nextDown : f).ulp)
}

private struct Worst: CustomStringConvertible {
    var error = 0.0, input: Float = 0, output: Float = 0, reference = 0.0
    var mismatch: String? = nil
    var description: String {
        mismatch ?? "max error \(error) at x = \(input): got \(output), reference \(reference)"
    }
}

/// Worst error of `y` against `ref(x)`: in ulps (`ulps == true`) or as absolute error scaled by
/// `absScale(x)`. NaN and infinite references must be matched exactly.
private func worstError(_ x: [Float], _ y: [Float], ulps: Bool, absScale: (Float) -> Double = { _ in 1 },
                        _ ref: (Double) -> Double) -> Worst {
    var w = Worst()
    for (xi, yi) in zip(x, y) {
        let r = ref(Double(xi))
        if r.isNaN {
            if !yi.isNaN { w.mismatch = "x = \(xi): got \(yi), expected NaN" }
            continue
        }
        if Float(r).isInfinite {
            if yi != Float(r) { w.mismatch = "x = \(xi): got \(yi), expected \(Float(r))" }
            continue
        }
        guard yi.isFinite else { w.mismatch = "x = \(xi): got \(yi), expected \(r)"; continue }
        let e = ulps ? abs(Double(yi) - r) / ulp(of: r) : abs(Double(yi) - r) / absScale(xi)
        if e > w.error { w = Worst(error: e, input: xi, output: yi, reference: r, mismatch: w.mismatch) }
    }
    return w
}

/// A subnormal with a full mantissa pattern (≈ 1.2e-39).
private let subnormal = Float(bitPattern: 0x000D_5A3B)

private let commonSpecials: [Float] = [0, -0, .infinity, -.infinity, .nan, .greatestFiniteMagnitude,
                                       -.greatestFiniteMagnitude, .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
                                       subnormal, -subnormal, .leastNormalMagnitude, 1e-30, -1e-30]

// Double references for GELU and its derivative (infinite inputs take the limits 0 and 1).

private func geluExactReference(_ x: Double) -> Double {
    if x == -.infinity { return 0 }
    return 0.5 * x * (1 + Foundation.erf(x / 2.0.squareRoot()))
}

private func geluTanhReference(_ x: Double) -> Double {
    if x == -.infinity { return 0 }
    let u = (2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)
    return x / (1 + Foundation.exp(-2 * u))           // = 0.5 x (1 + tanh u), without cancellation
}

private func geluExactGradReference(_ x: Double) -> Double {
    if x.isInfinite { return x > 0 ? 1 : 0 }
    let pdf = Foundation.exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
    return 0.5 * (1 + Foundation.erf(x / 2.0.squareRoot())) + x * pdf
}

private func geluTanhGradReference(_ x: Double) -> Double {
    if x.isInfinite { return x > 0 ? 1 : 0 }
    let k = (2 / Double.pi).squareRoot()
    let u = k * (x + 0.044715 * x * x * x)
    let e = Foundation.exp(-2 * abs(u))
    let s = (u >= 0 ? 1 : e) / (1 + e)                 // 0.5 (1 + tanh u)
    let sOneMinusS = e / ((1 + e) * (1 + e))           // (1 - tanh² u) / 4
    return s + 2 * x * sOneMinusS * k * (1 + 3 * 0.044715 * x * x)
}

// MARK: - Transcendentals

@Suite("Vector transcendentals")
struct VectorTranscendentalTests {
    @Test func expWithinTwoULP() {
        let specials = commonSpecials + [88.72283, 88.7228394, 89, 100, -87.33, -103, -103.97, -104, -1000, 1, -1]
        for n in lengths {
            let x = makeInputs(n, -104, 89, specials: specials)
            let y = runUnary(x) { Kernels.vExp($0, $1, count: $2) }
            let w = worstError(x, y, ulps: true) { Foundation.exp($0) }
            #expect(w.mismatch == nil && w.error <= 2, "vExp n=\(n): \(w)")
        }
        let y = runUnary([-.infinity, -1000, -104, .infinity, 1000, 89, .nan, 0, -0]) { Kernels.vExp($0, $1, count: $2) }
        #expect(y[0] == 0 && y[1] == 0 && y[2] == 0, "underflow must give 0, not NaN: \(y)")
        #expect(y[3] == .infinity && y[4] == .infinity && y[5] == .infinity)
        #expect(y[6].isNaN && y[7] == 1 && y[8] == 1)
    }

    @Test func expSmallArgumentsAndSubnormalResults() {
        // Dense sweep of the subnormal-result range and around 0.
        let x = (0..<2000).map { Float(-87.4) - Float($0) * 0.0083 } + (0..<500).map { Float($0 - 250) * 1e-3 }
        let y = runUnary(x) { Kernels.vExp($0, $1, count: $2) }
        let w = worstError(x, y, ulps: true) { Foundation.exp($0) }
        #expect(w.mismatch == nil && w.error <= 2, "\(w)")
    }

    @Test func logWithinTwoULP() {
        let specials = commonSpecials + [-1, -1e-30, 1, 0.99999994, 1.0000001, 2, 0.5, 0.70710677, 1.4142135, Float(bitPattern: 0x0020_AB3C)]
        for n in lengths {
            for (lo, hi) in [(Float(0), Float(4)), (Float(0), Float(1e30))] {
                let x = makeInputs(n, lo, hi, specials: specials)
                let y = runUnary(x) { Kernels.vLog($0, $1, count: $2) }
                let w = worstError(x, y, ulps: true) { $0 < 0 ? .nan : Foundation.log($0) }
                #expect(w.mismatch == nil && w.error <= 2, "vLog n=\(n): \(w)")
            }
        }
        let y = runUnary([0, -0, -1, .infinity, -.infinity, .nan, 1, .leastNonzeroMagnitude]) { Kernels.vLog($0, $1, count: $2) }
        #expect(y[0] == -.infinity && y[1] == -.infinity)
        #expect(y[2].isNaN && y[3] == .infinity && y[4].isNaN && y[5].isNaN && y[6] == 0)
        #expect(abs(y[7] - -103.27893) < 1e-4)
    }

    @Test func tanhWithinTwoULP() {
        let specials = commonSpecials + [0.625, 0.62499994, -0.625, 9, -9, 20, -20, 1e-5, -1e-5, 45, -45]
        for n in lengths {
            let x = makeInputs(n, -6, 6, specials: specials)
            let y = runUnary(x) { Kernels.vTanh($0, $1, count: $2) }
            let w = worstError(x, y, ulps: true) { Foundation.tanh($0) }
            #expect(w.mismatch == nil && w.error <= 2, "vTanh n=\(n): \(w)")
        }
    }

    @Test func sigmoidStableAndAccurate() {
        let specials = commonSpecials + [100, -100, 88, -88, 104, -104, -1000, 1000, 17, -17]
        for n in lengths {
            let x = makeInputs(n, -20, 20, specials: specials)
            let y = runUnary(x) { Kernels.vSigmoid($0, $1, count: $2) }
            let w = worstError(x, y, ulps: true) { 1 / (1 + Foundation.exp(-$0)) }
            #expect(w.mismatch == nil && w.error <= 3, "vSigmoid n=\(n): \(w)")
        }
        let y = runUnary([-100, 100, -.infinity, .infinity]) { Kernels.vSigmoid($0, $1, count: $2) }
        #expect(!y[0].isNaN && y[0] > 0 && y[0] < 1e-38)   // e^-100 ≈ 3.7e-44, subnormal
        #expect(y[1] == 1 && y[2] == 0 && y[3] == 1)
    }

    @Test func erfAbsoluteErrorBelow1e6() {
        let specials = commonSpecials + [4, -4, 3.9, -3.9, 10, -10, 0.5, -0.5]
        for n in lengths {
            let x = makeInputs(n, -5, 5, specials: specials)
            let y = runUnary(x) { Kernels.vErf($0, $1, count: $2) }
            let w = worstError(x, y, ulps: false) { Foundation.erf($0) }
            #expect(w.mismatch == nil && w.error <= 1e-6, "vErf n=\(n): \(w)")
        }
    }

    @Test(arguments: [false, true])
    func gelu(approximate: Bool) {
        func ref(_ x: Double) -> Double { approximate ? geluTanhReference(x) : geluExactReference(x) }
        let specials = commonSpecials + [10, -10, 5, -5, 0.1, -0.1]
        for n in lengths {
            let x = makeInputs(n, -8, 8, specials: specials)
            let y = runUnary(x) { Kernels.vGELU($0, $1, count: $2, approximate: approximate) }
            let w = worstError(x, y, ulps: false, absScale: { Swift.max(1, Double(abs($0))) }, ref)
            #expect(w.mismatch == nil && w.error <= 1e-6, "vGELU(approximate: \(approximate)) n=\(n): \(w)")
        }
    }

    @Test(arguments: [false, true])
    func geluGrad(approximate: Bool) {
        func ref(_ x: Double) -> Double { approximate ? geluTanhGradReference(x) : geluExactGradReference(x) }
        let specials = commonSpecials.filter { !$0.isNaN } + [10, -10, 30, -30, 0.75, -0.75]
        for n in lengths {
            let x = makeInputs(n, -8, 8, specials: specials)
            let g = makeInputs(n, -2, 2, seed: 7)
            let dx = runBinary(x, g) { Kernels.vGELUGrad(x: $0, gradOutput: $1, gradInput: $2, count: $3, approximate: approximate) }
            var worst = 0.0
            for i in 0..<n {
                let expected = ref(Double(x[i])) * Double(g[i])
                worst = Swift.max(worst, abs(Double(dx[i]) - expected))
            }
            #expect(worst <= 1e-6, "vGELUGrad(approximate: \(approximate)) n=\(n): max abs error \(worst)")
        }
        let nan = runBinary([.nan], [1]) { Kernels.vGELUGrad(x: $0, gradOutput: $1, gradInput: $2, count: $3, approximate: approximate) }
        #expect(nan[0].isNaN)
    }
}

// MARK: - Reductions

@Suite("Vector reductions")
struct VectorReductionTests {
    @Test func sumDotSumOfSquares() {
        for n in lengths {
            let x = makeInputs(n, -3, 3), y = makeInputs(n, -2, 5, seed: 3)
            let (s, d, q) = withBuffer(x) { px in withBuffer(y) { py in
                (Kernels.sum(px, count: n), Kernels.dot(px, py, count: n), Kernels.sumOfSquares(px, count: n)) } }
            let refS = x.reduce(0.0) { $0 + Double($1) }
            let refD = zip(x, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let refQ = x.reduce(0.0) { $0 + Double($1) * Double($1) }
            let scaleS = x.reduce(0.0) { $0 + Double(abs($1)) }, scaleD = zip(x, y).reduce(0.0) { $0 + Double(abs($1.0 * $1.1)) }
            #expect(abs(Double(s) - refS) <= 1e-6 * scaleS + 1e-30, "sum n=\(n): \(s) vs \(refS)")
            #expect(abs(Double(d) - refD) <= 1e-6 * scaleD + 1e-30, "dot n=\(n): \(d) vs \(refD)")
            #expect(abs(Double(q) - refQ) <= 1e-6 * refQ + 1e-30, "sumOfSquares n=\(n): \(q) vs \(refQ)")
        }
    }

    @Test func longSumStaysAccurate() {
        // A naive Float loop over 2^20 copies of 0.1 is off by ~0.4%; blocks + Double stay exact to ~1 ulp.
        let n = 1 << 20
        let s = withBuffer([Float](repeating: 0.1, count: n)) { Kernels.sum($0, count: n) }
        let ref = Double(Float(0.1)) * Double(n)
        #expect(abs(Double(s) - ref) / ref < 1e-6, "\(s) vs \(ref)")
    }

    @Test func maxValuePropagatesNaN() {
        for n in lengths where n > 0 {
            var x = makeInputs(n, -50, 50)
            var m = withBuffer(x) { Kernels.maxValue($0, count: n) }
            #expect(m == x.max()!, "maxValue n=\(n)")
            x[n - 1] = 1000                                  // in the tail
            m = withBuffer(x) { Kernels.maxValue($0, count: n) }
            #expect(m == 1000)
            for position in Set([0, n / 2, n - 1]) {
                var withNaN = x
                withNaN[position] = .nan
                #expect(withBuffer(withNaN) { Kernels.maxValue($0, count: n) }.isNaN, "NaN at \(position) of \(n)")
            }
        }
        #expect(withBuffer([]) { Kernels.maxValue($0, count: 0) } == -.infinity)
        #expect(withBuffer([-.infinity, -.infinity]) { Kernels.maxValue($0, count: 2) } == -.infinity)
        #expect(withBuffer([-3, .infinity, 2]) { Kernels.maxValue($0, count: 3) } == .infinity)
    }
}

// MARK: - Elementwise arithmetic

@Suite("Vector arithmetic")
struct VectorArithmeticTests {
    /// The lane ops of binary tensor ops through every row driver `Broadcasting.binary` uses:
    /// both operands in memory, the right or the left one a broadcast scalar.
    @Test func laneOpsMatchScalarFloatInEveryRowDriver() {
        func check<Op: LaneOp2>(_ op: Op, _ reference: (Float, Float) -> Float, _ name: String) {
            for n in lengths {
                let a = makeInputs(n, -10, 10, specials: [.nan, .infinity, 0, -0]), b = makeInputs(n, 0.5, 4, seed: 5)
                let s: Float = -1.75
                #expect(sameBits(runBinary(a, b) { VectorMath.lanes2($0, $1, $2, $3, op) }, zip(a, b).map(reference)), "\(name) n=\(n)")
                #expect(sameBits(runUnary(a) { VectorMath.lanes2($0, scalar: s, $1, $2, op) }, a.map { reference($0, s) }),
                        "\(name) scalar right n=\(n)")
                #expect(sameBits(runUnary(a) { VectorMath.lanes2(scalar: s, $0, $1, $2, op) }, a.map { reference(s, $0) }),
                        "\(name) scalar left n=\(n)")
            }
        }
        check(AddOp(), +, "add"); check(SubtractOp(), -, "sub"); check(MultiplyOp(), *, "mul"); check(DivideOp(), /, "div")
        for n in lengths {
            let a = makeInputs(n, -10, 10, specials: [.nan, .infinity, 0]), b = makeInputs(n, 0.5, 4, seed: 5)
            #expect(sameBits(runBinary(a, b) { Kernels.add($0, $1, $2, count: $3) }, zip(a, b).map { $0 + $1 }))
            #expect(sameBits(runBinary(a, b) { Kernels.mul($0, $1, $2, count: $3) }, zip(a, b).map { $0 * $1 }))
        }
    }

    @Test func addScalarAndReluMatchScalarFloat() {
        for n in lengths {
            let x = makeInputs(n, -10, 10, specials: [.nan, -.infinity, -0])
            let s: Float = 1.75
            #expect(sameBits(runUnary(x) { Kernels.addScalar($0, s, $1, count: $2) }, x.map { $0 + s }))
            #expect(sameBits(runUnary(x) { Kernels.relu($0, $1, count: $2) }, x.map { $0 < 0 ? 0 : $0 }))
        }
    }

    @Test func axpyScaleAndReluGrad() {
        for n in lengths {
            let x = makeInputs(n, -10, 10, specials: [0, -0]), y = makeInputs(n, -3, 3, seed: 9)
            let alpha: Float = -0.37
            let axpy = withBuffer(x) { px in withBuffer(y) { py in Kernels.axpy(alpha: alpha, x: px, y: py, count: n); return array(py, n) } }
            for i in 0..<n {   // FMA rounds once; a portable build also rounds the product
                let product = Double(alpha) * Double(x[i]), exact = product + Double(y[i])
                #expect(abs(Double(axpy[i]) - exact) <= 0.5 * ulp(of: exact) + 0.5 * ulp(of: product),
                        "axpy[\(i)] n=\(n)")
            }
            let scaled = withBuffer(x) { px in Kernels.scale(alpha, px, count: n); return array(px, n) }
            #expect(sameBits(scaled, x.map { $0 * alpha }))
            let grad = runBinary(x, y) { Kernels.reluGrad(x: $0, gradOutput: $1, gradInput: $2, count: $3) }
            #expect(sameBits(grad, zip(x, y).map { $0 > 0 ? $1 : 0 }))
        }
    }
}

// MARK: - Row kernels

/// Row-major matrices as nested Double references.
private func rowsOf(_ x: [Float], _ rows: Int, _ cols: Int) -> [[Double]] {
    (0..<rows).map { r in (0..<cols).map { Double(x[r * cols + $0]) } }
}

private func maxAbsDiff(_ y: [Float], _ ref: [[Double]]) -> Double {
    var worst = 0.0
    for (r, row) in ref.enumerated() {
        for (c, v) in row.enumerated() {
            let d = abs(Double(y[r * row.count + c]) - v)
            worst = Swift.max(worst, d.isNaN ? .infinity : d)
        }
    }
    return worst
}

private func refSoftmax(_ row: [Double]) -> [Double] {
    let m = row.max()!
    let e = row.map { Foundation.exp($0 - m) }
    let s = e.reduce(0, +)
    return e.map { $0 / s }
}

@Suite("Row kernels")
struct RowKernelTests {
    /// Runs a row kernel out of place and in place (x == y); expects identical results.
    private func runRows(_ x: [Float], _ rows: Int, _ cols: Int,
                         _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> [Float] {
        let n = rows * cols
        let out = withBuffer(x) { px in withBuffer([Float](repeating: 0, count: n)) { py in kernel(px, py); return array(py, n) } }
        let inPlace = withBuffer(x) { p in kernel(p, p); return array(p, n) }
        #expect(sameBits(out, inPlace), "in-place row kernel differs (\(rows)x\(cols))")
        return out
    }

    @Test func softmaxAndLogSoftmax() {
        for rows in rowSizes {
            for cols in rowSizes {
                let x = makeInputs(rows * cols, -30, 30, seed: UInt64(rows * 100 + cols))
                let ref = rowsOf(x, rows, cols).map(refSoftmax)
                let y = runRows(x, rows, cols) { Kernels.softmaxRows($0, $1, rows: rows, cols: cols) }
                #expect(maxAbsDiff(y, ref) <= 1e-6, "softmaxRows \(rows)x\(cols)")
                let logRef = ref.map { $0.map { Foundation.log($0) } }
                let ly = runRows(x, rows, cols) { Kernels.logSoftmaxRows($0, $1, rows: rows, cols: cols) }
                // log-softmax values reach ~-60 here; allow a few ulps at that magnitude.
                #expect(maxAbsDiff(ly, logRef) <= 2e-5, "logSoftmaxRows \(rows)x\(cols)")
            }
        }
    }

    @Test func softmaxHandlesExtremeRows() {
        let x: [Float] = [1000, -1000, 0, 1000, /* row 2 */ -1e30, -1e30, -1e30, -1e30]
        let y = runRows(x, 2, 4) { Kernels.softmaxRows($0, $1, rows: 2, cols: 4) }
        #expect(y[0] == 0.5 && y[1] == 0 && y[2] == 0 && y[3] == 0.5)
        #expect(y[4...].allSatisfy { $0 == 0.25 })
        let ly = runRows(x, 2, 4) { Kernels.logSoftmaxRows($0, $1, rows: 2, cols: 4) }
        #expect(abs(ly[0] + 0.6931472) < 1e-6 && ly[1] < -1999 && ly[1].isFinite)
    }

    @Test func softmaxBackwardFormulas() {
        for rows in rowSizes {
            for cols in rowSizes {
                let x = makeInputs(rows * cols, -4, 4, seed: UInt64(rows + cols))
                let g = makeInputs(rows * cols, -1, 1, seed: 77)
                let y = withBuffer(x) { px in Kernels.softmaxRows(px, px, rows: rows, cols: cols); return array(px, rows * cols) }
                let ly = withBuffer(x) { px in Kernels.logSoftmaxRows(px, px, rows: rows, cols: cols); return array(px, rows * cols) }
                let yr = rowsOf(y, rows, cols), lyr = rowsOf(ly, rows, cols), gr = rowsOf(g, rows, cols)
                let ref = (0..<rows).map { r in
                    let d = zip(gr[r], yr[r]).reduce(0.0) { $0 + $1.0 * $1.1 }
                    return (0..<cols).map { yr[r][$0] * (gr[r][$0] - d) }
                }
                let logRef = (0..<rows).map { r in
                    let s = gr[r].reduce(0, +)
                    return (0..<cols).map { gr[r][$0] - Foundation.exp(lyr[r][$0]) * s }
                }
                let dx = runBinary(y, g) { yy, gg, out, _ in
                    Kernels.softmaxRowsBackward(y: yy, gradOutput: gg, gradInput: out, rows: rows, cols: cols) }
                let ldx = runBinary(ly, g) { yy, gg, out, _ in
                    Kernels.logSoftmaxRowsBackward(y: yy, gradOutput: gg, gradInput: out, rows: rows, cols: cols) }
                #expect(maxAbsDiff(dx, ref) <= 1e-6, "softmaxRowsBackward \(rows)x\(cols)")
                #expect(maxAbsDiff(ldx, logRef) <= 1e-5, "logSoftmaxRowsBackward \(rows)x\(cols)")
            }
        }
    }

    @Test func layerNormForwardAndBackward() {
        let eps: Float = 1e-5
        for rows in rowSizes {
            for cols in rowSizes {
                let n = rows * cols
                let x = makeInputs(n, -2, 6, seed: UInt64(rows * 31 + cols))
                let g = makeInputs(n, -1, 1, seed: 5)
                var mean = [Float](repeating: 0, count: rows), rstd = mean
                let y = withBuffer(x) { px in withBuffer([Float](repeating: 0, count: n)) { py in
                    Kernels.layerNormRows(x: px, y: py, mean: &mean, rstd: &rstd, rows: rows, cols: cols, eps: eps)
                    return array(py, n) } }
                let inPlace = withBuffer(x) { p in
                    var m2 = [Float](repeating: 0, count: rows), r2 = m2
                    Kernels.layerNormRows(x: p, y: p, mean: &m2, rstd: &r2, rows: rows, cols: cols, eps: eps)
                    return array(p, n) }
                #expect(sameBits(y, inPlace))

                let xr = rowsOf(x, rows, cols), gr = rowsOf(g, rows, cols)
                var yRef = [[Double]](), dxRef = [[Double]]()
                for r in 0..<rows {
                    let mu = xr[r].reduce(0, +) / Double(cols)
                    let variance = xr[r].reduce(0.0) { $0 + ($1 - mu) * ($1 - mu) } / Double(cols)
                    let inv = 1 / (variance + Double(eps)).squareRoot()
                    #expect(abs(Double(mean[r]) - mu) <= 1e-6 * Swift.max(1, abs(mu)), "mean row \(r) (\(rows)x\(cols))")
                    #expect(abs(Double(rstd[r]) - inv) <= 1e-5 * inv, "rstd row \(r) (\(rows)x\(cols))")
                    let xhat = xr[r].map { ($0 - mu) * inv }
                    yRef.append(xhat)
                    let mg = gr[r].reduce(0, +) / Double(cols)
                    let mgx = zip(gr[r], xhat).reduce(0.0) { $0 + $1.0 * $1.1 } / Double(cols)
                    dxRef.append((0..<cols).map { inv * (gr[r][$0] - mg - xhat[$0] * mgx) })
                }
                #expect(maxAbsDiff(y, yRef) <= 1e-5, "layerNormRows \(rows)x\(cols)")

                let dx = runBinary(x, g) { px, pg, out, _ in
                    Kernels.layerNormRowsBackward(x: px, mean: mean, rstd: rstd, gradOutput: pg, gradInput: out,
                                                  rows: rows, cols: cols) }
                let dxFromXhat = runBinary(y, g) { py, pg, out, _ in
                    Kernels.layerNormRowsBackward(xhat: py, rstd: rstd, gradOutput: pg, gradInput: out, rows: rows, cols: cols) }
                let scale = rstd.map { Double($0) }.max()!
                #expect(maxAbsDiff(dx, dxRef) <= 2e-5 * scale, "layerNormRowsBackward(x:) \(rows)x\(cols)")
                #expect(maxAbsDiff(dxFromXhat, dxRef) <= 2e-5 * scale, "layerNormRowsBackward(xhat:) \(rows)x\(cols)")
            }
        }
    }

    @Test func largeMatricesTakeTheParallelPathWithSameResults() {
        // 96 x 1000 > 2^16 elements: rows are split over threads; each row must equal a
        // single-row (always serial) call bit for bit.
        let rows = 96, cols = 1000
        let x = makeInputs(rows * cols, -8, 8, seed: 11)
        let whole = withBuffer(x) { p in Kernels.softmaxRows(p, p, rows: rows, cols: cols); return array(p, rows * cols) }
        let byRow = withBuffer(x) { p in
            for r in 0..<rows { Kernels.softmaxRows(p + r * cols, p + r * cols, rows: 1, cols: cols) }
            return array(p, rows * cols)
        }
        #expect(sameBits(whole, byRow))
        var mean = [Float](repeating: 0, count: rows), rstd = mean
        let ln = withBuffer(x) { p in
            Kernels.layerNormRows(x: p, y: p, mean: &mean, rstd: &rstd, rows: rows, cols: cols, eps: 1e-5)
            return array(p, rows * cols)
        }
        let lnByRow = withBuffer(x) { p in
            var m = Float(0), s = Float(0)
            for r in 0..<rows { Kernels.layerNormRows(x: p + r * cols, y: p + r * cols, mean: &m, rstd: &s, rows: 1, cols: cols, eps: 1e-5) }
            return array(p, rows * cols)
        }
        #expect(sameBits(ln, lnByRow))
    }
}
