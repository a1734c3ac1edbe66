"""The row schema (harness/spec/schema.py): every row carries every declared column,
whatever its status; a column nobody declared is refused; the gate's verdict is a
column, read from old rows' notes once, where they are loaded."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.correctness.judging import References
from harness.results import store
from harness.run import worker
from harness.run.executors.local import Batch, failure_row
from harness.spec import CASE_FIELDS, RESULT_COLUMNS, Case
from harness.spec.schema import COLUMNS, ROW_COLUMNS, complete

ROOT = Path(__file__).resolve().parents[2]
CASE = Case("t", "attention", "torch", "eager", "forward", "float32", "cpu", 1, 8, 2, 4, False)


def test_every_column_is_declared_once_and_the_contract_comes_first():
    assert len(ROW_COLUMNS) == len(set(ROW_COLUMNS))
    assert ROW_COLUMNS[:len(CASE_FIELDS) + len(RESULT_COLUMNS)] == (*CASE_FIELDS, *RESULT_COLUMNS)
    assert all(c.meaning for c in COLUMNS)


def test_every_declared_column_is_in_the_design_doc():
    text = (ROOT / "docs" / "design.md").read_text()
    missing = [c for c in ROW_COLUMNS if not re.search(rf"`{c}`|\b{c}\b", text)]
    assert missing == []


def test_complete_fills_every_column_and_refuses_an_undeclared_one():
    row = complete({"status": "ok", "median_ms": 1.5})
    assert list(row) == list(ROW_COLUMNS)
    assert row["median_ms"] == 1.5 and row["noisy"] is None and row["schema"] == 1
    with pytest.raises(ValueError, match="undeclared row column.*'medain_ms'"):
        complete({"medain_ms": 1.5})


def _batch(tmp_path) -> Batch:
    return Batch("torch", "cpu", [CASE], measure={}, threads=1, run_id="r", gpus=[],
                 log_path=tmp_path / "log")


def test_unsupported_and_failed_rows_carry_every_column(tmp_path):
    job = {**_batch(tmp_path).job([CASE]), "missing": "torch is not installed (test)"}
    refused = worker.run_case(None, CASE, job, References())
    assert refused["status"] == "unsupported"
    timed_out = failure_row(CASE, _batch(tmp_path), "timeout", "past 2 s", "")
    for row in (refused, timed_out):
        assert set(row) == set(ROW_COLUMNS), set(ROW_COLUMNS) ^ set(row)
        assert complete(row) == {**complete({}), **row}


def test_a_written_row_has_every_column_in_order(tmp_path):
    with store.RunWriter(tmp_path) as writer:
        writer.append({**CASE.to_dict(), "status": "unsupported", "reason": "no"})
    written = json.loads((tmp_path / store.RESULTS).read_text())
    assert list(written) == list(ROW_COLUMNS)


@pytest.mark.parametrize("note, gate, judged_by", [
    ("configuration fails attnbench check: jax-dpa/...", "fail", "config"),
    ("judged by its configuration's check on small shapes (not checked: 9 GiB)",
     "pass", "config"),
    (None, None, "cell"),
])
def test_old_rows_gain_the_gate_columns_from_their_note(tmp_path, note, gate, judged_by):
    old = {**CASE.to_dict(), "status": "ok", "correct": gate != "fail", "check_note": note,
           "schema": 1}
    (tmp_path / store.RESULTS).write_text(json.dumps(old) + "\n")
    row = store.load(tmp_path).iloc[0]
    assert row["gate"] == gate and row["judged_by"] == judged_by
