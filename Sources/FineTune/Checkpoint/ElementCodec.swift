import Foundation

/// Converts little-endian tensor bytes of a safetensors dtype to and from Float32.
///
/// Half-precision conversions are done on bit patterns (no `Float16`, which some Apple
/// targets lack), rounding to nearest even when narrowing, as PyTorch's `.half()` and
/// `.bfloat16()` do.
enum ElementCodec {
    typealias Reader = (UnsafeRawBufferPointer, UnsafeMutableBufferPointer<Float>) -> Void

    /// The converter for `dtype`, or nil when FineTune cannot read it.
    static func reader(for dtype: DType) -> Reader? {
        switch dtype {
        case .f32: return { src, dst in
            // Bytes may sit at any alignment inside the file; copy them whole.
            UnsafeMutableRawBufferPointer(dst).copyMemory(from: src)
            #if _endian(big)
            for i in dst.indices { dst[i] = Float(bitPattern: UInt32(littleEndian: dst[i].bitPattern)) }
            #endif
        }
        case .f64: return convert(Double.self) { Float($0) }
        case .f16: return convert(UInt16.self) { Float(bitPattern: halfToFloatBits($0)) }
        case .bf16: return convert(UInt16.self) { Float(bitPattern: UInt32($0) << 16) }
        case .i64: return convert(Int64.self) { Float($0) }
        case .u64: return convert(UInt64.self) { Float($0) }
        case .i32: return convert(Int32.self) { Float($0) }
        case .u32: return convert(UInt32.self) { Float($0) }
        case .i16: return convert(Int16.self) { Float($0) }
        case .u16: return convert(UInt16.self) { Float($0) }
        case .i8: return convert(Int8.self) { Float($0) }
        case .u8: return convert(UInt8.self) { Float($0) }
        case .bool: return convert(UInt8.self) { $0 == 0 ? 0 : 1 }
        case .f8e5m2, .f8e4m3, .f8e8m0, .c64, .f4, .f6e2m3, .f6e3m2: return nil
        }
    }

    /// Elements of a fixed-width little-endian type `T`, each mapped by `map`.
    private static func convert<T: FixedWidthInteger>(_: T.Type, _ map: @escaping (T) -> Float) -> Reader {
        return { src, dst in
            for i in dst.indices {
                dst[i] = map(T(littleEndian: src.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self)))
            }
        }
    }

    private static func convert(_: Double.Type, _ map: @escaping (Double) -> Float) -> Reader {
        return { src, dst in
            for i in dst.indices {
                let bits = UInt64(littleEndian: src.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
                dst[i] = map(Double(bitPattern: bits))
            }
        }
    }

    /// Stores `values` as `dtype` (one of ``DType/writable``) in little-endian order.
    static func write(_ values: UnsafeBufferPointer<Float>, as dtype: DType, into dst: UnsafeMutableRawBufferPointer) {
        func store<T: FixedWidthInteger>(_ map: (Float) -> T) {
            for (i, v) in values.enumerated() { dst.storeBytes(of: map(v).littleEndian, toByteOffset: i * MemoryLayout<T>.size, as: T.self) }
        }
        switch dtype {
        case .f32: store { $0.bitPattern }
        case .f64: store { Double($0).bitPattern }
        case .f16: store { floatToHalfBits($0.bitPattern) }
        case .bf16: store { floatToBFloat16Bits($0.bitPattern) }
        // Integers truncate toward zero, as PyTorch's `.to(torch.int64)` (NaN stores 0).
        case .i64: store { $0.isNaN ? 0 : Int64(exactly: $0.rounded(.towardZero)) ?? ($0 < 0 ? .min : .max) }
        case .i32: store { $0.isNaN ? 0 : Int32(exactly: $0.rounded(.towardZero)) ?? ($0 < 0 ? .min : .max) }
        default: preconditionFailure("ElementCodec: \(dtype) is not writable")
        }
    }

    // MARK: Half precision

    /// IEEE binary16 bits to binary32 bits (exact: every half is a float).
    static func halfToFloatBits(_ h: UInt16) -> UInt32 {
        let sign = UInt32(h & 0x8000) << 16, exponent = UInt32(h >> 10) & 0x1F, mantissa = UInt32(h & 0x3FF)
        if exponent == 0x1F { return sign | 0x7F80_0000 | mantissa << 13 }           // Inf, NaN (payload kept)
        if exponent != 0 { return sign | (exponent + 112) << 23 | mantissa << 13 }      // normal: rebias 15 -> 127
        if mantissa == 0 { return sign }                                                // ±0
        // Subnormal: value = mantissa * 2^-24; normalise it.
        var m = mantissa, e: UInt32 = 113
        while m & 0x400 == 0 { m <<= 1; e -= 1 }
        return sign | e << 23 | (m & 0x3FF) << 13
    }

    /// binary32 bits to binary16 bits, rounding to nearest even (overflow gives ±Inf, NaN stays NaN).
    static func floatToHalfBits(_ f: UInt32) -> UInt16 {
        let sign = UInt16((f >> 16) & 0x8000)
        let exponent = Int((f >> 23) & 0xFF), mantissa = f & 0x7F_FFFF
        if exponent == 0xFF { return sign | 0x7C00 | (mantissa != 0 ? 0x200 | UInt16(mantissa >> 13) : 0) }
        let halfExponent = exponent - 127 + 15
        if halfExponent >= 0x1F { return sign | 0x7C00 }
        if halfExponent <= 0 {
            // Subnormal half (or zero): shift the full significand right, rounding to nearest even.
            if halfExponent < -10 { return sign }
            let significand = mantissa | 0x80_0000
            let shift = UInt32(14 - halfExponent)
            var half = significand >> shift
            let rest = significand & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
            if rest > halfway || (rest == halfway && half & 1 == 1) { half += 1 }
            return sign | UInt16(half)
        }
        var half = UInt32(halfExponent) << 10 | mantissa >> 13
        let rest = mantissa & 0x1FFF
        if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) { half += 1 }    // may carry into the exponent: correct
        return sign | UInt16(half)
    }

    /// binary32 bits to bfloat16 bits, rounding to nearest even (NaN stays a quiet NaN).
    static func floatToBFloat16Bits(_ f: UInt32) -> UInt16 {
        if f & 0x7FFF_FFFF > 0x7F80_0000 { return UInt16(f >> 16) | 0x40 }
        return UInt16((f + 0x7FFF + ((f >> 16) & 1)) >> 16)
    }
}

/// Replaces a file in one step: the new bytes go to a temporary file beside it, are flushed to
/// disk, then renamed over the destination. Readers see the old file or the new one, never a
/// mix; on any failure the temporary file is removed and the old file is untouched.
enum AtomicFile {
    static func write(_ data: Data, to url: URL) throws(CheckpointError) {
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
        do {
            try data.write(to: temporary, options: .withoutOverwriting)
            let handle = try FileHandle(forWritingTo: temporary)
            defer { try? handle.close() }
            try handle.synchronize()
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw .io(path: url.path, reason: SafeTensors.reason(error))
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
            try? FileManager.default.removeItem(at: temporary)
            throw .io(path: url.path, reason: "is a directory")
        }
        guard rename(temporary.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw .io(path: url.path, reason: reason)
        }
    }
}
