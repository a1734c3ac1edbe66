"""A sweep of planted failures through real processes: `python -m harness run` ->
runner -> executor -> worker processes -> run folder. One row per cell whatever
happens (an exception, an allocation failure, a SIGKILL, a hang, a wrong answer),
each with its status and reason, and every row with every declared column.

The faulty backend (faulty_backend.py) is a plugin selected through
ATTNBENCH_BACKENDS, so none of this needs a framework.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.results import store
from harness.spec import ROW_COLUMNS, Case

from . import faulty_backend
from .runs_helpers import PLUGIN, harness_run, jsonl_rows, write_suite


def cell(row: dict) -> Case:
    return Case.from_dict(row)


# --- a sweep of planted failures -------------------------------------------------

FAULTS = ("exact", "raises", "memory", "crashes", "sleeps", "wrong")
EXPECTED_STATUS = {"exact": "ok", "raises": "error", "memory": "oom", "crashes": "error",
                   "sleeps": "timeout", "wrong": "ok"}
# A cell's limit: far above what any other faulty cell takes on a loaded 2-core
# machine (under a second unloaded), far below the 60 s that `sleeps` must pass.
CELL_TIMEOUT_S = 15
EXPECTED_REASON = {"raises": "RuntimeError: planted failure",
                   "memory": "MemoryError",
                   "crashes": "SIGKILL",
                   "sleeps": "timeout_s"}


def faulty_sweep(variants, dtype: str = "float32") -> str:
    """One tiny attention forward cell per faulty variant, on the CPU."""
    return f"""\
        [[sweep]]
        workload = ["attention"]
        backend  = ["faulty"]
        mode     = ["forward"]
        dtype    = ["{dtype}"]
        device   = ["cpu"]
        batch    = [1]
        seq_len  = [8]
        heads    = [2]
        head_dim = [4]

        [sweep.variants]
        faulty = {json.dumps(list(variants))}
        """


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("faulty")
    suite = write_suite(tmp, "faulty", faulty_sweep(FAULTS), timeout_s=CELL_TIMEOUT_S)
    out = tmp / "run"
    # The gate would check the same faults on small shapes first (test_gate.py does):
    # half a minute here, on a timeout of its own.
    proc = harness_run(suite, out, "--threads", "1", "--no-gate", plugins=PLUGIN)
    return out, proc


def test_faulty_every_cell_gets_exactly_one_row_in_order(faulty_run):
    out, _ = faulty_run
    rows = jsonl_rows(out)
    # The cells after the crash and the timeout ran too (each in a fresh worker),
    # and the rows stream in the order the cells were planned.
    assert [r["variant"] for r in rows] == list(FAULTS)
    assert len({cell(r) for r in rows}) == len(FAULTS)


@pytest.mark.parametrize("variant", FAULTS)
def test_faulty_status_and_reason(faulty_run, variant):
    out, _ = faulty_run
    (row,) = [r for r in jsonl_rows(out) if r["variant"] == variant]
    assert row["status"] == EXPECTED_STATUS[variant], row
    assert row["backend"] == "faulty" and row["device"] == "cpu"
    assert row["suite"] == "faulty" and row["run_id"].endswith("-faulty")
    if variant in EXPECTED_REASON:
        assert EXPECTED_REASON[variant] in row["reason"], row["reason"]
        assert "\n" not in row["reason"]
    else:
        assert row["reason"] == ""


def test_faulty_oom_reason_carries_the_message(faulty_run):
    out, _ = faulty_run
    (row,) = [r for r in jsonl_rows(out) if r["variant"] == "memory"]
    assert row["reason"] == f"MemoryError: {faulty_backend.PLANTED_OOM}"


def test_faulty_crash_reason_has_the_signal(faulty_run):
    out, _ = faulty_run
    (row,) = [r for r in jsonl_rows(out) if r["variant"] == "crashes"]
    assert row["reason"].startswith("worker killed by SIGKILL"), row["reason"]


def test_faulty_crash_reason_does_not_quote_an_earlier_cell(faulty_run):
    out, _ = faulty_run
    (row,) = [r for r in jsonl_rows(out) if r["variant"] == "crashes"]
    assert faulty_backend.PLANTED_OOM not in row["reason"], row["reason"]


def test_faulty_exact_is_correct_and_wrong_is_not(faulty_run):
    out, _ = faulty_run
    rows = {r["variant"]: r for r in jsonl_rows(out)}
    exact, wrong = rows["exact"], rows["wrong"]
    assert exact["correct"] is True
    assert exact["max_abs_err"] == 0.0 and exact["err_ratio"] == 0.0
    assert wrong["correct"] is False
    assert wrong["max_abs_err"] > 0 and wrong["err_ratio"] > 2
    assert wrong["err_tensor"] == "out"
    for row in (exact, wrong):
        assert row["n_samples"] >= 3 and len(row["samples_ms"]) == row["n_samples"]
        assert row["median_ms"] > 0
        assert row["mem_method"] == "cpu_rss_hwm" and row["peak_mem_bytes"] >= 0
        assert row["backend_version"].startswith("faulty-")
        assert row["threads"] == 1


def test_faulty_run_folder_and_log(faulty_run):
    out, proc = faulty_run
    for name in ("results.jsonl", "results.csv", "env.json", "report.md"):
        assert (out / name).is_file(), name
    frame = store.load(out)
    assert len(frame) == len(FAULTS)
    assert sorted(frame["status"]) == sorted(EXPECTED_STATUS.values())
    # The worker's stderr (a traceback per failed cell) goes to the batch log,
    # not to the console.
    log = (out / "logs" / "faulty-cpu.log").read_text()
    assert "RuntimeError: planted failure" in log
    assert "6 cells" in proc.stderr


def test_faulty_quiet_run_draws_no_progress_bar(faulty_run):
    _, proc = faulty_run
    assert "━" not in proc.stderr, proc.stderr       # no bar, only the closing lines
    assert "6 cells: 2 error, 2 ok, 1 oom, 1 timeout" in proc.stderr


def test_every_row_of_every_status_carries_every_declared_column(faulty_run, tmp_path):
    # ok, error, oom and timeout from the faulty run; unsupported from a cell the
    # refusal chain stops (tf32 is a GPU mode), which no worker ever sees.
    out, _ = faulty_run
    suite = write_suite(tmp_path, "refused", faulty_sweep(["exact"], dtype="tf32"))
    harness_run(suite, tmp_path / "refused", "--no-gate", plugins=PLUGIN)
    rows = jsonl_rows(out) + jsonl_rows(tmp_path / "refused")
    assert {r["status"] for r in rows} == {"ok", "error", "oom", "timeout", "unsupported"}
    for row in rows:
        assert list(row) == list(ROW_COLUMNS), (row["status"], set(ROW_COLUMNS) ^ set(row))
    frame = store.load(out, tmp_path / "refused")
    assert list(frame.columns[:len(ROW_COLUMNS)]) == list(ROW_COLUMNS)
    for record in frame.to_dict("records"):
        assert all(column in record for column in ROW_COLUMNS)
