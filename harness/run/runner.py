"""Run a planned sweep: gate it, hand (backend, device) batches to an executor, keep
every row.

Rows are appended to results.jsonl as each cell ends; the CSV, report.md and
the console summary are written from that file when the sweep ends, or when it
is interrupted (Ctrl-C: the running cell is dropped, every finished row stays,
and `--resume` picks up from there). Planning, and the refusal of cells that
cannot run, is harness/run/plan.py's.
"""
from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from harness.correctness import gate
from harness.measure import contention, devices
from harness.report import run_report
from harness.report.run_report import on_screen
from harness.results import cache, store
from harness.run import gating
from harness.run.executors import Batch, LocalExecutor
from harness.run.executors.lanes import run_lanes, side_by_side
from harness.run.executors.local import failure_row
from harness.run.executors.quiet import QuietWindows
from harness.run.plan import Target, batches, lanes, target_for
from harness.run.progress import batch_line, progress_bar
from harness.run.run_folder import RunFolder, new_run, resumed_run
from harness.run.suite import Suite
from harness.spec import Case


def run(suite: Suite, out: str | Path | None = None, backends: list[str] | None = None,
        threads: int | None = None, quiet: bool = False,
        console: Console | None = None, resume: str | Path | None = None,
        gate_check: bool = True, only: list[str] | None = None,
        serial: bool = False, executor: str = "local", address: str | None = None,
        quiet_machine_s: float | None = None, repeat: int | None = None,
        use_cache: bool = True) -> Path:
    """Run the suite into a new folder (`out`, or results/<run_id>), or, with
    `resume`, rerun in that folder every planned cell not already `ok` there.
    `repeat` K: every batch K times, each in fresh processes, round after round
    (harness/results/repeats.py merges a cell's K rows). `use_cache`: reuse the
    gate's verdicts and the references of earlier runs (harness/results/cache.py).
    Ctrl-C writes what finished and re-raises KeyboardInterrupt."""
    console = console or Console(stderr=True)
    threads = threads or devices.cpu_threads()
    target = target_for(executor, address, threads)
    planned = target.planned_cases(suite, backends, only)
    run_folder = (resumed_run(suite, planned, resume, repeat) if resume is not None
                  else new_run(suite, planned, out, threads, target, executor, address,
                               repeat or 1))
    sweep = Sweep(suite, run_folder, target, threads, serial, quiet_machine_s,
                  cache.root() if use_cache else None)
    interrupted = sweep.run(console, quiet, gate_check)
    made = _write_outputs(run_folder, console, quiet or interrupted)
    _print_closing_lines(console, suite, run_folder, sweep, made, interrupted)
    if interrupted:
        raise KeyboardInterrupt
    return run_folder.path


