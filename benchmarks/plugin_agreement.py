"""Do the pytest plugin's medians agree with `attnbench run` on the same cells?

Runs SUITE twice with `attnbench run` (no gate) and once through the pytest plugin
(one pytest process per backend, as the README says), then prints, per cell, the
plugin's median over the first run's, beside the second run's over the first (the
machine's own run-to-run noise, the yardstick). Framework-free: subprocesses do it.

usage: python benchmarks/plugin_agreement.py [SUITE] [--out DIR]
       (default SUITE: benchmarks/agreement.toml)
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.results import store  # noqa: E402
from harness.spec import Case  # noqa: E402
from harness.run.suite import load_suite  # noqa: E402


def medians(path: Path) -> dict[str, float]:
    frame = store.load(path)
    frame = frame[frame["status"] == "ok"]
    return {Case.from_dict(r).name: r["median_ms"] for _, r in frame.iterrows()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", nargs="?", default="benchmarks/agreement.toml")
    parser.add_argument("--out", default="results/plugin-agreement")
    args = parser.parse_args()
    out = Path(args.out)
    backends = sorted({c.backend for c in load_suite(args.suite).cases})
    runs = []
    for i in (1, 2):
        folder = out / f"run{i}"
        subprocess.run([sys.executable, "-m", "harness", "run", args.suite, "--no-gate",
                        "--quiet", "--out", str(folder)], cwd=ROOT, check=True)
        runs.append(medians(folder))
        if i == 1:
            plugin: dict[str, float] = {}
            for backend in backends:
                json_path = out / f"plugin-{backend}.json"
                subprocess.run([sys.executable, "-m", "pytest", "-p", "harness.pytest_plugin",
                                "-q", "-p", "no:cacheprovider", "--attnbench-suite",
                                args.suite, "--attnbench-backend", backend,
                                "--benchmark-json", str(json_path)], cwd=ROOT)
                if json_path.exists():
                    plugin.update(medians(json_path))
    first, second = runs
    print("| cell | run 1 ms | plugin ms | plugin / run 1 | run 2 / run 1 |\n|---|---|---|---|---|")
    ratios, noise = [], []
    for name in sorted(set(first) & set(plugin) & set(second)):
        ratios.append(plugin[name] / first[name])
        noise.append(second[name] / first[name])
        print(f"| {name} | {first[name]:.3f} | {plugin[name]:.3f} | {ratios[-1]:.2f} "
              f"| {noise[-1]:.2f} |")
    if ratios:
        spread = lambda xs: f"median {statistics.median(xs):.2f}, {min(xs):.2f}-{max(xs):.2f}"
        print(f"\n{len(ratios)} cells. plugin / run 1: {spread(ratios)}; "
              f"run 2 / run 1 (noise): {spread(noise)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
