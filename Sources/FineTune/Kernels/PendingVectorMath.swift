// TEMPORARY scalar stand-ins until VectorMath.swift lands (same names and signatures).
import Foundation
extension Kernels {
    static func vExp(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { for i in 0..<count { y[i] = Foundation.exp(x[i]) } }
    static func vLog(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { for i in 0..<count { y[i] = Foundation.log(x[i]) } }
    static func vTanh(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { for i in 0..<count { y[i] = Foundation.tanh(x[i]) } }
    static func vSigmoid(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { for i in 0..<count { y[i] = 1 / (1 + Foundation.exp(-x[i])) } }
    static func relu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { for i in 0..<count { y[i] = Swift.max(x[i], 0) } }
    static func reluGrad(x: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>, count: Int) { for i in 0..<count { gradInput[i] = x[i] > 0 ? gradOutput[i] : 0 } }
    static func vGELU(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, approximate: Bool) {
        for i in 0..<count { let v = x[i]; y[i] = approximate ? 0.5 * v * (1 + Foundation.tanh(0.7978845608 * (v + 0.044715 * v * v * v))) : 0.5 * v * (1 + Foundation.erf(v / 2.0.squareRoot().f)) }
    }
    static func vGELUGrad(x: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>, count: Int, approximate: Bool) {
        for i in 0..<count {
            let v = x[i]
            if approximate {
                let u = 0.7978845608 * (v + 0.044715 * v * v * v), t = Foundation.tanh(u)
                gradInput[i] = gradOutput[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * 0.7978845608 * (1 + 3 * 0.044715 * v * v))
            } else {
                gradInput[i] = gradOutput[i] * (0.5 * (1 + Foundation.erf(v / 2.0.squareRoot().f)) + v * Foundation.exp(-0.5 * v * v) / (2 * Float.pi).squareRoot())
            }
        }
    }
    static func sum(_ x: UnsafePointer<Float>, count: Int) -> Float { var s: Float = 0; for i in 0..<count { s += x[i] }; return s }
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) -> Float { var s: Float = 0; for i in 0..<count { s += x[i] * y[i] }; return s }
    static func axpy(alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, count: Int) { for i in 0..<count { y[i] += alpha * x[i] } }
    static func softmaxRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows { let a = x + r * cols, b = y + r * cols; var m = -Float.infinity; for j in 0..<cols { m = Swift.max(m, a[j]) }
            var s: Float = 0; for j in 0..<cols { b[j] = Foundation.exp(a[j] - m); s += b[j] }; for j in 0..<cols { b[j] /= s } }
    }
    static func logSoftmaxRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows { let a = x + r * cols, b = y + r * cols; var m = -Float.infinity; for j in 0..<cols { m = Swift.max(m, a[j]) }
            var s: Float = 0; for j in 0..<cols { s += Foundation.exp(a[j] - m) }; let l = m + Foundation.log(s); for j in 0..<cols { b[j] = a[j] - l } }
    }
    static func softmaxRowsBackward(y: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows { let o = r * cols; var s: Float = 0; for j in 0..<cols { s += gradOutput[o + j] * y[o + j] }
            for j in 0..<cols { gradInput[o + j] = y[o + j] * (gradOutput[o + j] - s) } }
    }
    static func logSoftmaxRowsBackward(y: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows { let o = r * cols; var s: Float = 0; for j in 0..<cols { s += gradOutput[o + j] }
            for j in 0..<cols { gradInput[o + j] = gradOutput[o + j] - Foundation.exp(y[o + j]) * s } }
    }
    static func layerNormRows(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, rows: Int, cols: Int, eps: Float) {
        for r in 0..<rows { let o = r * cols; var s: Float = 0; for j in 0..<cols { s += x[o + j] }; let m = s / Float(cols)
            var v: Float = 0; for j in 0..<cols { v += (x[o + j] - m) * (x[o + j] - m) }; let rs = 1 / (v / Float(cols) + eps).squareRoot()
            mean[r] = m; rstd[r] = rs; for j in 0..<cols { y[o + j] = (x[o + j] - m) * rs } }
    }
    static func layerNormRowsBackward(xhat: UnsafePointer<Float>, rstd: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows { let o = r * cols; var sg: Float = 0, sgy: Float = 0; for j in 0..<cols { sg += gradOutput[o + j]; sgy += gradOutput[o + j] * xhat[o + j] }
            let mg = sg / Float(cols), mgy = sgy / Float(cols); for j in 0..<cols { gradInput[o + j] = rstd[r] * (gradOutput[o + j] - mg - xhat[o + j] * mgy) } }
    }
}
private extension Double { var f: Float { Float(self) } }