class Sweep:
    """One pass over a run folder's cells: the gate, then every batch through the
    executor, each row recorded as it arrives (from one thread per GPU lane, or
    per Ray task), and env.json saying how the pass ended."""

    def __init__(self, suite: Suite, run_folder: RunFolder, target: Target, threads: int,
                 serial: bool, quiet_machine_s: float | None = None,
                 cache_root: Path | None = None):
        self.suite, self.run_folder, self.target = suite, run_folder, target
        self.cache_root = cache_root     # None: nothing reused from earlier runs, nor kept
        self.gate_cache = gating.GateCache(cache_root / "gate" if cache_root else None,
                                           threads, target.gpus)
        self.reference_salt = cache.reference_digest()
        self.threads, self.serial = threads, serial
        self.quiet_machine_s = quiet_machine_s  # wait up to this for a quiet machine
        self.measure = dataclasses.asdict(suite.measure)
        self.repeat = run_folder.env.get("repeat") or 1     # processes per cell
        # CPU batches side by side, timing in turn; not with --serial, nor where the
        # runner waits for a quiet machine (the other worker would be its load).
        side_by_side = not serial and quiet_machine_s is None
        self.local = LocalExecutor(windows=QuietWindows() if side_by_side else None)
        self.lock = threading.Lock()
        self.counts: dict[str, int] = defaultdict(int)
        self.versions: dict[str, str] = dict(run_folder.env.get("versions") or {})
        # "backend device" -> the settings its worker ran under
        self.workers: dict[str, str] = dict(run_folder.env.get("worker_settings") or {})
        self.configs: dict = {}          # the gate's verdicts, by configuration
        self.writer: store.RunWriter | None = None
        self.progress: Progress | None = None
        self.task = None
        # A log has no bar: a line per finished (backend, device) batch instead.
        self.lines, self.started = False, time.monotonic()
        # cells not yet recorded, by (backend, device, repeat)
        self.left: dict[tuple[str, str, int | None], int] = {}

    def run(self, console: Console, quiet: bool, gate_check: bool) -> bool:
        """Every cell; True if Ctrl-C ended the pass early."""
        run_folder, interrupted = self.run_folder, False
        with store.RunWriter(run_folder.path) as self.writer:
            self.writer.write_env(run_folder.env)
            began = time.monotonic()
            try:
                if gate_check:
                    self.configs = gating.check_configurations(
                        self.target.gated_cells(run_folder.cases), run_folder.path,
                        run_folder.run_id, self.threads, console, quiet, self.suite.measure.timeout_s,
                        self.gate_cache)
                run_folder.env.update(gate_s=time.monotonic() - began,
                                      gate_reused=self.gate_cache.reused,
                                      cache=str(self.cache_root) if self.cache_root else None)
                self.lines = not quiet and not on_screen(console)
                self.started = time.monotonic()
                with progress_bar(console, quiet) as self.progress:
                    self.task = self.progress.add_task(
                        "starting", total=len(run_folder.cases) * self.repeat)
                    self._execute()
            except KeyboardInterrupt:
                interrupted = True
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            run_folder.env.update(versions=self.versions, worker_settings=self.workers,
                                  wall_s=time.monotonic() - began,   # of this pass
                                  **self.local.side_by_side_figures())
            run_folder.env["interrupted_at" if interrupted else "finished_at"] = stamp
            self.writer.write_env(run_folder.env)
            # Without the cache, references are this run's alone.
            shutil.rmtree(run_folder.path / "references", ignore_errors=True)
            if self.cache_root:
                cache.prune(self.cache_root)
        return interrupted

    def _execute(self) -> None:
        """Locally, a lane per GPU side by side, then the CPU lane; on a cluster,
        every batch at once (Ray queues them by resources). With --repeat K, each
        lane runs its batches K times over, round after round, so that drift in
        the machine falls on every batch alike."""
        grouped = batches(self.run_folder.cases)
        rounds = [r if self.repeat > 1 else None for r in range(self.repeat)]
        self.left = {(*key, r): len(group) for key, group in grouped.items() for r in rounds}
        if self.target.cluster:
            every = [self._batch(key, grouped[key], r) for r in rounds for key in grouped]
            self.target.cluster.run_batches(every, self.on_start, self.on_row)
            return

        def run_one(key: tuple[str, str], repeat: int | None) -> None:
            if self.local.stop.is_set():
                return
            if key[1] == "cpu" and self.quiet_machine_s is not None:
                self._wait_for_quiet(key)
            with self.local.quietly(key[1]):         # its refused cells' rows
                batch = self._batch(key, grouped[key], repeat)
            self.local.run_batch(batch, self.on_start, self.on_row)

        def run_lane(keys: list[tuple[str, str]]) -> None:
            for repeat in rounds:            # side by side within a round, never across
                if self.local.windows is not None and keys[0][1] == "cpu":
                    side_by_side([(key, repeat) for key in keys], run_one, self.local.stop)
                else:
                    for key in keys:
                        run_one(key, repeat)

        gpu_lanes, cpu_lanes = lanes(self.run_folder.cases)
        run_lanes(gpu_lanes, cpu_lanes, run_lane, self.local.stop, self.serial)

    def _wait_for_quiet(self, key: tuple[str, str]) -> None:
        """Before a CPU batch (the GPU lanes are done by then), wait until others
        leave its CPUs, and say what happened."""
        quiet, waited = contention.wait_for_quiet(self.quiet_machine_s)
        name = f"{key[0]} on {key[1]}"
        if not quiet:
            self.progress.console.print(f"[yellow]machine still busy[/] after {waited:.0f} s "
                                        f"of waiting; running {name} anyway")
        elif waited > 1.5:                       # more than the one window it always takes
            self.progress.console.print(f"waited {waited:.0f} s for a quiet machine "
                                        f"before {name}")

    def _batch(self, key: tuple[str, str], cases: list[Case], repeat: int | None) -> Batch:
        """The batch's cells that can run; for the rest, the refusal chain's row.
        `repeat`: which of --repeat K's rounds (None without --repeat)."""
        backend, device = key
        folder = self.run_folder.path.resolve()   # absolute: a Ray task's cwd is elsewhere
        # A log per --repeat round: two rounds of one batch may run side by side.
        round_ = "" if repeat is None else f"-r{repeat}"
        log = folder / "logs" / f"{backend}-{device.replace(':', '')}{round_}.log"
        # References shared on this machine's disk; a Ray node computes its own.
        shared = (None if self.target.cluster else
                  self.cache_root / "references" if self.cache_root else folder / "references")
        batch = Batch(backend, device, [], self.measure, self.threads, self.run_folder.run_id,
                      self.target.gpus, log, reference_dir=shared,
                      reference_salt=self.reference_salt, repeat=repeat)
        for case in cases:
            why = self.target.refusal(case)
            if why:
                self.on_row(failure_row(case, batch, *why, ""))
            else:
                batch.cases.append(case)
        return batch

    def on_start(self, case: Case) -> None:
        self.progress.update(self.task, description=case.name)

    def on_row(self, row: dict) -> None:
        with self.lock:
            self._record(row)

    def _record(self, row: dict) -> None:
        row = gate.apply({**row, "run_id": self.run_folder.run_id}, self.configs)
        self.writer.append(row)
        self.counts[row["status"]] += 1
        if row.get("backend_version"):
            self.versions[row["backend"]] = row["backend_version"]
        if row.get("settings"):
            self.workers[f"{row['backend']} {row['device']}"] = row["settings"]
        self.progress.advance(self.task)
        name = Case.from_dict(row).name
        if row["status"] not in ("ok", "unsupported"):
            self.progress.console.print(f"[yellow]{row['status']}[/] {name}: "
                                        f"{row.get('reason', '')}")
        if row.get("contended"):
            self.progress.console.print(f"[yellow]contended[/] {name}: others used "
                                        f"{_share(row)} while it was timed; its time is "
                                        f"not comparable")
        if row["status"] == "ok" and row.get("correct") is False:
            self.progress.console.print(f"[red]wrong[/] {name}: "
                                        f"{row.get('check_note') or gate.what_failed(row)}")
        self._batch_line(row)

    def _batch_line(self, row: dict) -> None:
        """In a log, a line when the row's (backend, device) batch has every row."""
        key = (row["backend"], row["device"], row.get("repeat"))
        if key not in self.left:
            return
        self.left[key] -= 1
        if self.lines and self.left[key] == 0:
            done = sum(self.counts.values())
            which = "" if key[2] is None else f" (process {key[2] + 1} of {self.repeat})"
            self.progress.console.print(
                batch_line(f"{key[0]} on {key[1]} done{which}", done,
                           len(self.run_folder.cases) * self.repeat, self.started,
                           "cells" if self.repeat == 1 else "rows"),
                highlight=False, soft_wrap=True)


