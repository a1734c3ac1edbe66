"""`attnbench check`: does every backend compute the spec?

Every backend, variant, workload, dtype, mode and causal setting, on small and odd
shapes, against the float64 reference (forward output, and in train mode the
gradient of every input and weight), judged by the same verdict as a benchmark
row (harness.correctness.accuracy), and backends against each other
(harness.correctness.pairwise). The cases run in the same worker processes as a
benchmark (crash and timeout isolated), with timing off, several workers at once:
nothing is timed, so they may share the CPUs.

The result is a matrix: one row per backend and variant, one column per dtype and
mode; a cell passes when every (workload, causal, shape) under it does, and shows
the worst error ratio. check_report.py writes it; exit status 1 on any failure.
"""
from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from harness.correctness import gate, pairwise
from harness.correctness.grid import CheckResult
from harness.measure import devices
from harness.results import store
from harness.run.executors import Batch, LocalExecutor
from harness.run.executors.local import failure_row
from harness.run.plan import batches, refusal
from harness.run.progress import batch_line, progress_bar
from harness.spec import Case

TIMEOUT_S = 600          # torch.compile of a train step can take a minute on 2 cores
MAX_JOBS = 8             # workers at once by default: each holds a framework in memory
MIN_SPLIT = 20           # cases: below this a batch is not halved for an idle worker


def default_jobs() -> int:
    """One worker per CPU thread, up to MAX_JOBS."""
    return min(devices.cpu_threads(), MAX_JOBS)


def run_check(cases: list[Case], folder: Path, threads: int, console: Console,
              timeout_s: float = TIMEOUT_S, jobs: int = 1, keep_outputs: bool = False,
              quiet: bool = False) -> CheckResult:
    """Every case through check-only workers, `jobs` at a time; rows appended to
    folder/results.jsonl, pairs compared, and the saved tensors removed unless
    `keep_outputs`. Ctrl-C stops every worker and re-raises."""
    gpus, nvml_error = devices.discover()
    outputs = folder / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    with store.RunWriter(folder) as writer, progress_bar(console, quiet) as bar:
        rows = _CheckRows(writer, bar, len(cases))
        # What every batch shares; _worker_batches fills in backend, device, cases, log.
        template = Batch("", "", [], {"timeout_s": timeout_s}, max(1, threads // max(1, jobs)),
                         "check", gpus, Path(), check_only=True, outputs_dir=outputs)
        todo = _worker_batches(cases, template, folder / "logs", nvml_error, rows.on_row)
        todo = _fill_workers(todo, jobs)
        _run_batches(todo, LocalExecutor(stop), rows, jobs, stop)
    frame = gate.verdicts(store.load(folder))
    pairs = pairwise.compare(frame, outputs)
    store.write_csv(pairs, folder / "pairs.csv")
    if not keep_outputs:
        shutil.rmtree(outputs, ignore_errors=True)
    return CheckResult(frame, pairs)


class _CheckRows:
    """Rows as they arrive from the workers' threads: into results.jsonl, onto the
    bar, a FAIL line for each failure and a line for each batch done."""

    def __init__(self, writer: store.RunWriter, bar: Progress, total: int):
        self.writer, self.bar = writer, bar
        self.task = bar.add_task("checking", total=total)
        self.lock = threading.Lock()
        self.done, self.total, self.started = 0, total, time.monotonic()

    def on_start(self, case: Case) -> None:
        self.bar.update(self.task, description=case.name)

    def on_row(self, row: dict) -> None:
        with self.lock:
            self.writer.append(row)
            self.done += 1
            self.bar.advance(self.task)
            if gate.is_failure(row):
                self.bar.console.print(f"[red]FAIL[/] {gate.failure_text(row)}")

    def batch_done(self, batch: Batch, failed: int, seconds: float) -> None:
        """How a batch went, and the whole check so far (a log has no bar)."""
        first = batch.cases[0]
        with self.lock:
            what = (f"{first.backend} {first.mode} on {batch.device}: "
                    f"{len(batch.cases)} cases, {failed} failed ({seconds:.0f} s)")
            line = batch_line(what, self.done, self.total, self.started, "cases")
            self.bar.console.print(line, highlight=False, soft_wrap=True)


def _worker_batches(cases: list[Case], template: Batch, logs: Path, nvml_error: str | None,
                    on_row) -> list[Batch]:
    """A batch per (backend, device, mode), holding the cases the refusal chain
    lets through; a row for each of the others, with no worker for it."""
    todo = []
    for (backend, device, mode), group in _batches(cases).items():
        log = logs / f"{backend}-{mode}-{device.replace(':', '')}.log"
        batch = replace(template, backend=backend, device=device, cases=[], log_path=log)
        for case in group:
            why = refusal(case, template.gpus, nvml_error)
            if why:
                on_row(failure_row(case, batch, *why, ""))
            else:
                batch.cases.append(case)
        if batch.cases:
            todo.append(batch)
    return todo


def _fill_workers(todo: list[Batch], jobs: int) -> list[Batch]:
    """Where there are fewer than two batches per worker, each cut into chunks of
    about half an even share of all cases. A batch per (backend, mode) left the
    16-core H200 host idle while one JAX worker compiled 80 train cases in a row
    (119 s); an even share is no better, since a torch case costs a tenth of a JAX
    one and a missing framework's batch nothing. Chunks queue in batch order, so
    quick ones hand their workers on to the slow. A chunk is never under MIN_SPLIT
    cases, and with two batches a worker none is cut: each chunk imports again."""
    if len(todo) >= 2 * jobs:
        return todo
    share = max(MIN_SPLIT, -(-sum(len(b.cases) for b in todo) // (2 * jobs)))
    chunks = []
    for batch in todo:
        count = max(1, len(batch.cases) // share)          # chunks of at least `share`
        if count == 1:
            chunks.append(batch)
            continue
        size, name = -(-len(batch.cases) // count), batch.log_path
        for n, at in enumerate(range(0, len(batch.cases), size), 1):
            log = name.with_stem(f"{name.stem}-{n}")
            chunks.append(replace(batch, cases=batch.cases[at:at + size], log_path=log))
    return chunks


def _run_batches(todo: list[Batch], executor: LocalExecutor, rows: _CheckRows, jobs: int,
                 stop: threading.Event) -> None:
    """The batches on `jobs` threads; Ctrl-C stops every worker and re-raises."""
    def run_one(batch: Batch) -> None:
        start, failed = time.monotonic(), []

        def count(row: dict) -> None:
            rows.on_row(row)
            failed.extend([row] if gate.is_failure(row) else [])

        executor.run_batch(batch, rows.on_start, count)
        rows.batch_done(batch, len(failed), time.monotonic() - start)

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        for future in [pool.submit(run_one, b) for b in todo]:
            future.result()
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True)


def _batches(cases: list[Case]) -> dict[tuple, list[Case]]:
    """One worker batch per (backend, device, mode), so that `jobs` workers can
    share them out while each framework is imported a few times only (TensorFlow's
    import alone takes 5 s on 2 cores), train batches first: they take longest (a
    backward pass to trace and compile), and starting them early keeps every worker
    busy to the end. Cases sharing a reference stay adjacent inside each batch."""
    grouped: dict[tuple, list[Case]] = {}
    for (backend, device), group in batches(cases).items():
        for case in group:
            grouped.setdefault((backend, device, case.mode), []).append(case)
    order = sorted(grouped, key=lambda key: key[2] != "train")     # stable otherwise
    return {key: grouped[key] for key in order}
