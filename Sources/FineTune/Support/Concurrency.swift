import Foundation

/// A value behind a lock. It is Foundation's pthread-backed `NSLock`, which the thread
/// sanitizer understands; Synchronization's `Mutex` locks in uninstrumented library code on
/// Linux, so `swift test --sanitize=thread` reported every guarded access as a race.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// Wraps a value that is shared across threads under the caller's own synchronisation
/// (disjoint writes into pointers, for example).
@usableFromInline
struct UncheckedSendable<Value>: @unchecked Sendable {
    @usableFromInline let value: Value
    @usableFromInline init(_ value: Value) { self.value = value }
}
