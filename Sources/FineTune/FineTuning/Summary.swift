import Foundation

extension Module {
    /// A table of the model like Keras' `model.summary()` and PEFT's `print_trainable_parameters`:
    /// module path, type, output shape (when `input` is given, from one forward pass in eval
    /// mode without gradients), parameter count, trainable/frozen, learning-rate multipliers,
    /// the module's mode (`train`, `eval`, `pinned`; for BatchNorm, which statistics a training
    /// call uses), and totals including the memory of weights, gradients and optimizer state.
    ///
    /// `optimizerSlots` is the number of state tensors per trainable parameter (Adam: 2, SGD with
    /// momentum: 1).
    ///
    /// ```swift
    /// print(model.summary(input: Tensor.zeros([1, 1, 28, 28])))
    /// ```
    public func summary(input: Tensor? = nil, optimizerSlots: Int = 2) -> String {
        var shapes: [ObjectIdentifier: [Int]] = [:]
        if let input {
            let recorder = ShapeRecorder()
            ShapeRecorder.$current.withValue(recorder) { _ = inferring { self(input) } }
            shapes = recorder.shapes
        }
        var rows: [[String]] = [["Module", "Type", "Output shape", "Params", "Trainable", "LR x", "Mode"]]
        let modules = namedModules().filter { !$0.name.isEmpty }
        for (path, module) in modules {
            let params = module.parameters()
            let total = params.reduce(0) { $0 + $1.count }
            let trainable = params.filter { !$0.isFrozen }.reduce(0) { $0 + $1.count }
            let state = total == 0 ? "-" : trainable == total ? "yes" : trainable == 0 ? "frozen" : "partial \(trainable)"
            let multipliers = Set(params.filter { !$0.isFrozen }.map(\.lrMultiplier)).sorted()
            let lr = multipliers.isEmpty ? "-" : multipliers.map { Module.formatMultiplier($0) }.joined(separator: ",")
            let depth = modules.filter { path.hasPrefix($0.name + ".") }.count
            let shape = shapes[ObjectIdentifier(module)].map { "\($0)" } ?? ""
            rows.append([String(repeating: "  ", count: depth) + path, String(describing: type(of: module)), shape,
                         Module.grouped(total), state, lr, Module.modeDescription(module)])
        }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
        func line(_ row: [String]) -> String {
            row.enumerated().map { c, v in c == 3 ? String(repeating: " ", count: widths[c] - v.count) + v
                : v + String(repeating: " ", count: widths[c] - v.count) }.joined(separator: "  ")
        }
        let rule = String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1))
        var out = [line(rows[0]), rule] + rows.dropFirst().map(line) + [rule]
        let total = parameterCount, trainable = trainableParameterCount, frozen = frozenParameterCount
        let percent = total == 0 ? 0 : 100 * Double(trainable) / Double(total)
        out.append("Total params:      \(Module.grouped(total))")
        out.append("Trainable params:  \(Module.grouped(trainable)) (\(String(format: "%.2f", percent))%)")
        out.append("Frozen params:     \(Module.grouped(frozen))")
        let bufferScalars = namedBuffers().reduce(0) { $0 + $1.buffer.value.count }
        out.append("Memory: weights \(Module.bytes((total + bufferScalars) * 4)), gradients \(Module.bytes(trainable * 4)), "
                   + "optimizer state \(Module.bytes(trainable * 4 * optimizerSlots)) (\(optimizerSlots) slots)")
        return out.joined(separator: "\n")
    }

    /// `train` / `eval`, `pinned` when pinned, and BatchNorm's statistics in training mode.
    static func modeDescription(_ module: Module) -> String {
        var mode = module.isTraining ? "train" : "eval"
        if module.pinnedMode != nil { mode += " (pinned)" }
        if let bn = module as? BatchNorm, bn.isTraining {
            mode += bn.effectiveStatistics == .batch ? ", batch stats" : ", running stats"
        }
        return mode
    }

    static func grouped(_ n: Int) -> String {
        let s = String(n)
        var out = ""
        for (i, ch) in s.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return String(out.reversed())
    }

    static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB"]
        var v = Double(n), u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : String(format: "%.1f", v) + " " + units[u]
    }

    static func formatMultiplier(_ m: Float) -> String {
        m == m.rounded() ? String(Int(m)) : String(format: "%g", Double(m))
    }
}
