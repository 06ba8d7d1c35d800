import Foundation

/// The base class of layers and models.
///
/// A module's parameters, buffers and children are its stored properties: `Parameter`,
/// `Buffer`, `Module` (and optionals, arrays and dictionaries of modules). They are found by
/// one reflection pass the first time the structure is needed and cached from then on; a
/// training step reflects nothing. Names follow PyTorch's `state_dict`: property names in
/// snake_case joined by dots, array elements by index (`layers.0.weight`).
///
/// Declare a child `@Child var` when it may be replaced (a new head, LoRA, an adapter) and a
/// parameter `@Param var` when it may be reassigned (weight tying); plain `let` properties are
/// fixed. Replacing puts the new module where the parent holds it, so every call path, of any
/// arity, runs the new module.
///
/// ```swift
/// final class Head: Module {
///     @Child var fc1 = Linear(512, 128)
///     @Child var fc2 = Linear(128, 10)
///     override func forward(_ x: Tensor) -> Tensor { fc2(fc1(x).relu()) }
/// }
/// let head = Head()
/// head.namedParameters().map(\.name)   // ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
/// try head.replaceModule(at: "fc2", with: Linear(128, 3))
/// ```
///
/// Properties whose name starts with `_` are private references and not part of the tree.
/// A plain `var` that holds a module or parameter is read once: assign such properties only
/// before the module is first used, or declare them with ``Child`` / ``Param``.
open class Module {
    /// Whether the module is in training mode (dropout active, batch statistics in BatchNorm).
    /// Each module keeps its own; ``train(_:)`` and ``eval()`` set a whole subtree.
    public internal(set) var isTraining = true

    /// The mode this module is pinned to (``pin(_:)``), if any: ``train(_:)`` and ``eval()``
    /// leave a pinned module and its subtree alone.
    public private(set) var pinnedMode: Mode?

    /// A module applied to this module's output by every call (``completeCall(_:)``), such as
    /// a bottleneck adapter; it is the child named `adapter`.
    public private(set) var outputAdapter: Module?

    private var registryStorage: ModuleRegistry?
    private var cachedModules: [(name: String, module: Module)]?
    private var cachedParameters: [(name: String, parameter: Parameter)]?
    private var cachedBuffers: [(name: String, buffer: Buffer)]?
    /// Modules whose cached tree lists include this one (weak).
    private var parents: [WeakModule] = []

    public init() {}

    /// The computation of the module. Subclasses with a single tensor input override this.
    open func forward(_ x: Tensor) -> Tensor {
        preconditionFailure("\(type(of: self)) does not implement forward(_:)")
    }

