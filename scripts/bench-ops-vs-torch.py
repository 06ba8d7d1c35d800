#!/usr/bin/env python3
"""Times FineTuneBench's `attention` and `ops` suites and the same ops in PyTorch, side by side,
in one run, case group by case group (FineTune, then PyTorch), so both see nearly the same load.

    swift build -c release --product FineTuneBench
    /work/venv/bin/python scripts/bench-ops-vs-torch.py [--threads 1 2] [--budget 1.0] [--rounds 1]

The PyTorch cases mirror OpSuites.swift: the same shapes, masks and seeds of the same kind, forward
under torch.no_grad() and forward + backward from a fixed output gradient (input gradients reset
to None before each run). Prints the CPU model, the load average and one row per case: both
medians and fastest runs (best over `--rounds`) and the speedups (PyTorch time / FineTune time;
above 1 means FineTune is faster). On a shared machine the fastest runs are the steadier figure.
"""
import argparse
import json
import os
import subprocess

import torch
import torch.nn.functional as F

from torch_bench import cpu_model, measure   # this folder: FineTuneBench's timing scheme

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def op_case(inputs, op, backward):
    """A body running `op` like OpWorkload: no graph, or forward + backward from a fixed gradient."""
    leaves = [t.clone().requires_grad_(backward and train) for t, train in inputs]
    if not backward:
        def run():
            with torch.no_grad():
                op(leaves)
        return run
    seed = torch.rand(op([t.detach() for t in leaves]).shape) * 2 - 1

    def run():
        for t in leaves:
            t.grad = None
        op(leaves).backward(seed)
    return run


def attention(batch, q_heads, kv_heads, length, dim, causal):
    def heads(x, count):
        return x.view(batch, length, count, dim).transpose(1, 2)

    mask = None
    if not causal:
        mask = torch.zeros(batch, 1, 1, length)
        mask[1::2, :, :, length - 16:] = float("-inf")

    def op(t):
        y = F.scaled_dot_product_attention(heads(t[0], q_heads), heads(t[1], kv_heads), heads(t[2], kv_heads),
                                           attn_mask=mask, is_causal=causal, enable_gqa=q_heads != kv_heads)
        return y.transpose(1, 2).reshape(batch, length, q_heads * dim)

    inputs = [(torch.rand(batch, length, h * dim) * 2 - 1, True) for h in (q_heads, kv_heads, kv_heads)]
    return inputs, op


def torch_cases():
    bert = attention(8, 12, 12, 128, 64, False)
    llama = attention(4, 12, 4, 256, 64, True)
    rms = ([(torch.rand(4, 256, 768) * 2 - 1, True), (torch.rand(768) * 2 - 1, True)],
           lambda t: F.rms_norm(t[0], (768,), weight=t[1], eps=1e-6))
    silu = ([(torch.rand(4, 256, 2048) * 2 - 1, True)], lambda t: F.silu(t[0]))
    group = ([(torch.rand(8, 128, 32, 32) * 2 - 1, True), (torch.rand(128) * 2 - 1, True), (torch.rand(128) * 2 - 1, True)],
             lambda t: F.group_norm(t[0], 32, weight=t[1], bias=t[2]))
    cases = {}
    for name, (inputs, op) in [("sdpa_bert", bert), ("sdpa_llama", llama), ("rmsnorm", rms), ("silu", silu),
                               ("groupnorm", group)]:
        cases[f"{name}_fwd"] = (inputs, op, False)
        cases[f"{name}_fwd_bwd"] = (inputs, op, True)
    return cases


def finetune(group, threads, budget):
    """(median, min) milliseconds of the FineTuneBench cases whose names start with `group`."""
    binary = os.path.join(ROOT, ".build", "release", "FineTuneBench")
    result = subprocess.run([binary, "attention", "ops", "--filter", group, "--threads", str(threads),
                             "--budget", str(budget), "--json"], capture_output=True, text=True, check=True)
    return {c["name"]: (c["ms"], c["min_ms"]) for c in json.loads(result.stdout)["cases"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole comparison; the best median of each side counts")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; load average before: {os.getloadavg()}")
    cases = torch_cases()
    groups = list(dict.fromkeys(name.rsplit("_fwd", 1)[0] for name in cases))
    best = {}
    for _ in range(args.rounds):
        for threads in args.threads:
            torch.set_num_threads(threads)
            # One group (forward, forward + backward) at a time, FineTune then PyTorch, so both
            # run under nearly the same load.
            for group in groups:
                ours = finetune(group, threads, args.budget)
                for name in [n for n in cases if n.rsplit("_fwd", 1)[0] == group]:
                    inputs, op, backward = cases[name]
                    theirs = measure(op_case(inputs, op, backward), args.budget)[:2]
                    key = (name, threads)
                    previous = best.get(key, ((float("inf"),) * 2, (float("inf"),) * 2))
                    best[key] = (tuple(map(min, previous[0], ours[name])),
                                 tuple(map(min, previous[1], (theirs[0] * 1e3, theirs[1] * 1e3))))
    print(f"load average after: {os.getloadavg()}")
    print("medians (best of the rounds) and fastest runs, milliseconds; speedup = PyTorch / FineTune")
    print(f"{'case':<20} {'threads':>7} {'FineTune':>9} {'PyTorch':>9} {'speedup':>8} {'min FT':>8} {'min PT':>8} {'speedup':>8}")
    for (name, threads), ((ours, ours_min), (theirs, theirs_min)) in sorted(best.items(), key=lambda kv: kv[0][1]):
        print(f"{name:<20} {threads:>7} {ours:>9.3f} {theirs:>9.3f} {theirs / ours:>7.2f}x "
              f"{ours_min:>8.3f} {theirs_min:>8.3f} {theirs_min / ours_min:>7.2f}x")


if __name__ == "__main__":
    main()
