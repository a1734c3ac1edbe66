"""Runs into series: one per cell identity, a point per run that measured it,
ordered by when the run started.

A cell's identity leaves out what names a run rather than what it measured: the
suite, and the device's index (cuda:0 and cuda:1 of one model are one device). It
keeps the device's model, and on a CPU the thread count, since 2 and 16 threads are
different machines for this purpose (docs/history.md, "What a series is")."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.results import pytest_benchmark_format, store
from harness.spec import CASE_FIELDS
from harness.spec.errors import UserError

SHAPE_FIELDS = ("batch", "seq_len", "q_len", "heads", "kv_heads", "head_dim", "layers",
                "causal", "window", "lengths")
IDENTITY = tuple(f for f in CASE_FIELDS if f not in ("suite", "device")) + ("device_model",)


@dataclass
class Run:
    """One input: a run folder, a published folder, or a pytest-benchmark file."""
    source: str
    run_id: str
    started_at: pd.Timestamp
    versions: dict
    commit: str | None
    machine: str              # host and what it ran on: a change of machine is named
    drivers: str              # the GPU driver and CUDA driver, where the rows name them


@dataclass
class Series:
    """One cell's medians, oldest run first; samples where the run kept them."""
    key: tuple
    cell: dict                                # the identity fields and their values
    runs: list[Run] = field(default_factory=list)
    medians: list[float] = field(default_factory=list)
    samples: list[np.ndarray | None] = field(default_factory=list)

    @property
    def label(self) -> str:
        return cell_label(self.cell)


def cell_label(cell: dict) -> str:
    """'mha torch sdpa forward bfloat16 B1·N512·H8·D64 causal on H200'."""
    shape = "·".join(f"{letter}{cell[k]}" for letter, k in
                     (("B", "batch"), ("N", "seq_len"), ("H", "heads"), ("D", "head_dim")))
    extras = [f"{k} {cell[k]}" for k in ("q_len", "kv_heads", "window", "lengths")
              if cell.get(k) not in (None, "None", "", cell.get("seq_len"), cell.get("heads"))]
    layers = [f"{cell['layers']} layers"] if str(cell.get("layers")) not in ("1", "None") else []
    mask = ["causal"] if str(cell.get("causal")) == "True" else []
    return " ".join([cell["workload"], cell["backend"], cell["variant"], cell["mode"],
                     cell["dtype"], shape, *extras, *layers, *mask,
                     "on", str(cell["device_model"])])


def read_runs(paths: list[str | os.PathLike]) -> list[tuple[Run, pd.DataFrame]]:
    """Each input as a Run and its rows (store.load), oldest first; a one-line
    UserError for a path that is not a run."""
    runs = []
    for path in expand(paths):
        frame = store.load(path)                      # StoreError: one line
        env = store.read_env(path)
        runs.append((_run(str(path), env, frame), frame))
    if not runs:
        raise UserError("history: no runs given")
    runs.sort(key=lambda pair: (pair[0].started_at, pair[0].run_id))
    return runs


def expand(paths: list[str | os.PathLike]) -> list[str]:
    """The inputs, a folder of run folders (results/published) standing for the run
    folders and pytest-benchmark files in it."""
    found = []
    for path in map(Path, paths):
        inner = sorted(p for p in path.iterdir() if (p / store.RESULTS).is_file()
                       or (p.is_file() and _holds_benchmarks(p))) \
            if path.is_dir() and not (path / store.RESULTS).exists() else []
        found += [str(p) for p in inner] or [str(path)]
    # A run given twice (a folder and a run inside it) counts once.
    return list({os.path.realpath(p): p for p in found}.values())


def _holds_benchmarks(path: Path) -> bool:
    """A pytest-benchmark JSON file: a .json holding a `benchmarks` list. Any other
    JSON beside the runs in a folder is not a run."""
    if not pytest_benchmark_format.is_benchmark_file(path):
        return False
    try:
        return isinstance(json.loads(path.read_text()).get("benchmarks"), list)
    except (OSError, ValueError, AttributeError):
        return False


