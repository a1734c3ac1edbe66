"""The check's logic without workers: the covering design of shapes, the gate that
folds a configuration's verdict into benchmark rows, and the pairwise comparison of
saved outputs (real reference tensors, perturbed by known amounts)."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from harness.correctness import gate, grid, pairwise
from harness.correctness.accuracy import MULTIPLE, allowances
from harness.spec import DTYPES, MODES, WORKLOADS, Case, reference
from harness.spec.weights import make_inputs, make_weights


def multi_head(cases: list[Case]) -> list[Case]:
    return [c for c in cases if c.kv_heads == c.heads]


def test_covering_design_meets_every_shape_with_every_factor_at_half_the_cases():
    full = multi_head(grid.grid(["torch"], all_shapes=True))
    design = multi_head(grid.grid(["torch"]))
    assert len(design) * len(grid.SHAPES) == len(full)
    assert set(design) <= set(full)
    shape_of = {tuple(s.values()): i for i, s in enumerate(grid.SHAPES)}

    def shape(c: Case) -> int:
        return shape_of[(c.batch, c.seq_len, c.heads, c.head_dim, c.layers)]

    combos = {(c.variant, c.workload, c.mode, c.dtype, c.causal) for c in design}
    assert len(combos) == len(design)            # every combination exactly once
    # Pair-wise coverage: each shape meets each mask and each dtype, under every
    # variant, workload and mode; the CPU's dtypes (tf32 never runs there) too.
    for variant, workload, mode in itertools.product(
            {c.variant for c in design}, WORKLOADS, grid.FULL_MODES):
        cases = [c for c in design if (c.variant, c.workload, c.mode) ==
                 (variant, workload, mode)]
        assert {(shape(c), c.causal) for c in cases} == \
            {(s, m) for s in range(len(grid.SHAPES)) for m in (False, True)}
        for dtype in DTYPES:
            assert {shape(c) for c in cases if c.dtype == dtype} == {0, 1}
        cpu = [c for c in cases if c.dtype != "tf32"]
        assert {(shape(c), c.causal) for c in cpu} == \
            {(s, m) for s in range(len(grid.SHAPES)) for m in (False, True)}


def test_every_configuration_is_also_checked_with_grouped_heads_once():
    cases = [c for c in grid.grid(["torch", "jax"]) if c.mode in grid.FULL_MODES]
    grouped = [c for c in cases if c.kv_heads != c.heads
               and c.seq_len == grid.GROUPED["seq_len"]]       # not the new axes' shape
    keys = {(c.backend, c.variant, c.workload, c.mode, c.dtype) for c in cases
            if c.dtype in grid.GROUPED_DTYPES}
    assert sorted((c.backend, c.variant, c.workload, c.mode, c.dtype) for c in grouped) \
        == sorted(keys)
    assert all(c.causal and c.group == 3 for c in grouped)


def test_a_grouped_configuration_is_gated_on_its_own_with_grouped_cases():
    base = Case("s", "mha", "torch", "sdpa", "train", "float32", "cpu", 1, 1024, 8, 64, True)
    gated = grid.gate_cases([base, base.replace(kv_heads=2)])
    assert len({gate.config_key(c) for c in gated}) == 2
    assert sorted(c.kv_heads for c in gated) == sorted(
        [s["heads"] for s in grid.SHAPES] + [1] * len(grid.SHAPES))


def test_gate_cases_cover_each_configuration_once_at_every_shape():
    base = Case("s", "mha", "torch", "eager", "train", "float32", "cpu", 4, 1024, 8, 64, True)
    cases = [base, base.replace(seq_len=2048), base.replace(dtype="bfloat16")]
    gated = grid.gate_cases(cases)
    assert len(gated) == 2 * len(grid.SHAPES)
    assert {gate.config_key(c) for c in gated} == {gate.config_key(c) for c in cases}
    assert all(c.seq_len < 64 for c in gated)


def _check_row(case: Case, status="ok", correct=True, ratio=0.5, reason="") -> dict:
    return {**case.to_dict(), "status": status, "correct": correct, "err_ratio": ratio,
            "err_tensor": "out", "reason": reason}


def test_gate_marks_rows_of_a_failing_configuration_and_only_those():
    good = Case("check", "mha", "jax", "jit", "forward", "float32", "cpu", 2, 19, 2, 24, False)
    bad = good.replace(variant="dpa")
    checks = pd.DataFrame([
        _check_row(good), _check_row(good.replace(seq_len=33)),
        _check_row(bad), _check_row(bad.replace(seq_len=33), correct=False, ratio=7.5),
        _check_row(good.replace(variant="dpa-cudnn"), status="unsupported", correct=None),
    ])
    configs = gate.config_verdicts(checks)
    assert configs[gate.config_key(good)] is None
    assert "err_ratio 7.5" in configs[gate.config_key(bad)]
    assert gate.config_key(good.replace(variant="dpa-cudnn")) not in configs

    row = {**good.replace(suite="bench", seq_len=1024).to_dict(), "status": "ok",
           "correct": True}
    assert gate.apply(row, configs) == {**row, "gate": "pass"}
    wrong = gate.apply({**row, "variant": "dpa"}, configs)
    assert wrong["correct"] is False and wrong["gate"] == "fail"
    assert wrong["judged_by"] == "config"
    assert wrong["check_note"].startswith("configuration fails attnbench check: jax-dpa")
    # Too big for its own reference: judged by the configuration alone, and says so.
    big = gate.apply({**row, "correct": None, "check_note": "not checked: 9 GiB"}, configs)
    assert big["correct"] is True and "9 GiB" in big["check_note"]
    assert big["gate"] == "pass" and big["judged_by"] == "config"
    # Rows that did not run, and configurations never checked, are left alone.
    failed = {**row, "variant": "dpa", "status": "oom", "correct": None}
    assert gate.apply(failed, configs) == failed
    other = {**row, "dtype": "bfloat16", "correct": None}
    assert gate.apply(other, configs) == other


def test_a_crashed_check_case_fails_its_configuration():
    case = Case("check", "block", "tensorflow", "xla", "train", "float16", "cpu", 2, 19, 2,
                24, True)
    checks = pd.DataFrame([_check_row(case),
                           _check_row(case.replace(seq_len=33), status="error", correct=None,
                                      ratio=None, reason="worker killed by SIGKILL")])
    assert "SIGKILL" in gate.config_verdicts(checks)[gate.config_key(case)]


def test_one_failure_test_for_a_row_and_for_a_frame():
    """gate.is_failure decides both a row as it arrives (attnbench check's FAIL
    lines) and a frame read back from disk (gate.verdicts)."""
    case = Case("check", "mha", "torch", "eager", "forward", "float32", "cpu", 2, 19, 2, 24,
                False)
    rows = [_check_row(case), _check_row(case, correct=False, ratio=7.5),
            _check_row(case, status="timeout", correct=None, ratio=None, reason="600 s"),
            _check_row(case, status="unsupported", correct=None, ratio=None, reason="no")]
    assert [gate.is_failure(r) for r in rows] == [False, True, True, False]
    assert list(gate.verdicts(pd.DataFrame(rows))["verdict"]) == [
        "pass", "FAIL", "FAIL", "unsupported"]
    assert gate.what_failed(rows[1]) == "out err_ratio 7.5"
    assert gate.what_failed(rows[2]) == "600 s"
    assert gate.verdicts(pd.DataFrame(columns=["status", "correct"])).empty


def _saved(case: Case, tmp_path, perturb: dict[str, float]) -> dict:
    """The float64 reference's tensors rounded to float32, saved as a worker would,
    with `perturb` added to the named tensors' first element."""
    weights, inputs = make_weights(case), make_inputs(case)
    tensors = {k: v.astype(np.float32) for k, v in
               reference.outputs(case, weights, inputs).items()}
    for name, amount in perturb.items():
        tensors[name].flat[0] += amount
    np.savez(tmp_path / f"{case.file_stem}.npz", **tensors)
    return tensors


