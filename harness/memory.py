"""Peak memory of one step, per cell, above what was resident before it.

CPU (any framework): the process's resident high-water mark, VmHWM. Writing 5 to
/proc/self/clear_refs resets it to the current resident size, so a long-lived
worker measures each cell apart. Before the reset, malloc_trim hands memory that
glibc kept from earlier cells back to the OS; otherwise the step would reuse it
without raising the mark and the peak would read low. tracemalloc is no use here:
it does not see the frameworks' native allocators.
GPU probes come from each backend (its allocator's own peak).
"""
from __future__ import annotations

import ctypes
import gc
from typing import Callable

CPU_METHOD = "cpu_rss_hwm"


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):      # not glibc: nothing to trim
        pass


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
    _malloc_trim()
    try:
        baseline = _status_bytes("VmRSS")
    except OSError:
        return None, "unavailable: no /proc/self/status"
    if not reset_rss_peak():
        return None, "unavailable: /proc/self/clear_refs refused"
    run_step()
    return max(0, _status_bytes("VmHWM") - baseline), CPU_METHOD
