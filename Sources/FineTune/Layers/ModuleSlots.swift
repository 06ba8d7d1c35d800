import Foundation

// MARK: - Settable slots

/// A child module property that can be replaced: by assignment (`block.conv1 = Conv2d(...)`),
/// or by ``Module/replaceModule(at:with:)``, which LoRA, adapters and head replacement use.
/// The parent holds the new module, so every call path of any arity runs it.
///
/// The declared type is enforced: a slot declared `Linear` takes a `Linear` or a subclass
/// (such as ``LoRALinear``), and a replacement of another type throws
/// ``SelectionError/incompatibleReplacement(path:property:expected:actual:)``. Optionals and
/// arrays of modules work too (an array's elements are named `name.0`, `name.1`, ...).
///
/// ```swift
/// final class Classifier: Module {
///     @Child var backbone: Sequential
///     @Child var fc: Linear
///     @Child(key: "proj") var projection: Linear?     // state-dict key "proj"
///     init(...) { backbone = ...; fc = Linear(512, 10); projection = nil; super.init() }
/// }
/// try model.replaceModule(at: "fc", with: Linear(512, 3))   // or: model.fc = Linear(512, 3)
/// ```
@propertyWrapper
public final class Child<Value>: AnyChildSlot {
    private var value: Value
    /// The state-dict key, when it differs from the property name in snake_case.
    public let key: String?
    private let read: (Value) -> [(element: String?, module: Module)]
    private let write: (Value, String?, Module) -> Value?
    private let declaredType: String
    weak var owner: Module?

    /// A single child (`@Child var fc: Linear`).
    public init(wrappedValue: Value, key: String? = nil) where Value: Module {
        value = wrappedValue
        self.key = key
        read = { [(nil, $0)] }
        write = { _, element, module in element == nil ? module as? Value : nil }
        declaredType = "\(Value.self)"
    }

    /// An optional child (`@Child var downsample: Sequential?`).
    public init<M: Module>(wrappedValue: Value, key: String? = nil) where Value == M? {
        value = wrappedValue
        self.key = key
        read = { $0.map { [(nil, $0)] } ?? [] }
        write = { _, element, module in
            guard element == nil, let typed = module as? M else { return nil }
            return .some(typed)
        }
        declaredType = "\(M.self)?"
    }

    /// An array of children (`@Child var layers: [TransformerEncoderBlock]`), named by index.
    public init<M: Module>(wrappedValue: Value, key: String? = nil) where Value == [M] {
        value = wrappedValue
        self.key = key
        read = { $0.enumerated().map { (String($0.offset), $0.element as Module) } }
        write = { current, element, module in
            guard let element, let index = Int(element), current.indices.contains(index),
                  let typed = module as? M else { return nil }
            var copy = current
            copy[index] = typed
            return copy
        }
        declaredType = "[\(M.self)]"
    }

    public var wrappedValue: Value {
        get { value }
        set {
            value = newValue
            owner?.treeDidChange()
        }
    }

    var modules: [(element: String?, module: Module)] { read(value) }

    func place(_ module: Module, element: String?) -> Bool {
        guard let updated = write(value, element, module) else { return false }
        wrappedValue = updated
        return true
    }

    func expectedType(element: String?) -> String {
        element == nil ? declaredType : String(declaredType.dropFirst().dropLast())
    }
}

/// A parameter property that can be reassigned, e.g. to tie weights
/// (`decoder.weight = embedding.weight`): the assignment updates every cached parameter list
/// of the model. A `let` parameter needs no wrapper.
///
/// ```swift
/// final class TiedHead: Module {
///     @Param var weight: Parameter
///     init(tiedTo embedding: Embedding) { weight = embedding.weight; super.init() }
///     override func forward(_ x: Tensor) -> Tensor { x.matmul(weight.value.transposed()) }
/// }
/// ```
@propertyWrapper
public final class Param<Value>: AnyParamSlot {
    private var value: Value
    /// The state-dict key, when it differs from the parameter's own key and the property name.
    public let key: String?
    private let read: (Value) -> Parameter?
    weak var owner: Module?

    /// A parameter (`@Param var weight: Parameter`).
    public init(wrappedValue: Value, key: String? = nil) where Value == Parameter {
        value = wrappedValue
        self.key = key
        read = { $0 }
    }

    /// An optional parameter (`@Param var bias: Parameter?`).
    public init(wrappedValue: Value, key: String? = nil) where Value == Parameter? {
        value = wrappedValue
        self.key = key
        read = { $0 }
    }