def _share(row: dict) -> str:
    share, others = row.get("others_cpu_share"), row.get("gpu_others")
    parts = [f"{share:.0%} of its CPUs" if share is not None else "",
             f"its GPU ({others} other processes)" if others else ""]
    return " and ".join(p for p in parts if p) or "the machine"


def _write_outputs(run_folder: RunFolder, console: Console, no_summary: bool) -> str:
    """results.csv, the report and the summary table from results.jsonl; returns
    what the report step made, for the closing lines."""
    frame = store.load(run_folder.path)
    store.write_csv(frame, run_folder.path / "results.csv")
    made = "report.md"
    try:
        run_report.write_report([run_folder.path], run_folder.path)
        made = "report.md, report.html, plots/"
    except Exception as exc:        # rows are safe on disk; `attnbench report` retries
        run_report.write_markdown(frame, run_folder.path / "report.md", run_folder.env)
        console.print(f"[yellow]report.html not written[/]: {type(exc).__name__}: {exc}")
    if not no_summary:
        run_report.print_summary(frame, console)
    return made


def _print_closing_lines(console: Console, suite: Suite, run_folder: RunFolder, sweep: Sweep,
                         made: str, interrupted: bool) -> None:
    folder, cases, counts = run_folder.path, run_folder.cases, sweep.counts
    skipped = ("" if run_folder.skipped is None
               else f" ({run_folder.skipped} already ok, skipped)")
    each = f", each in {sweep.repeat} processes (rows)" if sweep.repeat > 1 else ""
    console.print(f"{len(cases)} cells{skipped}{each}: "
                  + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none run")
                  + f"\nresults: {folder}/ (results.jsonl, results.csv, {made})"
                  + (f"\nreport: {folder / 'report.html'}" if "html" in made else ""))
    if interrupted:
        unit = "cells" if sweep.repeat == 1 else "rows"
        console.print(f"interrupted after {sum(counts.values())} of "
                      f"{len(cases) * sweep.repeat} {unit}: the "
                      f"running cell was dropped, finished rows are kept. Resume with:\n"
                      f"  attnbench run {suite.path} --resume {folder}")
