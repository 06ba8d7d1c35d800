import Foundation

/// The keys and values of every position a decoder has seen, per layer, so that each generated
/// token runs only its own position through the model (transformers' `DynamicCache`).
public final class KeyValueCache {
    /// One layer's keys and values, `[B, key/value heads, S, head size]` (nil before the first step).
    public final class Layer {
        public private(set) var keys: Tensor?
        public private(set) var values: Tensor?

        init() {}

        /// Appends the keys and values of new positions (axis 2).
        func append(keys newKeys: Tensor, values newValues: Tensor) {
            keys = keys.map { Tensor.concat([$0, newKeys], axis: 2) } ?? newKeys
            values = values.map { Tensor.concat([$0, newValues], axis: 2) } ?? newValues
        }
    }

    public let layers: [Layer]

    /// An empty cache for `layerCount` decoder layers.
    public init(layerCount: Int) {
        layers = (0..<layerCount).map { _ in Layer() }
    }

    /// The number of positions cached.
    public var length: Int { layers.first?.keys?.shape[2] ?? 0 }
}

/// How ``LlamaForCausalLM/generate(_:attentionMask:maxNewTokens:endTokenIds:sampling:)`` draws
/// each token instead of taking the most likely one (transformers' `do_sample=True` with its
/// warpers in their order: temperature, then top-k, then top-p). Draws come from a generator
/// seeded with `seed`, so a call repeats itself; they are not PyTorch's random numbers.
public struct Sampling: Sendable, Equatable {
    /// Divides the logits (> 0; below 1 sharpens, above 1 flattens).
    public var temperature: Float
    /// Keeps the `topK` most likely tokens (nil: all).
    public var topK: Int?
    /// Keeps the most likely tokens whose probabilities sum to at least `topP` (nucleus; nil: all).
    public var topP: Float?
    public var seed: UInt64

    public init(temperature: Float = 1, topK: Int? = nil, topP: Float? = nil, seed: UInt64 = 0) {
        precondition(temperature > 0 && temperature.isFinite, "Sampling: temperature must be positive, got \(temperature)")
        precondition(topK.map { $0 > 0 } ?? true, "Sampling: topK must be positive")
        precondition(topP.map { $0 > 0 && $0 <= 1 } ?? true, "Sampling: topP must be in (0, 1]")
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.seed = seed
    }

    /// The probabilities a draw follows for `logits`: softmax of the logits over temperature,
    /// restricted to the top-k tokens and then to the nucleus, renormalised. Tokens tied with
    /// the last one kept stay in (transformers keeps top-k ties too).
    func probabilities(_ logits: [Float]) -> [Double] {
        let scaled = logits.map { Double($0) / Double(temperature) }
        var keep = [Bool](repeating: true, count: scaled.count)
        let order = scaled.indices.sorted { scaled[$0] > scaled[$1] }
        if let k = topK, k < scaled.count {
            let threshold = scaled[order[k - 1]]
            for i in scaled.indices where scaled[i] < threshold { keep[i] = false }
        }
        let top = scaled.indices.filter { keep[$0] }.map { scaled[$0] }.max() ?? 0
        var weights = scaled.indices.map { keep[$0] ? Foundation.exp(scaled[$0] - top) : 0 }
        if let p = topP {
            let total = weights.reduce(0, +)
            var mass = 0.0, cutoff = -Double.infinity
            for i in order where keep[i] {
                mass += weights[i] / total
                cutoff = scaled[i]
                if mass >= Double(p) { break }
            }
            for i in scaled.indices where scaled[i] < cutoff { weights[i] = 0 }
        }
        let total = weights.reduce(0, +)
        return weights.map { $0 / total }
    }

    /// One token drawn from ``probabilities(_:)``.
    func draw(_ logits: [Float], generator: inout RandomGenerator) -> Int {
        let probabilities = probabilities(logits)
        let u = Double(generator.nextUniform())
        var sum = 0.0, last = 0
        for (i, p) in probabilities.enumerated() where p > 0 {
            sum += p
            last = i
            if u < sum { return i }
        }
        return last
    }
}

