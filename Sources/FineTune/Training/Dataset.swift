import Foundation

/// Labelled examples held in memory: `inputs` with the examples along the first axis and one
/// class label per example (PyTorch's `TensorDataset` for classification).
///
/// ```swift
/// let data = try TensorDataset(csv: url, featureShape: [1, 8, 8], scale: 1.0 / 16)
/// let (train, validation) = data.split(validationFraction: 0.2, seed: 7)
/// for (x, y) in train.batches(size: 64, shuffle: true, seed: 1) { ... }
/// ```
public struct TensorDataset {
    /// `[count, feature...]`.
    public let inputs: Tensor
    /// One label per example.
    public let labels: [Int]

    /// Number of examples.
    public var count: Int { labels.count }
    /// The shape of one example.
    public var featureShape: [Int] { Array(inputs.shape.dropFirst()) }
    /// `1 + max(label)`.
    public var classCount: Int { (labels.max() ?? -1) + 1 }

    public init(inputs: Tensor, labels: [Int]) {
        precondition(inputs.rank >= 1 && inputs.shape[0] == labels.count,
                     "TensorDataset: \(labels.count) labels for inputs of shape \(inputs.shape)")
        precondition(labels.allSatisfy { $0 >= 0 }, "TensorDataset: labels must be non-negative")
        self.inputs = inputs.detached().contiguous()
        self.labels = labels
    }

    /// The examples at `indices`, in that order (a copy).
    public func subset(_ indices: [Int]) -> TensorDataset {
        let width = inputs.count / Swift.max(count, 1)
        var rows = Tensor(uninitialized: [indices.count] + featureShape)
        inputs.withUnsafeBufferPointer { src in
            rows.withUnsafeMutableBufferPointer { dst in
                for (row, index) in indices.enumerated() {
                    precondition(index >= 0 && index < count, "TensorDataset.subset: index \(index) out of range 0..<\(count)")
                    (dst.baseAddress! + row * width).update(from: src.baseAddress! + index * width, count: width)
                }
            }
        }
        return TensorDataset(inputs: rows, labels: indices.map { labels[$0] })
    }

    /// The examples in `range`.
    public func slice(_ range: Range<Int>) -> TensorDataset { subset(Array(range)) }

    /// A shuffled split into training and validation examples (`validationFraction` of them,
    /// at least one each), reproducible from `seed`.
    public func split(validationFraction: Double, seed: UInt64) -> (train: TensorDataset, validation: TensorDataset) {
        precondition(validationFraction > 0 && validationFraction < 1, "TensorDataset.split: fraction must be in (0, 1)")
        precondition(count >= 2, "TensorDataset.split: need at least 2 examples")
        let order = Self.permutation(count, seed: seed)
        let validationCount = Swift.min(count - 1, Swift.max(1, Int((Double(count) * validationFraction).rounded())))
        return (subset(Array(order[validationCount...])), subset(Array(order[..<validationCount])))
    }

    /// Mini-batches of `size` (the last one may be smaller), in order or shuffled with `seed`.
    public func batches(size: Int, shuffle: Bool = false, seed: UInt64 = 0) -> [(inputs: Tensor, labels: [Int])] {
        precondition(size > 0, "TensorDataset.batches: size must be positive")
        let order = shuffle ? Self.permutation(count, seed: seed) : Array(0..<count)
        return stride(from: 0, to: count, by: size).map { start in
            let batch = subset(Array(order[start..<Swift.min(start + size, count)]))
            return (batch.inputs, batch.labels)
        }
    }

    /// The same examples with inputs replaced by `module`'s outputs, computed once in eval
    /// mode without gradients: Keras' "fast feature extraction". Train the head on these
    /// features instead of running the backbone every epoch.
    ///
    /// Cached features stay valid only while the backbone does not train, so `module` must be
    /// frozen: it throws ``FeatureExtractionError`` when `module` has a trainable parameter, or
    /// a BatchNorm that would normalise with batch statistics in training mode (and so compute
    /// other features during `fit` than these). A frozen BatchNorm uses its running statistics
    /// in both modes, so the features equal the backbone's output in either.
    ///
    /// ```swift
    /// let backbone = Sequential(Array(model.layers[0..<10]))     // everything but the head
    /// backbone.freeze()                                           // BatchNorm statistics too
    /// let features = try train.features(through: backbone)        // [N, 64]
    /// ```
    public func features(through module: Module, batchSize: Int = 256) throws(FeatureExtractionError) -> TensorDataset {
        let trainable = module.namedParameters().filter { !$0.parameter.isFrozen }.map(\.name)
        if !trainable.isEmpty { throw .trainableParameters(names: trainable) }
        let batchStatistics = module.preservingModes {
            module.train()
            return module.namedModules().filter { ($0.module as? BatchNorm)?.effectiveStatistics == .batch }.map(\.name)
        }
        if !batchStatistics.isEmpty { throw .batchStatistics(layers: batchStatistics) }
        let outputs = module.inferring { batches(size: batchSize).map { module($0.inputs) } }
        return TensorDataset(inputs: Tensor.concat(outputs, axis: 0), labels: labels)
    }

