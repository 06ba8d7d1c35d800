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
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        if zeroed {
            pointer.initialize(repeating: 0, count: max(count, 1))
        } else {
            #if DEBUG
            // Debug builds (the tests) poison skipped fills, so a kernel that leaves an
            // element unwritten shows up as NaN instead of passing on recycled zeros.
            pointer.initialize(repeating: .nan, count: max(count, 1))
            #endif
        }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}
