"""Peak memory of one step, per cell, above what was resident before it.

CPU (any framework): the process's resident high-water mark, VmHWM. Writing 5 to
/proc/self/clear_refs resets it to the current resident size, so a long-lived
worker measures each cell apart. tracemalloc is no use here: it does not see the
frameworks' native allocators.

glibc's malloc would blur that figure: it keeps freed memory on its heap and
reuses it, so a step's peak could read low (memory kept from an earlier cell) or
high (a hole a later allocation did not fit in). So the probe step runs with
every allocation of 64 KiB or more mapped on its own (returned to the OS the
moment it is freed), after malloc_trim has handed back what glibc kept: the
resident peak is then the live peak, as a GPU allocator's max_memory_allocated
is. Timed steps run under a fixed policy (`pin_allocator`), the same in every cell:
the thresholds glibc's own dynamic rule settles on once a process has freed a
32 MiB buffer, i.e. the state of any worker after its first large cell. Without
it a cell's time would depend on which cells ran before it in the same worker
(docs/measurement.md, "glibc's malloc policy in timed steps").
GPU probes come from each backend (its allocator's own peak).
"""
from __future__ import annotations

import ctypes
import gc
from typing import Callable

CPU_METHOD = "cpu_rss_hwm"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
PROBE_MMAP_THRESHOLD = 64 * 1024
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


def cpu_step_peak(run_step: Callable[[], None]) -> tuple[int | None, str]:
    """Bytes one call of run_step adds at its peak, and how that was measured."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
        _LIBC.mallopt(_M_MMAP_THRESHOLD, PROBE_MMAP_THRESHOLD)
    try:
        baseline = _status_bytes("VmRSS")
        if not reset_rss_peak():
            return None, "unavailable: /proc/self/clear_refs refused"
        run_step()
        return max(0, _status_bytes("VmHWM") - baseline), CPU_METHOD
    except OSError as exc:
        return None, f"unavailable: {exc}"
    finally:
        pin_allocator()
