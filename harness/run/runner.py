"""Plan a sweep, hand (backend, device) batches to an executor, keep every row.

Rows are appended to results.jsonl as each cell ends; the CSV, report.md and
the console summary are written from that file when the sweep ends, or when it
is interrupted (Ctrl-C: the running cell is dropped, every finished row stays,
and `--resume` picks up from there).
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import threading
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from harness.spec.catalog import static_unsupported
from harness.run import check
from harness.correctness import grid
from harness.report import check_report
from harness.spec import costs
from harness.measure import devices
from harness.correctness import gate
from harness.report import run_report
from harness.results import store
from harness.run.executors import Batch, LocalExecutor
from harness.run.executors.local import failure_row
from harness.spec import Case
from harness.run.suite import Suite


def plan(suite: Suite, backends: list[str] | None = None,
         gpus: list[dict] | None = None, only: list[str] | None = None,
         expand=None) -> list[Case]:
    """The suite's cases on concrete devices ("auto" -> every GPU, else the CPU;
    "gpu:H100" -> every H100), keeping those on a device `only` names (as
    --device does: cpu, cuda, cuda:N, gpu:TYPE). `expand` replaces this
    machine's expansion (a Ray cluster's GPU types)."""
    gpus = devices.gpus() if gpus is None else gpus
    expand = expand or (lambda device: devices.expand(device, gpus))
    planned, seen = [], set()
    for case in suite.cases:
        if backends and case.backend not in backends:
            continue
        for device in expand(case.device):
            if only and not any(device in expand(wanted) for wanted in only):
                continue
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


def finished_cells(folder: Path) -> set[tuple]:
    """Cells whose latest row in the run folder is `ok`: what --resume skips."""
    return {store.cell_key(r) for r in store.latest_rows(store.read_rows(folder))
            if r.get("status") == "ok"}


def refused(case: Case, gpus: list[dict], nvml_error: str | None) -> tuple[str, str] | None:
    """(status, reason) for a cell that cannot run here, known before any worker
    starts: its device does not exist, or its data alone cannot fit."""
    reason = devices.unavailable(case.device, gpus, nvml_error)
    if reason:
        return "unsupported", reason
    reason = hopeless(case, gpus)
    return ("oom", reason) if reason else None


def lanes(cases: list[Case]) -> list[list[tuple[str, str]]]:
    """The (backend, device) batches as lanes that may run side by side: one per
    GPU (its batches one after another, so no two workers share a GPU), then the
    CPU's batches in a lane of their own, run once the GPU lanes are done (a
    timed CPU cell shares its cores with nothing)."""
    by_device: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for backend, device in batches(cases):
        by_device[device].append((backend, device))
    gpu = [keys for device, keys in by_device.items() if device != "cpu"]
    return gpu + ([by_device["cpu"]] if "cpu" in by_device else [])


def plan_summary(cases: list[Case], gpus: list[dict], nvml_error: str | None,
                 refuse=None) -> list[dict]:
    """Per (backend, device): its cells, how many this machine (or cluster: its
    `refuse`) can run, and the commonest reasons it cannot run the rest (what
    --dry-run prints)."""
    refuse = refuse or (lambda case: refused(case, gpus, nvml_error))
    rows = []
    for (backend, device), group in sorted(batches(cases).items()):
        reasons = [static_unsupported(c) or (refuse(c) or (0, None))[1] for c in group]
        blocked = Counter(r for r in reasons if r)
        rows.append({"backend": backend, "device": device,
                     "device_name": devices.describe(device, gpus)["device_name"],
                     "cells": len(group), "to_run": len(group) - sum(blocked.values()),
                     "why_not": "; ".join(f"{n} x {r}" for r, n in blocked.most_common(2))
                     + ("; ..." if len(blocked) > 2 else "")})
    return rows


def hopeless(case: Case, gpus: list[dict]) -> str | None:
    """Why a cell cannot fit, judged before any worker starts: its weights, inputs
    and outputs alone (a lower bound, whatever the kernel) above the device's free
    memory. Cells that merely might not fit run, and fail as `oom` if they do."""
    free = devices.free_bytes(case.device, gpus)
    mem = costs.memory(case)
    need = mem["resident_bytes"] + mem["output_bytes"]
    if free is None or need <= free:
        return None
    return (f"refused before running: weights, inputs and outputs alone need "
            f"{need / 2**30:.3g} GiB, {case.device} has {free / 2**30:.3g} GiB free")


def run(suite: Suite, out: str | Path | None = None, backends: list[str] | None = None,
        threads: int | None = None, quiet: bool = False,
        console: Console | None = None, resume: str | Path | None = None,
        gate_check: bool = True, only: list[str] | None = None,
        serial: bool = False, executor: str = "local", address: str | None = None) -> Path:
    """Run the suite into a new folder (`out`, or results/<run_id>), or, with
    `resume`, rerun in that folder every planned cell not already `ok` there.
    Ctrl-C writes what finished and re-raises KeyboardInterrupt."""
    console = console or Console(stderr=True)
    threads = threads or devices.cpu_threads()
    if executor == "ray":
        from harness.run.executors.ray_cluster import RayExecutor
        cluster = RayExecutor(address, threads)
        gpus, nvml_error, refuse = [], None, cluster.refuse
        planned = plan(suite, backends, gpus, only, expand=cluster.expand)
    else:
        cluster = None
        gpus, nvml_error = devices.discover()
        refuse = lambda case: refused(case, gpus, nvml_error)    # noqa: E731
        planned = plan(suite, backends, gpus, only)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if resume is not None:
        folder = Path(resume)
        if folder.is_file():
            raise store.StoreError(f"{folder}: --resume continues a run folder, not a file")
        done = finished_cells(folder)          # StoreError if it is not a run folder
        env = store.read_env(folder)
        if env.get("suite") not in (None, suite.name):
            raise store.StoreError(f"{folder}: holds a run of suite {env['suite']!r}, "
                                   f"not {suite.name!r}")
        run_id = env.get("run_id") or folder.name
        env.setdefault("resumed", []).append({"at": now, "command": sys.argv,
                                              "skipped_ok": len(done)})
        env.pop("interrupted_at", None)
        cases = [c for c in planned if store.cell_key(c) not in done]
    else:
        run_id = new_run_id(suite)
        folder = Path(out) if out else Path("results") / run_id
        env = {"run_id": run_id, "suite": suite.name, "suite_path": suite.path,
               "description": suite.description, "measure": dataclasses.asdict(suite.measure),
               "threads": threads, "started_at": now, "command": sys.argv,
               "git_commit": store.git_commit(Path(__file__).parent),
               "executor": executor, **devices.environment()}
        if cluster:
            env["ray"] = {"address": address, "gpu_types": cluster.gpu_types,
                          "gpus": cluster.gpus}
        cases = planned
    measure = dataclasses.asdict(suite.measure)
    local = LocalExecutor()
    lock = threading.Lock()         # rows arrive from one thread per GPU lane (or task)
    versions: dict[str, str] = dict(env.get("versions") or {})
    # "backend device" -> the settings its worker ran under
    workers: dict[str, str] = dict(env.get("worker_settings") or {})
    counts: dict[str, int] = defaultdict(int)
    interrupted = False
    with store.RunWriter(folder) as writer:
        writer.write_env(env)
        try:
            # The gate checks on this machine: on a cluster, the CPU cells' configurations.
            gated = [c for c in cases if not refuse(c) and (not cluster or c.device == "cpu")]
            configs = {} if not gate_check else check_configurations(
                gated, folder, threads, console, quiet, suite.measure.timeout_s, gpus)
            with progress_bar(console, quiet) as progress:
                task = progress.add_task("starting", total=len(cases))

                def on_start(case: Case) -> None:
                    progress.update(task, description=case.name)

                def on_row(row: dict) -> None:
                    with lock:
                        record(row)

                def record(row: dict) -> None:
                    row = gate.apply({**row, "run_id": run_id}, configs)
                    writer.append(row)
                    counts[row["status"]] += 1
                    if row.get("backend_version"):
                        versions[row["backend"]] = row["backend_version"]
                    if row.get("settings"):
                        workers[f"{row['backend']} {row['device']}"] = row["settings"]
                    progress.advance(task)
                    name = Case.from_dict(row).name
                    if row["status"] not in ("ok", "unsupported"):
                        progress.console.print(f"[yellow]{row['status']}[/] {name}: "
                                               f"{row.get('reason', '')}")
                    elif row.get("correct") is False:
                        progress.console.print(f"[red]wrong[/] {name}: "
                                               f"{row.get('check_note') or _ratio(row)}")

                grouped = batches(cases)

                def batch_of(backend: str, device: str) -> Batch:
                    """The batch's cells this executor can take; rows for the rest."""
                    # Absolute: a Ray task on another node's working directory too.
                    log = folder.resolve() / "logs" / f"{backend}-{device.replace(':', '')}.log"
                    # References shared on this machine's disk; a Ray node computes its own.
                    shared = None if cluster else folder.resolve() / "references"
                    batch = Batch(backend, device, [], measure, threads, run_id, gpus, log,
                                  reference_dir=shared)
                    for case in grouped[(backend, device)]:
                        why = refuse(case)
                        if why:
                            on_row(failure_row(case, batch, *why, ""))
                        else:
                            batch.cases.append(case)
                    return batch

                if cluster:
                    cluster.run_batches([batch_of(*key) for key in grouped], on_start, on_row)
                else:
                    def run_lane(keys: list[tuple[str, str]]) -> None:
                        for key in keys:
                            if local.stop.is_set():
                                return
                            local.run_batch(batch_of(*key), on_start, on_row)

                    run_lanes(lanes(cases), run_lane, local.stop, serial)
        except KeyboardInterrupt:
            interrupted = True
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        env.update(versions=versions, worker_settings=workers)
        env["interrupted_at" if interrupted else "finished_at"] = stamp
        writer.write_env(env)
        shutil.rmtree(folder / "references", ignore_errors=True)   # this run's alone
    frame = store.load(folder)
    store.write_csv(frame, folder / "results.csv")
    made = "report.md"
    try:
        run_report.write_report([folder], folder)
        made = "report.md, report.html, plots/"
    except Exception as exc:        # rows are safe on disk; `attnbench report` retries
        run_report.write_markdown(frame, folder / "report.md", env)
        console.print(f"[yellow]report.html not written[/]: {type(exc).__name__}: {exc}")
    if not quiet and not interrupted:
        run_report.print_summary(frame, console)
    finished = sum(counts.values())
    skipped = f" ({len(planned) - len(cases)} already ok, skipped)" if resume is not None else ""
    console.print(f"{len(cases)} cells{skipped}: "
                  + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none run")
                  + f"\nresults: {folder}/ (results.jsonl, results.csv, {made})"
                  + (f"\nreport: {folder / 'report.html'}" if "html" in made else ""))
    if interrupted:
        console.print(f"interrupted after {finished} of {len(cases)} cells: the running cell "
                      f"was dropped, finished rows are kept. Resume with:\n"
                      f"  attnbench run {suite.path} --resume {folder}")
        raise KeyboardInterrupt
    return folder


