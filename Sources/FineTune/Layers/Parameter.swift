/// A trainable tensor of a module, with its fine-tuning controls.
///
/// Each parameter carries its own frozen flag, learning-rate multiplier and weight-decay
/// multiplier (Caffe's `lr_mult` / `decay_mult`). Optimizers read them live at every step.
/// A frozen parameter does not require a gradient, so backward never computes one for it.
///
/// ```swift
/// model.parameter(named: "head.weight")?.lrMultiplier = 10
/// ```
public final class Parameter {
    /// What a parameter is, so optimizers can treat biases and norm scales differently.
    public enum Role: String, Sendable {
        case weight, bias, normalization, embedding, other
    }

    /// The current value. It is a leaf of the autograd graph while the parameter is trainable.
    public var value: Tensor {
        didSet { syncRequiresGrad() }
    }

    /// A frozen parameter receives no gradient and is never changed by an optimizer.
    public var isFrozen: Bool {
        didSet { syncRequiresGrad() }
    }

    /// Scales the optimizer's learning rate for this parameter (1 by default).
    public var lrMultiplier: Float = 1

    /// Scales the optimizer's weight decay for this parameter (1 by default; optimizers also
    /// skip biases and normalisation parameters unless told otherwise).
    public var weightDecayMultiplier: Float = 1

    /// The parameter's role (weight, bias, normalisation, ...).
    public let role: Role

    /// The name under which the parameter appears in state dicts, when it differs from the
    /// Swift property name (e.g. `"lora_A"`).
    public let key: String?

    /// Creates a trainable parameter.
    public init(_ value: Tensor, role: Role = .weight, key: String? = nil, isFrozen: Bool = false) {
        self.value = value.detached()
        self.role = role
        self.key = key
        self.isFrozen = isFrozen
        syncRequiresGrad()
    }

    /// The gradient accumulated since the last `zeroGrad`.
    public var grad: Tensor? {
        get { value.grad }
        set { value.grad = newValue }
    }

    /// Number of scalars.
    public var count: Int { value.count }

    /// The shape of the value.
    public var shape: [Int] { value.shape }

    /// Keeps the value a graph leaf that requires a gradient exactly when the parameter is trainable.
    private func syncRequiresGrad() {
        if isFrozen {
            if value.requiresGrad { value.requiresGrad = false }
        } else if !value.requiresGrad || !value.isLeaf {
            var leaf = value.detached()
            leaf.requiresGrad = true
            value = leaf
        }
    }
}

/// A non-trainable tensor a module keeps in its state (e.g. BatchNorm running statistics).
///
/// Buffers are saved in checkpoints (``Module/stateDict()``) unless created with
/// `persistent: false`, as in PyTorch's `register_buffer`.
public final class Buffer {
    /// The current value.
    public var value: Tensor
    /// The state-dict name when it differs from the property name.
    public let key: String?
    /// Whether the buffer is part of the state dict.
    public let isPersistent: Bool
    /// The element type checkpoints store it as (PyTorch keeps counters such as
    /// BatchNorm's `num_batches_tracked` as int64).
    public let checkpointDType: DType

    public init(_ value: Tensor, key: String? = nil, persistent: Bool = true, checkpointDType: DType = .f32) {
        precondition(DType.writable.contains(checkpointDType), "Buffer: \(checkpointDType) cannot be written")
        self.value = value.detached()
        self.key = key
        self.isPersistent = persistent
        self.checkpointDType = checkpointDType
    }
}
