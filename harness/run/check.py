"""`attnbench check`: does every backend compute the spec?

Every backend, variant, workload, dtype, mode and causal setting, on small and odd
shapes, against the float64 reference (forward output, and in train mode the
gradient of every input and weight), judged by the same verdict as a benchmark
row (harness.correctness.accuracy), and backends against each other (harness.correctness.pairwise). The
cases run in the same worker processes as a benchmark (crash and timeout
isolated), with timing off, several workers at once: nothing is timed, so they
may share the CPUs.

The result is a matrix: one row per backend and variant, one column per dtype and
mode; a cell passes when every (workload, causal, shape) under it does, and shows
the worst error ratio. check_report.py writes it; exit status 1 on any failure.
"""
from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console

from harness.spec.catalog import static_unsupported
from harness.measure import devices
from harness.correctness import gate
from harness.correctness import pairwise
from harness.results import store
from harness.run.executors import Batch, LocalExecutor
from harness.run.executors.local import failure_row
from harness.correctness.grid import CheckResult
from harness.spec import Case

TIMEOUT_S = 600          # torch.compile of a train step can take a minute on 2 cores
MAX_JOBS = 8             # workers at once by default: each holds a framework in memory


def default_jobs() -> int:
    """One worker per CPU thread, up to MAX_JOBS."""
    return min(devices.cpu_threads(), MAX_JOBS)


def run_check(cases: list[Case], folder: Path, threads: int, console: Console,
              timeout_s: float = TIMEOUT_S, jobs: int = 1, keep_outputs: bool = False,
              quiet: bool = False) -> CheckResult:
    """Every case through check-only workers, `jobs` at a time; rows appended to
    folder/results.jsonl, pairs compared, and the saved tensors removed unless
    `keep_outputs`. Ctrl-C stops every worker and re-raises."""
    from harness.run import runner                   # its progress bar and batching
    gpus, nvml_error = devices.discover()
    outputs = folder / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    executor = LocalExecutor(stop)
    lock = threading.Lock()
    per_worker = max(1, threads // max(1, jobs))
    with store.RunWriter(folder) as writer, \
            runner.progress_bar(console, quiet) as bar:
        task = bar.add_task("checking", total=len(cases))

        def on_start(case: Case) -> None:
            bar.update(task, description=case.name)

        def on_row(row: dict) -> None:
            with lock:
                writer.append(row)
                bar.advance(task)
                if _failed(row):
                    bar.console.print(f"[red]FAIL[/] {gate.failure_text(row)}")

        batches = []
        for (backend, device, variant, mode), group in _batches(cases).items():
            log = folder / "logs" / f"{backend}-{variant}-{mode}-{device.replace(':', '')}.log"
            batch = Batch(backend, device, [], {"timeout_s": timeout_s}, per_worker, "check",
                          gpus, log, check_only=True, outputs_dir=outputs)
            for case in group:          # known without a framework: no worker for it
                reason = static_unsupported(case) or devices.unavailable(
                    case.device, gpus, nvml_error)
                if reason:
                    on_row(failure_row(case, batch, "unsupported", reason, ""))
                else:
                    batch.cases.append(case)
            if batch.cases:
                batches.append(batch)

        def run_one(batch: Batch) -> None:
            """One batch, then a line saying how it went (the bar alone shows
            nothing in a CI log until the end)."""
            start, failed = time.monotonic(), []

            def count(row: dict) -> None:
                on_row(row)
                failed.extend([row] if _failed(row) else [])

            executor.run_batch(batch, on_start, count)
            first = batch.cases[0]
            with lock:
                bar.console.print(f"{first.backend} {first.variant} {first.mode} on "
                                  f"{batch.device}: {len(batch.cases)} cases, {len(failed)} "
                                  f"failed ({time.monotonic() - start:.0f} s)")

        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        try:
            for future in [pool.submit(run_one, b) for b in batches]:
                future.result()
        except KeyboardInterrupt:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True)
    frame = gate.verdicts(store.load(folder))
    pairs = pairwise.compare(frame, outputs)
    store.write_csv(pairs, folder / "pairs.csv")
    if not keep_outputs:
        shutil.rmtree(outputs, ignore_errors=True)
    return CheckResult(frame, pairs)


def _failed(row: dict) -> bool:
    return row["status"] in gate.FAILED or row.get("correct") is False


def _batches(cases: list[Case]) -> dict[tuple, list[Case]]:
    """One worker batch per (backend, device, variant, mode), so that `jobs` workers
    can share them out, train batches first: they take longest (a backward pass to
    trace and compile), and starting them early keeps every worker busy to the end.
    Cases sharing a reference stay adjacent inside each batch."""
    from harness.run import runner
    grouped: dict[tuple, list[Case]] = {}
    for (backend, device), group in runner.batches(cases).items():
        for case in group:
            grouped.setdefault((backend, device, case.variant, case.mode), []).append(case)
    order = sorted(grouped, key=lambda key: key[3] != "train")     # stable otherwise
    return {key: grouped[key] for key in order}
