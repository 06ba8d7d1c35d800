extension Tensor {
    /// Back-propagates from this tensor, accumulating into the `grad` of every leaf that requires it.
    ///
    /// With no argument the tensor must hold one element (a loss): its seed gradient is 1.
    /// Gradients accumulate across calls until cleared (`grad = nil`, or an optimizer's `zeroGrad`).
    /// Returns the number of backward rules that ran (nodes whose inputs need no gradient run none).
    ///
    /// Like PyTorch, the pass frees the graph's saved tensors; pass `retainGraph: true` to call
    /// `backward` again on the same graph, or on a new graph that reuses part of it. Going back
    /// through a part that an earlier pass freed stops with a precondition failure (PyTorch's
    /// "Trying to backward through the graph a second time") instead of skipping it silently.
    ///
    /// ```swift
    /// let h = x * 2
    /// h.sum().backward(retainGraph: true)   // keeps h's node
    /// (h * 3).sum().backward()              // x.grad == 2 + 6
    /// ```
    @discardableResult
    public func backward(_ gradient: Tensor? = nil, retainGraph: Bool = false) -> Int {
        guard let root = node else {
            preconditionFailure("backward: this tensor does not require grad (no input of its graph requires a gradient)")
        }
        let seed: Tensor
        if let gradient {
            Shape.check(gradient.shape == shape, op: "backward", shapes: [shape, gradient.shape],
                        "the seed gradient must have the tensor's shape")
            seed = gradient.detached()
        } else {
            Shape.check(count == 1, op: "backward", shapes: [shape],
                        "backward() without a gradient needs a one-element tensor (a loss)")
            seed = Tensor.full(shape, 1)
        }
        if root.isReleased { BackwardEngine.failFreed(root) }
        return withoutGradients { BackwardEngine.run(root: root, seed: seed, retainGraph: retainGraph) }
    }
}

/// Topological sort, then one reverse sweep; broadcast gradients are reduced here, in one place.
enum BackwardEngine {
    static func run(root: GradNode, seed: Tensor, retainGraph: Bool) -> Int {
        let order = topologicalOrder(from: root)
        var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed]
        var rulesRun = 0
        defer { if !retainGraph { order.forEach { $0.release() } } }
        for node in order.reversed() {
            guard let gradOutput = pending.removeValue(forKey: ObjectIdentifier(node)) else { continue }
            if node.isLeaf {
                node.grad = node.grad.map { accumulate($0, gradOutput) } ?? gradOutput.contiguousData()
                continue
            }
            guard let rule = node.backward else { failFreed(node) }
            let needs = node.inputs.map { $0 != nil }
            rulesRun += 1
            var inputGrads = rule(gradOutput, needs)
            #if DEBUG
            if case .scaledRule(let op)? = GradientMutation.active, op == node.op {
                inputGrads = inputGrads.map { $0.map { Broadcasting.binary($0, Tensor(GradientMutation.ruleScale), op: "mul", MultiplyOp()) } }
            }
            #endif
            for (i, input) in node.inputs.enumerated() {
                guard let input, i < inputGrads.count, let g = inputGrads[i] else { continue }
                let reduced = g.summed(toShape: node.inputShapes[i])
                let key = ObjectIdentifier(input)
                pending[key] = pending[key].map { accumulate($0, reduced) } ?? reduced
            }
        }
        return rulesRun
    }

    /// `a + b` for two gradients of one shape (the engine runs without recording).
    static func accumulate(_ a: Tensor, _ b: Tensor) -> Tensor {
        Broadcasting.binary(a, b, op: "add", AddOp())
    }

    /// Stops at a node whose rule an earlier pass without `retainGraph` freed: its gradient would
    /// otherwise be dropped without a word.
    static func failFreed(_ node: GradNode) -> Never {
        preconditionFailure("""
            backward: trying to backward through the graph a second time: the '\(node.op)' node's saved \
            tensors were freed by an earlier backward(). Pass retainGraph: true to the earlier backward() \
            call if you need to backward through this part of the graph again
            """)
    }

    /// Nodes in an order where every node comes after all of its inputs (iterative DFS).
    static func topologicalOrder(from root: GradNode) -> [GradNode] {
        var order: [GradNode] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(GradNode, Int)] = [(root, 0)]
        visited.insert(ObjectIdentifier(root))
        while let (node, next) = stack.popLast() {
            if next < node.inputs.count {
                stack.append((node, next + 1))
                if let child = node.inputs[next], visited.insert(ObjectIdentifier(child)).inserted {
                    stack.append((child, 0))
                }
            } else {
                order.append(node)
            }
        }
        return order
    }
}
