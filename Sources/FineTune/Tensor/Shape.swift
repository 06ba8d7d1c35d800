/// A shape problem: which operation, and the shapes it was given (internal: ops stop with its
/// description, e.g. `matmul: cannot multiply [2, 3] by [4, 5]: inner dimensions 3 and 4 differ`).
struct ShapeError: Error, CustomStringConvertible, Equatable, Sendable {
    let op: String
    let shapes: [[Int]]
    let reason: String

    init(op: String, shapes: [[Int]], reason: String) {
        self.op = op; self.shapes = shapes; self.reason = reason
    }

    var description: String {
        "\(op): \(reason) (shapes: \(shapes.map { "\($0)" }.joined(separator: " and ")))"
    }
}

@usableFromInline
enum Shape {
    /// Row-major strides of a contiguous tensor of this shape.
    @usableFromInline
    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[axis] = running
            running *= max(shape[axis], 1)
        }
        return strides
    }

    @usableFromInline
    static func count(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    /// NumPy broadcasting of two shapes.
    static func broadcast(_ a: [Int], _ b: [Int], op: String) throws(ShapeError) -> [Int] {
        let rank = max(a.count, b.count)
        var result = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            if da == db || db == 1 { result[i] = da } else if da == 1 { result[i] = db } else {
                throw ShapeError(op: op, shapes: [a, b],
                                 reason: "cannot broadcast: dimension \(i) is \(da) in one and \(db) in the other")
            }
        }
        return result
    }

    /// Normalises a possibly negative axis against `rank`.
    static func axis(_ axis: Int, rank: Int, op: String, shape: [Int]) -> Int {
        let a = axis < 0 ? axis + rank : axis
        check(a >= 0 && a < max(rank, 1), op: op, shapes: [shape], "axis \(axis) is out of range for rank \(rank)")
        return a
    }

    /// Stops with a ``ShapeError`` naming the op and shapes when `condition` is false.
    @inline(__always)
    static func check(_ condition: Bool, op: @autoclosure () -> String, shapes: @autoclosure () -> [[Int]],
                      _ reason: @autoclosure () -> String) {
        if !condition { fail(ShapeError(op: op(), shapes: shapes(), reason: reason())) }
    }

    static func fail(_ error: ShapeError) -> Never {
        preconditionFailure(error.description)
    }

    static func broadcastOrFail(_ a: [Int], _ b: [Int], op: String) -> [Int] {
        do { return try broadcast(a, b, op: op) } catch { fail(error) }
    }
}
