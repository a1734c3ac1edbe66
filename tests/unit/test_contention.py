"""Contention (harness/measure/contention.py): the arithmetic on /proc's counters,
NVML's answers through a stand-in, and a real busy loop beside this process seen
as others' CPU time."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from harness.measure import contention
from harness.measure.contention import Snapshot

HZ = os.sysconf("SC_CLK_TCK")
STAT = """cpu  9 9 9 9 9 9 9 9 0 0
cpu0 100 0 50 800 50 0 0 0 0 0
cpu1 10 0 10 900 0 0 0 0 0 0
cpu2 500 0 0 0 0 0 0 0 0 0
intr 1 2 3
"""


def test_busy_time_counts_only_this_processes_cpus_and_not_idle_or_iowait():
    assert contention._busy_seconds({0, 1}, STAT) == pytest.approx((150 + 20) / HZ)
    assert contention._busy_seconds({2}, STAT) == pytest.approx(500 / HZ)


def test_own_time_counts_ended_children_even_with_a_paren_in_the_name():
    stat = "42 (a (b) c) R " + " ".join(["0"] * 10) + f" {3 * HZ} {HZ} {HZ} {HZ} 20 0"
    assert contention._own_seconds(stat) == pytest.approx(6.0)   # ended children's too


def test_others_share_is_busy_minus_own_over_the_cpus_wall_time():
    before = Snapshot(wall_s=10.0, busy_s=100.0, own_s=5.0, cpus=2)
    after = Snapshot(wall_s=12.0, busy_s=104.0, own_s=7.5, cpus=2)    # others: 1.5 s of 4
    assert contention.others_share(before, after) == pytest.approx(0.375)
    quiet = Snapshot(wall_s=12.0, busy_s=102.0, own_s=7.5, cpus=2)  # tick skew: never < 0
    assert contention.others_share(before, quiet) == 0.0
    assert contention.others_share(before, Snapshot(12.0, None, None, 2)) is None
    columns = contention.cpu_columns(before, after)
    assert columns["contended"] is True and columns["others_cpu_share"] == pytest.approx(0.375)


def _spin(seconds: float) -> subprocess.Popen:
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def _spin_elsewhere(seconds: float) -> None:
    """A busy loop that is not this process's descendant: started by a child that
    exits at once, so it is another process, as a neighbour's would be."""
    spin = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    starter = f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {spin!r}])"
    subprocess.run([sys.executable, "-c", starter], check=True)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not os.path.exists("/proc/stat"),
                    reason="needs Linux /proc and CPU affinity")
def test_a_busy_loop_on_this_processes_cpu_is_seen():
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})       # one CPU, which the loop inherits
    try:
        _spin_elsewhere(2.0)
        time.sleep(0.3)                          # the loop is running
        before = contention.snapshot()
        time.sleep(1.5)
        share = contention.others_share(before, contention.snapshot())
        time.sleep(0.5)                          # and has ended, for the tests after

    finally:
        os.sched_setaffinity(0, saved)
    # The loop has the CPU to itself while this process sleeps: nearly all of it.
    assert before.cpus == 1 and share > 0.7


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not os.path.exists("/proc/stat"),
                    reason="needs Linux /proc and CPU affinity")
def test_a_busy_child_of_this_process_is_its_own_time_not_others():
    """A framework's helper processes (inductor's compile workers, the compilers it
    runs and waits for) are the cell's."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        child = _spin(3.0)                       # a child of this process, alive
        time.sleep(0.3)
        before = contention.snapshot()
        time.sleep(0.7)
        _spin(0.7).wait()                        # one that runs and ends meanwhile
        share = contention.others_share(before, contention.snapshot())
        child.wait()
    finally:
        os.sched_setaffinity(0, saved)
    assert share < contention.CONTENDED_SHARE


class _FakeNvml:
    class _Proc:
        def __init__(self, pid):
            self.pid = pid

    class _Util:
        gpu = 37

    def __init__(self, pids, reasons, fail_util=False):
        self.pids, self.reasons, self.fail_util = pids, reasons, fail_util

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [self._Proc(p) for p in self.pids]

    def nvmlDeviceGetUtilizationRates(self, handle):
        if self.fail_util:
            raise RuntimeError("Not Supported")
        return self._Util()

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self.reasons


def test_gpu_state_counts_other_processes_and_names_throttles():
    nvml = _FakeNvml(pids=[100, 7, 8], reasons=0x1 | 0x4 | 0x40)
    state = contention.gpu_state(0, pid=100, nvml=nvml)
    assert state == {"gpu_others": 2, "gpu_util_pct": 37, "throttle": "sw_power_cap,hw_thermal"}
    alone = contention.gpu_state(0, pid=100, nvml=_FakeNvml([100], 0x1, fail_util=True))
    assert alone == {"gpu_others": 0, "gpu_util_pct": None, "throttle": ""}
    columns = contention.gpu_columns(alone, state)
    assert columns == {"gpu_others": 2, "gpu_util_before_pct": None,
                       "throttle": state["throttle"]}


def test_a_watch_on_a_gpu_is_contended_by_another_process_there(monkeypatch):
    states = iter([{"gpu_others": 0, "gpu_util_pct": 0, "throttle": ""},
                   {"gpu_others": 1, "gpu_util_pct": 90, "throttle": ""}])
    monkeypatch.setattr(contention, "gpu_state", lambda index, pid: next(states))
    watch = contention.Watch(gpu_index=0)
    watch.start()
    columns = watch.columns()
    assert columns["gpu_others"] == 1 and columns["contended"] is True
    cpu_only = contention.Watch()
    cpu_only.start()
    assert set(cpu_only.columns()) == set(columns)


def test_wait_for_quiet_waits_while_busy_and_gives_up_at_its_limit(monkeypatch):
    readings = iter([Snapshot(0, 0, 0, 1), Snapshot(1, 0.9, 0, 1),      # busy
                     Snapshot(1, 0.9, 0, 1), Snapshot(2, 0.95, 0, 1)])  # quiet
    monkeypatch.setattr(contention, "snapshot", lambda: next(readings))
    quiet, _ = contention.wait_for_quiet(limit_s=60, sleep=lambda s: None)
    assert quiet is True
    busy = iter([Snapshot(0, 0, 0, 1), Snapshot(1, 1.0, 0, 1)] * 50)
    monkeypatch.setattr(contention, "snapshot", lambda: next(busy))
    quiet, waited = contention.wait_for_quiet(limit_s=0.0, sleep=lambda s: None)
    assert quiet is False