def run_lanes(all_lanes: list[list], run_lane, stop: threading.Event, serial: bool) -> None:
    """lanes() as harness.run.executors.lanes runs them: GPU lanes side by side, then
    the CPU lane alone."""
    from harness.run.executors.lanes import run_lanes as side_by_side
    gpu = [lane for lane in all_lanes if lane[0][1] != "cpu"]
    side_by_side(gpu, [lane for lane in all_lanes if lane[0][1] == "cpu"], run_lane, stop,
                 serial)


def _ratio(row: dict) -> str:
    return f"{row.get('err_tensor')} err_ratio {row.get('err_ratio'):.3g}"


def check_configurations(cases: list[Case], folder: Path, threads: int, console: Console,
                         quiet: bool, timeout_s: float, gpus: list[dict]) -> dict:
    """The gate (harness.correctness.gate): check the configurations of the cells about to run,
    on small shapes, into folder/check/ (an `attnbench check` folder), before any
    is timed; cases done there by an earlier attempt of this run are kept."""
    sub = folder / "check"
    wanted = grid.gate_cases([c for c in cases if not static_unsupported(c)
                               and not hopeless(c, gpus)])
    done = set()
    if (sub / store.RESULTS).exists():
        done = {store.cell_key(r) for r in store.latest_rows(store.read_rows(sub))
                if r.get("status") in ("ok", "unsupported")}
    todo = [c for c in wanted if store.cell_key(c) not in done]
    if todo:
        configs = len({gate.config_key(c) for c in todo})
        console.print(f"checking {configs} configurations against float64 first "
                      f"({len(todo)} cases on small shapes, into {sub}/)")
        result = check.run_check(todo, sub, threads, console, timeout_s,
                                 check.default_jobs(), quiet=quiet)
        check_report.write(result, sub)
    if not wanted:
        return {}
    return gate.config_verdicts(gate.verdicts(store.load(sub)))


def progress_bar(console: Console, quiet: bool) -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}", table_column=None),
                    BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console,
                    transient=False, disable=quiet)
