"""The cache across runs (harness/results/cache.py) in real runs: an unchanged second
run reuses every gate verdict, the failing one included, and says so; its rows carry
the same verdicts; --no-cache checks again. What changes a verdict's key is
tests/unit/test_gate_cache.py's."""
from __future__ import annotations

import json

from .runs_helpers import harness_run, jsonl_rows, write_suite
from .test_gate import PLANTED, SWEEP

GATE_CASES = 8          # 4 configurations (2 variants x 2 masks), 2 small shapes each


def verdicts(folder):
    return {(row["variant"], row["causal"], row["seq_len"]):
            (row["status"], row["correct"], row["err_ratio"]) for row in jsonl_rows(folder)}


def test_an_unchanged_second_run_reuses_the_gates_verdicts(tmp_path):
    suite = write_suite(tmp_path, "cached", SWEEP)
    cache = tmp_path / "cache"
    first = harness_run(suite, tmp_path / "first", plugins=PLANTED, cache=cache)
    planned = harness_run(suite, None, "--dry-run", plugins=PLANTED, cache=cache)
    assert f"{GATE_CASES} of them kept from earlier runs" in planned.stdout
    second = harness_run(suite, tmp_path / "second", plugins=PLANTED, cache=cache)
    env = [json.loads((tmp_path / run / "env.json").read_text()) for run in ("first", "second")]
    assert "checking 4 configurations" in first.stderr and env[0]["gate_reused"] == 0
    assert "checking" not in second.stderr and env[1]["gate_reused"] == GATE_CASES
    assert f"{GATE_CASES} of {GATE_CASES} check cases reused from the cache" in second.stderr
    check_md = (tmp_path / "second" / "check" / "check.md").read_text()
    assert f"{GATE_CASES} cases, {GATE_CASES} of them reused from earlier runs" in check_md
    reused = jsonl_rows(tmp_path / "second" / "check")
    assert {r["verdict_from"] for r in reused} == {env[0]["run_id"]}
    assert verdicts(tmp_path / "second" / "check") == verdicts(tmp_path / "first" / "check")
    gates = [{(r["variant"], r["causal"]): (r["gate"], r["correct"]) for r in
              jsonl_rows(tmp_path / run)} for run in ("first", "second")]
    assert gates[0] == gates[1] and gates[1][("mask", True)] == ("fail", False)
    assert list((cache / "references").glob("*-references.npz"))

    third = harness_run(suite, tmp_path / "third", "--no-cache", plugins=PLANTED, cache=cache)
    assert "checking 4 configurations" in third.stderr
    assert json.loads((tmp_path / "third" / "env.json").read_text())["gate_reused"] == 0
