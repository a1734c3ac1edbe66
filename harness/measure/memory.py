"""Peak memory of one step, per cell, above what was resident before it.

CPU (any framework): the process's resident high-water mark, VmHWM. Writing 5 to
/proc/self/clear_refs resets it to the current resident size, so a long-lived
worker measures each cell apart. tracemalloc is no use here: it does not see the
frameworks' native allocators.

glibc's malloc would blur that figure: it keeps freed memory on its heaps and
reuses it, so a step's peak could read low (memory kept from an earlier cell) or
high (a hole a later allocation did not fit in). So the probe runs the step
under its own policy: every allocation of 64 KiB or more mapped on its own
(returned to the OS the moment it is freed), and every heap's free top trimmed
on each free. malloc_trim alone does not do it: it never trims the top of a
thread's arena, where XLA's worker threads kept a jax step's 8 MB buffers
(docs/measurement.md, "Memory"). One step under that policy returns what the
arenas kept; the resident size is left to settle, since XLA frees a step's
buffers on its own threads after the outputs are ready; then the measured step
runs, and the resident peak is the live peak, as a GPU allocator's
max_memory_allocated is, but for holes the step frees inside a heap and does not
refill (they stay resident until the next trim). Timed steps run under a fixed policy (`pin_allocator`),
the same in every cell: the thresholds glibc's own dynamic rule settles on once
a process has freed a 32 MiB buffer, i.e. the state of any worker after its
first large cell. Without it a cell's time would depend on which cells ran
before it in the same worker (docs/measurement.md, "glibc's malloc policy in
timed steps").
GPU probes come from each backend (its allocator's own peak).
"""
from __future__ import annotations

import ctypes
import gc
import time
from typing import Callable

CPU_METHOD = "cpu_rss_hwm"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
PROBE_MMAP_THRESHOLD = 64 * 1024
PROBE_TRIM_THRESHOLD = 0         # each large free trims its arena's top, threads' too
# Deferred frees: XLA released 256 MB over ~30 ms, with pauses up to 4 ms between
# buffers; a 50 ms pause in the fall ends the wait.
SETTLE_QUIET_S, SETTLE_LIMIT_S, SETTLE_STEP_BYTES = 0.05, 2.0, 64 * 1024
# What glibc's dynamic threshold converges to on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX),
# and twice that for trimming, as its dynamic rule does.
TIMED_MMAP_THRESHOLD = 32 * 2**20
TIMED_TRIM_THRESHOLD = 64 * 2**20


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim     # not glibc: AttributeError
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def pin_allocator() -> None:
    """A fixed malloc policy for timed steps, so no cell times a different allocator
    state than another (glibc's thresholds otherwise drift with what was freed)."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, TIMED_MMAP_THRESHOLD)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, TIMED_TRIM_THRESHOLD)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def settle_resident(quiet_s: float = SETTLE_QUIET_S, limit_s: float = SETTLE_LIMIT_S) -> float:
    """Wait until the resident size stops falling (frees other threads still make),
    for quiet_s without a fall, at most limit_s; the seconds waited."""
    start = since = time.monotonic()
    low = _status_bytes("VmRSS")
    while True:
        time.sleep(0.001)
        now, rss = time.monotonic(), _status_bytes("VmRSS")
        if rss < low - SETTLE_STEP_BYTES:
            since = now
        low = min(low, rss)
        if now - since >= quiet_s or now - start >= limit_s:
            return now - start


def _probe_policy() -> None:
    _LIBC.mallopt(_M_MMAP_THRESHOLD, PROBE_MMAP_THRESHOLD)
    _LIBC.mallopt(_M_TRIM_THRESHOLD, PROBE_TRIM_THRESHOLD)


def cpu_step_peak(run_step: Callable[[], None], settle: bool = True) -> tuple[int | None, str]:
    """Bytes one call of run_step adds at its peak, and how that was measured.
    run_step runs twice: once to empty what the allocator kept, once measured. The
    first may be another call that runs the same step, given as `run_step.first`
    (harness/run/cell.py hands the step that also takes the outputs for the check,
    so that no extra step is run for them). `settle`: wait for frees on other
    threads (XLA's) before the measured step; a framework that frees on the
    calling thread need not."""
    # Young generations only: a full pass costs 0.1 s a cell beside a framework's
    # objects, and old garbage stays resident through both steps, so it is not in
    # the difference either way.
    gc.collect(1)
    if _LIBC is not None:
        _probe_policy()
    try:
        getattr(run_step, "first", run_step)()
        if settle:
            settle_resident()
        gc.collect(1)            # what the step left
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        baseline = _status_bytes("VmRSS")
        if not reset_rss_peak():
            return None, "unavailable: /proc/self/clear_refs refused"
        run_step()
        return max(0, _status_bytes("VmHWM") - baseline), CPU_METHOD
    except OSError as exc:
        return None, f"unavailable: {exc}"
    finally:
        pin_allocator()
