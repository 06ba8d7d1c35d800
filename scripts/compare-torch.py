#!/usr/bin/env python3
"""Alternates FineTuneBench and scripts/torch_bench.py on the same cases, round after round, and
prints each case's fastest run on both sides and their ratio (a developer tool, not run in CI).

    swift build -c release --product FineTuneBench
    /work/venv/bin/python scripts/compare-torch.py resnet-convs --filter r18_l4 --threads 1 2 --rounds 3

On a shared machine a single run of either side can be off by 10-20% (or more, when a neighbour
wakes up), so one `--compare` of two files made minutes apart is weak evidence. This script runs
the two programs back to back for each thread count and round, swapping which goes first every
round, keeps each case's fastest run (`min_ms`) over all rounds on each side, and prints
FineTune / PyTorch (below 1: FineTune is faster), with the CPU it ran on (lscpu's family and
model tell Zen 4, family 25 model 17, from Zen 5, family 26).
"""
import argparse
import json
import os
import subprocess
import sys

from torch_bench import cpu_model   # this folder

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def fastest_runs(command):
    """{case name: min_ms} from one --json run of `command`; exits with its stderr when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"compare-torch.py: {' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return {case["name"]: case["min_ms"] for case in json.loads(result.stdout)["cases"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="+", help="suite names, as both programs take them")
    parser.add_argument("--filter", help="only the cases whose name contains TEXT")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts (default: 1)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side per thread count (default: 2)")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timed runs per case and run")
    parser.add_argument("--bench", default=os.path.join(ROOT, ".build", "release", "FineTuneBench"),
                        help="the FineTuneBench binary (default: .build/release/FineTuneBench)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not os.access(args.bench, os.X_OK):
        parser.error(f"no FineTuneBench at {args.bench}: run `swift build -c release --product FineTuneBench`")

    print(f"CPU: {cpu_model()}; {args.rounds} alternated round(s), budget {args.budget} s; fastest run of each side")
    print(f"{'case':<42} {'threads':>7} {'FineTune ms':>12} {'PyTorch ms':>12} {'ratio':>7}")
    for threads in args.threads:
        common = args.suites + ["--threads", str(threads), "--budget", str(args.budget), "--json"]
        if args.filter:
            common += ["--filter", args.filter]
        sides = {"finetune": [args.bench] + common,
                 "torch": [sys.executable, os.path.join(ROOT, "scripts", "torch_bench.py")] + common}
        best = {"finetune": {}, "torch": {}}
        for round_index in range(args.rounds):
            order = ["finetune", "torch"] if round_index % 2 == 0 else ["torch", "finetune"]
            for side in order:
                for name, ms in fastest_runs(sides[side]).items():
                    best[side][name] = min(ms, best[side].get(name, float("inf")))
        for name, ours in best["finetune"].items():
            theirs = best["torch"].get(name)
            if theirs is None:
                continue                      # a FineTune-only case (e.g. the naive GEMM loop)
            print(f"{name:<42} {threads:>7} {ours:>12.3f} {theirs:>12.3f} {ours / theirs:>7.3f}")


if __name__ == "__main__":
    main()
