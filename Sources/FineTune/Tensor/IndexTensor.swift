/// An N-dimensional array of integer indices: what `argmax`, `topk` and `sort`-like ops return
/// and what `gather`, `scatterAdd` and `indexSelect` take (PyTorch's `LongTensor` of indices).
///
/// Tensors hold Float32 only, so indices travel as this small value type instead of a float
/// tensor that could hold non-integers.
///
/// ```swift
/// let best = logits.argmax(axis: -1)                     // IndexTensor of shape [N]
/// let picked = logits.gather(axis: 1, indices: best.unsqueezed(axis: 1))
/// let ids = IndexTensor(shape: [2, 2], values: [0, 3, 1, 1])
/// ```
public struct IndexTensor: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The size of each dimension, outermost first.
    public let shape: [Int]
    /// The indices in row-major order.
    public let values: [Int]

    /// Indices of `shape` in row-major order.
    public init(shape: [Int], values: [Int]) {
        Shape.check(shape.allSatisfy { $0 >= 0 }, op: "IndexTensor", shapes: [shape], "negative dimension")
        Shape.check(Shape.count(shape) == values.count, op: "IndexTensor", shapes: [shape, [values.count]],
                    "shape holds \(Shape.count(shape)) elements but \(values.count) indices were given")
        self.shape = shape
        self.values = values
    }

    /// A 1-D array of indices.
    public init(_ values: [Int]) { self.init(shape: [values.count], values: values) }

    /// The integer values of a tensor holding integer-valued floats (e.g. token ids loaded from a file).
    public init(_ tensor: Tensor) {
        let scalars = tensor.scalars
        for v in scalars {
            Shape.check(v.isFinite && v.rounded() == v, op: "IndexTensor", shapes: [tensor.shape], "\(v) is not an integer")
        }
        self.init(shape: tensor.shape, values: scalars.map { Int($0) })
    }

    /// Number of dimensions.
    public var rank: Int { shape.count }
    /// Number of indices.
    public var count: Int { values.count }

    /// The same indices with a new shape (one dimension may be -1).
    public func reshaped(_ newShape: [Int]) -> IndexTensor {
        var target = newShape
        if let unknown = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != unknown }.reduce(1) { $0 * $1.element }
            Shape.check(known > 0 && count % known == 0, op: "IndexTensor.reshaped", shapes: [shape, newShape],
                        "cannot infer the -1 dimension")
            target[unknown] = count / known
        }
        return IndexTensor(shape: target, values: values)
    }

    /// Inserts a size-1 dimension at `axis` (negative counts from the end, as in PyTorch's `unsqueeze`).
    public func unsqueezed(axis: Int) -> IndexTensor {
        let a = axis < 0 ? axis + rank + 1 : axis
        Shape.check(a >= 0 && a <= rank, op: "IndexTensor.unsqueezed", shapes: [shape], "axis \(axis) out of range")
        var s = shape
        s.insert(1, at: a)
        return IndexTensor(shape: s, values: values)
    }

    /// The indices as an integer-valued float tensor.
    public var tensor: Tensor { Tensor(shape: shape, scalars: values.map(Float.init)) }

    public var description: String {
        let shown = values.prefix(8).map(String.init).joined(separator: ", ")
        return "IndexTensor(shape: \(shape), [\(shown)\(values.count > 8 ? ", ... (\(values.count) elements)" : "")])"
    }
}
