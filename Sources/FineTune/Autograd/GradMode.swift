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

/// The async form of ``withoutGradients(_:)``: `body` may suspend, and the setting holds across
/// its suspension points and in its child tasks (it is task-local), not in other tasks.
///
/// ```swift
/// let logits = await withoutGradients { await model.embed(batch) }
/// ```
public func withoutGradients<R>(isolation: isolated (any Actor)? = #isolation,
                                _ body: () async throws -> R) async rethrows -> R {
    try await GradMode.$isEnabled.withValue(false, operation: body, isolation: isolation)
}
