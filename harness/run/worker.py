"""python -m harness.run.worker: one backend on one device, a batch of Cases.

Reads a job (JSON) on stdin and streams JSON lines on its original stdout:
  {"event": "start", "index": i}            before cell i runs
  {"event": "row", "index": i, "row": {...}} when it has ended, whatever happened
Anything the framework prints goes to stderr, so the stream stays clean. The
runner set this process's environment (threads, CUDA_VISIBLE_DEVICES, the
backend's settings) before it started, i.e. before the framework is imported.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from harness.correctness.judging import References, one_line, rerun_on
from harness.measure import timing
from harness.measure.memory import pin_allocator
from harness.run import cell
from harness.run.environment import limit_cpus, local_device, recorded_settings
from harness.run.rows import base_row
from harness.spec import Case
from harness.spec.catalog import REGISTRY


def is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    # What each framework raises, on the CPU and on CUDA (tests/unit/test_worker.py
    # provokes the CPU ones for real; tests/unit/test_oom.py holds the GPU ones, with
    # their sources): torch "CUDA out of memory" (OutOfMemoryError), "CUDA error: out
    # of memory" and "DefaultCPUAllocator: can't allocate memory"; JAX/XLA
    # "RESOURCE_EXHAUSTED: Out of memory"; TF ResourceExhaustedError "OOM when
    # allocating"; cuBLAS and cuDNN failing to allocate their workspace or handle.
    return isinstance(exc, MemoryError) or any(
        key in text for key in ("out of memory", "outofmemory", "resourceexhausted",
                                "resource_exhausted", "oom when allocating",
                                "can't allocate memory", "cublas_status_alloc_failed",
                                "cudnn_status_alloc_failed", "_allocation_failed"))


def run_case(backend, case: Case, job: dict, refs: References, quiet=None) -> dict:
    row = base_row(case, job, backend.version() if backend else "")
    local = case.replace(device=local_device(case.device))
    try:      # the refusal chain (harness.run.plan) has run; the backend has the last word
        reason = job["missing"] if backend is None else backend.unsupported(local)
    except Exception as exc:       # asking must not end the batch either
        traceback.print_exc(file=sys.stderr)
        return {**row, "status": "error", "reason": f"backend.unsupported: {one_line(exc)}"}
    if reason:
        return {**row, "status": "unsupported", "reason": reason}
    setup = time.perf_counter()
    weights, inputs = refs.data(case)
    if job.get("check_only"):
        return check_only(backend, case, local, row, weights, inputs, refs, job, setup)
    settings = dict(job["measure"])
    flush_l2 = settings.pop("flush_l2", False)
    profile = settings.pop("device_time", True)
    try:                           # the prepared step is passed inline: freed on return
        measured = cell.measure_step(backend, local, _prepared(backend, local, weights, inputs,
                                                               row, setup),
                                     timing.loop(**settings), flush_l2=flush_l2,
                                     nvml_device=case.device, quiet=quiet, profile=profile)
    except Exception as exc:       # one cell's failure never stops the batch
        traceback.print_exc(file=sys.stderr)
        return {**row, "status": "oom" if is_oom(exc) else "error", "reason": one_line(exc)}
    return {**row, "status": "ok", "reason": "",
            **cell.finish(case, measured, row["device_name"], weights, inputs, refs,
                          rerun_on(backend, local, weights), threads=row["threads"])}


def _prepared(backend, case: Case, weights: dict, inputs: dict, row: dict, since: float):
    """backend.prepare, with the setup time (weights and inputs included) in the row."""
    prepared = backend.prepare(case, weights, inputs)
    row["phase_setup_s"] = time.perf_counter() - since
    return prepared


def check_only(backend, case: Case, local: Case, row: dict, weights: dict, inputs: dict,
               refs: References, job: dict, setup: float) -> dict:
    """`attnbench check`: the outputs and gradients against the reference, no timing;
    setup, outputs, references and judging timed as a run's phases."""
    try:
        prepared = _prepared(backend, local, weights, inputs, row, setup)
        started = time.perf_counter()
        got = prepared.outputs()
        row["phase_outputs_s"] = time.perf_counter() - started
        del prepared
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return {**row, "status": "oom" if is_oom(exc) else "error", "reason": one_line(exc)}
    if job.get("outputs_dir"):
        save_outputs(Path(job["outputs_dir"]) / f"{case.file_stem}.npz", got)
    return {**row, "status": "ok", "reason": "",
            **cell.judged(case, got, weights, inputs, refs, rerun_on(backend, local, weights))}


def save_outputs(path: Path, got: dict) -> None:
    """What the backend computed, for the pairwise comparison of backends (float32
    holds every dtype's values exactly). Best effort: a full disk costs the pair,
    not the case."""
    try:
        np.savez(path, **{name: np.asarray(value, dtype=np.float32)
                          for name, value in got.items()})
    except (OSError, ValueError, TypeError):
        traceback.print_exc(file=sys.stderr)


def ask_for_quiet(emit, index: int):
    """Before a cell is timed: say so, and wait for the runner's "go", which it
    sends once it has recorded every earlier row and stopped every other worker
    of the CPU lane (harness/run/executors/quiet.py), so that nothing of ours
    works beside the timed calls (a row's write and fsync read as 18-54 % of the
    CPUs in a 20 ms timed window). Returns what says the timed calls are over."""
    def wait():
        emit({"event": "quiet", "index": index})
        sys.stdin.readline()           # "go"; end of file (no runner) goes on as well
        return lambda: emit({"event": "untimed", "index": index})
    return wait


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the runner dies (even by SIGKILL), so
    that no orphan keeps a GPU or CPU busy under the next run or a --resume."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)          # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return                                 # not Linux: the runner's pipes still end it
    runner = os.environ.get("ATTNBENCH_RUNNER_PID")
    if runner and os.getppid() != int(runner):   # it died before prctl took effect
        os._exit(1)


def main() -> int:
    die_with_parent()
    # Keep the original stdout for rows; whatever else prints goes to stderr.
    rows = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    job = json.loads(sys.stdin.readline())
    pin_allocator()
    if not job.get("check_only"):
        # Check workers run several at once and are not timed: pinning each to the
        # first CPUs would stack them all on one core; their thread count holds.
        limit_cpus(job.get("threads"))

    def emit(message: dict) -> None:
        rows.write(json.dumps(message) + "\n")
        rows.flush()

    backend = None
    info = REGISTRY.get(job["backend"])
    try:
        from backends import load_backend
        backend = load_backend(job["backend"])
    except ImportError as exc:     # a missing framework is `unsupported`, not a crash
        job["missing"] = f"{info.framework if info else job['backend']} is not installed ({exc})"
    job["settings"] = recorded_settings(job)
    refs = References(job.get("reference_dir"), job.get("reference_salt") or "")
    for index, case_dict in enumerate(job["cases"]):
        emit({"event": "start", "index": index, "time": time.time()})
        quiet = ask_for_quiet(emit, index) if job.get("handshake") else None
        row = run_case(backend, Case.from_dict(case_dict), job, refs, quiet)
        emit({"event": "row", "index": index, "row": row})
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Every row is out: skip the framework's teardown (TensorFlow's takes a second),
    # which the runner would otherwise wait on before the next batch's worker.
    os._exit(code)
