"""A run's folder (docs/design.md, "The command line and the Python surface"): a
new one with its env.json, or one that --resume continues, skipping the cells
already `ok` there. A run writes only inside the folder it names: one it cannot
make or write in is a one-line UserError before anything runs."""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.measure import devices
from harness.results import store
from harness.run.plan import Target
from harness.run.suite import Suite
from harness.run.suite_messages import show
from harness.spec import Case
from harness.spec.errors import UserError


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


def finished_cells(folder: Path, repeat: int = 1) -> set[tuple]:
    """Cells whose latest row in the run folder is `ok` (with --repeat K, in all K
    processes): what --resume skips."""
    return {store.cell_key(r) for r in store.latest_rows(store.read_rows(folder))
            if r.get("status") == "ok" and (repeat == 1 or r.get("repeats") == repeat)}


def writable_folder(path: str | os.PathLike, what: str) -> Path:
    """`path` as a folder this process can write in, made if missing; else a
    UserError naming `what` (a flag), and no folder made for it is left."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} {show(os.fsdecode(path))}: is a file, not a folder")
    missing = [p for p in (folder, *folder.parents) if not p.exists()]   # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()     # writable, even by root
    except OSError as exc:
        for made in missing:
            try:
                made.rmdir()
            except OSError:
                pass
        raise UserError(f"{what} {show(os.fsdecode(path))}: cannot write there "
                        f"({exc.strerror or exc})") from None
    return folder


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run(suite: Suite, planned: list[Case], out: str | Path | None, threads: int,
            target: Target, executor: str, address: str | None,
            repeat: int = 1) -> RunFolder:
    """`out`, or results/<run_id>, for every planned cell, each in `repeat`
    processes."""
    run_id = new_run_id(suite)
    folder = writable_folder(out, "--out") if out else writable_folder(
        Path("results") / run_id, "the default --out")
    env = {"run_id": run_id, "suite": suite.name, "suite_path": suite.path,
           **({"suite_hash": suite.hash} if suite.hash else {}),
           "description": suite.description, "measure": dataclasses.asdict(suite.measure),
           "threads": threads, "repeat": repeat, "started_at": _now(),
           "command": sys.argv,
           "git_commit": store.git_commit(Path(__file__).parent),
           "executor": executor, **devices.environment()}
    if target.cluster:
        env["ray"] = {"address": address, "gpu_types": target.cluster.gpu_types,
                      "gpus": target.cluster.gpus}
    return RunFolder(folder, run_id, env, planned, None)


def resumed_run(suite: Suite, planned: list[Case], resume: str | Path,
                repeat: int | None = None) -> RunFolder:
    """The run in `resume`, for the planned cells not already ok there, with the
    --repeat it was started with; a StoreError if it is not a run folder of this
    suite, or `repeat` asks for another count."""
    folder = Path(resume)
    if folder.is_file():
        raise store.StoreError(f"{folder}: --resume continues a run folder, not a file")
    store.read_rows(folder)                # StoreError if it is not a run folder
    env = store.read_env(folder)
    recorded = env.get("repeat") or 1
    if repeat is not None and repeat != recorded:
        raise store.StoreError(f"{folder}: was run with --repeat {recorded}; resume it with "
                               f"that, or start a new run")
    done = finished_cells(folder, recorded)
    other = other_suite(suite, env)
    if other:
        raise store.StoreError(f"{folder}: holds a run of {other}; --resume-any-suite "
                               f"continues it anyway")
    writable_folder(folder, "--resume")
    env.setdefault("resumed", []).append({"at": _now(), "command": sys.argv,
                                          "skipped_ok": len(done)})
    env.pop("interrupted_at", None)
    cases = [c for c in planned if store.cell_key(c) not in done]
    return RunFolder(folder, env.get("run_id") or folder.name, env, cases,
                     len(planned) - len(cases))


def other_suite(suite: Suite, env: dict) -> str | None:
    """What wrote the run whose env.json this is, where that is not `suite`: another
    name, or (where both have one) another hash of the grid and measure settings."""
    name, recorded = env.get("suite"), env.get("suite_hash")
    if name is not None and name != suite.name:
        return f"suite {show(name)}, not {show(suite.name)} ({suite.path})"
    if recorded and suite.hash and recorded != suite.hash:
        return (f"suite {show(name)} with another grid or [measure] than {suite.path} now "
                f"has (suite_hash {show(recorded)}, now {suite.hash})")
    return None


def adopt(suite: Suite, resume: str | Path) -> Suite:
    """--resume-any-suite: the suite's cells under the name of the run in `resume`,
    so that cells already ok there are skipped and new rows join its suite."""
    name = store.read_env(resume).get("suite")
    if not isinstance(name, str) or name == suite.name:
        return dataclasses.replace(suite, hash="")
    cases = tuple(c.replace(suite=name) for c in suite.cases)
    return dataclasses.replace(suite, name=name, cases=cases, hash="")
