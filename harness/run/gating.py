"""The correctness gate of a run (harness.correctness.gate), with its verdicts
kept across runs.

`attnbench run` checks the configurations of its cells on small shapes before any
is timed. A check case's verdict depends on the case, the backend's code, its
framework's versions, the harness code that runs and judges it (the tolerance
policy among it), the device and the worker's settings, and on nothing else: the
gate's cache (harness/results/cache.py, gate/) keeps it under a digest of all of
them, so an unchanged second run checks nothing again and says so, and any change
to one of them checks again. Cases that did not finish (error, oom, timeout) are
never kept: they may pass on a quieter machine.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console

from harness.correctness import gate, grid, pairwise
from harness.measure import devices
from harness.report import check_report
from harness.results import cache, store
from harness.run import check
from harness.run.environment import environment_for
from harness.spec import Case
from harness.spec.catalog import REGISTRY

# Variables the frameworks read that change what a worker computes.
_FRAMEWORK_VARIABLES = ("XLA_", "TF_", "JAX_", "TORCH", "CUDA_", "NVIDIA_", "CUBLAS",
                        "CUDNN", "ONEDNN", "DNNL", "MKL", "OMP_", "KERAS")
KEPT = ("ok", "unsupported")           # statuses whose verdicts the cache keeps


@dataclass
class GateCache:
    """The gate's verdicts across runs, in cache.root()/gate/; `folder` None: off."""
    folder: Path | None
    threads: int
    gpus: list[dict] = field(default_factory=list)
    base: Path = cache.PROJECT_ROOT    # whose code the digests read
    reused: int = 0                    # check cases the last gate took from the cache
    _digests: dict = field(default_factory=dict)

    def key(self, case: Case) -> str:
        """A digest of everything the verdict on `case` depends on."""
        return cache.digest(json.dumps(
            {"case": case.to_dict(), **self._backend_part(case.backend),
             "device": devices.describe(case.device, self.gpus),
             "settings": self._settings(case)}, sort_keys=True, default=str))

    def _backend_part(self, backend: str) -> dict:
        if backend not in self._digests:
            info = REGISTRY.get(backend)
            self._digests[backend] = {
                "backend_code": cache.backend_digest(info.settings, self.base)
                if info else "unknown",
                "framework": cache.versions(distributions(backend)),
                "check_code": cache.code_digest(cache.CHECK_CODE, self.base),
                "numpy": cache.versions(["numpy", "ml-dtypes"]),
                "python": cache.interpreter()}
        return self._digests[backend]

    def _settings(self, case: Case) -> dict:
        """What the check worker runs under: the runner's settings for it and any
        framework variable of this shell; scratch folders aside."""
        workers = max(1, self.threads // check.default_jobs())
        env = environment_for(case.backend, case.device, workers, "")
        env.update({k: v for k, v in os.environ.items() if k.startswith(_FRAMEWORK_VARIABLES)})
        return {k: v for k, v in sorted(env.items()) if not k.endswith("_DIR")}

    def get(self, case: Case) -> dict | None:
        """The kept row for `case`, with `verdict_from` naming the run that checked it."""
        if self.folder is None:
            return None
        path = self.folder / f"{self.key(case)}.json"
        try:
            kept = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        cache.touch(path)
        return {**kept["row"], "verdict_from": kept["row"].get("verdict_from") or kept["run"]}

    def put(self, case: Case, row: dict, run_id: str) -> None:
        """Keep a finished case's row; best effort, atomic."""
        if self.folder is None or row.get("status") not in KEPT:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.folder, suffix=".tmp",
                                             delete=False) as f:
                json.dump({"run": run_id, "row": row}, f, default=str)
            os.replace(f.name, self.folder / f"{self.key(case)}.json")
        except OSError:
            pass


def distributions(backend: str) -> tuple[str, ...]:
    info = REGISTRY.get(backend)
    return (info.distributions or (info.framework,)) if info else ()


def check_configurations(cases: list[Case], folder: Path, run_id: str, threads: int,
                         console: Console, quiet: bool, timeout_s: float,
                         kept: GateCache) -> dict:
    """The gate: check the configurations of the cells about to run (those the
    refusal chain lets through), on small shapes, into folder/check/ (an
    `attnbench check` folder), before any is timed. Cases done there by an earlier
    attempt of this run are kept, and so are verdicts from the gate's cache."""
    sub = folder / "check"
    wanted = grid.gate_cases(cases)
    done = set()
    if (sub / store.RESULTS).exists():
        done = {store.cell_key(r) for r in store.latest_rows(store.read_rows(sub))
                if r.get("status") in KEPT}
    todo, reused = [], []
    for case in (c for c in wanted if store.cell_key(c) not in done):
        row = kept.get(case)
        (reused if row is not None else todo).append(row if row is not None else case)
    kept.reused = len(reused)
    if reused:
        with store.RunWriter(sub) as writer:
            for row in reused:
                writer.append(row)
        runs = sorted({str(r["verdict_from"]) for r in reused})
        named = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        console.print(f"gate: {len(reused)} of {len(wanted)} check cases reused from the "
                      f"cache (same case, code, versions and settings; checked in "
                      f"{named}); --no-cache checks them again")
    if todo:
        configs = len({gate.config_key(c) for c in todo})
        console.print(f"checking {configs} configurations against float64 first "
                      f"({len(todo)} cases on small shapes, into {sub}/)")
        check.run_check(todo, sub, threads, console, timeout_s, check.default_jobs(),
                        quiet=quiet)
        by_key = {store.cell_key(c): c for c in todo}
        for row in store.latest_rows(store.read_rows(sub)):
            case = by_key.get(store.cell_key(row))
            if case is not None:
                kept.put(case, row, run_id)
    if not wanted:
        return {}
    checked = gate.verdicts(store.load(sub))
    if reused or todo:
        check_report.write(grid.CheckResult(checked, _pairs(sub)), sub)
    return gate.config_verdicts(checked)


def _pairs(folder: Path) -> pd.DataFrame:
    """The backends compared on the cases checked in this run (a reused case's
    outputs are not kept, so it is in no pair)."""
    try:
        return pd.read_csv(folder / "pairs.csv")
    except (OSError, pd.errors.EmptyDataError):
        return pd.DataFrame(columns=list(pairwise.COLUMNS))
