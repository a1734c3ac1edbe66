"""A run's folder (docs/design.md, "The command line and the Python surface"): a
new one with its env.json, or one that --resume continues, skipping the cells
already `ok` there."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.measure import devices
from harness.results import store
from harness.run.plan import Target
from harness.run.suite import Suite
from harness.spec import Case


@dataclass
class RunFolder:
    """A run's folder and what this run of the command does in it."""
    path: Path
    run_id: str
    env: dict               # env.json as it will be written
    cases: list[Case]       # the planned cells still to run
    skipped: int | None     # cells already ok there (resumed runs); None for a new run


def new_run_id(suite: Suite) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{suite.name}"


def finished_cells(folder: Path) -> set[tuple]:
    """Cells whose latest row in the run folder is `ok`: what --resume skips."""
    return {store.cell_key(r) for r in store.latest_rows(store.read_rows(folder))
            if r.get("status") == "ok"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run(suite: Suite, planned: list[Case], out: str | Path | None, threads: int,
            target: Target, executor: str, address: str | None) -> RunFolder:
    """`out`, or results/<run_id>, for every planned cell."""
    run_id = new_run_id(suite)
    folder = Path(out) if out else Path("results") / run_id
    env = {"run_id": run_id, "suite": suite.name, "suite_path": suite.path,
           "description": suite.description, "measure": dataclasses.asdict(suite.measure),
           "threads": threads, "started_at": _now(), "command": sys.argv,
           "git_commit": store.git_commit(Path(__file__).parent),
           "executor": executor, **devices.environment()}
    if target.cluster:
        env["ray"] = {"address": address, "gpu_types": target.cluster.gpu_types,
                      "gpus": target.cluster.gpus}
    return RunFolder(folder, run_id, env, planned, None)


def resumed_run(suite: Suite, planned: list[Case], resume: str | Path) -> RunFolder:
    """The run in `resume`, for the planned cells not already ok there; a StoreError
    if it is not a run folder of this suite."""
    folder = Path(resume)
    if folder.is_file():
        raise store.StoreError(f"{folder}: --resume continues a run folder, not a file")
    done = finished_cells(folder)          # StoreError if it is not a run folder
    env = store.read_env(folder)
    if env.get("suite") not in (None, suite.name):
        raise store.StoreError(f"{folder}: holds a run of suite {env['suite']!r}, "
                               f"not {suite.name!r}")
    env.setdefault("resumed", []).append({"at": _now(), "command": sys.argv,
                                          "skipped_ok": len(done)})
    env.pop("interrupted_at", None)
    cases = [c for c in planned if store.cell_key(c) not in done]
    return RunFolder(folder, env.get("run_id") or folder.name, env, cases,
                     len(planned) - len(cases))
