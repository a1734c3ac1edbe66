"""What judging a cell costs on the host: the float64 reference, its own-dtype
twin and the verdict, sampled (what the harness does past sampling.FULL_REFERENCE_LIMIT_BYTES)
beside the full reference of every row, and the sum over a suite's cells.

    python benchmarks/reference_cost.py cells [--full]      # B1 H16 N4096 D128 bfloat16
    python benchmarks/reference_cost.py suite suites/gpu-check.toml [--cores 16] [--backend B ...]

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
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from harness.spec import reference  # noqa: E402
from harness.run import plan  # noqa: E402
from harness.correctness import sampling  # noqa: E402
from harness.correctness.accuracy import judge  # noqa: E402
from harness.correctness.judging import References  # noqa: E402
from harness.measure.devices import cpu_threads  # noqa: E402
from harness.spec import Case  # noqa: E402
from harness.run.suite import load_suite  # noqa: E402
from harness.spec.weights import input_shapes, make_inputs, make_weights, weight_shapes  # noqa: E402

H200 = [{"index": 0, "name": "NVIDIA H200", "memory_total": 141 * 2**30,
         "memory_free": 140 * 2**30}]


def stand_in(case: Case) -> dict:
    """Results of a backend's shape (zeros): what the check converts and judges."""
    shapes = {"out": input_shapes(case)["q" if case.workload == "attention" else "x"]}
    if case.mode == "train":
        names = {**weight_shapes(case), **input_shapes(case)}
        shapes.update({f"grad/{k}": s for k, s in names.items() if k != "g"})
    return {k: np.zeros(s, dtype=np.float32) for k, s in shapes.items()}


def check_seconds(case: Case, full: bool = False) -> tuple[float, float]:
    """(the two references, the verdict) of one cell's check on the host, in
    seconds: what judging.judge_outputs adds to a cell, less the backend's second step."""
    rows = None if full else sampling.check_rows(case)
    w, x = make_weights(case), make_inputs(case)
    got = stand_in(case)
    start = time.perf_counter()
    checked = sampling.on_rows(x, rows)
    exact = reference.outputs(case, w, checked, rows=rows)
    low = reference.outputs(case, w, checked, dtype=case.dtype, rows=rows)
    middle = time.perf_counter()
    judge(sampling.wanted(got, rows), exact, low, case.dtype)
    return middle - start, time.perf_counter() - middle


def cells(full: bool) -> None:
    print(f"B1 H16 N4096 D128 bfloat16 causal, {cpu_threads()} CPUs; seconds for the "
          "check: float64 + bfloat16 references and the verdict")
    print(f"{'workload':<10} {'mode':<8} {'rows':>5} {'sampled s':>10} {'full s':>8} {'ratio':>7}")
    for workload in ("attention", "mha", "block"):
        for mode in ("forward", "train"):
            case = Case("cost", workload, "torch", "sdpa", mode, "bfloat16", "cpu",
                        1, 4096, 16, 128, True, 1)
            rows = sampling.check_rows(case)
            sampled = sum(check_seconds(case))
            whole = sum(check_seconds(case, full=True)) if full else float("nan")
            print(f"{workload:<10} {mode:<8} {len(rows):>5} {sampled:>10.2f} {whole:>8.2f} "
                  f"{sampled / whole:>7.1%}", flush=True)


def host_seconds(case: Case, folder: Path) -> dict[str, float]:
    """What the workers do on the host for a shape's checks, each part in seconds:
    draw (weights and inputs, written to the run's folder) and compute (both
    references, written too) by the first worker; load (both read back) by each
    other; verdict, per cell."""
    rows = sampling.check_rows(case)
    clock = [time.perf_counter()]

    def lap() -> float:
        clock.append(time.perf_counter())
        return clock[-1] - clock[-2]
    w, x = References(folder).data(case)
    draw = lap()
    exact, low = References(folder).get(case, w, sampling.on_rows(x, rows), rows)
    compute = lap()
    other = References(folder)
    other.get(case, *other.data(case), rows)
    load = lap()
    judge(sampling.wanted(stand_in(case), rows), exact, low, case.dtype)
    return {"draw": draw, "compute": compute, "load": load, "verdict": lap()}


def suite(path: str, cores: int, backends: list[str] | None) -> None:
    """The host's part of a suite's checks, as the runner's workers share it: the
    first worker to need a shape's data and references makes them, each other
    worker (one per backend) loads them once for its adjacent cells, and every
    cell is judged."""
    planned = plan.planned_cases(load_suite(path), backends, gpus=H200)
    draws = Counter()                  # per key: the workers (runs of cells) needing it
    for group in plan.batches(planned).values():
        last = None
        for case in group:
            key = (case.shape_key, case.mode, case.dtype)
            draws[key] += key != last
            last = key
    cells = Counter((c.shape_key, c.mode, c.dtype) for c in planned)
    parts, done = Counter(), set()
    with tempfile.TemporaryDirectory() as folder:
        for case in planned:
            key = (case.shape_key, case.mode, case.dtype)
            if key in done:
                continue
            done.add(key)
            t = host_seconds(case, Path(folder) / "_".join(key))
            parts.update({"draw": t["draw"], "compute": t["compute"],
                          "load": t["load"] * (draws[key] - 1),
                          "verdict": t["verdict"] * cells[key]})
            print(f"  {' '.join(key)}: " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
                  + f" (x{draws[key]} workers, {cells[key]} cells)", flush=True)
    total, here = sum(parts.values()), cpu_threads()
    print(f"{path}: {len(planned)} cells, {len(cells)} references: "
          + ", ".join(f"{k} {parts[k]:.1f} s" for k in ("draw", "compute", "load", "verdict"))
          + f" = {total:.1f} s on {here} CPUs here; ~{total * here / cores:.1f} s if it "
          f"scaled to {cores} cores (bound, no scaling: {total:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("cells", help="the B1 H16 N4096 D128 cells, sampled and full")
    one.add_argument("--full", action="store_true", help="time the full reference too "
                     "(minutes and ~10 GiB)")
    many = sub.add_parser("suite", help="the sum over a suite's cells, sampled")
    many.add_argument("path")
    many.add_argument("--cores", type=int, default=16, help="the GPU host's CPU cores")
    many.add_argument("--backend", nargs="+", help="only these backends' cells (the "
                      "GPU host may lack one: its cells are unsupported, never judged)")
    args = parser.parse_args()
    if args.what == "cells":
        cells(args.full)
    else:
        suite(args.path, args.cores, args.backend)


if __name__ == "__main__":
    main()
