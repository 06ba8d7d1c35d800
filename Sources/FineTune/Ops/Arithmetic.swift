// Elementwise arithmetic with NumPy broadcasting. Gradients are returned at the broadcast
// shape; the backward engine reduces them to each input's shape.

extension Tensor {
    /// `self + other`, broadcasting.
    public func adding(_ other: Tensor) -> Tensor {
        let out = Broadcasting.binary(self, other, op: "add", AddOp())
        return Tensor.record(out, op: "add", inputs: [self, other]) { g, _ in [g, g] }
    }

    /// `self - other`, broadcasting.
    public func subtracting(_ other: Tensor) -> Tensor {
        let out = Broadcasting.binary(self, other, op: "sub", SubtractOp())
        return Tensor.record(out, op: "sub", inputs: [self, other]) { g, needs in
            [g, needs[1] ? g.negated() : nil]
        }
    }

    /// `self * other` elementwise, broadcasting.
    public func multiplying(_ other: Tensor) -> Tensor {
        let out = Broadcasting.binary(self, other, op: "mul", MultiplyOp())
        let a = detached(), b = other.detached()
        return Tensor.record(out, op: "mul", inputs: [self, other]) { g, needs in
            [needs[0] ? g.multiplying(b) : nil, needs[1] ? g.multiplying(a) : nil]
        }
    }

    /// `self / other` elementwise, broadcasting.
    public func dividing(_ other: Tensor) -> Tensor {
        let out = Broadcasting.binary(self, other, op: "div", DivideOp())
        let a = detached(), b = other.detached()
        return Tensor.record(out, op: "div", inputs: [self, other]) { g, needs in
            [needs[0] ? g.dividing(b) : nil,
             needs[1] ? Broadcasting.binary(g.multiplying(a), b, op: "div") { ga, y in -ga / (y * y) } : nil]
        }
    }

    /// `-self`.
    public func negated() -> Tensor {
        let out = Broadcasting.unary(self) { -$0 }
        return Tensor.record(out, op: "neg", inputs: [self]) { g, _ in [g.negated()] }
    }

    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.adding(rhs) }
    public static func - (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.subtracting(rhs) }
    public static func * (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.multiplying(rhs) }
    public static func / (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.dividing(rhs) }
    public static prefix func - (x: Tensor) -> Tensor { x.negated() }

    public static func + (lhs: Tensor, rhs: Float) -> Tensor { lhs.adding(Tensor(rhs)) }
    public static func - (lhs: Tensor, rhs: Float) -> Tensor { lhs.subtracting(Tensor(rhs)) }
    public static func * (lhs: Tensor, rhs: Float) -> Tensor { lhs.multiplying(Tensor(rhs)) }
    public static func / (lhs: Tensor, rhs: Float) -> Tensor { lhs.dividing(Tensor(rhs)) }
    public static func + (lhs: Float, rhs: Tensor) -> Tensor { Tensor(lhs).adding(rhs) }
    public static func - (lhs: Float, rhs: Tensor) -> Tensor { Tensor(lhs).subtracting(rhs) }
    public static func * (lhs: Float, rhs: Tensor) -> Tensor { Tensor(lhs).multiplying(rhs) }
    public static func / (lhs: Float, rhs: Tensor) -> Tensor { Tensor(lhs).dividing(rhs) }
}
