/// Deliberately wrong backward rules, for the mutation tests only: each proves that the gradient
/// checks of the ops involved fail on a plausible bug.
///
/// The switch is a task-local value that exists only in debug builds, read where an op records
/// its rule or the engine runs one (never inside a kernel loop); release builds compile every
/// check to `false`.
///
/// ```swift
/// GradientMutation.$active.withValue(.meanDividesByCountMinusOne) { ... }   // tests, debug builds
/// ```
enum GradientMutation: Hashable, Sendable {
    /// `mean` divides its gradient by `n - 1` instead of `n`.
    case meanDividesByCountMinusOne
    /// `matmul`'s backward multiplies by the other operand's data without transposing it (the
    /// row-major buffer reinterpreted with the transposed shape).
    case matmulMissingTranspose
    /// The engine does not sum broadcast gradients: an input receives the gradient of one
    /// broadcast copy (the leading elements of the unreduced gradient).
    case broadcastNotReduced
    /// The backward rule of the op named `op` returns its gradients scaled by 1.01.
    case scaledRule(op: String)

    /// The factor of ``scaledRule(op:)``.
    static let ruleScale: Float = 1.01

    #if DEBUG
    /// The mutation switched on in this task, if any.
    @TaskLocal static var active: GradientMutation?
    #endif

    /// Whether the mutation tests switched `mutation` on in this task (false in release builds).
    @inline(__always)
    static func isActive(_ mutation: GradientMutation) -> Bool {
        #if DEBUG
        return active == mutation
        #else
        return false
        #endif
    }

    /// Whether mutations can be switched on at all (debug builds).
    static var isAvailable: Bool {
        #if DEBUG
        return true
        #else
        return false
        #endif
    }
}