extension LlamaForCausalLM {
    /// Greedy continuation of `ids` `[B, T]` (integer-valued), as transformers'
    /// `generate(do_sample=False)`: up to `maxNewTokens` tokens per row, each the most likely
    /// next token, computed with a ``KeyValueCache`` (one position per step after the prompt).
    /// With `sampling`, each token is drawn instead (``Sampling``).
    /// A row that produces one of `endTokenIds` (default: the configuration's `eos_token_id`)
    /// is finished and continues with `pad_token_id` (else the first end token); generation stops
    /// when every row is finished. Returns the prompts followed by the new tokens, `[B, T + n]`.
    ///
    /// Padded prompts go left-padded with `attentionMask` (1 = token, 0 = padding); positions
    /// count the tokens of each row, as transformers' `generate` sets them (a right-padded row
    /// is continued after its padding, which stays hidden). Runs in evaluation
    /// mode without gradients; the model's modes are restored afterwards.
    ///
    /// ```swift
    /// let out = model.generate(prompt, maxNewTokens: 32)          // [1, T + up to 32]
    /// let text = tokenizer.decode(out.scalars.dropFirst(prompt.count).map { Int($0) })
    /// ```
    public func generate(_ ids: Tensor, attentionMask: Tensor? = nil, maxNewTokens: Int, endTokenIds: [Int]? = nil,
                         sampling: Sampling? = nil) -> Tensor {
        let op = "LlamaForCausalLM.generate"
        checkTokenIds(ids, op: op)
        let b = ids.shape[0], t = ids.shape[1]
        precondition(maxNewTokens >= 0, "\(op): maxNewTokens must not be negative, got \(maxNewTokens)")
        if let attentionMask {
            Shape.check(attentionMask.shape == ids.shape, op: op, shapes: [attentionMask.shape, ids.shape],
                        "attention mask must be [B, T] like the token ids")
        }
        let configuration = model.configuration
        let ends = endTokenIds ?? configuration.eosTokenIds
        let pad = configuration.padTokenId ?? ends.first ?? 0
        let window = configuration.slidingWindow
        let idValues = ids.scalars, maskValues = attentionMask?.scalars
        var rows = (0..<b).map { row in (0..<t).map { Int(idValues[row * t + $0]) } }
        var keyMask = (0..<b).map { row in (0..<t).map { column in maskValues.map { $0[row * t + column] != 0 } ?? true } }
        var unfinished = [Bool](repeating: true, count: b)
        guard maxNewTokens > 0, t > 0 else { return ids }
        let cache = KeyValueCache(layerCount: model.layers.count)
        var generator = RandomGenerator(seed: sampling?.seed ?? 0)

        /// Runs the positions `start..<S` of every row and returns each row's next token.
        func step(from start: Int) -> [Int] {
            let s = keyMask[0].count, l = s - start
            var tokens = [Float](), positions = [Float](), allowed = [Float]()
            for row in 0..<b {
                // A position counts the tokens before it (transformers: cumsum(mask) - 1; padding 1).
                var count = keyMask[row][..<start].filter { $0 }.count
                for j in start..<s {
                    tokens.append(Float(rows[row][j]))
                    positions.append(keyMask[row][j] ? Float(count) : 1)
                    if keyMask[row][j] { count += 1 }
                }
                for query in start..<s {
                    for key in 0..<s {
                        allowed.append(keyMask[row][key] && LlamaAttention.sees(query: query, key: key, window: window) ? 1 : 0)
                    }
                }
            }
            let hidden = model(Tensor(shape: [b, l], scalars: tokens), positionIds: Tensor(shape: [b, l], scalars: positions),
                               allowed: Tensor(shape: [b, 1, l, s], scalars: allowed), cache: cache)
            let logits = lmHead(hidden.slice(axis: 1, (l - 1)..<l).reshaped([b, hidden.shape[2]]))
            guard let sampling else { return logits.argmax(axis: 1).values }
            let values = logits.scalars, vocabulary = logits.shape[1]
            return (0..<b).map { sampling.draw(Array(values[($0 * vocabulary)..<(($0 + 1) * vocabulary)]), generator: &generator) }
        }

        return inferring {
            withoutGradients {
                var start = 0
                for _ in 0..<maxNewTokens {
                    let next = step(from: start)
                    start = keyMask[0].count
                    for row in 0..<b {
                        let token = unfinished[row] ? next[row] : pad
                        rows[row].append(token)
                        keyMask[row].append(true)
                        if ends.contains(token) { unfinished[row] = false }
                    }
                    if !unfinished.contains(true) { break }
                }
                let length = rows[0].count
                return Tensor(shape: [b, length], scalars: rows.flatMap { $0.map(Float.init) })
            }
        }
    }
}
