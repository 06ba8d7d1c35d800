import Synchronization

/// Large scratch buffers kept between kernel calls, so a convolution or a blocked GEMM that needs
/// megabytes of workspace on every call does not pay the operating system's page faults each time
/// (a freshly mapped page costs a fault and a zeroing pass: ~8% of a Winograd convolution, and 30
/// thousand faults a BERT-base training step in the GEMMs' packed blocks, measured).
///
/// Like PyTorch's caching allocator it keeps what it hands out: at most `maxKept` buffers, and
/// none larger than `maxKeptFloats`; anything else is freed on return.
enum ScratchPool {
    /// Buffers kept for reuse.
    static let maxKept = 8
    /// Largest buffer kept (floats): 64 MB.
    static let maxKeptFloats = 1 << 24

    /// A buffer handed out by ``take(_:)``; give it back with ``give(_:)``.
    struct Buffer: @unchecked Sendable {
        let pointer: UnsafeMutablePointer<Float>
        let capacity: Int
    }

    private static let kept = Mutex<[Buffer]>([])

    /// Runs `body` with a 64-byte aligned, uninitialized buffer of at least `count` floats.
    @inline(__always)
    static func withBuffer<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let buffer = take(count)
        defer { give(buffer) }
        return try body(buffer.pointer)
    }

    /// A 64-byte aligned, uninitialized buffer of at least `count` floats, until ``give(_:)``
    /// (for workspaces that outlive one closure, as the blocked GEMM's packed blocks).
    static func take(_ count: Int) -> Buffer {
        let count = max(count, 16)
        let reused: Buffer? = kept.withLock { buffers in
            // The smallest kept buffer that is large enough.
            var best: Int?
            for (i, b) in buffers.enumerated() where b.capacity >= count && (best.map { b.capacity < buffers[$0].capacity } ?? true) {
                best = i
            }
            return best.map { buffers.remove(at: $0) }
        }
        if let reused { return reused }
        return Buffer(pointer: ScratchPool.allocate(count), capacity: count)
    }

    /// A 64-byte aligned, uninitialized buffer of `count` floats straight from the system
    /// allocator (not pooled); release with `deallocate()`.
    static func allocate(_ count: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: max(count, 1))
    }

    /// Returns a buffer from ``take(_:)``.
    static func give(_ buffer: Buffer) {
        guard buffer.capacity <= maxKeptFloats else { return buffer.pointer.deallocate() }
        let evicted: Buffer? = kept.withLock { buffers in
            buffers.append(buffer)
            guard buffers.count > maxKept else { return nil }
            // Drop the smallest: the large ones are the expensive ones to map again.
            let smallest = buffers.indices.min { buffers[$0].capacity < buffers[$1].capacity }!
            return buffers.remove(at: smallest)
        }
        evicted?.pointer.deallocate()
    }

    /// Whether the buffer at `pointer` is kept for reuse now (for tests).
    static func keeps(_ pointer: UnsafeMutablePointer<Float>) -> Bool {
        kept.withLock { buffers in buffers.contains { $0.pointer == pointer } }
    }
}
