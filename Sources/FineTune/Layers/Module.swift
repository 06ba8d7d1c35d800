import Foundation

/// The base class of layers and models.
///
/// Parameters, buffers and child modules are found by reflection on stored properties
/// (`Parameter`, `Buffer`, `Module`, optionals and arrays/dictionaries of modules), so a
/// custom module only declares them. Names follow PyTorch's `state_dict`: property names in
/// snake_case joined by dots, array elements by index (`layers.0.weight`).
///
/// ```swift
/// final class Head: Module {
///     let fc1 = Linear(512, 128)
///     let fc2 = Linear(128, 10)
///     override func forward(_ x: Tensor) -> Tensor { fc2(fc1(x).relu()) }
/// }
/// let head = Head()
/// head.namedParameters().map(\.name)   // ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
/// ```
open class Module {
    /// Whether the module is in training mode (dropout active, batch statistics in BatchNorm).
    public internal(set) var isTraining = true

    /// The module standing in for this one after ``replaceModule(at:with:)``: calls are
    /// forwarded to it, and the tree lists it instead of this module.
    public internal(set) var replacement: Module?

    /// This module, or the module that (transitively) replaced it.
    public var resolved: Module {
        var current = self
        while let next = current.replacement { current = next }
        return current
    }

    public init() {}

    /// The computation of the module. Subclasses with a single tensor input override this.
    open func forward(_ x: Tensor) -> Tensor {
        preconditionFailure("\(type(of: self)) does not implement forward(_:)")
    }

