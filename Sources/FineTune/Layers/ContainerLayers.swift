/// Layers applied one after another (PyTorch's `nn.Sequential`). Children are named by
/// position, `"0"`, `"1"`, ..., so state-dict keys read `0.weight`, `1.running_mean`, ...
///
/// ```swift
/// let model = Sequential(Conv2d(1, 16, kernelSize: 3, padding: 1), BatchNorm2d(16), ReLU(),
///                        Flatten(), Linear(16 * 8 * 8, 10))
/// model.replaceModule(at: 4, with: Linear(16 * 8 * 8, 3))   // a new head
/// ```
public final class Sequential: Module {
    /// The layers, in order.
    public private(set) var layers: [Module]

    /// The given layers, in order.
    public init(_ layers: [Module]) {
        self.layers = layers
        super.init()
    }

    /// The given layers, in order.
    public convenience init(_ layers: Module...) {
        self.init(layers)
    }

    /// Number of layers.
    public var count: Int { layers.count }

    /// The layer at `index`; setting it replaces the layer.
    public subscript(index: Int) -> Module {
        get { layers[index] }
        set { replaceModule(at: index, with: newValue) }
    }

    /// Adds a layer at the end.
    public func append(_ layer: Module) {
        layers.append(layer)
        structureDidChange()
    }

    /// Inserts a layer at `index` (later layers move up one position, so their keys change).
    public func insert(_ layer: Module, at index: Int) {
        precondition(index >= 0 && index <= layers.count, "Sequential.insert: index \(index) out of range 0...\(layers.count)")
        layers.insert(layer, at: index)
        structureDidChange()
    }

    /// Removes and returns the layer at `index` (later layers move down one position).
    @discardableResult
    public func remove(at index: Int) -> Module {
        precondition(layers.indices.contains(index), "Sequential.remove: index \(index) out of range 0..<\(layers.count)")
        defer { structureDidChange() }
        return layers.remove(at: index)
    }

    /// Replaces the layer at `index` (e.g. a classification head) and returns the old one.
    /// Negative indices count from the end: `replaceModule(at: -1, with: Linear(512, 3))`. (A path
    /// string, `replaceModule(at: "3", with:)`, reaches the same slot through ``Module``.)
    @discardableResult
    public func replaceModule(at index: Int, with layer: Module) -> Module {
        let i = index < 0 ? index + layers.count : index
        precondition(layers.indices.contains(i), "Sequential.replaceModule: index \(index) out of range for \(layers.count) layers")
        let old = layers[i]
        layers[i] = layer
        structureDidChange()
        return old
    }

    public override func declaredChildren() -> [(name: String, module: Module)] {
        layers.enumerated().map { (name: String($0.offset), module: $0.element) }
    }

    /// Any module fits any position.
    public override func placeChild(_ module: Module, named name: String) -> ChildPlacement {
        guard let index = Int(name), layers.indices.contains(index) else { return .noSuchChild }
        layers[index] = module
        structureDidChange()
        return .placed
    }

    /// The layers in order. A `Conv2d` followed by a `BatchNorm2d` (and a `ReLU`) runs as
    /// ``Conv2d/callAsFunction(_:then:adding:activation:)``: one op where the batch norm uses
    /// fixed statistics, the same values either way.
    public override func forward(_ x: Tensor) -> Tensor {
        var y = x, i = 0
        while i < layers.count {
            if let conv = layers[i] as? Conv2d, i + 1 < layers.count, let norm = layers[i + 1] as? BatchNorm2d {
                let relu = i + 2 < layers.count ? layers[i + 2] as? ReLU : nil
                y = conv(y, then: norm, activation: relu)
                i += relu == nil ? 2 : 3
            } else {
                y = layers[i](y)
                i += 1
            }
        }
        return y
    }
}