    /// Runs ``forward(_:)`` and then ``completeCall(_:)``.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        completeCall(forward(x))
    }

    /// Finishes a call of this module: applies the ``outputAdapter`` (if any) and records the
    /// output shape while a ``summary(input:)`` runs. Every call overload returns through it;
    /// a call overload you write for your own module should end with `return completeCall(y)`.
    ///
    /// ```swift
    /// func callAsFunction(_ x: Tensor, mask: Tensor) -> Tensor { completeCall(encode(x, mask)) }
    /// ```
    public final func completeCall(_ output: Tensor) -> Tensor {
        var y = output
        if let outputAdapter { y = outputAdapter(y) }
        ShapeRecorder.current?.record(self, shape: y.shape)
        return y
    }

    // MARK: Structure

    /// The state-dict key of a stored property: snake_case of its name by default.
    /// Override to match a checkpoint's naming (e.g. `"loraA" -> "lora_A"`), or pass
    /// `key:` to ``Child`` / ``Param``.
    open func key(forProperty name: String) -> String {
        Module.snakeCase(name)
    }

    var registry: ModuleRegistry {
        if let registryStorage { return registryStorage }
        let built = ModuleRegistry.reflect(self)
        registryStorage = built
        return built
    }

    /// The children this module declares, with their keys, in declaration order. Containers
    /// that keep their children in their own storage (``Sequential``) override this together
    /// with ``placeChild(_:named:)`` and call ``structureDidChange()`` when they change.
    open func declaredChildren() -> [(name: String, module: Module)] {
        registry.children
    }

    /// Puts `module` in place of the declared child named `name`.
    open func placeChild(_ module: Module, named name: String) -> ChildPlacement {
        guard let location = registry.location(ofChild: name) else { return .noSuchChild }
        guard let slot = location.slot else { return .notReplaceable(property: location.property) }
        return slot.place(module, element: location.element)
            ? .placed
            : .incompatible(property: location.property, expected: slot.expectedType(element: location.element))
    }

    /// Direct children with their keys: the declared children, then the ``outputAdapter``.
    public final func namedChildren() -> [(name: String, module: Module)] {
        var children = declaredChildren()
        if let outputAdapter { children.append(("adapter", outputAdapter)) }
        return children
    }

    /// This module's own parameters (not its children's), with their keys.
    public final func namedDirectParameters() -> [(name: String, parameter: Parameter)] {
        registry.parameters
    }

    /// This module's own buffers, with their keys.
    public final func namedDirectBuffers() -> [(name: String, buffer: Buffer)] {
        registry.buffers
    }

    /// Every module in the tree with its dotted path; the root is `""`.
    public func namedModules() -> [(name: String, module: Module)] {
        if let cachedModules {
            verifyCachedStructure()
            return cachedModules
        }
        var result: [(name: String, module: Module)] = [("", self)]
        for (name, child) in namedChildren() {
            child.addParent(self)
            result += child.namedModules().map { ($0.name.isEmpty ? name : "\(name).\($0.name)", $0.module) }
        }
        cachedModules = result
        return result
    }

    /// Every parameter in the tree with its dotted name (`backbone.layer2.0.conv1.weight`).
    /// A parameter shared by two modules is listed once, under its first name.
    public func namedParameters() -> [(name: String, parameter: Parameter)] {
        if let cachedParameters {
            verifyCachedStructure()
            return cachedParameters
        }
        var seen = Set<ObjectIdentifier>()
        var result: [(name: String, parameter: Parameter)] = []
        for (prefix, module) in namedModules() {
            for (name, p) in module.namedDirectParameters() where seen.insert(ObjectIdentifier(p)).inserted {
                result.append((prefix.isEmpty ? name : "\(prefix).\(name)", p))
            }
        }
        cachedParameters = result
        return result
    }

    /// Every buffer in the tree with its dotted name.
    public func namedBuffers() -> [(name: String, buffer: Buffer)] {
        if let cachedBuffers {
            verifyCachedStructure()
            return cachedBuffers
        }
        let result = namedModules().flatMap { prefix, module in
            module.namedDirectBuffers().map { (prefix.isEmpty ? $0.name : "\(prefix).\($0.name)", $0.buffer) }
        }
        cachedBuffers = result
        return result
    }

    /// All parameters, in `namedParameters()` order.
    public func parameters() -> [Parameter] { namedParameters().map(\.parameter) }

    /// The parameter with this dotted name, if any.
    public func parameter(named name: String) -> Parameter? {
        namedParameters().first { $0.name == name }?.parameter
    }

    /// The module at this dotted path (`""` is self), if any.
    public func module(named path: String) -> Module? {
        namedModules().first { $0.name == path }?.module
    }

    /// Debug builds: stops with a message naming the property when a plain property of a module
    /// in the cached tree was reassigned since it was read. Release builds: nothing.
    @inline(__always)
    private func verifyCachedStructure() {
        #if DEBUG
        if let cachedModules { ModuleRegistry.verifyPlainProperties(of: cachedModules.map(\.module)) }
        #endif
    }

    /// Tells the module that its children or parameters changed outside a ``Child`` /
    /// ``Param`` slot (a plain `var` reassigned after first use): it reads its properties again,
    /// and it and every module holding it rebuild their cached lists. Slot assignments and the
    /// library's own edits need no call. Debug builds check the cached structure against the
    /// properties and stop with a message naming the property when a call is missing.
    public func structureDidChange() {
        registryStorage = nil
        treeDidChange()
    }

    /// Drops the cached tree lists of this module and of every module holding it.
    func treeDidChange() {
        var visited = Set<ObjectIdentifier>()
        var pending: [Module] = [self]
        while let module = pending.popLast() {
            guard visited.insert(ObjectIdentifier(module)).inserted else { continue }
            module.cachedModules = nil
            module.cachedParameters = nil
            module.cachedBuffers = nil
            module.parents.removeAll { $0.module == nil }
            pending += module.parents.compactMap(\.module)
        }
    }

    private func addParent(_ parent: Module) {
        if !parents.contains(where: { $0.module === parent }) { parents.append(WeakModule(parent)) }
    }

    /// Replaces the module at a dotted path with `newModule` and returns the module it
    /// replaced: a new head, a LoRA layer, or any other module of the slot's declared type.
    /// The parent holds the new module from then on, so every call reaches it, and names,
    /// freezing, optimizers and checkpoints see it. The new module takes the old one's
    /// training mode, pin and output adapter.
    ///
    /// Throws ``SelectionError/noModule(path:examples:)`` for an unknown path,
    /// ``SelectionError/incompatibleReplacement(path:property:expected:actual:)`` when the
    /// new module does not fit the declared type, and ``SelectionError/notReplaceable(path:property:)``
    /// when the parent holds the module in a plain property (declare it `@Child var`).
    ///
    /// ```swift
    /// try model.replaceModule(at: "fc", with: Linear(512, 5))    // new 5-class head
    /// ```
    @discardableResult
    public func replaceModule(at path: String, with newModule: Module) throws(SelectionError) -> Module {
        guard !path.isEmpty, let (parent, name, old) = childLocation(path) else {
            throw .noModule(path: path, examples: Array(namedModules().map(\.name).dropFirst().prefix(8)))
        }
        guard newModule !== old else { return old }
        if newModule.namedModules().contains(where: { $0.module === parent }) {
            throw .wouldCreateCycle(path: path)
        }
        let adapter = old.outputAdapter
        switch parent.placeChild(newModule, named: name) {
        case .placed: break
        case .noSuchChild:
            throw .noModule(path: path, examples: Array(namedModules().map(\.name).dropFirst().prefix(8)))
        case .notReplaceable(let property):
            throw .notReplaceable(path: path, property: "\(type(of: parent)).\(property)")
        case .incompatible(let property, let expected):
            throw .incompatibleReplacement(path: path, property: "\(type(of: parent)).\(property)",
                                           expected: expected, actual: "\(type(of: newModule))")
        }
        parent.structureDidChange()
        newModule.train(old.isTraining)
        if let pin = old.pinnedMode { newModule.pin(pin) }
        if adapter != nil && adapter !== newModule.outputAdapter {
            old.attachOutputAdapter(nil)
            newModule.attachOutputAdapter(adapter)
        }
        return old
    }

    /// The parent, the child's name within it, and the child, for a dotted path.
    func childLocation(_ path: String) -> (parent: Module, name: String, child: Module)? {
        for (prefix, module) in namedModules() {
            guard prefix.isEmpty || path.hasPrefix(prefix + ".") else { continue }
            let rest = prefix.isEmpty ? path : String(path.dropFirst(prefix.count + 1))
            if let child = module.namedChildren().first(where: { $0.name == rest }) {
                return (module, rest, child.module)
            }
        }
        return nil
    }

    /// Sets (or, with nil, removes) the module applied to this module's output by every call.
    /// ``addAdapters(after:bottleneck:features:activation:)`` uses it.
    public func attachOutputAdapter(_ adapter: Module?) {
        outputAdapter = adapter
        if let adapter { adapter.train(isTraining) }
        structureDidChange()
    }

    // MARK: Modes

    /// A module's mode: training (dropout on, BatchNorm batch statistics) or inference.
    public enum Mode: Sendable, Equatable {
        case training, inference
    }

    /// Sets training mode on this module and its descendants, except pinned ones (``pin(_:)``)
    /// and their subtrees.
    public func train(_ training: Bool = true) {
        guard pinnedMode == nil else { return }
        setMode(training)
    }

    private func setMode(_ training: Bool) {
        isTraining = training
        for (_, child) in namedChildren() { child.train(training) }
    }

    /// Evaluation mode: dropout off, BatchNorm uses running statistics.
    public func eval() { train(false) }

    /// Puts this module and its subtree in `mode` and keeps them there: ``train(_:)`` and
    /// ``eval()`` on any module (this one included) leave them alone until ``unpin()``.
    ///
    /// ```swift
    /// model.backbone.pin(.inference)    // dropout off, BatchNorm statistics fixed, through fit()
    /// ```
    public func pin(_ mode: Mode) {
        pinnedMode = nil
        setMode(mode == .training)
        pinnedMode = mode
    }

    /// Releases ``pin(_:)``; the module keeps its current mode until the next ``train(_:)``.
    public func unpin() { pinnedMode = nil }

    /// Runs `body` and then puts every module's own training mode back as it was.
    public func preservingModes<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        let modes = namedModules().map { ($0.module, $0.module.isTraining) }
        defer { for (module, training) in modes { module.isTraining = training } }
        return try body()
    }

    /// Runs `body` in evaluation mode without recording gradients (PyTorch's `model.eval()`
    /// under `torch.no_grad()`), then puts every module's mode back as it was.
    ///
    /// ```swift
    /// let logits = model.inferring { model(x) }
    /// ```
    public func inferring<R>(_ body: () throws -> R) rethrows -> R {
        try preservingModes {
            eval()
            return try withoutGradients(body)
        }
    }

    /// `runningMean` -> `running_mean`; digits and existing underscores are kept.
    static func snakeCase(_ name: String) -> String {
        var out = ""
        for ch in name {
            if ch.isUppercase {
                if !out.isEmpty && out.last != "_" { out.append("_") }
                out.append(contentsOf: ch.lowercased())
            } else {
                out.append(ch)
            }
        }
        return out
    }
}

/// The result of ``Module/placeChild(_:named:)``.
public enum ChildPlacement: Sendable, Equatable {
    case placed
    case noSuchChild
    /// The child is held in a plain property (`let`), which cannot be replaced.
    case notReplaceable(property: String)
    /// The new module is not of the slot's declared type.
    case incompatible(property: String, expected: String)
}

private struct WeakModule {
    weak var module: Module?
    init(_ module: Module) { self.module = module }
}

/// Collects output shapes during a summary's forward pass.
final class ShapeRecorder: Sendable {
    @TaskLocal static var current: ShapeRecorder?
    /// Behind a lock: a module's forward may run on another thread of the task (parallel ops).
    private let recorded = Locked<[ObjectIdentifier: [Int]]>([:])
    var shapes: [ObjectIdentifier: [Int]] { recorded.withLock { $0 } }
    func record(_ module: Module, shape: [Int]) { recorded.withLock { $0[ObjectIdentifier(module)] = shape } }
}
