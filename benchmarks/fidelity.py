"""Fidelity: does the harness add anything to what it measures?

For a few cells, the harness's median (`attnbench run`, worker process and all)
beside an independent bare loop of the same framework call (benchmarks/bare/),
interleaved over several rounds so that drift of the machine hits both alike.
The ratio harness / bare should be 1; the goal is within 10%. The bare loop runs
under the harness's malloc policy (see harness/measure/memory.py), and once more under
glibc's defaults to show what that policy is worth on its own. The harness runs twice a
round, with and without its untimed profiled pass (measure.device_time), an A/B of
whether that pass changes the timed median it sits beside.

    make fidelity                       # or: python benchmarks/fidelity.py --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.measure.devices import cpu_threads  # noqa: E402
from harness.measure.memory import TIMED_MMAP_THRESHOLD, TIMED_TRIM_THRESHOLD  # noqa: E402
from harness.results.store import load  # noqa: E402

# (name, backend, variant, workload, causal); the bare loop is bare/<backend>_bare.py,
# whose second opinion is the framework's own timer where it has one
# (torch.utils.benchmark), else timeit.
CELLS = [
    ("torch sdpa attention fwd", "torch", "sdpa", "attention", False),
    ("torch sdpa mha fwd (causal)", "torch", "sdpa", "mha", True),
    ("jax jit attention fwd", "jax", "jit", "attention", False),
    ("jax jit mha fwd (causal)", "jax", "jit", "mha", True),
    ("tensorflow eager attention fwd", "tensorflow", "eager", "attention", False),
    ("tensorflow eager mha fwd (causal)", "tensorflow", "eager", "mha", True),
]
SHAPE = dict(batch=2, seq_len=1024, heads=8, head_dim=64)

SUITE = """name = "fidelity"
[measure]
min_run_ms = {ms}
min_samples = 10
warmup_ms = 200
device_time = {device_time}
[[sweep]]
workload = ["{workload}"]
backend = ["{backend}"]
mode = ["forward"]
dtype = ["float32"]
device = ["cpu"]
batch = [{batch}]
seq_len = [{seq_len}]
heads = [{heads}]
head_dim = [{head_dim}]
causal = [{causal}]
[sweep.variants]
{backend} = ["{variant}"]
"""


def harness_median(cell, seconds: float, threads: int, work: Path,
                   profiled: bool = True) -> float:
    _, backend, variant, workload, causal = cell
    suite = work / f"{backend}-{variant}-{workload}.toml"
    suite.write_text(SUITE.format(ms=int(seconds * 1000), workload=workload, backend=backend,
                                  variant=variant, causal=str(causal).lower(),
                                  device_time=str(profiled).lower(), **SHAPE))
    out = Path(tempfile.mkdtemp(dir=work))
    subprocess.run([sys.executable, "-m", "harness", "run", str(suite), "--out", str(out),
                    "--quiet", "--threads", str(threads)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    row = load(out).iloc[0]
    if row["status"] != "ok":
        raise SystemExit(f"harness cell failed: {row['status']}: {row['reason']}")
    return float(row["median_ms"])


# Workers pin glibc's malloc thresholds (harness/measure/memory.py). The bare loop runs
# once under the same policy, the like-for-like comparison, and once under
# glibc's defaults, to show what the policy itself is worth.
PINNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(TIMED_MMAP_THRESHOLD),
                 "MALLOC_TRIM_THRESHOLD_": str(TIMED_TRIM_THRESHOLD)}


def bare_median(cell, seconds: float, threads: int, pinned: bool) -> dict:
    _, backend, _, workload, _ = cell
    script = f"{backend}_bare.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if pinned:
        env.update(PINNED_MALLOC)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bare" / script),
                          "--workload", workload, "--batch", str(SHAPE["batch"]),
                          "--seq-len", str(SHAPE["seq_len"]), "--heads", str(SHAPE["heads"]),
                          "--head-dim", str(SHAPE["head_dim"]), "--threads", str(threads),
                          "--seconds", str(seconds)],
                         cwd=ROOT, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_round(cell, r: int, seconds: float, threads: int, work: Path) -> dict:
    """The harness (profiled pass on, then off), the bare loop pinned and at glibc's
    defaults. The order alternates by round, so a machine that drifts within a round
    favours neither side."""
    def harness(profiled):
        return harness_median(cell, seconds, threads, work, profiled)

    got = {}
    if r % 2 == 0:
        got["ours"], got["unprofiled"] = harness(True), harness(False)
    bare = bare_median(cell, seconds, threads, pinned=True)
    if r % 2 == 1:
        got["unprofiled"], got["ours"] = harness(False), harness(True)
    got["loop"] = bare["loop_median_ms"]
    got["tbench"] = bare["second_opinion_median_ms"]
    got["default"] = bare_median(cell, seconds, threads, False)["loop_median_ms"]
    print(f"{cell[0]} round {r + 1}: harness {got['ours']:.3f} ms "
          f"(no profiled pass {got['unprofiled']:.3f}), bare {got['loop']:.3f} ms, "
          f"bare (malloc defaults) {got['default']:.3f} ms", file=sys.stderr)
    return got


def ratio_text(tops: list[float], bottoms: list[float]) -> str:
    """The median of the per-round ratios, with their range. Within a round the two
    runs were seconds apart: on a machine whose speed drifts by 10-20% over minutes
    (this 2-core VM) that is steadier than the ratio of the medians."""
    ratios = sorted(t / b for t, b in zip(tops, bottoms))
    return f"{statistics.median(ratios):.3f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def table_row(cell, rounds: list[dict]) -> str:
    col = {k: [r[k] for r in rounds] for k in rounds[0]}
    med = {k: statistics.median(v) for k, v in col.items()}
    return (f"| {cell[0]}, B={SHAPE['batch']} N={SHAPE['seq_len']} H={SHAPE['heads']} "
            f"D={SHAPE['head_dim']} float32 | {med['ours']:.3f} | {med['loop']:.3f} "
            f"| {med['tbench']:.3f} | {ratio_text(col['ours'], col['loop'])} "
            f"| {med['unprofiled']:.3f} | {ratio_text(col['ours'], col['unprofiled'])} "
            f"| {med['default']:.3f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--seconds", type=float, default=2.0, help="measuring time per run")
    p.add_argument("--backend", nargs="+", help="only these backends' cells")
    a = p.parse_args()
    threads = cpu_threads()
    lines = ["| cell | harness median ms | bare loop ms | second opinion ms "
             "| harness / bare, median of rounds (range) "
             "| harness without the profiled pass ms | with / without (range) "
             "| bare loop, glibc malloc defaults ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for cell in CELLS:
            if a.backend and cell[1] not in a.backend:
                continue
            rounds = [one_round(cell, r, a.seconds, threads, Path(tmp))
                      for r in range(a.rounds)]
            lines.append(table_row(cell, rounds))
    print(f"\nfidelity on {threads} threads, median of {a.rounds} interleaved rounds\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
