#!/usr/bin/env bash
# Checks that dependencies between the folders of Sources/FineTune run one way (called by .ci/run).
#
#   scripts/check-layers.sh               check Sources/FineTune; exit 1 and list each violation
#   scripts/check-layers.sh DIR           check another copy of the sources (DIR holds the folders)
#   scripts/check-layers.sh --self-test   reintroduce known violations in scratch copies, expect each to fail
#
# The order, lowest first (a file may use its own folder, a folder on its level, or a lower one):
#   Support <- Kernels <- Tensor, Autograd <- Ops <- Layers <- Optimizers, FineTuning <- Checkpoint
#   <- Models <- Data <- Training
# Tokenizers depends on Support alone, and Models, Data and Training may use it.
# A folder that is not in this table fails the check until it is given a place.
#
# How it works (bash + awk, well under a second): pass 1 builds a symbol table per folder from the
# declarations in the sources; pass 2 reads every file's identifiers and reports each that is
# declared only in folders the file may not use.
#   * Flagged declarations: top-level types and typealiases, top-level functions and globals, and the
#     members of `extension X { ... }` blocks (functions, properties, nested types).
#   * Functions are keyed by name and first argument label (`summed(toShape:` is not
#     `summed(alongAxes:` and not `adding(to:`), properties by name.
#   * A use is: a capitalised identifier not after a dot (a type), `name(label:` or `name(` (a call,
#     with or without a receiver), or `.name` (a property). Argument labels (`name:`) are not uses.
#   * A name that a permitted folder also declares (at any depth, locals included) is never flagged:
#     overloads with the same key in a lower folder hide the higher one. Names that the standard
#     library also gives members (see `stdlib_members` below) are not flagged as members.
#   * Comments and string literals are stripped first (multi-line strings included).
# Limits: it reads text, not types. It misses initialisers (`Foo(x)` is caught through the type
# name `Foo`, but an `init` added by an extension in a higher folder is not), subscripts and
# operators declared in a higher folder, members of types declared in their own body (used through
# a value whose type is never named), calls by trailing closure only (`x.map { }`), and identifiers
# inside string interpolation. A same-named declaration in a permitted folder hides a violation.
set -euo pipefail
cd "$(dirname "$0")/.."

# folder level (Tokenizers is handled apart: it depends on Support alone)
levels="Support 0 Kernels 1 Tensor 2 Autograd 2 Ops 3 Layers 4 Optimizers 5 FineTuning 5 Checkpoint 6 Models 7 Data 8 Training 9 Tokenizers -"
stdlib_members="sum description debugDescription hash hashValue count isEmpty first last map flatMap compactMap filter reduce contains min max sorted reversed append insert remove removeAll index indices startIndex endIndex makeIterator next encode rawValue values keys"

