"""The worker's side of the runner's protocol: it times a cell only after the
runner's "go" (harness/run/worker.py, ask_for_quiet)."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys

from harness.spec import Case

from .runs_helpers import ROOT
from .test_recovery import env


def test_a_worker_times_a_cell_only_after_the_runners_go():
    """The handshake (harness/run/worker.py): before timing a cell the worker says
    `quiet` and waits; the runner answers once every earlier row is recorded and
    every other worker stopped; the worker says `untimed` when its samples are in."""
    case = Case("hs", "attention", "faulty", "exact", "forward", "float32", "cpu",
                1, 16, 2, 8, False, 1)
    job = {"backend": "faulty", "device": "cpu", "threads": 1, "run_id": "hs", "gpus": [],
           "measure": {"min_run_ms": 1, "min_samples": 3, "warmup_ms": 1},
           "cases": [case.to_dict(), case.to_dict()], "handshake": True}
    proc = subprocess.Popen([sys.executable, "-m", "harness.run.worker"], cwd=ROOT,
                            env=env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, bufsize=0)
    out = proc.stdout.fileno()

    def message() -> dict:                  # unbuffered, so select sees what is unread
        line = b""
        while not line.endswith(b"\n"):
            line += os.read(out, 1) or b"\n"
        return json.loads(line)
    try:
        proc.stdin.write(json.dumps(job).encode() + b"\n")
        for index in (0, 1):
            assert [message()["event"] for _ in range(2)] == ["start", "quiet"]
            assert select.select([out], [], [], 0.5)[0] == []     # waits: nothing more
            proc.stdin.write(b"go\n")
            assert message() == {"event": "untimed", "index": index}   # samples taken
            row = message()
            assert row["event"] == "row" and row["row"]["status"] == "ok", row
            assert row["index"] == index and row["row"]["n_samples"] >= 3
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
