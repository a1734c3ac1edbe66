"""A cell timed by pytest-benchmark: `benchmark.pedantic` driven the way
harness.measure.timing drives its own loop (first call apart, warm-up, calls per round
grown past the clock's resolution, the suite's time budget), with the step's
sync inside the timed function. It is the timing loop the plugin hands to the
cell pipeline (harness/run/cell.py), which measures the rest as a worker does.

Used by harness/pytest_plugin/__init__.py, in the pytest process itself: the framework is
imported here by load_backend, as a worker would, so one framework per pytest
process is the safe way to run it (see the README).
"""
from __future__ import annotations

import math
import time
from typing import Callable

from harness.measure.stats import summarize
from harness.measure.timing import TimingLoop
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


def timed_call(step: Callable[[], object], sync: Callable[[], None]) -> float:
    """Milliseconds of one call, synced."""
    start = time.perf_counter()
    step()
    sync()
    return (time.perf_counter() - start) * 1e3


def loop(benchmark, measure: Measure) -> TimingLoop:
    """benchmark.pedantic as the cell pipeline's timing loop (harness/run/cell.py).
    The first call (tracing, compiling) runs and is timed before pedantic starts,
    so no round pays for it; a second call sizes the rounds. With `flush`
    (flush_l2), pedantic's untimed setup evicts the caches before every call.
    Columns: first_call_ms, the plan, and the median of pedantic's rounds."""
    def run(step, sync, flush=None, meter=None) -> dict:
        first_call_ms = timed_call(step, sync)
        plan = plan_rounds(timed_call(step, sync), measure)

        def target():
            step()
            sync()                       # the sync is part of what is timed

        def cold_caches():
            flush()
            sync()                       # the flush is done before the clock starts

        metered = meter is not None and flush is None
        if metered:                      # every call pedantic makes, warm-up rounds too
            meter.start()
        benchmark.pedantic(target, setup=cold_caches if flush else None, **plan)
        energy = meter.stop((plan["rounds"] + plan["warmup_rounds"]) * plan["iterations"]) \
            if metered else {}
        stats = getattr(benchmark, "stats", None)     # None under --benchmark-disable
        samples_ms = [s * 1e3 for s in stats.stats.data] if stats else []
        median_ms = summarize(samples_ms)["median_ms"] if samples_ms else None
        return {"first_call_ms": first_call_ms, **plan, "median_ms": median_ms,
                "timer": TIMER, **energy}
    return run
