"""Plan a sweep, hand (backend, device) batches to an executor, keep every row.

Rows are appended to results.jsonl as each cell ends; the CSV, report.md and
the console summary are written from that file when the sweep ends.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from harness import devices, report, store
from harness.executors import Batch, LocalExecutor
from harness.spec import Case
from harness.suite import Suite


def plan(suite: Suite, backends: list[str] | None = None,
         gpus: list[dict] | None = None) -> list[Case]:
    """The suite's cases on concrete devices ("auto" -> every GPU, else the CPU)."""
    gpus = devices.gpus() if gpus is None else gpus
    planned, seen = [], set()
    for case in suite.cases:
        if backends and case.backend not in backends:
            continue
        for device in devices.expand(case.device, gpus):
            concrete = case.replace(device=device)
            if concrete not in seen:
                seen.add(concrete)
                planned.append(concrete)
    return planned


def batches(cases: list[Case]) -> dict[tuple[str, str], list[Case]]:
    """One batch per (backend, device); inside it, cells that share a reference
    (same shape, mode and dtype) are adjacent so the worker computes it once."""
    grouped: dict[tuple[str, str], list[Case]] = defaultdict(list)
    for case in cases:
        grouped[(case.backend, case.device)].append(case)
    order = {c: i for i, c in enumerate(cases)}
    for key, group in grouped.items():
        first = {}
        for c in group:
            first.setdefault((c.shape_key, c.mode, c.dtype), order[c])
        group.sort(key=lambda c: (first[(c.shape_key, c.mode, c.dtype)], order[c]))
    return dict(grouped)


def new_run_id(suite: Suite) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{suite.name}"


def run(suite: Suite, out: str | Path | None = None, backends: list[str] | None = None,
        threads: int | None = None, quiet: bool = False,
        console: Console | None = None) -> Path:
    console = console or Console(stderr=True)
    gpus = devices.gpus()
    cases = plan(suite, backends, gpus)
    run_id = new_run_id(suite)
    folder = Path(out) if out else Path("results") / run_id
    threads = threads or devices.cpu_threads()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    env = {"run_id": run_id, "suite": suite.name, "suite_path": suite.path,
           "description": suite.description, "measure": dataclasses.asdict(suite.measure),
           "threads": threads, "started_at": started, "command": sys.argv,
           "git_commit": store.git_commit(Path(__file__).parent),
           **devices.environment()}
    measure = dataclasses.asdict(suite.measure)
    executor = LocalExecutor()
    versions: dict[str, str] = {}
    workers: dict[str, str] = {}              # (backend, device) -> its settings
    counts: dict[str, int] = defaultdict(int)
    with store.RunWriter(folder) as writer, _progress(console, quiet) as progress:
        writer.write_env(env)
        task = progress.add_task("starting", total=len(cases))

        def on_start(case: Case) -> None:
            progress.update(task, description=case.name)

        def on_row(row: dict) -> None:
            row["run_id"] = run_id
            writer.append(row)
            counts[row["status"]] += 1
            if row.get("backend_version"):
                versions[row["backend"]] = row["backend_version"]
            if row.get("settings"):
                workers[f"{row['backend']} {row['device']}"] = row["settings"]
            progress.advance(task)
            if row["status"] not in ("ok", "unsupported"):
                progress.console.print(f"[yellow]{row['status']}[/] {Case.from_dict(row).name}: "
                                       f"{row.get('reason', '')}")

        for (backend, device), group in batches(cases).items():
            batch = Batch(backend, device, group, measure, threads, run_id, gpus,
                          folder / "logs" / f"{backend}-{device.replace(':', '')}.log")
            executor.run_batch(batch, on_start, on_row)
        env.update(versions=versions, worker_settings=workers,
                   finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        writer.write_env(env)
    frame = store.load(folder)
    store.write_csv(frame, folder / "results.csv")
    report.write_markdown(frame, folder / "report.md", env)
    if not quiet:
        report.print_summary(frame, console)
    console.print(f"{len(cases)} cells: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                  + f"\nresults: {folder}/ (results.jsonl, results.csv, report.md)")
    return folder


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}", table_column=None),
                    BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console,
                    transient=False, disable=quiet)
