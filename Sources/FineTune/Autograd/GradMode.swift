/// Whether operations record an autograd graph in the current task (on by default).
public enum GradMode {
    @TaskLocal public static var isEnabled: Bool = true
}

/// Runs `body` without recording any autograd graph: for inference, evaluation and optimizer updates.
///
/// ```swift
/// let logits = withoutGradients { model(x) }
/// ```
public func withoutGradients<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.$isEnabled.withValue(false, operation: body)
}
