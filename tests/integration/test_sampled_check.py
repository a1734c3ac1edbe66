"""The sampled check (harness/correctness/sampling.py) catches what the full one catches: each
planted porting bug where it bites, judged on sampled rows, and a bug that bites
only past position 1024, which the check's small shapes never reach."""
from __future__ import annotations

import pytest

from harness.correctness import judging, sampling
from harness.spec import Case
from harness.spec.weights import make_inputs, make_weights

from .runs_helpers import harness_run, jsonl_rows, write_suite

WORKLOADS = ("attention", "mha", "block", "transformer")
BITES = {      # where each fault changes the result (causal cells), as in test_check.py
    "scale": {(w, m) for w in WORKLOADS for m in ("forward", "train")},
    "mask": {(w, m) for w in WORKLOADS for m in ("forward", "train")},
    "eps": {(w, m) for w in ("block", "transformer") for m in ("forward", "train")},
    "gelu": {(w, m) for w in ("block", "transformer") for m in ("forward", "train")},
    "grad": {(w, "train") for w in WORKLOADS},
    "late": set(),                 # these cells are 40 rows long: position 1024 is not there
}


def test_the_sampled_check_catches_each_planted_fault(monkeypatch):
    pytest.importorskip("torch")
    from tests.integration.planted_backend import FAULTS, INFO, PlantedBackend
    monkeypatch.setattr(sampling, "FULL_REFERENCE_LIMIT_BYTES", 0)   # every cell sampled
    monkeypatch.setattr(sampling, "SAMPLED_ROWS", 8)
    backend = PlantedBackend(INFO)
    caught, judged = set(), set()
    for fault in ("none", *FAULTS):
        for workload in WORKLOADS:
            for mode in ("forward", "train"):
                c = Case("t", workload, "planted", fault, mode, "float32", "cpu",
                         1, 40, 2, 8, True, 2)
                w, x = make_weights(c), make_inputs(c)
                got = backend.prepare(c, w, x).outputs()
                result = judging.judge_outputs(c, got, w, x, judging.References(),
                                      judging.rerun_on(backend, c, w))
                judged.add(result["check_rows"])
                if not result["correct"]:
                    caught.add((fault, workload, mode))
    assert judged == {len(sampling.check_rows(c))} and judged != {40}
    assert not {k for k in caught if k[0] == "none"}, sorted(caught)
    for fault, where in BITES.items():
        found = {(w, m) for f, w, m in caught if f == fault}
        assert found == where, (fault, sorted(where - found), sorted(found - where))


def test_a_run_catches_a_bug_that_bites_only_past_position_1024(tmp_path):
    """B1 N2048 H16 is past the full reference's limit: the run judges 64 rows,
    about half of them past 1024, and the late mask error shows in both modes
    (the control passes the sampled check in the test above)."""
    suite = write_suite(tmp_path, "late", """
        [[sweep]]
        workload = ["attention"]
        backend  = ["planted"]
        mode     = ["forward", "train"]
        dtype    = ["float32"]
        device   = ["cpu"]
        batch    = [1]
        seq_len  = [2048]
        heads    = [16]
        head_dim = [16]
        causal   = [true]

        [sweep.variants]
        planted = ["late"]
        """)
    out = tmp_path / "run"
    harness_run(suite, out, "--no-gate", plugins="tests.integration.planted_backend")
    rows = {r["mode"]: r for r in jsonl_rows(out)}
    assert set(rows) == {"forward", "train"}
    for mode, row in rows.items():
        assert row["status"] == "ok" and row["check_rows"] == sampling.SAMPLED_ROWS, row
        assert row["correct"] is False and row["err_ratio"] > 100, (mode, row["err_ratio"])
