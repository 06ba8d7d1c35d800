/// Gathers a strided N-d view into row-major order.
enum StridedCopy {
    static func copy(from src: UnsafePointer<Float>, shape: [Int], strides: [Int], to dst: UnsafeMutablePointer<Float>) {
        let region = KernelProfile.begin()
        defer { KernelProfile.end(region, .copy) }
        let total = Shape.count(shape)
        if total == 0 { return }
        if shape.isEmpty { dst[0] = src[0]; return }
        let rank = shape.count
        let inner = shape[rank - 1], innerStride = strides[rank - 1]
        var index = [Int](repeating: 0, count: rank)
        var srcOffset = 0, out = 0
        while out < total {
            let s = src + srcOffset
            if innerStride == 1 {
                (dst + out).update(from: s, count: inner)
            } else {
                for j in 0..<inner { dst[out &+ j] = s[j &* innerStride] }
            }
            out += inner
            // Advance the outer index (odometer over all but the last axis).
            var axis = rank - 2
            while axis >= 0 {
                index[axis] += 1
                srcOffset += strides[axis]
                if index[axis] < shape[axis] { break }
                srcOffset -= strides[axis] * shape[axis]
                index[axis] = 0
                axis -= 1
            }
        }
    }
}
