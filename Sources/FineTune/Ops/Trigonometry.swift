import Foundation

extension Tensor {
    /// Sine, element-wise (rotary position embeddings build their tables from it).
    ///
    /// ```swift
    /// let angles = positions.unsqueezed(axis: 1) * frequencies   // [T, D/2]
    /// let (sin, cos) = (angles.sin(), angles.cos())
    /// ```
    public func sin() -> Tensor {
        pointwise("sin", { Foundation.sin($0) }, derivative: { x, _ in Foundation.cos(x) })
    }

    /// Cosine, element-wise.
    public func cos() -> Tensor {
        pointwise("cos", { Foundation.cos($0) }, derivative: { x, _ in -Foundation.sin(x) })
    }
}