@pytest.mark.parametrize("mode", MODES)
def test_pairs_agree_within_the_allowance_and_differ_beyond_it(tmp_path, mode):
    a = Case("check", "mha", "torch", "eager", mode, "float32", "cpu", 2, 19, 2, 24, True)
    b, c = a.replace(backend="jax", variant="jit"), a.replace(backend="tensorflow",
                                                              variant="xla")
    weights, inputs = make_weights(a), make_inputs(a)
    exact = reference.outputs(a, weights, inputs)
    limit = allowances(exact, reference.outputs(a, weights, inputs, dtype="float32"),
                       "float32")
    name = "grad/wq" if mode == "train" else "out"
    _saved(a, tmp_path, {})
    _saved(b, tmp_path, {name: 0.5 * MULTIPLE * 2 * limit[name]})     # half the allowance
    _saved(c, tmp_path, {name: 3 * MULTIPLE * 2 * limit[name]})       # three times it
    frame = pd.DataFrame([_check_row(x) for x in (a, b, c)])
    pairs = pairwise.compare(frame, tmp_path).set_index(["a", "b"])
    assert len(pairs) == 3
    assert pairs.loc[("torch eager", "jax jit"), "agree"]
    assert pairs.loc[("torch eager", "jax jit"), "tensor"] == name
    assert pairs.loc[("torch eager", "jax jit"), "pair_ratio"] == pytest.approx(
        0.5 * MULTIPLE, rel=0.02)
    for pair in (("torch eager", "tensorflow xla"), ("tensorflow xla", "jax jit")):
        assert not pairs.loc[pair, "agree"]
        assert pairs.loc[pair, "tensor"] == name
    # Pairs read in registry order (torch, tensorflow, jax) whatever order the
    # parallel workers wrote their rows in.
    shuffled = pairwise.compare(frame.iloc[::-1], tmp_path).set_index(["a", "b"])
    pd.testing.assert_frame_equal(shuffled.sort_index(), pairs.sort_index())
    table = pairwise.matrix(pairwise.compare(frame, tmp_path), DTYPES, MODES)
    assert table.loc["torch : jax", ("float32", mode)].startswith("agree")
    assert table.loc["torch : tensorflow", ("float32", mode)].startswith("DIFFER")


