/// An N-dimensional Float32 array with value semantics and reverse-mode autograd.
///
/// Storage is shared copy-on-write: `reshape`, `transposed`, `permuted` and slicing return
/// views when they can; writing through one copy never changes another.
///
/// ```swift
/// var w = Tensor.randomNormal([3, 2], generator: &rng)
/// w.requiresGrad = true
/// let loss = (x.matmul(w)).relu().sum()
/// loss.backward()
/// print(w.grad!)        // d loss / d w
/// ```
public struct Tensor {
    @usableFromInline var storage: TensorStorage
    /// The size of each dimension, outermost first.
    public internal(set) var shape: [Int]
    /// Elements to skip per step along each dimension (views may have non-row-major strides).
    public internal(set) var strides: [Int]
    @usableFromInline var offset: Int
    /// Non-nil when this tensor takes part in autograd (it requires a gradient).
    @usableFromInline var node: GradNode?

    @usableFromInline
    init(storage: TensorStorage, shape: [Int], strides: [Int], offset: Int, node: GradNode? = nil) {
        self.storage = storage; self.shape = shape; self.strides = strides; self.offset = offset; self.node = node
    }

    /// A new contiguous tensor of `shape`, zero-filled, that records no graph.
    @usableFromInline
    init(zeros shape: [Int]) {
        self.init(storage: TensorStorage(count: Shape.count(shape)), shape: shape,
                  strides: Shape.contiguousStrides(shape), offset: 0)
    }

    /// A new contiguous tensor of `shape` whose elements the caller overwrites completely
    /// before reading them (kernel outputs): skips the zero fill.
    @usableFromInline
    init(uninitialized shape: [Int]) {
        self.init(storage: TensorStorage(count: Shape.count(shape), zeroed: false), shape: shape,
                  strides: Shape.contiguousStrides(shape), offset: 0)
    }

