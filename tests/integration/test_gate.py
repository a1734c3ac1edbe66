"""The correctness gate in real runs: `attnbench run` checks each configuration of
its suite first (into RUN/check/), and the rows of a configuration that fails are
recorded correct = false and shown as such in results.csv, report.md and the
console; --no-gate skips it; --resume does not check twice.

The planted backend (planted_backend.py) is torch eager with a causal mask off by
one in its `mask` variant: wrong with causal=True only, so the same variant's
full-mask rows stay correct."""
from __future__ import annotations

import csv

import pytest

from .runs_helpers import harness_run, jsonl_rows, write_suite

PLANTED = "tests.integration.planted_backend"
SWEEP = """\
    [[sweep]]
    workload = ["attention"]
    backend  = ["planted"]
    mode     = ["forward"]
    dtype    = ["float32"]
    device   = ["cpu"]
    batch    = [1]
    seq_len  = [64]
    heads    = [2]
    head_dim = [16]
    causal   = [false, true]

    [sweep.variants]
    planted = ["none", "mask"]
    """


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    suite = write_suite(tmp, "gate", SWEEP)
    out = tmp / "run"
    proc = harness_run(suite, out, "--threads", "1", plugins=PLANTED)
    return suite, out, proc


def _by_cell(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["variant"], str(r["causal"])): r for r in rows}


def test_the_gate_checks_every_configuration_first(gated_run):
    _, out, proc = gated_run
    checks = jsonl_rows(out / "check")
    # 2 variants x 2 masks, each at both check shapes
    assert len(checks) == 8
    assert {(r["variant"], r["causal"]) for r in checks} == {
        (v, c) for v in ("none", "mask") for c in (False, True)}
    assert {r["seq_len"] for r in checks} == {19, 33}
    for name in ("check.md", "check.csv", "pairs.csv"):
        assert (out / "check" / name).exists(), name
    assert "checking 4 configurations against float64 first" in proc.stderr


def test_rows_of_a_failing_configuration_are_marked_wrong(gated_run):
    _, out, proc = gated_run
    rows = _by_cell(jsonl_rows(out))
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows.values())
    wrong = rows[("mask", "True")]
    assert wrong["correct"] is False
    assert wrong["check_note"].startswith("configuration fails attnbench check: planted-mask")
    for key in (("none", "False"), ("none", "True"), ("mask", "False")):
        assert rows[key]["correct"] is True, rows[key]
    assert "wrong" in proc.stderr and "planted-mask/forward/float32/cpu" in proc.stderr


def test_tables_show_the_wrong_rows(gated_run):
    _, out, _ = gated_run
    with open(out / "results.csv") as f:
        csv_rows = _by_cell(list(csv.DictReader(f)))
    assert csv_rows[("mask", "True")]["correct"] == "False"
    assert csv_rows[("mask", "False")]["correct"] == "True"
    report = (out / "report.md").read_text()
    assert "**1 rows compute the wrong thing**" in report
    assert "- planted-mask/forward/float32/cpu/attention" in report
    table = [line for line in report.splitlines() if line.startswith("| planted")]
    assert len(table) == 4
    assert sum(line.count("| NO ") for line in table) == 1


def test_resume_does_not_check_again(gated_run, tmp_path):
    suite, out, _ = gated_run
    proc = harness_run(suite, None, "--resume", str(out), plugins=PLANTED)
    assert "checking" not in proc.stderr
    assert len(jsonl_rows(out / "check")) == 8


def test_no_gate_keeps_each_row_to_its_own_check(tmp_path):
    suite = write_suite(tmp_path, "nogate", SWEEP)
    out = tmp_path / "run"
    proc = harness_run(suite, out, "--threads", "1", "--no-gate", plugins=PLANTED)
    assert not (out / "check").exists()
    assert "checking" not in proc.stderr
    rows = _by_cell(jsonl_rows(out))
    # The mask bug at seq_len 64 is caught by the row's own check too.
    assert rows[("mask", "True")]["correct"] is False
    assert "configuration" not in (rows[("mask", "True")].get("check_note") or "")
