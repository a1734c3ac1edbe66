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
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from harness.spec.catalog import REGISTRY, device_kind, static_unsupported
from harness.spec import costs
from harness.measure import devices
from harness.correctness.judging import References, check, one_line, rerun_on
from harness.measure.memory import pin_allocator
from harness.spec import Case
from harness.spec.schema import empty_row
from harness.measure.stats import summarize
from harness.measure.timing import TIMER, TIMER_FLUSHED, measure

def environment_for(backend: str, device: str, threads: int, scratch: str) -> dict[str, str]:
    """The variables a worker for (backend, device) needs before its import;
    `scratch` is a folder of the worker's own (compile caches), removed after it."""
    settings = __import__(REGISTRY[backend].settings, fromlist=["environment"])
    env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "ATTNBENCH_THREADS": str(threads)}
    if device.startswith("cuda:"):
        # One GPU per worker; inside it that GPU is cuda:0.
        env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    elif device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""          # a CPU cell never touches a GPU
    env.update(settings.environment(device, threads, scratch))
    return env


def limit_cpus(threads: int | None) -> None:
    """Run on `threads` CPUs, before any framework is imported: XLA sizes its CPU
    pool from the affinity mask, torch and TF are told the count as well, so every
    framework gets the same cores."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if threads and threads < len(cpus):
            os.sched_setaffinity(0, cpus[:threads])
    except (AttributeError, OSError):     # not Linux: the thread counts still hold
        pass


def local_device(device: str) -> str:
    return "cuda:0" if device.startswith("cuda") else device


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


def recorded_settings(job: dict) -> str:
    """The framework settings this worker runs under, as `KEY=value ...`: what the
    runner set before the import (threads, preallocation, memory growth...)."""
    keys = environment_for(job["backend"], job["device"], job.get("threads") or 1, "")
    return " ".join(f"{k}={os.environ.get(k, '')}" for k in sorted(keys)
                    if not k.endswith("_DIR"))


def base_row(case: Case, job: dict, version: str) -> dict:
    flops = costs.flops(case)
    return {
        **empty_row(),              # every declared column (harness/spec/schema.py)
        **case.to_dict(),
        "run_id": job.get("run_id", ""),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": devices.host(),
        **devices.describe(case.device, job.get("gpus", [])),
        "backend_version": version,
        "threads": job.get("threads"),
        "settings": job.get("settings", ""),
        "tuned": _tuned(case),
        "flops": flops,
        **{f"mem_{k}": v for k, v in costs.memory(case).items()},
    }


def _tuned(case: Case) -> bool | None:
    info = REGISTRY.get(case.backend)
    variant = info.variant(case.variant) if info else None
    return variant.tuned if variant else None


def run_case(backend, case: Case, job: dict, refs: References) -> dict:
    row = base_row(case, job, backend.version() if backend else "")
    local = case.replace(device=local_device(case.device))
    try:
        reason = static_unsupported(case) or (
            job["missing"] if backend is None else backend.unsupported(local))
    except Exception as exc:       # asking must not end the batch either
        traceback.print_exc(file=sys.stderr)
        return {**row, "status": "error", "reason": f"backend.unsupported: {one_line(exc)}"}
    if reason:
        return {**row, "status": "unsupported", "reason": reason}
    weights, inputs = refs.data(case)
    if job.get("check_only"):
        return check_only(backend, case, local, row, weights, inputs, refs, job)
    settings = dict(job["measure"])
    flush_l2 = settings.pop("flush_l2", False)
    try:
        prepared = backend.prepare(local, weights, inputs)
        flush = cache_flusher(backend, local) if flush_l2 else None
        timing = measure(prepared.step, prepared.sync, flush=flush, **settings)
        del flush                    # its 256 MB buffer is not part of the step's peak

        def one_step():
            prepared.step()
            prepared.sync()

        peak, method = backend.step_peak(local, one_step)
        nvml = gpu_process_memory(case.device)
        kernel = getattr(prepared, "kernel", None)
        got = prepared.outputs()
        del prepared                 # before a sampled check asks the backend again
    except Exception as exc:       # one cell's failure never stops the batch
        traceback.print_exc(file=sys.stderr)
        return {**row, "status": "oom" if is_oom(exc) else "error", "reason": one_line(exc)}
    stats = summarize(timing.samples_ms)
    tflops = row["flops"] / (stats["median_ms"] * 1e-3) / 1e12
    peak_tflops = devices.peak_tflops(row["device_name"], case.dtype) \
        if device_kind(case.device) == "cuda" else None
    return {
        **row, "status": "ok", "reason": "", **stats,
        "first_call_ms": timing.first_call_ms, "warmup_calls": timing.warmup_calls,
        "calls_per_sample": timing.number, "samples_ms": timing.samples_ms,
        "peak_mem_bytes": peak, "mem_method": method,
        "nvml_mem_bytes": nvml[0], "nvml_mem_method": nvml[1],
        "kernel": kernel, "timer": TIMER_FLUSHED if flush_l2 else TIMER,
        "tflops": tflops,
        "pct_peak": 100 * tflops / peak_tflops if peak_tflops else None,
        **check(case, got, weights, inputs, refs, rerun_on(backend, local, weights)),
    }


def cache_flusher(backend, case: Case):
    """The backend's way to evict its device's caches; a backend without one
    cannot honour flush_l2, and its cell fails saying so."""
    make = getattr(backend, "cache_flusher", None)
    if make is None:
        raise NotImplementedError(f"{case.backend} has no cache_flusher: flush_l2 unsupported")
    return make(case)


def gpu_process_memory(device: str) -> tuple[int | None, str | None]:
    """NVML's figure for this worker on its GPU (context and pools included), the
    second memory column beside the allocator's peak; None on the CPU. NVML counts
    GPUs by PCI bus, as the runner's cuda:N does (CUDA_DEVICE_ORDER=PCI_BUS_ID)."""
    if not device.startswith("cuda:"):
        return None, None
    return devices.process_gpu_memory(int(device.split(":")[1]), os.getpid())


def check_only(backend, case: Case, local: Case, row: dict, weights: dict, inputs: dict,
               refs: References, job: dict) -> dict:
    """`attnbench check`: the outputs and gradients against the reference, no timing."""
    try:
        got = backend.prepare(local, weights, inputs).outputs()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return {**row, "status": "oom" if is_oom(exc) else "error", "reason": one_line(exc)}
    if job.get("outputs_dir"):
        save_outputs(Path(job["outputs_dir"]) / f"{case.file_stem}.npz", got)
    return {**row, "status": "ok", "reason": "",
            **check(case, got, weights, inputs, refs, rerun_on(backend, local, weights))}


def save_outputs(path: Path, got: dict) -> None:
    """What the backend computed, for the pairwise comparison of backends (float32
    holds every dtype's values exactly). Best effort: a full disk costs the pair,
    not the case."""
    try:
        np.savez(path, **{name: np.asarray(value, dtype=np.float32)
                          for name, value in got.items()})
    except (OSError, ValueError, TypeError):
        traceback.print_exc(file=sys.stderr)


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
    job = json.load(sys.stdin)
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
    refs = References(job.get("reference_dir"))
    for index, case_dict in enumerate(job["cases"]):
        emit({"event": "start", "index": index, "time": time.time()})
        row = run_case(backend, Case.from_dict(case_dict), job, refs)
        emit({"event": "row", "index": index, "row": row})
    return 0


if __name__ == "__main__":
    sys.exit(main())
