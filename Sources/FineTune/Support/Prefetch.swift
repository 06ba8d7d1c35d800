/// A hint that memory will be used soon: the CPU starts moving its cache line towards the core
/// while the code goes on (nothing on a target without prefetch instructions). It never
/// faults, so any address may be given.
///
/// Swift has no prefetch in its standard library; this calls LLVM's `llvm.prefetch` intrinsic
/// directly (an LLVM intrinsic is resolved by name, so no C module is needed).
@_silgen_name("llvm.prefetch.p0")
private func llvmPrefetch(_ address: UnsafeRawPointer, _ write: Int32, _ locality: Int32, _ dataCache: Int32)

enum Prefetch {
    /// Starts loading the cache line of `address` into L2 (and the outer levels).
    @inline(__always)
    static func toL2(_ address: UnsafeRawPointer) {
        llvmPrefetch(address, 0, 2, 1)
    }

    /// Starts loading the cache line of `address` into L1 to be written (x86 `prefetchw` where
    /// the CPU has it, else `prefetcht0`; AArch64 `prfm pstl1keep`).
    @inline(__always)
    static func toL1ForWriting(_ address: UnsafeRawPointer) {
        llvmPrefetch(address, 1, 3, 1)
    }
}

/// Runs of floats a stride apart whose cache lines are asked for into L2 a share at a time: a
/// loop of `parts` steps (its tiles, or its rows) calls ``fetchNextShare()`` once per step, so the
/// runs arrive by the loop's end without a burst of requests at its start. For operands whose
/// rows are too short a run for the hardware's stream prefetch (a weight panel's 32 channels, an
/// attention head's 64 floats of each row).
///
///     var next = PrefetchRows(base: nextPanel, rows: 32, stride: ld, floats: depth, parts: tiles)
///     for tile in 0..<tiles { next.fetchNextShare(); multiply(tile) }
struct PrefetchRows {
    private var row: UnsafePointer<Float>
    private var column = 0, owed = 0
    private let stride: Int, last: Int, perRow: Int, lines: Int, parts: Int

    /// `rows` runs of `floats` floats, the first at `base`, `stride` floats apart, asked for over
    /// `parts` calls.
    init(base: UnsafePointer<Float>, rows: Int, stride: Int, floats: Int, parts: Int) {
        row = base
        self.stride = stride
        last = Swift.max(0, floats - 1)
        // One more line than the floats fill: a run need not start on a line.
        perRow = (floats + 15) / 16 + 1
        lines = floats > 0 ? Swift.max(0, rows) * perRow : 0
        self.parts = Swift.max(1, parts)
    }

    /// Asks for the next share of the lines: after `p` calls, the first `p * lines / parts`
    /// (rounded down), all of them after `parts` calls; no division (a running remainder).
    @inline(__always)
    mutating func fetchNextShare() {
        owed &+= lines
        while owed >= parts {
            owed &-= parts
            Prefetch.toL2(row + Swift.min(last, column &* 16))
            column &+= 1
            if column == perRow { column = 0; row += stride }
        }
    }
}
