/// A seedable pseudo-random generator (xoshiro256**, seeded through SplitMix64).
///
/// The stream depends only on the seed, so initial weights and dropout masks are the same on
/// every run and every machine.
///
/// ```swift
/// var rng = RandomGenerator(seed: 42)
/// let w = Tensor.randomNormal([64, 32], generator: &rng)
/// ```
public struct RandomGenerator: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(seed: UInt64) {
        var sm = seed
        func splitMix(_ x: inout UInt64) -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix(&sm); s1 = splitMix(&sm); s2 = splitMix(&sm); s3 = splitMix(&sm)
    }

    /// The generator's complete state: xoshiro256**'s four words. A generator rebuilt from it
    /// with ``init(state:)`` continues the same stream (checkpoints save it this way).
    public var state: [UInt64] { [s0, s1, s2, s3] }

    /// A generator continuing from a saved ``state``; nil unless `state` holds four words,
    /// not all zero (the all-zero state is not part of any stream).
    ///
    /// ```swift
    /// let saved = RandomGenerator.current.state
    /// // ... later, or in another process:
    /// RandomGenerator.current = RandomGenerator(state: saved)!
    /// ```
    public init?(state: [UInt64]) {
        guard state.count == 4, state.contains(where: { $0 != 0 }) else { return nil }
        (s0, s1, s2, s3) = (state[0], state[1], state[2], state[3])
    }

    @inlinable
    static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = RandomGenerator.rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t
        s3 = RandomGenerator.rotl(s3, 45)
        return result
    }

    /// Uniform in [0, 1) with 24 random bits.
    public mutating func nextUniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Standard normal (Box-Muller, computed in Double for accuracy).
    public mutating func nextNormal() -> Float {
        let u1 = (Double(next() >> 11) + 0.5) * (1.0 / 9_007_199_254_740_992.0)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }

    // MARK: The global generator

    private static let global = Locked(RandomGenerator(seed: 0x5EED))

    /// Reseeds the global generator that initialisers and dropout use by default (`torch.manual_seed`).
    public static func seed(_ seed: UInt64) {
        global.withLock { $0 = RandomGenerator(seed: seed) }
    }

    /// The default generator that initialisers and dropout draw from (the one installed by
    /// ``withSeed(_:_:)`` in this task, otherwise the global one), as a value: reading it
    /// copies its full state, assigning it replaces that state, so a resumed run draws the
    /// same dropout masks as an uninterrupted one.
    public static var current: RandomGenerator {
        get { withGlobal { $0 } }
        set { withGlobal { $0 = newValue } }
    }

    /// Runs `body` with exclusive access to the default generator: the one installed by
    /// ``withSeed(_:_:)`` in this task, otherwise the global one.
    public static func withGlobal<R>(_ body: (inout RandomGenerator) throws -> R) rethrows -> R {
        if let scoped = scopedGenerator {
            return try scoped.state.withLock { try body(&$0) }
        }
        return try global.withLock { try body(&$0) }
    }

    /// Runs `body` with a fresh generator seeded with `seed` as the default for this task (and
    /// its child tasks): initialisers and dropout inside draw from it, unaffected by other
    /// threads using the global generator.
    ///
    /// ```swift
    /// let model = RandomGenerator.withSeed(0) { Sequential(Linear(4, 8), ReLU(), Linear(8, 2)) }
    /// ```
    public static func withSeed<R>(_ seed: UInt64, _ body: () throws -> R) rethrows -> R {
        try $scopedGenerator.withValue(ScopedGenerator(RandomGenerator(seed: seed)), operation: body)
    }

    @TaskLocal private static var scopedGenerator: ScopedGenerator?
}

/// A task-scoped default generator.
private final class ScopedGenerator: Sendable {
    let state: Locked<RandomGenerator>
    init(_ generator: RandomGenerator) { state = Locked(generator) }
}

import Foundation
@inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