    /// A tensor of `shape` holding `scalars` in row-major order.
    ///
    /// ```swift
    /// let t = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
    /// ```
    public init(shape: [Int], scalars: [Float]) {
        Shape.check(shape.allSatisfy { $0 >= 0 }, op: "Tensor(shape:scalars:)", shapes: [shape], "negative dimension")
        Shape.check(Shape.count(shape) == scalars.count, op: "Tensor(shape:scalars:)", shapes: [shape, [scalars.count]],
                    "shape holds \(Shape.count(shape)) elements but \(scalars.count) scalars were given")
        self.init(zeros: shape)
        scalars.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: scalars.count) }
    }

    /// A 1-D tensor holding `scalars`.
    public init(_ scalars: [Float]) { self.init(shape: [scalars.count], scalars: scalars) }

    /// A 0-D (scalar) tensor.
    public init(_ scalar: Float) { self.init(shape: [], scalars: [scalar]) }

    /// Number of dimensions.
    @inlinable public var rank: Int { shape.count }
    /// Number of elements.
    @inlinable public var count: Int { Shape.count(shape) }

    /// Whether the elements are laid out row-major without gaps (size-1 dimensions may have any stride).
    public var isContiguous: Bool {
        var expected = 1
        for axis in stride(from: rank - 1, through: 0, by: -1) where shape[axis] != 1 {
            if strides[axis] != expected { return false }
            expected *= shape[axis]
        }
        return true
    }

    /// The elements in row-major order.
    public var scalars: [Float] {
        let c = contiguousData()
        return c.withDataPointer { Array(UnsafeBufferPointer(start: $0, count: c.count)) }
    }

    /// The single element of a one-element tensor.
    public func item() -> Float {
        Shape.check(count == 1, op: "item", shapes: [shape], "item() needs exactly one element")
        return withExtendedLifetime(storage) { storage.pointer[offset] }
    }

    /// Element at a full index (negative indices count from the end).
    ///
    /// Writing into a tensor that an op produced while gradients are recorded records the write
    /// as an op: the overwritten element passes no gradient back (`var y = x * 2; y[0] = 5`
    /// gives `x.grad == [0, 2]` for `y.sum()`). Writing into a leaf that requires a gradient is
    /// refused, as in PyTorch: write under ``withoutGradients(_:)`` or into a detached copy.
    public subscript(indices: Int...) -> Float {
        get { withExtendedLifetime(storage) { storage.pointer[elementOffset(indices)] } }
        set {
            let recordsWrite = node != nil && GradMode.isEnabled
            if recordsWrite, node?.isLeaf == true {
                preconditionFailure("""
                    subscript: cannot write in place into a leaf that requires grad (shape \(shape)); \
                    write under withoutGradients { } or into a detached copy
                    """)
            }
            makeUniqueContiguous()
            let o = elementOffset(indices)
            storage.pointer[o] = newValue
            // Contiguous from offset 0 now, so `o` is also the row-major index of the element.
            if recordsWrite { recordOverwrite(ofElementAt: o) }
        }
    }

    func elementOffset(_ indices: [Int]) -> Int {
        Shape.check(indices.count == rank, op: "subscript", shapes: [shape], "expected \(rank) indices, got \(indices.count)")
        var o = offset
        for (axis, i) in indices.enumerated() {
            let j = i < 0 ? i + shape[axis] : i
            Shape.check(j >= 0 && j < shape[axis], op: "subscript", shapes: [shape], "index \(i) out of range on axis \(axis)")
            o += j * strides[axis]
        }
        return o
    }

    // MARK: Raw access

    /// Calls `body` with the elements in row-major order (a contiguous copy is made for strided views).
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        let c = contiguousData()
        return try c.withDataPointer { try body(UnsafeBufferPointer(start: $0, count: c.count)) }
    }

    /// Calls `body` with writable elements in row-major order. The storage is made unique and
    /// contiguous first, so other copies and views are unaffected. Autograd does not see the write.
    public mutating func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        makeUniqueContiguous()
        return try withExtendedLifetime(storage) {
            try body(UnsafeMutableBufferPointer(start: storage.pointer + offset, count: count))
        }
    }

    /// Pointer to the first element; the caller must know the layout (internal kernels only).
    @inlinable
    func withDataPointer<R>(_ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) { try body(storage.pointer + offset) }
    }

    /// Ensures this tensor alone owns a contiguous buffer of exactly its elements.
    @usableFromInline
    mutating func makeUniqueContiguous() {
        if isKnownUniquelyReferenced(&storage) && isContiguous && offset == 0 && storage.count == count { return }
        let copy = contiguousCopy()
        storage = copy.storage; strides = copy.strides; offset = 0
    }

    /// This tensor without autograd history, sharing storage (`detach()` in PyTorch).
    public func detached() -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset)
    }

    /// Contiguous data (self when already contiguous), never part of the graph.
    @usableFromInline
    func contiguousData() -> Tensor {
        isContiguous ? detached() : contiguousCopy()
    }

    /// A fresh contiguous copy of the elements (no graph).
    func contiguousCopy() -> Tensor {
        let out = Tensor(uninitialized: shape)
        withDataPointer { src in
            out.withDataPointer { dst in
                StridedCopy.copy(from: src, shape: shape, strides: strides, to: dst)
            }
        }
        return out
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let values = scalars
        let shown = values.prefix(8).map { String($0) }.joined(separator: ", ")
        let more = values.count > 8 ? ", ... (\(values.count) elements)" : ""
        let grad = requiresGrad ? ", requiresGrad" : ""
        return "Tensor(shape: \(shape), [\(shown)\(more)]\(grad))"
    }
}

extension Tensor {
    /// Reshape without recording a graph (internal). A view when this tensor is contiguous or
    /// when only size-1 axes are inserted or removed (squeeze, unsqueeze, select of a strided
    /// view); otherwise a contiguous copy.
    func reshapedView(_ newShape: [Int]) -> Tensor {
        if !isContiguous, let unitStrides = stridesAfterUnitAxisChange(to: newShape) {
            return Tensor(storage: storage, shape: newShape, strides: unitStrides, offset: offset)
        }
        let source = isContiguous ? detached() : contiguousCopy()
        return Tensor(storage: source.storage, shape: newShape, strides: Shape.contiguousStrides(newShape), offset: source.offset)
    }

    /// Strides for `newShape` when it differs from this shape only by size-1 axes (which step
    /// nowhere, so any stride serves: 1); nil otherwise.
    private func stridesAfterUnitAxisChange(to newShape: [Int]) -> [Int]? {
        let kept = shape.indices.filter { shape[$0] != 1 }
        guard kept.map({ shape[$0] }) == newShape.filter({ $0 != 1 }) else { return nil }
        var next = kept.makeIterator()
        return newShape.map { $0 == 1 ? 1 : strides[next.next()!] }
    }
}
