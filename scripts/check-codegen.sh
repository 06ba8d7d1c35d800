#!/usr/bin/env bash
# Developer check (not part of CI): builds FineTuneBench in release mode and lists calls that
# should never appear in compiled kernels:
#   * calls to closures taking SIMD16 values (a vector loop calling its body per 16 floats),
#   * generic SIMD conversions that stayed calls (`truncatingIfNeeded` and friends),
#   * libm `fmaf` calls (an FMA that was not compiled to an instruction);
# and, on x86-64, checks that the loop of FineTuneBench's machine-peak measurement (Peak.swift)
# is fused multiply-adds on zmm (AVX-512 hosts) or ymm registers and a counter: no memory access.
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
if [[ "$(uname -m)" == x86_64 ]]; then
    if grep -qw avx512f /proc/cpuinfo; then loop=chains16 register=zmm; else loop=chains8 register=ymm; fi
    # The hot loop: from the first FMA of the function to the first conditional jump after it.
    body=$(objdump -d --no-show-raw-insn "$binary" \
        | awk -v name="FMAPeak.*${loop}10iterations.*>:\$" '$0 ~ name {p = 1; next} /^$/ {p = 0} p' \
        | awk '/vfmadd/ && !done {p = 1} p {print} p && /\tj[a-z]+ / {p = 0; done = 1}')
    fmas=$(grep -c "vfmadd.*%${register}" <<<"$body" || true)
    others=$(grep -vE ":[[:space:]]+(vfmadd[0-9]+ps[[:space:]]+(%${register}[0-9]+,){2}%${register}[0-9]+|(add|sub|dec|inc|cmp)[[:space:]]+[^(]*|j[a-z]+[[:space:]].*)\$" <<<"$body" || true)
    if (( fmas < 12 )) || [[ -n "$others" ]]; then
        echo "the FMA peak loop (FMAPeak.$loop) should be 12 or more register-only FMAs on $register and a counter:"
        echo "$body"
        exit 1
    fi
    # The AVX2 GEMM micro-kernel's depth loop keeps its 12 accumulators in registers: no stack
    # access (with SIMD16 rows LLVM had kept two on the stack, GEMMs at 66-68% of peak on Zen).
    kernel=$(objdump -d --no-show-raw-insn "$binary" \
        | awk '/GEMMKernel6x16O8multiply5depth.*prefetch.*>:$/ {p = 1; next} /^$/ {p = 0} p' \
        | awk '/vfmadd/ && !done {p = 1} p {print} p && /\tj[a-z]+ / {p = 0; done = 1}')
    if (( $(grep -c vfmadd <<<"$kernel" || true) < 12 )) || grep -qE '\((%rsp|%rbp)' <<<"$kernel"; then
        echo "the 6 x 16 GEMM micro-kernel's depth loop should be 12 FMAs with no stack access:"
        echo "$kernel"
        exit 1
    fi
fi
echo "codegen check: no closure, generic SIMD conversion or fmaf calls in the kernels; the peak loop is $register FMAs;" \
    "the 6 x 16 GEMM kernel's loop keeps its accumulators in registers"