    public var wrappedValue: Value {
        get { value }
        set {
            value = newValue
            owner?.treeDidChange()
        }
    }

    var parameter: Parameter? { read(value) }
}

/// What the registry needs from a ``Child`` slot, whatever its declared type.
protocol AnyChildSlot: AnyObject {
    var key: String? { get }
    var owner: Module? { get set }
    /// The modules it holds; `element` is the array index for array slots, nil otherwise.
    var modules: [(element: String?, module: Module)] { get }
    /// Puts `module` in the slot (at `element` for arrays); false when the type does not fit.
    func place(_ module: Module, element: String?) -> Bool
    /// The declared type, for error messages.
    func expectedType(element: String?) -> String
}

/// What the registry needs from a ``Param`` slot.
protocol AnyParamSlot: AnyObject {
    var key: String? { get }
    var owner: Module? { get set }
    var parameter: Parameter? { get }
}

// MARK: - The registry: one reflection pass per module, ever

/// The stored properties of one module that make up the tree, found by one reflection pass
/// when the module's structure is first needed. Plain stored properties are read once (a `let`
/// cannot change); ``Child`` and ``Param`` slots are read live and report assignments.
struct ModuleRegistry {
    enum Entry {
        /// A plain stored module (or collection of modules): fixed for the module's lifetime.
        case fixedChildren(property: String, key: String, children: [(name: String, module: Module)])
        case childSlot(property: String, key: String, slot: any AnyChildSlot)
        case fixedParameter(key: String, parameter: Parameter)
        case parameterSlot(key: String, slot: any AnyParamSlot)
        case buffer(key: String, buffer: Buffer)

        var label: String {
            switch self {
            case .fixedChildren(let property, _, _), .childSlot(let property, _, _): return property
            case .fixedParameter(let key, _), .parameterSlot(let key, _), .buffer(let key, _): return key
            }
        }

        /// Whether a fresh read of the same property holds the same objects (slots are live,
        /// so they always match).
        func holdsSameObjects(as other: Entry) -> Bool {
            switch (self, other) {
            case let (.fixedChildren(_, _, a), .fixedChildren(_, _, b)):
                return a.count == b.count && zip(a, b).allSatisfy { $0.module === $1.module }
            case let (.fixedParameter(_, a), .fixedParameter(_, b)): return a === b
            case let (.buffer(_, a), .buffer(_, b)): return a === b
            case (.childSlot, .childSlot), (.parameterSlot, .parameterSlot): return true
            default: return false
            }
        }
    }

    var entries: [Entry] = []

    /// Counts reflection passes in the current task (tests check that steady-state training
    /// reflects nothing).
    @TaskLocal static var passCounter: ReflectionCounter?

    /// The one place the library reflects on a module.
    static func reflect(_ module: Module) -> ModuleRegistry {
        read(module, counted: true)
    }

    private static func read(_ module: Module, counted: Bool) -> ModuleRegistry {
        if counted { passCounter?.increment() }
        var registry = ModuleRegistry()
        var levels: [Mirror] = []
        var mirror: Mirror? = Mirror(reflecting: module)
        while let m = mirror, m.subjectType != Module.self {
            levels.append(m)
            mirror = m.superclassMirror
        }
        // Base class properties first, so subclasses extend their parents' order.
        for level in levels.reversed() {
            for child in level.children {
                guard let label = child.label else { continue }
                registry.add(label: label, value: child.value, of: module)
            }
        }
        return registry
    }

    private mutating func add(label: String, value: Any, of module: Module) {
        if let slot = value as? any AnyChildSlot, label.hasPrefix("_") {
            let property = String(label.dropFirst())
            slot.owner = module
            entries.append(.childSlot(property: property, key: slot.key ?? module.key(forProperty: property), slot: slot))
            return
        }
        if let slot = value as? any AnyParamSlot, label.hasPrefix("_") {
            let property = String(label.dropFirst())
            slot.owner = module
            let key = slot.key ?? slot.parameter?.key ?? module.key(forProperty: property)
            entries.append(.parameterSlot(key: key, slot: slot))
            return
        }
        // `_`-prefixed plain properties are private references, not part of the tree (as in MLX).
        guard !label.hasPrefix("_") else { return }
        let property = Self.propertyName(label)
        let key = module.key(forProperty: property)
        switch Self.unwrapOptional(value) {
        case let m as Module:
            entries.append(.fixedChildren(property: property, key: key, children: [(key, m)]))
        case let collection as any ModuleCollection:
            // By the collection's declared element type: an empty `[Bool]` would also cast to `[Module]`.
            entries.append(.fixedChildren(property: property, key: key,
                                          children: collection.moduleElements.map { ("\(key).\($0.name)", $0.module) }))
        case let p as Parameter:
            entries.append(.fixedParameter(key: p.key ?? key, parameter: p))
        case let b as Buffer:
            entries.append(.buffer(key: b.key ?? key, buffer: b))
        default:
            break
        }
    }