    /// Runs ``forward(_:)`` (and records the output shape while a ``summary(input:)`` runs).
    /// A replaced module forwards the call to its ``replacement``.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        if let replacement { return replacement(x) }
        let y = forward(x)
        ShapeRecorder.current?.record(self, shape: y.shape)
        return y
    }

    // MARK: Structure

    /// The state-dict key of a stored property: snake_case of its name by default.
    /// Override to match a checkpoint's naming (e.g. `"loraA" -> "lora_A"`).
    open func key(forProperty name: String) -> String {
        Module.snakeCase(name)
    }

    /// Direct children with their keys, in declaration order.
    open func namedChildren() -> [(name: String, module: Module)] {
        var result: [(String, Module)] = []
        forEachStoredProperty { name, value in
            switch value {
            case let m as Module: result.append((name, m))
            case let ms as [Module]: result += ms.enumerated().map { ("\(name).\($0.offset)", $0.element) }
            case let dict as [String: Module]: result += dict.sorted { $0.key < $1.key }.map { ("\(name).\($0.key)", $0.value) }
            default: break
            }
        }
        return result
    }

    /// This module's own parameters (not its children's), with their keys.
    open func namedDirectParameters() -> [(name: String, parameter: Parameter)] {
        var result: [(String, Parameter)] = []
        forEachStoredProperty { name, value in
            if let p = value as? Parameter { result.append((p.key ?? name, p)) }
        }
        return result
    }

    /// This module's own buffers, with their keys.
    open func namedDirectBuffers() -> [(name: String, buffer: Buffer)] {
        var result: [(String, Buffer)] = []
        forEachStoredProperty { name, value in
            if let b = value as? Buffer { result.append((b.key ?? name, b)) }
        }
        return result
    }

    /// Direct children as the tree sees them: replaced children resolved to their replacements.
    public func resolvedChildren() -> [(name: String, module: Module)] {
        namedChildren().map { ($0.name, $0.module.resolved) }
    }

    /// Every module in the tree with its dotted path; the root is `""`.
    public func namedModules() -> [(name: String, module: Module)] {
        var result: [(String, Module)] = [("", self)]
        for (name, child) in resolvedChildren() {
            result += child.namedModules().map { ($0.name.isEmpty ? name : "\(name).\($0.name)", $0.module) }
        }
        return result
    }

    /// Every parameter in the tree with its dotted name (`backbone.layer2.0.conv1.weight`).
    /// A parameter shared by two modules is listed once, under its first name.
    public func namedParameters() -> [(name: String, parameter: Parameter)] {
        var seen = Set<ObjectIdentifier>()
        var result: [(String, Parameter)] = []
        for (prefix, module) in namedModules() {
            for (name, p) in module.namedDirectParameters() where seen.insert(ObjectIdentifier(p)).inserted {
                result.append((prefix.isEmpty ? name : "\(prefix).\(name)", p))
            }
        }
        return result
    }

    /// Every buffer in the tree with its dotted name.
    public func namedBuffers() -> [(name: String, buffer: Buffer)] {
        namedModules().flatMap { prefix, module in
            module.namedDirectBuffers().map { (prefix.isEmpty ? $0.name : "\(prefix).\($0.name)", $0.buffer) }
        }
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

    /// Replaces the module at a dotted path with `newModule` and returns the module it
    /// replaced: a new head, a LoRA-wrapped layer, a layer with an adapter. It works on any
    /// model, `let` properties included: the old module forwards its calls to the new one,
    /// and names, freezing, optimizers and checkpoints see the new one. (A typed property
    /// such as `model.fc` still returns the old object; use ``module(named:)``.) The new
    /// module takes the old one's training mode.
    ///
    /// ```swift
    /// try model.replaceModule(at: "fc", with: Linear(512, 5))    // new 5-class head
    /// ```
    @discardableResult
    public func replaceModule(at path: String, with newModule: Module) throws(SelectionError) -> Module {
        guard let old = module(named: path), !path.isEmpty else {
            throw .noModule(path: path, examples: Array(namedModules().map(\.name).dropFirst().prefix(8)))
        }
        precondition(newModule !== old, "replaceModule: the module is already at \(path)")
        precondition(!newModule.namedModules().contains { $0.module === old },
                     "replaceModule: the new module contains the one it replaces; forward to it with forward(_:), not by calling it")
        newModule.train(old.isTraining)
        old.replacement = newModule
        return old
    }

    // MARK: Modes

    /// Sets training mode on this module and all descendants.
    public func train(_ training: Bool = true) {
        for (_, m) in namedModules() { m.isTraining = training }
    }

    /// Runs `body` in evaluation mode without recording gradients (PyTorch's `model.eval()`
    /// under `torch.no_grad()`), then puts the training mode back as it was.
    ///
    /// ```swift
    /// let logits = model.inferring { model(x) }
    /// ```
    public func inferring<R>(_ body: () throws -> R) rethrows -> R {
        let wasTraining = isTraining
        eval()
        defer { train(wasTraining) }
        return try withoutGradients(body)
    }

    /// Evaluation mode: dropout off, BatchNorm uses running statistics.
    public func eval() { train(false) }

    // MARK: Reflection

    private func forEachStoredProperty(_ body: (String, Any) -> Void) {
        var mirror: Mirror? = Mirror(reflecting: self)
        var levels: [Mirror] = []
        while let m = mirror, m.subjectType != Module.self {
            levels.append(m)
            mirror = m.superclassMirror
        }
        // Base class properties first, so subclasses extend their parents' order.
        for level in levels.reversed() {
            for child in level.children {
                guard let label = child.label, !label.hasPrefix("_") else { continue }
                body(key(forProperty: Module.propertyName(label)), Module.unwrapOptional(child.value))
            }
        }
    }

    /// `lazy var` storage is reported as `$__lazy_storage_$_name`.
    private static func propertyName(_ label: String) -> String {
        label.hasPrefix("$__lazy_storage_$_") ? String(label.dropFirst("$__lazy_storage_$_".count)) : label
    }

    private static func unwrapOptional(_ value: Any) -> Any {
        let m = Mirror(reflecting: value)
        guard m.displayStyle == .optional else { return value }
        return m.children.first.map { unwrapOptional($0.value) } ?? ()
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