check() {
    local root=$1
    local -a files
    mapfile -t files < <(find "$root" -name '*.swift' -type f | LC_ALL=C sort)
    if [[ ${#files[@]} -eq 0 ]]; then echo "check-layers: no Swift files under $root"; return 2; fi
    awk -v root="$root" -v levels="$levels" -v stdlib="$stdlib_members" '
    function folder_of(path,   rest) {
        rest = substr(path, length(root) + 2)
        if (index(rest, "/") == 0) return "."
        return substr(rest, 1, index(rest, "/") - 1)
    }
    function may_use(f, g) {
        if (f == g) return 1
        if (f == "Tokenizers") return g == "Support"
        if (g == "Tokenizers") return level[f] >= level["Models"]
        return level[g] <= level[f]
    }
    # Removes comments and string literals from $0 (state carried across lines).
    function strip(s,   out, i, c, n) {
        out = ""; n = length(s); i = 1
        while (i <= n) {
            if (in_block) {
                if (substr(s, i, 2) == "*/") { in_block = 0; i += 2 } else i++
                continue
            }
            if (in_multi) {
                if (substr(s, i, 3) == "\"\"\"") { in_multi = 0; i += 3 } else i++
                continue
            }
            c = substr(s, i, 1)
            if (substr(s, i, 2) == "//") break
            if (substr(s, i, 2) == "/*") { in_block = 1; i += 2; continue }
            if (substr(s, i, 3) == "\"\"\"") { in_multi = 1; out = out "\"\""; i += 3; continue }
            if (c == "\"") {
                i++
                while (i <= n && substr(s, i, 1) != "\"") { if (substr(s, i, 1) == "\\") i++; i++ }
                i++; out = out "\"\""; continue
            }
            out = out c; i++
        }
        return out
    }
    # The first argument label of a declaration whose text after the name is `rest`.
    function decl_key(name, rest,   label) {
        sub(/^<[^(]*>/, "", rest)
        if (rest !~ /^\(/) return name "("          # generic constraint we cannot read
        rest = substr(rest, 2)
        sub(/^[ \t]+/, "", rest)
        if (rest ~ /^\)/) return name "()"
        if (rest == "") return name "("               # parameters on the next line: key by name only
        if (match(rest, /^[A-Za-z_][A-Za-z0-9_]*/)) {
            label = substr(rest, 1, RLENGTH)
            return name "(" label ":"
        }
        return name "("
    }
    function declare(f, key, flag) {
        known[f, key] = 1
        if (flag) { if (!((key) in owner)) owner[key] = f; else if (index(" " owner[key] " ", " " f " ") == 0) owner[key] = owner[key] " " f }
        if (key ~ /\($/) { known_prefix[f, key] = 1 }
    }
    BEGIN {
        n = split(levels, parts, " ")
        for (i = 1; i < n; i += 2) { level[parts[i]] = parts[i + 1]; listed[parts[i]] = 1 }
        split(stdlib, words, " ")
        for (i in words) stdlib_member[words[i]] = 1
        pass = 1
    }
    FNR == 1 {
        in_block = 0; in_multi = 0; depth = 0; pending_name = ""
        folder = folder_of(FILENAME)
        if (pass == 1 && !(folder in listed)) { print "check-layers: " FILENAME ": folder " folder " has no place in the order (add it to scripts/check-layers.sh)"; bad = 1 }
    }
    pass == 1 {
        line = strip($0)
        if (pending_name != "") {
            t = line; sub(/^[ \t]+/, "", t)
            if (match(t, /^[A-Za-z_][A-Za-z0-9_]*/)) declare(folder, pending_name "(" substr(t, 1, RLENGTH) ":", pending_flag)
            pending_name = ""
        }
        d = line
        gsub(/@[A-Za-z_][A-Za-z0-9_]*(\([^)]*\))?/, "", d)
        gsub(/(^|[ \t])(public|private|fileprivate|internal|open|package|final|static|class[ \t]+func|override|mutating|nonmutating|nonisolated(\(unsafe\))?|indirect|lazy|weak|unowned|dynamic|convenience|required|consuming|borrowing)[ \t]/, " ", d)
        gsub(/class[ \t]+func/, "func", d)
        sub(/^[ \t]+/, "", d)
        if (depth == 0) context = ""
        if (match(d, /^(class|struct|enum|protocol|actor|typealias|extension)[ \t]+[A-Za-z_][A-Za-z0-9_.]*/)) {
            split(substr(d, 1, RLENGTH), w, /[ \t]+/)
            if (w[1] == "extension") { if (depth == 0) context = "extension" }
            else {
                declare(folder, w[2], depth == 0 || (depth == 1 && context == "extension"))
                if (depth == 0) context = "type"
            }
        } else if (match(d, /^func[ \t]+[A-Za-z_][A-Za-z0-9_]*/)) {
            name = substr(d, 1, RLENGTH); sub(/^func[ \t]+/, "", name)
            rest = substr(d, RLENGTH + 1)
            flag = depth == 0 || (depth == 1 && context == "extension")
            key = decl_key(name, rest)
            declare(folder, key, flag)
            declare(folder, name "(", 0)
            if (key == name "(" && rest ~ /\([ \t]*$/) { pending_name = name; pending_flag = flag }
        } else if (match(d, /^(let|var|case)[ \t]+[A-Za-z_][A-Za-z0-9_]*/)) {
            name = substr(d, 1, RLENGTH); sub(/^(let|var|case)[ \t]+/, "", name)
            declare(folder, name, (depth == 0 || (depth == 1 && context == "extension")) && d !~ /^case/)
            # more cases on the line: case a, b, c
            if (d ~ /^case/) { t = substr(d, RLENGTH + 1); while (match(t, /,[ \t]*[A-Za-z_][A-Za-z0-9_]*/)) { nm = substr(t, RSTART, RLENGTH); sub(/^,[ \t]*/, "", nm); declare(folder, nm, 0); t = substr(t, RSTART + RLENGTH) } }
        }
        # local declarations anywhere (let x, var y, func z, guard let, if let, for x in, closure params)
        t = line
        while (match(t, /(let|var|for|case)[ \t]+[A-Za-z_][A-Za-z0-9_]*/)) {
            nm = substr(t, RSTART, RLENGTH); sub(/^(let|var|for|case)[ \t]+/, "", nm); known[folder, nm] = 1
            t = substr(t, RSTART + RLENGTH)
        }
        opens = gsub(/\{/, "{", line); closes = gsub(/\}/, "}", line)
        depth += opens - closes
        next
    }
    pass == 2 {
        line = strip($0)
        if (line ~ /^[ \t]*import[ \t]/) next
        t = line; pos = 0
        while (match(t, /[A-Za-z_][A-Za-z0-9_]*/)) {
            name = substr(t, RSTART, RLENGTH)
            before = RSTART > 1 ? substr(t, RSTART - 1, 1) : ""
            after_text = substr(t, RSTART + RLENGTH)
            t = after_text
            if (before == "`" || before == "$" || before == "#" || before == "@") continue
            if (substr(line, 1, length(line) - length(after_text) - length(name)) ~ /func[ \t]+$/) continue   # a declaration
            if (after_text ~ /^:[^:]/ || after_text == ":") continue          # an argument label
            key = ""
            if (after_text ~ /^\(/) {
                r = substr(after_text, 2); sub(/^[ \t]+/, "", r)
                if (r ~ /^\)/) key = name "()"
                else if (match(r, /^[A-Za-z_][A-Za-z0-9_]*[ \t]*:[^:]/)) { lb = r; sub(/[ \t]*:.*/, "", lb); key = name "(" lb ":" }
                else key = name "(_:"
                if (before == "." && (name in stdlib_member)) continue
                check_use(name, key)
                if (name ~ /^[A-Z]/ && before != ".") check_use(name, name)
            } else if (before == ".") {
                if (name in stdlib_member) continue
                check_use(name, name)
            } else if (name ~ /^[A-Z]/) {
                check_use(name, name)
            } else {
                check_use(name, name, 1)
            }
        }
        next
    }
    # Reports `key` (used in the current file) when only folders the file may not use declare it.
    function check_use(name, key, globals_only,   owners, k, i, g, shown) {
        if (!(key in owner)) {
            if (key ~ /\(.+:$/ || key ~ /\(\)$/) { k = name "("; if (!(k in owner)) return; key = k } else return
        }
        if (globals_only && !(key in global)) return
        if ((folder, key) in known || (folder, name "(") in known_prefix && key ~ /\($/) return
        n = split(owner[key], owners, " ")
        for (i = 1; i <= n; i++) if (may_use(folder, owners[i])) return
        for (g in level) if (may_use(folder, g) && ((g, key) in known)) return
        if (key ~ /\($/) for (g in level) if (may_use(folder, g) && ((g, key) in known_prefix)) return
        shown = key; sub(/\($/, "", shown); if (shown ~ /:$/) shown = shown ")"
        print FILENAME ":" FNR ": " folder " uses " shown " (declared in " owner[key] ")"
        bad = 1
    }
    END { exit bad }
    ' "${files[@]}" pass=2 "${files[@]}" || return 1
}

self_test() {
    local src=Sources/FineTune scratch failures=0
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' RETURN
    # case: description | what to do to the copy | text the report must contain
    run_case() {
        local description=$1 change=$2 expect=$3 copy="$scratch/case" output
        rm -rf "$copy"; cp -R "$src" "$copy"
        (cd "$copy" && eval "$change")
        if output=$(check "$copy"); then
            echo "self-test FAILED: $description: the check passed"; failures=$((failures + 1))
        elif ! grep -qF -- "$expect" <<<"$output"; then
            echo "self-test FAILED: $description: the report does not mention '$expect':"; echo "$output"
            failures=$((failures + 1))
        else
            echo "self-test ok: $description -> $(grep -F -- "$expect" <<<"$output" | head -1 | sed "s|$copy/||")"
        fi
    }
    run_case "Kernels uses Shape.windowCount (Tensor)" \
        'printf "extension Conv2dGeometry {\n    var rows: Int { Shape.windowCount(size: height, padding: padH, window: kernelHeight, stride: strideH) }\n}\n" >> Kernels/Conv2d.swift' \
        "Kernels uses Shape"
    run_case "Kernels/Pooling uses a Tensor extension member" \
        'printf "extension Shape {\n    static func poolingWindows(_ n: Int) -> Int { n }\n}\n" >> Tensor/Shape.swift
         printf "func pooledRows(_ n: Int) -> Int { Shape.poolingWindows(n) }\nfunc pooledCols(_ n: Int) -> Int { let s = 1; return s.poolingWindows(n) }\n" >> Kernels/Pooling.swift' \
        "Kernels uses poolingWindows(_:)"
    run_case "Module throws SelectionError declared in FineTuning" \
        'mv Layers/SelectionError.swift FineTuning/SelectionError.swift' \
        "Layers uses SelectionError"
    run_case "Module records shapes through ShapeRecorder declared in FineTuning" \
        'awk "/^final class ShapeRecorder/,/^}/" Layers/Module.swift >> FineTuning/Summary.swift
         awk "/^final class ShapeRecorder/{skip=1} !skip{print} skip && /^}/{skip=0}" Layers/Module.swift > m && mv m Layers/Module.swift' \
        "Layers uses ShapeRecorder"
    run_case "Buffer stores a SafeTensors.DType (Checkpoint)" \
        'printf "extension Buffer {\n    var storedDType: SafeTensors.DType { .f32 }\n}\n" >> Layers/Parameter.swift' \
        "Layers uses SafeTensors"
    run_case "Autograd uses summed(toShape:) declared in Ops" \
        'mv Autograd/GradientReduction.swift Ops/GradientReduction.swift' \
        "Autograd uses summed(toShape:)"
    run_case "Autograd uses reshapedView(_:) declared in Ops" \
        'sed -i "s/func reshapedView(/func reshapedViewInTensor(/" Tensor/Tensor.swift
         printf "extension Tensor {\n    func reshapedView(_ s: [Int]) -> Tensor { reshapedViewInTensor(s) }\n}\n" >> Ops/ShapeOps.swift' \
        "Autograd uses reshapedView(_:)"
    run_case "Buffer stores a DType declared in Checkpoint" \
        'mv Tensor/DType.swift Checkpoint/DType.swift' \
        "Layers uses DType"
    run_case "Autograd uses adding(_:) declared in Ops" \
        'printf "extension Tensor {\n    func accumulated(_ g: Tensor) -> Tensor { self.adding(g) }\n}\n" >> Autograd/Backward.swift' \
        "Autograd uses adding(_:)"
    run_case "Kernels uses Tensor" \
        'printf "func kernelTensor() -> Tensor { Tensor.zeros([1]) }\n" >> Kernels/CPU.swift' \
        "Kernels uses Tensor"
    run_case "Support uses Kernels" \
        'printf "func supportThreads() -> Int { Kernels.maxThreads }\n" >> Support/Concurrency.swift' \
        "Support uses Kernels"
    run_case "Tokenizers uses Tensor (Tokenizers depends on Support alone)" \
        'mkdir -p Tokenizers && printf "struct Vocabulary {\n    let ids: Tensor\n}\n" > Tokenizers/Vocabulary.swift' \
        "Tokenizers uses Tensor"
    run_case "Ops uses a free function declared in Layers" \
        'printf "func layerFanIn(_ x: Int) -> Int { x }\n" >> Layers/Module.swift
         printf "func opFanIn() -> Int { layerFanIn(3) }\n" >> Ops/Padding.swift' \
        "Ops uses layerFanIn(_:)"
    run_case "a folder with no place in the order" \
        'mkdir -p Quantization && printf "struct Int4 {}\n" > Quantization/Int4.swift' \
        "has no place in the order"
    # and the tree itself is clean
    if ! check "$src" >/dev/null; then echo "self-test FAILED: Sources/FineTune itself has violations"; failures=$((failures + 1)); fi
    if [[ $failures -gt 0 ]]; then echo "check-layers self-test: $failures case(s) failed"; return 1; fi
    echo "check-layers self-test: every reintroduced violation was caught"
}

case "${1:-}" in
    --self-test) self_test ;;
    "") if check Sources/FineTune; then echo "check-layers: dependencies run one way"; else exit 1; fi ;;
    *) check "${1%/}" ;;
esac
