"""A cell timed by pytest-benchmark: `benchmark.pedantic` driven the way
harness.measure.timing drives its own loop (first call apart, warm-up, calls per round
grown past the clock's resolution, the suite's time budget), with the step's
sync inside the timed function, then the same extra columns a run writes.

Used by harness/pytest_plugin/__init__.py, in the pytest process itself: the framework is
imported here by load_backend, as a worker would, so one framework per pytest
process is the safe way to run it (see the README).
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable

from harness.spec import costs
from harness.measure import devices
from harness.spec import Case
from harness.run.suite import Measure

TIMER = "pytest-benchmark pedantic, device sync inside each timed call"
MAX_ITERATIONS = 1_000_000


def plan_rounds(per_call_ms: float, measure: Measure) -> dict:
    """pedantic's rounds, iterations and warm-up rounds for a call of this cost:
    iterations so a round takes min_block_ms (one when caches are flushed before
    each call), rounds to fill min_run_ms and at least min_samples, warm-up rounds
    to fill warmup_ms (at least one)."""
    per_call_ms = max(per_call_ms, 1e-6)
    iterations = 1 if measure.flush_l2 else min(
        MAX_ITERATIONS, max(1, math.ceil(measure.min_block_ms / per_call_ms)))
    round_ms = per_call_ms * iterations
    return {"iterations": iterations,
            "rounds": max(measure.min_samples, math.ceil(measure.min_run_ms / round_ms)),
            "warmup_rounds": max(1, math.ceil(measure.warmup_ms / round_ms))}


def timed_call(step: Callable[[], object], sync: Callable[[object], None]) -> float:
    """Milliseconds of one call, synced."""
    start = time.perf_counter()
    sync(step())
    return (time.perf_counter() - start) * 1e3


def bench(benchmark, step: Callable[[], object], sync: Callable[[object], None],
          measure: Measure, flush: Callable[[], None] | None = None) -> dict:
    """Time step through benchmark.pedantic; returns first_call_ms and the plan.
    The first call (tracing, compiling) runs and is timed before pedantic starts,
    so no round pays for it; a second call sizes the rounds. With `flush`
    (flush_l2), pedantic's untimed setup evicts the caches before every call."""
    first_call_ms = timed_call(step, sync)
    plan = plan_rounds(timed_call(step, sync), measure)

    def target():
        sync(step())                     # the sync is part of what is timed

    def cold_caches():
        flush()
        sync(None)                       # the flush is done before the clock starts

    benchmark.pedantic(target, setup=cold_caches if flush else None, **plan)
    return {"first_call_ms": first_call_ms, **plan}


def extra_columns(case: Case, median_s: float, gpus: list[dict]) -> dict:
    """The row's own columns for a benchmark's extra_info: the Case, FLOPs,
    TFLOP/s against the device's peak, and where it ran."""
    flops = costs.flops(case)
    tflops = flops / median_s / 1e12 if median_s else None
    described = devices.describe(case.device, gpus)
    peak = devices.peak_tflops(described["device_name"], case.dtype) \
        if case.device.startswith("cuda") else None
    return {**case.to_dict(), **described, "host": devices.host(), "flops": flops,
            "tflops": tflops, "pct_peak": 100 * tflops / peak if peak and tflops else None,
            "median_ms": median_s * 1e3 if median_s else None, "timer": TIMER}


def flusher(backend, case: Case):
    """The backend's cache flush for flush_l2 (harness.run.worker.cache_flusher)."""
    from harness.run.worker import cache_flusher
    return cache_flusher(backend, case)


def settings_env(backend: str, device: str, scratch: str) -> dict[str, str]:
    """The backend's environment (threads, compile caches, memory growth), set
    before its framework is imported here, as the runner sets it for a worker;
    without the device pinning (CUDA_VISIBLE_DEVICES, JAX_PLATFORMS), since one
    pytest process may run cells on several devices."""
    from harness.run.worker import environment_for
    env = environment_for(backend, device, devices.cpu_threads(), scratch)
    for key in ("CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS"):
        env.pop(key, None)
    return {k: v for k, v in env.items() if k not in os.environ}
