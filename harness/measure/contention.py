"""Who else used the machine while a cell was timed.

On the CPU: the busy time of the CPUs this process may run on (/proc/stat, per CPU)
minus the CPU time of this process and its live descendants (a framework's own
helpers, such as inductor's compile workers, are the cell's, not others'), over
the timed window, as a share of those CPUs' time; and the load average. On a GPU (NVML): other processes
on the same GPU and its utilization just before the cell, and the clock-throttle
reasons at the end. A cell is `contended` when others took more than
CONTENDED_SHARE of its CPUs, or another process computed on its GPU
(docs/measurement.md, "Contention").
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

CONTENDED_SHARE = 0.10       # others' share of the cell's CPUs that marks it contended
_IDLE_FIELDS = (3, 4)        # idle and iowait in a /proc/stat cpu line


@dataclass(frozen=True)
class Snapshot:
    wall_s: float
    busy_s: float | None      # busy time of this process's CPUs since boot
    own_s: float | None       # this process's CPU time
    cpus: int


def _allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _busy_seconds(cpus: set[int], stat_text: str) -> float:
    """Busy jiffies of the given CPUs (every field but idle and iowait), in seconds."""
    hz = os.sysconf("SC_CLK_TCK")
    busy = 0
    for line in stat_text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(f) for f in fields[:8]]
            busy += sum(t for i, t in enumerate(ticks) if i not in _IDLE_FIELDS)
    return busy / hz


def _own_seconds(stat_text: str) -> float:
    """CPU time of one process (every thread) and of its children that have ended
    (utime, stime, cutime, cstime), from its /proc/<pid>/stat."""
    fields = stat_text.rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _family_pids(pid: int) -> list[int]:
    """The process and its live descendants, from /proc/<pid>/task/*/children."""
    family, todo = [], [pid]
    while todo:
        current = todo.pop()
        family.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo += [int(child) for child in f.read().split()]
            except OSError:
                continue
    return family


def _family_seconds() -> float:
    """CPU time of this process and its descendants: live ones from their own
    counters, ended ones through their parents' (a compiler a framework ran and
    waited for, such as inductor's cc1plus, counts as the cell's own)."""
    total = 0.0
    for pid in _family_pids(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                total += _own_seconds(f.read())
        except (OSError, ValueError, IndexError):
            if pid == os.getpid():
                raise
    return total


def snapshot() -> Snapshot:
    cpus = _allowed_cpus()
    try:
        with open("/proc/stat") as f:
            busy = _busy_seconds(cpus, f.read())
        own = _family_seconds()
    except (OSError, ValueError, IndexError):   # not Linux: unknown, never a failure
        busy = own = None
    return Snapshot(time.monotonic(), busy, own, len(cpus))


def others_share(before: Snapshot, after: Snapshot) -> float | None:
    """Others' CPU time over the window, as a share of the CPUs this process may
    use; None where /proc cannot say. Clock ticks make it exact to about
    0.01 s per CPU, so a window under a second reads coarsely."""
    wall = after.wall_s - before.wall_s
    if before.busy_s is None or after.busy_s is None or wall <= 0:
        return None
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return max(0.0, others) / (wall * after.cpus)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def cpu_columns(before: Snapshot, after: Snapshot) -> dict:
    share = others_share(before, after)
    return {"others_cpu_share": share, "load_avg": load_average(),
            "contended": None if share is None else share > CONTENDED_SHARE}


def wait_for_quiet(limit_s: float, window_s: float = 1.0,
                   sleep=time.sleep) -> tuple[bool, float]:
    """Watch the machine in windows of window_s until others use under
    CONTENDED_SHARE of this process's CPUs, for at most limit_s. Returns (quiet,
    seconds waited)."""
    start = time.monotonic()
    while True:
        before = snapshot()
        sleep(window_s)
        share = others_share(before, snapshot())
        waited = time.monotonic() - start
        if share is None or share <= CONTENDED_SHARE:
            return True, waited
        if waited >= limit_s:
            return False, waited


# Clock-event reasons that slow a GPU down (idle, application clocks and display
# clocks are not a slowdown of the cell): NVML's bit, and its name in a row.
THROTTLES = {0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x20: "sw_thermal",
             0x40: "hw_thermal", 0x80: "hw_power_brake"}


def gpu_state(index: int, pid: int, nvml=None) -> dict:
    """Other processes computing on GPU `index` (by NVML's numbering), its
    utilization over NVML's last sample period, and its active throttle reasons;
    each None where NVML cannot say. Read before and after a cell's timed part."""
    try:
        nvml = nvml or __import__("pynvml")
        nvml.nvmlInit()
    except Exception:                          # no NVML here: unknown, not a failure
        return {"gpu_others": None, "gpu_util_pct": None, "throttle": None}
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        return {"gpu_others": _ask(lambda: sum(p.pid != pid for p in
                                               nvml.nvmlDeviceGetComputeRunningProcesses(handle))),
                "gpu_util_pct": _ask(lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                "throttle": _ask(lambda: throttle_names(
                    nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)))}
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def _ask(read):
    try:
        return read()
    except Exception:                          # one field NVML will not give
        return None


def throttle_names(bits: int) -> str:
    """'hw_thermal,sw_power_cap' for NVML's reason bits; '' when none slows it."""
    return ",".join(name for bit, name in sorted(THROTTLES.items()) if bits & bit)


def gpu_columns(before: dict, after: dict) -> dict:
    """A GPU cell's columns: others on its GPU (the more of the two readings),
    utilization before it, throttle reasons at its end."""
    counts = [c for c in (before.get("gpu_others"), after.get("gpu_others")) if c is not None]
    return {"gpu_others": max(counts) if counts else None,
            "gpu_util_before_pct": before.get("gpu_util_pct"), "throttle": after.get("throttle")}


class Watch:
    """Contention over a cell's timed part: `start()` before it, `columns()` after.
    gpu_index: the cell's GPU by NVML's numbering (None on the CPU)."""

    def __init__(self, gpu_index: int | None = None):
        self.gpu_index, self.pid = gpu_index, os.getpid()

    def start(self) -> None:
        self.gpu_before = self._gpu()
        self.cpu_before = snapshot()

    def columns(self) -> dict:
        cpu = cpu_columns(self.cpu_before, snapshot())
        if self.gpu_index is None:
            return {**cpu, "gpu_others": None, "gpu_util_before_pct": None, "throttle": None}
        gpu = gpu_columns(self.gpu_before, self._gpu())
        busy_gpu = None if gpu["gpu_others"] is None else gpu["gpu_others"] > 0
        flags = [f for f in (cpu["contended"], busy_gpu) if f is not None]
        return {**cpu, **gpu, "contended": any(flags) if flags else None}

    def _gpu(self) -> dict:
        return {} if self.gpu_index is None else gpu_state(self.gpu_index, self.pid)
