/// One vertex of the dynamic autograd graph.
///
/// A leaf (a tensor the user marked `requiresGrad`, e.g. a trainable parameter) accumulates
/// its gradient in `grad`. An interior node holds the inputs' nodes and the op's backward
/// rule, which maps the output gradient to one gradient per input (nil where not needed).
@usableFromInline
final class GradNode {
    /// Signature of a backward rule: output gradient and which inputs need a gradient.
    typealias Backward = (_ gradOutput: Tensor, _ needsGrad: [Bool]) -> [Tensor?]

    let op: String
    let isLeaf: Bool
    /// Inputs and rule; released after a backward pass (unless the graph is retained), which
    /// frees the tensors the rule saved.
    private(set) var inputs: [GradNode?]
    let inputShapes: [[Int]]
    private(set) var backward: Backward?
    /// Accumulated gradient of a leaf.
    var grad: Tensor?

    /// A leaf node.
    init() {
        op = "leaf"; isLeaf = true; inputs = []; inputShapes = []; backward = nil
    }

    init(op: String, inputs: [GradNode?], inputShapes: [[Int]], backward: @escaping Backward) {
        self.op = op; isLeaf = false; self.inputs = inputs; self.inputShapes = inputShapes; self.backward = backward
    }

    /// Whether a backward pass already released this interior node.
    var isReleased: Bool { !isLeaf && backward == nil }

    func release() {
        guard !isLeaf else { return }
        backward = nil
        inputs = []
    }

    /// Frees the graph behind this node iteratively. Released recursively (each node's inputs
    /// freed from inside its own deinit), a chain of a million ops dropped without a backward
    /// pass would overflow the stack.
    deinit {
        guard !inputs.isEmpty else { return }
        var orphans = inputs.compactMap { $0 }
        inputs = []
        while var node = orphans.popLast() {
            // Only the last owner takes the inputs; the node then dies here with none left.
            guard isKnownUniquelyReferenced(&node) else { continue }
            orphans.append(contentsOf: node.inputs.compactMap { $0 })
            node.inputs = []
        }
    }
}

extension Tensor {
    /// Whether a gradient flows to this tensor. Setting it to `true` makes the tensor a leaf
    /// whose `grad` `backward()` fills; setting `false` detaches it from the graph.
    public var requiresGrad: Bool {
        get { node != nil }
        set {
            if newValue {
                if node == nil { node = GradNode() }
            } else {
                node = nil
            }
        }
    }

    /// Whether this tensor is a leaf of the graph (created by the user, not by an op).
    public var isLeaf: Bool { node?.isLeaf ?? true }

    /// The gradient accumulated by `backward()` (leaves only). Set it to nil to clear it.
    public var grad: Tensor? {
        get { node?.grad }
        nonmutating set { node?.grad = newValue }
    }

    /// Replaces this tensor's node by a write op after element `index` (row-major) was
    /// overwritten with a constant: the gradient flows on to the old node except at `index`.
    mutating func recordOverwrite(ofElementAt index: Int) {
        let before = Tensor(storage: storage, shape: shape, strides: strides, offset: offset, node: node)
        self = Tensor.record(detached(), op: "setElement", inputs: [before]) { g, _ in
            let dx = g.contiguousCopy()
            dx.withDataPointer { $0[index] = 0 }
            return [dx]
        }
    }

    /// Whether ``record(_:op:inputs:backward:)`` will keep a backward rule for these inputs, so an
    /// op can skip forward work that only its backward needs (max pooling's winner indices).
    static func willRecord(inputs: [Tensor]) -> Bool {
        GradMode.isEnabled && inputs.contains { $0.node != nil }
    }

    /// Wraps an op's result in a graph node when grad mode is on and any input requires a gradient.
    ///
    /// Otherwise the result records nothing, so the backward rule is never stored or run: this is
    /// what makes frozen branches free.
    static func record(_ result: Tensor, op: String, inputs: [Tensor],
                       backward: @escaping GradNode.Backward) -> Tensor {
        guard willRecord(inputs: inputs) else { return result }
        var out = result
        out.node = GradNode(op: op, inputs: inputs.map(\.node), inputShapes: inputs.map(\.shape), backward: backward)
        return out
    }
}
