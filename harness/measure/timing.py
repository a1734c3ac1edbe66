"""The measuring loop, given a step and a sync: nothing framework-specific.

1. The first call (tracing, compiling) is timed apart.
2. Warm-up: calls until `warmup_ms` has passed, so caches, allocators and
   autotuners settle.
3. Autorange, as torch.utils.benchmark's blocked_autorange does: grow the number
   of calls per sample until one block takes `min_block_ms`, so the cost of the
   clock and the sync is spread over many calls; then take blocks until both
   `min_run_ms` and `min_samples` are met. Each sample is block time / calls.
   The growth starts from the last warm-up call (a block of one), so a step that
   fills a block alone costs no calibration block; and the block that ends the
   growth, taken at the final number of calls after the others, is the first
   sample (as timeit's autorange keeps its last block) rather than thrown away.
A sync ends every block: asynchronous frameworks otherwise return before the
work is done, and syncing inside every call would time the sync, not the work.

With `flush` (a suite's `flush_l2 = true`), every call runs on cold caches:
flush() writes a buffer larger than the device's last-level cache (256 MB, as
triton's do_bench does) before each call, untimed, so each sample is one call
between two syncs, its sync's cost (~10 us on a GPU) included.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from harness.measure.stats import summarize

# A timing loop as the cell pipeline takes it (harness/run/cell.py):
# loop(step, sync, flush, meter) -> the row's timing columns, `median_ms` among them.
# flush is None unless caches are to be flushed before every call; meter (energy.py)
# reads energy and device state around the sample blocks.
TimingLoop = Callable[..., dict]


@dataclass
class Timing:
    first_call_ms: float
    warmup_calls: int
    number: int                                  # calls per sample
    samples_ms: list[float] = field(default_factory=list)   # per call, raw
    # wall seconds of each part: first_call, warmup, calibrate, samples
    phases_s: dict[str, float] = field(default_factory=dict)
    energy: dict = field(default_factory=dict)   # the meter's columns (energy.py)


def measure(step: Callable[[], object], sync: Callable[[], None], *,
            min_run_ms: float = 500, min_samples: int = 10, warmup_ms: float = 100,
            min_block_ms: float = 1.0, max_number: int = 1_000_000,
            flush: Callable[[], None] | None = None,
            clock: Callable[[], float] = time.perf_counter, meter=None) -> Timing:
    def warm_block(number: int) -> float:
        """Milliseconds for `number` back-to-back calls, synced at both ends."""
        sync()
        start = clock()
        for _ in range(number):
            step()
        sync()
        return (clock() - start) * 1e3

    def cold_block(number: int) -> float:
        """One call after the caches are flushed (number is always 1 here)."""
        flush()
        sync()
        start = clock()
        step()
        sync()
        return (clock() - start) * 1e3

    block = warm_block if flush is None else cold_block
    if flush is not None:
        max_number = 1                      # one call per sample, each after a flush

    # Phases on the wall clock, not `clock` (a test may script that one).
    marks = [time.perf_counter()]
    first_call_ms = block(1)
    marks.append(time.perf_counter())

    warmup_calls, spent, elapsed = 0, 0.0, 0.0
    while warmup_calls == 0 or spent < warmup_ms:
        elapsed = block(1)                  # the last one sizes the blocks below
        spent += elapsed
        warmup_calls += 1
    marks.append(time.perf_counter())

    number, last_block, began = _grow(block, elapsed, min_block_ms, max_number)
    marks.append(began or time.perf_counter())

    timing = Timing(first_call_ms, warmup_calls, number)
    if last_block is not None:              # the last growth block: the first sample
        timing.samples_ms.append(last_block / number)
    _sample(timing, block, last_block or 0.0, min_samples, min_run_ms,
            meter if flush is None else None)
    marks.append(time.perf_counter())
    timing.phases_s = {name: end - start for name, start, end
                       in zip(PHASES, marks, marks[1:])}
    return timing


def _sample(timing: Timing, block: Callable[[int], float], total: float, min_samples: int,
            min_run_ms: float, meter) -> None:
    """Blocks of timing.number calls until both minimums are met; the meter (energy.py)
    reads around them, outside each block."""
    if meter is not None:
        meter.start()
    blocks = 0
    while len(timing.samples_ms) < min_samples or total < min_run_ms:
        ms = block(timing.number)
        total += ms
        blocks += 1
        timing.samples_ms.append(ms / timing.number)
    if meter is not None:
        timing.energy = meter.stop(blocks * timing.number)


PHASES = ("first_call", "warmup", "calibrate", "samples")   # the loop's, in order


def _grow(block: Callable[[int], float], elapsed: float, min_block_ms: float,
          max_number: int) -> tuple[int, float | None, float | None]:
    """Calls per block, grown from `elapsed` (a block of one call) until a block
    takes min_block_ms; with the last block grown (ms, None when none was needed)
    and when it began on the wall clock."""
    number, last_block, began = 1, None, None
    while elapsed < min_block_ms and number < max_number:
        # Aim straight for the target, at most 10x a time, as blocked_autorange does.
        grow = min_block_ms / max(elapsed, 1e-6)
        number = min(max_number, max(number * 2, int(number * min(grow * 1.2, 10))))
        began = time.perf_counter()
        elapsed = last_block = block(number)
    return number, last_block, began


def loop(**settings) -> TimingLoop:
    """measure() with these settings as the worker's timing loop: its samples
    summarized (harness.measure.stats) and its own figures, as row columns."""
    def run(step, sync, flush=None, meter=None) -> dict:
        timing = measure(step, sync, flush=flush, meter=meter, **settings)
        return {**summarize(timing.samples_ms), **timing.energy,
                "first_call_ms": timing.first_call_ms,
                "warmup_calls": timing.warmup_calls, "calls_per_sample": timing.number,
                "samples_ms": timing.samples_ms,
                "timer": TIMER if flush is None else TIMER_FLUSHED,
                **{f"phase_{name}_s": s for name, s in timing.phases_s.items()}}
    return run


TIMER = "host clock, device sync after each block of calls"
TIMER_FLUSHED = "host clock, device sync after each call, caches flushed before it"
FLUSH_BYTES = 256 * 2**20     # above any GPU's L2 (H100/H200: 50-60 MB) and CPU's L3


def cpu_cache_flusher() -> Callable[[], None]:
    """Evicts the CPU's caches: writes 256 MB (NumPy, no framework needed)."""
    import numpy as np
    buffer = np.empty(FLUSH_BYTES, dtype=np.uint8)
    return lambda: buffer.fill(0)
