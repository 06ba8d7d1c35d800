#!/usr/bin/env bash
# Developer check (not part of CI): builds FineTuneBench in release mode and lists calls that
# should never appear in compiled kernels:
#   * calls to closures taking SIMD16 values (a vector loop calling its body per 16 floats),
#   * generic SIMD conversions that stayed calls (`truncatingIfNeeded` and friends),
#   * libm `fmaf` calls (an FMA that was not compiled to an instruction).
# Exits 1 when any is found. Needs objdump (binutils).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product FineTuneBench >/dev/null
binary=.build/release/FineTuneBench
found=$(objdump -d --no-show-raw-insn "$binary" \
    | grep -E 'call.*(SIMD16.*XEfU|ss6SIMD16V.*truncatingIfNeeded|<fmaf@plt>)' \
    | sed 's/.*call *[0-9a-f]* //' | sort | uniq -c || true)
if [[ -n "$found" ]]; then
    echo "calls in vector code (count, callee):"
    echo "$found"
    exit 1
fi
echo "codegen check: no closure, generic SIMD conversion or fmaf calls in the kernels"