    /// A Fisher–Yates permutation of `0..<n` from a seeded generator (the same on every machine).
    static func permutation(_ n: Int, seed: UInt64) -> [Int] {
        var generator = RandomGenerator(seed: seed)
        var order = Array(0..<n)
        for i in stride(from: n - 1, to: 0, by: -1) {
            order.swapAt(i, Int(generator.next() % UInt64(i + 1)))
        }
        return order
    }
}

/// Why ``TensorDataset/features(through:batchSize:)`` refused a backbone: features cached from
/// a backbone that trains would go stale. The fix is `backbone.freeze()`.
public enum FeatureExtractionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The backbone has trainable parameters (all their names, in module order).
    case trainableParameters(names: [String])
    /// BatchNorm layers of the backbone (paths inside it) that normalise with batch statistics in
    /// training mode, updating their running statistics: trainable parameters, `statistics = .batch`,
    /// or non-affine and never frozen.
    case batchStatistics(layers: [String])

    public var description: String {
        switch self {
        case let .trainableParameters(names):
            return "features(through:): the backbone has \(names.count) trainable parameter\(names.count == 1 ? "" : "s")"
                + " (\(Self.list(names))); cached features are only valid for a backbone that does not train:"
                + " call backbone.freeze() first"
        case let .batchStatistics(layers):
            return "features(through:): BatchNorm layer\(layers.count == 1 ? "" : "s") \(Self.list(layers)) of the backbone"
                + " normalise with batch statistics in training mode, so the model would compute other features"
                + " during fit; call backbone.freeze() first (or pin the backbone with pin(.inference))"
        }
    }

    /// The first five names, then how many more.
    private static func list(_ names: [String]) -> String {
        let shown = names.prefix(5).joined(separator: ", ")
        return names.count > 5 ? "\(shown) and \(names.count - 5) more" : shown
    }
}

/// Why a data file could not be read.
public enum DataError: Error, Equatable, Sendable, CustomStringConvertible {
    case io(path: String, reason: String)
    /// A line that is not `features..., label` with the expected number of numbers.
    case malformedLine(line: Int, reason: String)
    case empty

    public var description: String {
        switch self {
        case let .io(path, reason): return "cannot read \(path): \(reason)"
        case let .malformedLine(line, reason): return "line \(line): \(reason)"
        case .empty: return "the file holds no examples"
        }
    }
}

extension TensorDataset {
    /// Reads comma-separated lines of `features..., label` (the label last, an integer), as in
    /// the UCI digits file; features are multiplied by `scale` and shaped `featureShape`.
    /// Blank lines are skipped; any other malformed line throws with its number.
    public init(csv url: URL, featureShape: [Int], scale: Float = 1) throws(DataError) {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw .io(path: url.path, reason: (error as NSError).localizedDescription)
        }
        let width = featureShape.reduce(1, *)
        var features: [Float] = [], labels: [Int] = []
        features.reserveCapacity(text.utf8.count / 2)
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            if fields.count == 1 && fields[0].trimmingCharacters(in: .whitespaces).isEmpty { continue }
            guard fields.count == width + 1 else {
                throw .malformedLine(line: number + 1, reason: "\(fields.count) fields, expected \(width) features and a label")
            }
            for field in fields.dropLast() {
                guard let value = Float(field.trimmingCharacters(in: .whitespaces)), value.isFinite else {
                    throw .malformedLine(line: number + 1, reason: "\"\(field)\" is not a finite number")
                }
                features.append(value * scale)
            }
            guard let label = Int(fields.last!.trimmingCharacters(in: .whitespacesAndNewlines)), label >= 0 else {
                throw .malformedLine(line: number + 1, reason: "label \"\(fields.last!)\" is not a non-negative integer")
            }
            labels.append(label)
        }
        guard !labels.isEmpty else { throw .empty }
        self.init(inputs: Tensor(shape: [labels.count] + featureShape, scalars: features), labels: labels)
    }
}