    var children: [(name: String, module: Module)] {
        var result: [(name: String, module: Module)] = []
        for entry in entries {
            switch entry {
            case .fixedChildren(_, _, let children): result += children
            case .childSlot(_, let key, let slot):
                result += slot.modules.map { ($0.element.map { "\(key).\($0)" } ?? key, $0.module) }
            default: break
            }
        }
        return result
    }

    var parameters: [(name: String, parameter: Parameter)] {
        entries.compactMap {
            switch $0 {
            case .fixedParameter(let key, let p): return (key, p)
            case .parameterSlot(let key, let slot): return slot.parameter.map { (key, $0) }
            default: return nil
            }
        }
    }

    var buffers: [(name: String, buffer: Buffer)] {
        entries.compactMap {
            if case .buffer(let key, let b) = $0 { return (key, b) }
            return nil
        }
    }

    /// Where the child named `name` lives: a replaceable slot (with the array element), or the
    /// plain property that holds it.
    func location(ofChild name: String) -> (slot: (any AnyChildSlot)?, element: String?, property: String)? {
        for entry in entries {
            switch entry {
            case .fixedChildren(let property, _, let children) where children.contains(where: { $0.name == name }):
                return (nil, nil, property)
            case .childSlot(let property, let key, let slot):
                if name == key { return (slot, nil, property) }
                if name.hasPrefix(key + "."), slot.modules.contains(where: { $0.element == String(name.dropFirst(key.count + 1)) }) {
                    return (slot, String(name.dropFirst(key.count + 1)), property)
                }
            default: break
            }
        }
        return nil
    }

    #if DEBUG
    /// Debug builds: checks that no plain (non-slot) property of these modules was reassigned
    /// since it was read, which would leave the cached structure stale.
    static func verifyPlainProperties(of modules: [Module]) {
        for module in modules {
            let fresh = ModuleRegistry.read(module, counted: false)
            let cached = module.registry
            let stale = zip(cached.entries, fresh.entries).first { !$0.holdsSameObjects(as: $1) }?.0.label
                ?? (cached.entries.count == fresh.entries.count ? nil
                    : (cached.entries.count > fresh.entries.count ? cached.entries : fresh.entries)[min(cached.entries.count, fresh.entries.count)].label)
            if let stale {
                preconditionFailure("""
                    \(type(of: module)).\(stale) was reassigned after the model was first used, but it is a plain \
                    property, so the cached structure (parameters, optimizer, checkpoints) would not see the change. \
                    Declare it `@Child var` (modules) or `@Param var` (parameters), or call structureDidChange() after assigning.
                    """)
            }
        }
    }
    #endif

    /// `lazy var` storage is reported as `$__lazy_storage_$_name`.
    private static func propertyName(_ label: String) -> String {
        label.hasPrefix("$__lazy_storage_$_") ? String(label.dropFirst("$__lazy_storage_$_".count)) : label
    }

    private static func unwrapOptional(_ value: Any) -> Any {
        let m = Mirror(reflecting: value)
        guard m.displayStyle == .optional else { return value }
        return m.children.first.map { unwrapOptional($0.value) } ?? ()
    }
}

/// Arrays and string-keyed dictionaries whose declared element type is a module.
protocol ModuleCollection {
    var moduleElements: [(name: String, module: Module)] { get }
}

extension Array: ModuleCollection where Element: Module {
    var moduleElements: [(name: String, module: Module)] { enumerated().map { (String($0.offset), $0.element) } }
}

extension Dictionary: ModuleCollection where Key == String, Value: Module {
    var moduleElements: [(name: String, module: Module)] { sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }
}

/// Counts reflection passes (see ``ModuleRegistry/passCounter``).
final class ReflectionCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    var count: Int { lock.withLock { value } }
    func increment() { lock.withLock { value += 1 } }
}
