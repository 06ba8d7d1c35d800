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
