/// The reference-counted Float32 buffer behind one or more tensors (views share it).
///
/// Tensors are values: a tensor that is about to be written copies its storage first unless
/// it is the only owner (copy-on-write), so views and saved autograd inputs never change
/// under anyone's feet.
@usableFromInline
final class TensorStorage {
    @usableFromInline let pointer: UnsafeMutablePointer<Float>
    @usableFromInline let count: Int

    /// A buffer of `count` floats, 64-byte aligned, zero-filled unless `zeroed` is false
    /// (for outputs that a kernel overwrites completely).
    @usableFromInline
    init(count: Int, zeroed: Bool = true) {
        self.count = count
        let capacity = max(count, 1)
        pointer = BufferCache.allocate(bytes: capacity * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: capacity)
        if zeroed {
            pointer.initialize(repeating: 0, count: capacity)
        } else {
            #if DEBUG
            // Debug builds (the tests) poison skipped fills, so a kernel that leaves an
            // element unwritten shows up as NaN instead of passing on recycled values.
            pointer.initialize(repeating: .nan, count: capacity)
            #endif
        }
    }

    deinit { BufferCache.release(UnsafeMutableRawPointer(pointer), bytes: max(count, 1) * MemoryLayout<Float>.stride) }
}

/// Keeps large freed tensor buffers for reuse, like PyTorch's caching allocators.
///
/// A training step allocates the same activation and gradient sizes every iteration. Fresh
/// multi-megabyte buffers come from `mmap` and cost a page fault per 4 KiB on first touch,
/// and again after `free` hands them back to the system; a reused buffer costs nothing. Only
/// buffers of at least ``minimumBytes`` are kept (the system allocator serves small ones
/// well), in exact 4 KiB-rounded size classes, up to ``limit`` bytes in all.
///
/// ```swift
/// BufferCache.limit = 0          // no caching
/// BufferCache.releaseAll()       // hand the cached buffers back to the system
/// ```
public enum BufferCache {
    /// Buffers smaller than this are never cached.
    public static let minimumBytes = 64 << 10

    /// A cached block; only the lock holder or the one thread it is handed to touches it.
    private struct Block: @unchecked Sendable { let pointer: UnsafeMutableRawPointer }

    private struct State {
        var free: [Int: [Block]] = [:]
        var cachedBytes = 0
        var limit = 1 << 30
    }
    private static let state = Locked(State())

    /// The most bytes the cache holds (default 1 GiB). Lowering it releases the excess.
    public static var limit: Int {
        get { state.withLock { $0.limit } }
        set {
            let evicted = state.withLock { state -> [Block] in
                state.limit = max(0, newValue)
                return evict(&state, keeping: state.limit)
            }
            for block in evicted { block.pointer.deallocate() }
        }
    }

    /// The bytes now held for reuse.
    public static var cachedBytes: Int { state.withLock { $0.cachedBytes } }

    /// Hands every cached buffer back to the system (PyTorch's `empty_cache`).
    public static func releaseAll() {
        let evicted = state.withLock { evict(&$0, keeping: 0) }
        for block in evicted { block.pointer.deallocate() }
    }

    /// A 64-byte-aligned block of at least `bytes` bytes.
    static func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        guard bytes >= minimumBytes else {
            return UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        }
        let size = sizeClass(bytes)
        let reused = state.withLock { state -> Block? in
            guard let block = state.free[size]?.popLast() else { return nil }
            state.cachedBytes -= size
            return block
        }
        return reused?.pointer ?? UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    }

    /// Returns a block from ``allocate(bytes:)`` (with the same `bytes`).
    static func release(_ block: UnsafeMutableRawPointer, bytes: Int) {
        guard bytes >= minimumBytes else { return block.deallocate() }
        let size = sizeClass(bytes)
        let cached = Block(pointer: block)
        let kept = state.withLock { state -> Bool in
            guard state.cachedBytes + size <= state.limit else { return false }
            state.free[size, default: []].append(cached)
            state.cachedBytes += size
            return true
        }
        if !kept { block.deallocate() }
    }

    private static func sizeClass(_ bytes: Int) -> Int { (bytes + 4095) & ~4095 }

    /// Removes cached blocks until at most `bytes` remain; the caller frees them outside the lock.
    private static func evict(_ state: inout State, keeping bytes: Int) -> [Block] {
        var evicted: [Block] = []
        for size in state.free.keys.sorted(by: >) where state.cachedBytes > bytes {
            while state.cachedBytes > bytes, let block = state.free[size]?.popLast() {
                evicted.append(block)
                state.cachedBytes -= size
            }
            if state.free[size]?.isEmpty == true { state.free[size] = nil }
        }
        return evicted
    }
}