def test_pairs_never_match_cases_that_differ_only_in_the_newer_axes(tmp_path):
    """Two decode steps of one shape, one token and seven with a window, in two
    backends: each pairs with its own kind alone (kv_heads, q_len and window fix
    the numbers as much as the shape does)."""
    one = Case("check", "mha", "torch", "eager", "decode", "float32", "cpu", 2, 33, 6, 8,
               True, kv_heads=2)
    cases = [one, one.replace(q_len=7, window=5), one.replace(kv_heads=3)]
    cases += [c.replace(backend="jax", variant="jit") for c in cases]
    for case in cases:
        _saved(case, tmp_path, {})
    rows = [{**_check_row(c), "window": c.window or float("nan")} for c in cases]
    pairs = pairwise.compare(pd.DataFrame(rows), tmp_path)
    assert len(pairs) == 3 and pairs["agree"].all()
    assert sorted(zip(pairs["q_len"], pairs["kv_heads"])) == [(1, 2), (1, 3), (7, 2)]


def test_pairs_skip_same_backend_missing_outputs_and_failed_cases(tmp_path):
    a = Case("check", "attention", "torch", "eager", "forward", "bfloat16", "cpu", 1, 33, 3,
             8, False)
    same, missing, failed = (a.replace(variant="sdpa"), a.replace(backend="jax"),
                             a.replace(backend="tensorflow"))
    for case in (a, same, failed):
        _saved(case, tmp_path, {})
    frame = pd.DataFrame([_check_row(a), _check_row(same), _check_row(missing),
                          _check_row(failed, status="error", correct=None)])
    assert pairwise.compare(frame, tmp_path).empty
    nan = _saved(missing, tmp_path, {"out": np.nan})
    assert np.isnan(nan["out"]).any()
    pairs = pairwise.compare(frame, tmp_path)
    assert len(pairs) == 2 and not pairs["agree"].any()
    assert (pairs["pair_ratio"] == float("inf")).all()
