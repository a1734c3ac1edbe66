"""The parameter table (harness.spec.params): the names, shapes and draws it gives
are those the hand-written weights.py gave before it (commit 551f423, loaded from
git), bit for bit, and its module-tree helpers round-trip."""
from __future__ import annotations

import itertools
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest

from harness.spec import Case, params, reference
from harness.spec.weights import make_inputs, make_weights, weight_shapes

ROOT = Path(__file__).resolve().parents[2]
BEFORE_TABLE = "551f423"        # the last commit whose weights.py wrote the names out


@pytest.fixture(scope="module")
def old_weights():
    """harness/spec/weights.py as it was before the table, as a module."""
    try:
        source = subprocess.run(["git", "show", f"{BEFORE_TABLE}:harness/spec/weights.py"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no git history to compare with: {exc}")
    module = types.ModuleType("old_weights")
    exec(compile(source, "old_weights.py", "exec"), module.__dict__)
    return module


def case(workload, mode="train", dtype="float32", **shape):
    fields = dict(batch=2, seq_len=5, heads=2, head_dim=3, causal=False, layers=3)
    fields.update(shape)
    return Case("unit", workload, "torch", "eager", mode, dtype, "cpu", **fields)


CASES = [case(w, m, d, **s) for w, m, d, s in itertools.product(
    ("attention", "mha", "block", "transformer"), ("forward", "train"),
    ("float32", "bfloat16"), (dict(), dict(heads=4, head_dim=8, causal=True, layers=2)))]


@pytest.mark.parametrize("c", CASES, ids=lambda c: f"{c.workload}-{c.mode}-{c.dtype}-{c.heads}")
def test_draws_are_those_of_the_hand_written_version(old_weights, c):
    for new, old in ((make_weights(c), old_weights.make_weights(c)),
                     (make_inputs(c), old_weights.make_inputs(c))):
        assert list(new) == list(old)                      # names and draw order
        for name in old:
            assert new[name].dtype == old[name].dtype
            np.testing.assert_array_equal(new[name], old[name], err_msg=name)
    assert weight_shapes(c) == old_weights.weight_shapes(c)


def test_the_table_rows():
    assert [p.name for p in params.MHA] == ["wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"]
    assert {p.module for p in params.BLOCK} == {
        "mha/q", "mha/k", "mha/v", "mha/o", "ln1", "ln2", "w1", "w2"}
    roles = {p.name: p.role for p in params.BLOCK + params.FINAL}
    assert roles["w2"] == params.WEIGHT and roles["b2"] == params.BIAS
    assert roles["lnf_g"] == params.GAIN and roles["ln1_b"] == params.SHIFT


def test_placed_paths_and_shapes():
    mha = {p.name: p for p in params.layer_params(case("mha"))}
    assert mha["wq"].module == "q" and mha["wq"].shape == (6, 6)
    stack = {p.name: p for p in params.layer_params(case("transformer", layers=2))}
    assert stack["layer1.w2"].module == "blocks/1/w2" and stack["layer1.w2"].shape == (24, 6)
    assert stack["layer0.bk"].module == "blocks/0/mha/k"
    assert stack["lnf_b"].module == "lnf" and stack["lnf_b"].role == params.SHIFT
    assert params.layer_params(case("attention")) == ()


def test_module_tree_round_trips():
    c = case("transformer", layers=2)
    w = make_weights(c)
    tree = params.by_module(c, w)
    q = tree["blocks/1/mha/q"]
    assert q[params.WEIGHT] is w["layer1.wq"] and q[params.BIAS] is w["layer1.bq"]
    assert tree["lnf"] == {params.GAIN: w["lnf_g"], params.SHIFT: w["lnf_b"]}
    block = params.within(tree, params.layer_module(0))
    assert block["mha/o"][params.WEIGHT] is w["layer0.wo"]
    assert params.within(block, params.ATTENTION)["o"][params.BIAS] is w["layer0.bo"]
    rebuilt = {**params.under(params.layer_module(0), block),
               **params.under(params.layer_module(1), params.within(tree, "blocks/1")),
               "lnf": tree["lnf"]}
    named = params.by_name(c, rebuilt)
    assert list(named) == list(w) and all(named[k] is w[k] for k in w)


@pytest.mark.parametrize("workload", ["mha", "block", "transformer"])
def test_the_order_of_a_sub_layers_rows_does_not_matter(monkeypatch, workload):
    """Parameters are read by role: with the rows of ln1 and of mha/q swapped in the
    table, the same weights give the reference the very same results."""
    c = case(workload, layers=2)
    w, x = make_weights(c), make_inputs(c)
    before = reference.outputs(c, w, x)
    rows = list(params.BLOCK)
    for a, b in (("wq", "bq"), ("ln1_g", "ln1_b")):
        i, j = (next(k for k, p in enumerate(rows) if p.name == n) for n in (a, b))
        rows[i], rows[j] = rows[j], rows[i]
    monkeypatch.setattr(params, "BLOCK", tuple(rows))
    monkeypatch.setattr(params, "MHA", tuple(p for p in rows if p.module.startswith("mha/")))
    assert params.layer_params(c)[0].name.endswith("bq")     # the swap took
    after = reference.outputs(c, w, x)
    assert sorted(after) == sorted(before)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
