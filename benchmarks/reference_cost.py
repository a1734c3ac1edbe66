"""What judging a cell costs on the host: the float64 reference and its own-dtype
twin, sampled (what the harness does past sampling.FULL_REFERENCE_LIMIT_BYTES)
beside the full reference of every row, and the sum over a suite's cells.

    python benchmarks/reference_cost.py cells [--full]      # B1 H16 N4096 D128 bfloat16
    python benchmarks/reference_cost.py suite suites/gpu-check.toml [--cores 16]

`suite` plans the suite for one pretend H200, groups cells into worker batches as
the runner does (a worker computes a reference once for adjacent cells of the same
shape, mode and dtype), times each distinct reference once here, and scales the
sum to --cores by the ratio of core counts (BLAS-bound; the elementwise NumPy part
does not scale, so the unscaled sum is printed as the bound). Run it on a quiet
machine: nothing else heavy beside it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import reference, runner, sampling  # noqa: E402
from harness.devices import cpu_threads  # noqa: E402
from harness.spec import Case  # noqa: E402
from harness.suite import load_suite  # noqa: E402
from harness.weights import make_inputs, make_weights  # noqa: E402

H200 = [{"index": 0, "name": "NVIDIA H200", "memory_total": 141 * 2**30,
         "memory_free": 140 * 2**30}]


def reference_seconds(case: Case, full: bool = False) -> float:
    """Wall time of the check's two references for one cell (weights excluded)."""
    rows = None if full else sampling.check_rows(case)
    w, x = make_weights(case), sampling.on_rows(make_inputs(case), rows)
    start = time.perf_counter()
    reference.outputs(case, w, x, rows=rows)
    reference.outputs(case, w, x, dtype=case.dtype, rows=rows)
    return time.perf_counter() - start


def cells(full: bool) -> None:
    print(f"B1 H16 N4096 D128 bfloat16 causal, {cpu_threads()} CPUs; seconds for the "
          "float64 reference + the bfloat16 one")
    print(f"{'workload':<10} {'mode':<8} {'rows':>5} {'sampled s':>10} {'full s':>8} {'ratio':>7}")
    for workload in ("attention", "mha", "block"):
        for mode in ("forward", "train"):
            case = Case("cost", workload, "torch", "sdpa", mode, "bfloat16", "cpu",
                        1, 4096, 16, 128, True, 1)
            rows = sampling.check_rows(case)
            sampled = reference_seconds(case)
            whole = reference_seconds(case, full=True) if full else float("nan")
            print(f"{workload:<10} {mode:<8} {len(rows):>5} {sampled:>10.2f} {whole:>8.2f} "
                  f"{sampled / whole:>7.1%}", flush=True)


def suite(path: str, cores: int) -> None:
    planned = runner.plan(load_suite(path), gpus=H200)
    computed: list[Case] = []          # one per run of adjacent cells sharing a reference
    for group in runner.batches(planned).values():
        last = None
        for case in group:
            key = (case.shape_key, case.mode, case.dtype)
            if key != last:
                computed.append(case)
            last = key
    timed: dict[tuple, float] = {}
    for case in computed:
        key = (case.shape_key, case.mode, case.dtype)
        if key not in timed:
            timed[key] = reference_seconds(case)
            print(f"  {case.shape_key} {case.mode} {case.dtype}: {timed[key]:.2f} s "
                  f"({sampling.check_rows(case) is not None and 'sampled' or 'full'})",
                  flush=True)
    total = sum(timed[(c.shape_key, c.mode, c.dtype)] for c in computed)
    here = cpu_threads()
    print(f"{path}: {len(planned)} cells, {len(computed)} reference computations "
          f"({len(timed)} distinct); {total:.1f} s on {here} CPUs here; "
          f"~{total * here / cores:.1f} s scaled to {cores} cores (bound: {total:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("cells", help="the B1 H16 N4096 D128 cells, sampled and full")
    one.add_argument("--full", action="store_true", help="time the full reference too "
                     "(minutes and ~10 GiB)")
    many = sub.add_parser("suite", help="the sum over a suite's cells, sampled")
    many.add_argument("path")
    many.add_argument("--cores", type=int, default=16, help="the GPU host's CPU cores")
    args = parser.parse_args()
    if args.what == "cells":
        cells(args.full)
    else:
        suite(args.path, args.cores)


if __name__ == "__main__":
    main()