def _run(source: str, env: dict, frame: pd.DataFrame) -> Run:
    started = env.get("started_at") or _first(frame, "started_at")
    stamp = pd.to_datetime(started, utc=True, errors="coerce") if started else pd.NaT
    if pd.isna(stamp):                        # no date: the file's own time stands in
        stamp = pd.Timestamp(Path(source).stat().st_mtime, unit="s", tz="UTC")
    gpus = ", ".join(g.get("name", "") for g in env.get("gpus") or [])
    machine = ", ".join(filter(None, [env.get("host") or _first(frame, "host"),
                                      gpus or env.get("cpu") or _first(frame, "device_name"),
                                      f"python {env['python']}" if env.get("python") else ""]))
    drivers = ", ".join(str(v) for v in (_first(frame, "driver"), _first(frame, "cuda_driver"))
                        if v)
    return Run(source=source, run_id=str(env.get("run_id") or Path(source).name),
               started_at=stamp, versions=dict(env.get("versions") or {}),
               commit=env.get("git_commit"), machine=machine, drivers=drivers)


def _first(frame: pd.DataFrame, column: str):
    values = frame[column].dropna() if column in frame else []
    return values.iloc[0] if len(values) else None


def gather(runs: list[tuple[Run, pd.DataFrame]]) -> list[Series]:
    """The series of every cell that has a timed (`ok`, finite) row in any run, in
    the order cells first appear. A run where the cell failed or computed the wrong
    thing adds no point: its time says nothing about the cell's speed. A run adds
    one point a cell: where it timed the cell more than once (each GPU of one model,
    two suites' copies), the median of those medians, their samples pooled."""
    found: dict[tuple, Series] = {}
    for run, frame in runs:
        timed = frame[(frame["status"] == "ok") & (frame["correct"] != False)]  # noqa: E712
        medians = pd.to_numeric(timed["median_ms"], errors="coerce")
        timed = timed[np.isfinite(medians) & (medians > 0)]
        points: dict[tuple, list[dict]] = {}
        for row in timed.to_dict("records"):
            cell = identity(row)
            points.setdefault(tuple(cell.values()), []).append(row)
            found.setdefault(tuple(cell.values()), Series(key=tuple(cell.values()), cell=cell))
        for key, rows in points.items():
            series = found[key]
            series.runs.append(run)
            series.medians.append(float(np.median([float(r["median_ms"]) for r in rows])))
            kept = [np.asarray(r["samples_ms"], float) for r in rows
                    if isinstance(r.get("samples_ms"), (list, np.ndarray))
                    and len(r["samples_ms"])]
            series.samples.append(np.concatenate(kept) if len(kept) == len(rows) else None)
    return list(found.values())


def identity(row: dict) -> dict:
    """The fields that name a cell across runs, as text (store.field_text)."""
    cell = {f: store.field_text(row.get(f)) for f in IDENTITY if f != "device_model"}
    model = row.get("device_name") or row.get("device") or "unknown device"
    if str(row.get("device", "")).startswith("cpu") and row.get("threads"):
        model = f"{model}, {int(row['threads'])} threads"
    cell["device_model"] = str(model)
    return cell


def changes(before: Run, after: Run) -> list[str]:
    """What differs between two runs, in words: framework versions, the project's
    commit, the GPU drivers, the machine."""
    said = []
    for name in sorted(set(before.versions) | set(after.versions)):
        old, new = before.versions.get(name), after.versions.get(name)
        if old != new:
            said.append(f"{name}: {old or 'absent'} -> {new or 'absent'}")
    if before.commit != after.commit and (before.commit or after.commit):
        said.append(f"commit {(before.commit or 'unknown')[:10]} -> "
                    f"{(after.commit or 'unknown')[:10]}")
    if before.drivers != after.drivers:
        said.append(f"driver {before.drivers or 'unknown'} -> {after.drivers or 'unknown'}")
    if before.machine != after.machine:
        said.append(f"machine {before.machine} -> {after.machine}")
    return said
