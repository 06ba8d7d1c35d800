extension Optional where Wrapped == Tensor {
    /// Calls `body` with the tensor's data pointer, or nil (for kernels with optional operands).
    func withOptionalPointer<R>(_ body: (UnsafeMutablePointer<Float>?) -> R) -> R {
        guard let tensor = self else { return body(nil) }
        return tensor.withDataPointer { body($0) }
    }
}
