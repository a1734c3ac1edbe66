"""The CPU lane's batches side by side (harness/run/executors/quiet.py): one
worker's untimed work overlaps another's, and never a timed cell. Both workers are
pinned to one CPU (--threads 1), and the faulty backend's `spins` variant keeps it
busy in untimed setup: were a timed torch cell to run beside it, the contention
columns would say so (docs/measurement.md, "Contention")."""
from __future__ import annotations

import json
import os

import pytest

from harness.report.time_spent import phase_seconds
from harness.results import store
from tests.integration.runs_helpers import harness_run, jsonl_rows, write_suite

FAULTY = "tests.integration.faulty_backend"
SWEEP = """\
[[sweep]]
workload = ["attention"]
backend  = ["torch", "faulty"]
batch    = [1]
seq_len  = [64, 128]
heads    = [2]
head_dim = [16]
causal   = [false]

[sweep.variants]
torch  = ["eager", "sdpa"]
faulty = ["spins"]
"""
pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"),
                                reason="needs Linux CPU affinity")


def test_side_by_side_workers_overlap_untimed_work_and_never_a_timed_cell(tmp_path):
    pytest.importorskip("torch")
    suite = write_suite(tmp_path, "sides", SWEEP)
    suite.write_text(suite.read_text().replace("min_run_ms = 5", "min_run_ms = 300"))
    proc = harness_run(suite, tmp_path / "run", "--no-gate", "--threads", "1",
                       plugins=FAULTY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = jsonl_rows(tmp_path / "run")
    assert sorted((r["backend"], r["status"]) for r in rows) == (
        [("faulty", "ok")] * 2 + [("torch", "ok")] * 4)
    assert not any(r["contended"] for r in rows), [
        (r["backend"], r["variant"], r["others_cpu_share"]) for r in rows]
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["overlap_s"] > 0.2          # the spin beside torch's import, at least
    assert env["stopped_s"] > 0            # torch's import stopped while faulty timed
    spent = phase_seconds(store.load(tmp_path / "run"), env)
    wall, timed = spent.pop("wall"), spent.pop("timed work")
    assert sum(spent.values()) == pytest.approx(wall)
    assert 0 < timed < wall
