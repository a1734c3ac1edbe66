"""A busy loop on the CPU a run's worker uses makes every timed cell `contended`,
with a warning at once; the same run on a quiet machine has none. Real runs, real
/proc counters (docs/measurement.md, "Contention")."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from harness.measure.contention import CONTENDED_SHARE
from tests.integration.runs_helpers import harness_run, jsonl_rows, write_suite

SWEEP = """\
[[sweep]]
workload = ["attention"]
backend  = ["torch"]
batch    = [1]
seq_len  = [64, 128]
heads    = [2]
head_dim = [16]
causal   = [false]

[sweep.variants]
torch = ["eager", "sdpa"]
"""
pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"),
                                reason="needs Linux CPU affinity")


def _suite(tmp_path):
    pytest.importorskip("torch")
    suite = write_suite(tmp_path, "busy", SWEEP)
    # A timed part of a third of a second per cell: /proc's 10 ms ticks resolve it.
    suite.write_text(suite.read_text().replace("min_run_ms = 5", "min_run_ms = 300"))
    return suite


def _hog_on(cpu: int) -> subprocess.Popen:
    code = (f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\n"
            "end = time.time() + 600\nwhile time.time() < end: pass")
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_busy_loop_beside_a_run_marks_every_timed_cell_and_warns(tmp_path):
    suite = _suite(tmp_path)
    worker_cpu = min(os.sched_getaffinity(0))   # --threads 1 pins the worker to it
    hog = _hog_on(worker_cpu)
    try:
        time.sleep(0.5)
        proc = harness_run(suite, tmp_path / "busy", "--no-gate", "--threads", "1")
    finally:
        hog.kill()
        hog.wait()
    rows = [r for r in jsonl_rows(tmp_path / "busy") if r["status"] == "ok"]
    assert len(rows) == 4
    assert all(r["contended"] is True and r["others_cpu_share"] > CONTENDED_SHARE
               for r in rows), [(r["variant"], r["others_cpu_share"]) for r in rows]
    assert proc.stderr.count("contended") >= 4, proc.stderr[-2000:]


def test_the_same_run_on_a_quiet_machine_is_not_contended(tmp_path):
    suite = _suite(tmp_path)
    proc = harness_run(suite, tmp_path / "quiet", "--no-gate", "--threads", "1")
    rows = [r for r in jsonl_rows(tmp_path / "quiet") if r["status"] == "ok"]
    assert len(rows) == 4
    assert not any(r["contended"] for r in rows), [r["others_cpu_share"] for r in rows]
    assert all(r["load_avg"] is not None for r in rows)
    assert "contended" not in proc.stderr
