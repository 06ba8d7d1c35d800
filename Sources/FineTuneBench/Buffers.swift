/// A 64-byte aligned array of `Float` owned by the benchmark, freed on deinit.
final class FloatBuffer {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    /// A buffer of `count` zeros.
    init(count: Int) {
        self.count = count
        pointer = UnsafeMutableRawPointer
            .allocate(byteCount: Swift.max(1, count) * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: Swift.max(1, count))
        pointer.initialize(repeating: 0, count: count)
    }

    /// A buffer of `count` deterministic pseudo-random values in `[-1, 1)`, from `seed`.
    convenience init(count: Int, seed: UInt64) {
        self.init(count: count)
        var random = SplitMix64(seed: seed)
        for i in 0..<count { pointer[i] = random.nextSignedUnitFloat() }
    }

    deinit { pointer.deallocate() }

    /// Read-only view for kernel arguments.
    var readOnly: UnsafePointer<Float> { UnsafePointer(pointer) }

    /// Sum of all elements in `Double`, used as a checksum.
    func sum() -> Double {
        var total = 0.0
        for i in 0..<count { total += Double(pointer[i]) }
        return total
    }
}

/// SplitMix64 (Steele, Lea and Flood): a tiny, fast, deterministic generator for bench inputs.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform `Float` in `[-1, 1)` with 24 random bits.
    mutating func nextSignedUnitFloat() -> Float {
        Float(next() >> 40) * 0x1p-23 - 1
    }
}
