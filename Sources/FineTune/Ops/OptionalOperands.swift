extension Optional where Wrapped == Tensor {
    /// Calls `body` with the tensor's data pointer, or nil (for kernels with optional operands).
    func withOptionalPointer<R>(_ body: (UnsafeMutablePointer<Float>?) -> R) -> R {
        guard let tensor = self else { return body(nil) }
        return tensor.withDataPointer { body($0) }
    }
}

/// The inputs of an op on `x` with an optional `weight` and `bias` (normalisations): the
/// recorded inputs in that order, and the gradient buffers of those that need one.
struct AffineOperands {
    /// `[x, weight?, bias?]`, the nil ones left out.
    let inputs: [Tensor]
    let weightSlot: Int?, biasSlot: Int?

    init(_ x: Tensor, weight: Tensor?, bias: Tensor?) {
        var inputs = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        self.inputs = inputs
        weightSlot = weight == nil ? nil : 1
        biasSlot = bias == nil ? nil : inputs.count - 1
    }

    /// Uninitialised gradients for the inputs that `needs` (a backward rule's argument) asks for.
    func gradientBuffers(_ needs: [Bool]) -> (x: Tensor?, weight: Tensor?, bias: Tensor?) {
        func buffer(_ slot: Int?) -> Tensor? { slot.map { needs[$0] } == true ? Tensor(uninitialized: inputs[slot!].shape) : nil }
        return (buffer(0), buffer(weightSlot), buffer(biasSlot))
    }

    /// The gradients in the order of ``inputs``.
    func gradients(_ buffers: (x: Tensor?, weight: Tensor?, bias: Tensor?)) -> [Tensor?] {
        var grads: [Tensor?] = [buffers.x]
        if weightSlot != nil { grads.append(buffers.weight) }
        if biasSlot != nil { grads.append(buffers.bias) }
        return grads
    }
}
