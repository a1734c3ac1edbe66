"""Padded batches (Case.lengths, harness.spec.padding): the Case's rules, the drawn
lengths, the reference's key mask (against a loop written from the definition), the
costs of a padded batch, the check's and the gate's padded cases, a suite's axis,
and the check ignoring padding rows alone."""
from __future__ import annotations

import re

import numpy as np
import pytest

from harness.correctness import gate
from harness.correctness.grid import PADDED_LENGTHS, gate_cases, grid
from harness.correctness.sampling import without_padding
from harness.run.suite import parse_suite
from harness.run.suite_messages import SuiteError
from harness.spec import Case, costs, padding, reference
from harness.spec.reference import Numerics
from harness.spec.reference_core import attention
from harness.spec.weights import make_inputs, make_weights


def case(workload="attention", mode="forward", causal=False, batch=3, seq_len=9,
         lengths="4,0,9", window=None, kv_heads=None) -> Case:
    return Case("unit", workload, "torch", "eager", mode, "float32", "cpu", batch, seq_len,
                2, 3, causal, 1, kv_heads=kv_heads, window=window, lengths=lengths)


# -- the Case ------------------------------------------------------------------

def test_lengths_are_read_in_one_form_and_named_in_the_shape_key():
    assert case(lengths=" 4, 0,9").lengths == "4,0,9"
    assert case(lengths="uniform:0.50").lengths == "uniform:0.5"
    for none in (None, float("nan"), "", "none"):
        assert case(lengths=none).lengths is None
    assert case().shape_key.endswith("-len4_0_9")
    assert case(lengths=None).shape_key == "attention-B3-N9-H2-D3-L1-full"


@pytest.mark.parametrize("lengths, mode, words", [
    ("4,0", "forward", "one length per sequence (batch = 3)"),
    ("4,0,10", "forward", "each 0 to seq_len = 9"),
    ("uniform:1.5", "forward", "0 <= LO <= 1"),
    ("normal:3", "forward", "expected"),
    ("4,0,9", "decode", "mode forward or train"),
])
def test_impossible_lengths_are_refused_in_words(lengths, mode, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        case(lengths=lengths, mode=mode)


def test_drawn_lengths_follow_the_stated_distribution_and_the_seed():
    wide = case(batch=400, seq_len=40, lengths="uniform:0.25")
    drawn = padding.key_lengths(wide)
    assert drawn.min() == 10 and drawn.max() == 40          # ceil(0.25 * 40) to 40, both ends
    assert np.array_equal(drawn, padding.key_lengths(wide.replace(dtype="bfloat16",
                                                                   backend="jax")))
    other = case(batch=400, seq_len=40, lengths="uniform:0.5")
    assert padding.key_lengths(other).min() == 20
    assert case(lengths="9,9,9").padded is False and case().padded is True


# -- the reference -------------------------------------------------------------

@pytest.mark.parametrize("causal, window", [(False, None), (True, None), (True, 3)])
def test_the_reference_hides_padding_keys_as_a_loop_would(causal, window):
    c = case(causal=causal, window=window)
    x = {k: v.astype(np.float64) for k, v in make_inputs(c).items()}
    out, _ = attention(Numerics("float64"), x["q"], x["k"], x["v"], causal, window=window,
                       lengths=padding.key_lengths(c))
    for b, length in enumerate(padding.key_lengths(c)):
        for h in range(c.heads):
            for i in range(c.seq_len):
                seen = [j for j in range(length) if (not causal or j <= i)
                        and (not window or j > i - window)]
                if not seen:                                # no key: a zero row
                    assert np.all(out[b, i, h] == 0)
                    continue
                s = np.array([x["q"][b, i, h] @ x["k"][b, j, h] for j in seen]) / np.sqrt(3)
                p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
                want = sum(pj * x["v"][b, j, h] for pj, j in zip(p, seen))
                np.testing.assert_allclose(out[b, i, h], want, rtol=1e-12, atol=1e-14)


def test_g_is_zero_on_padding_rows_and_so_is_every_input_gradient():
    c = case(workload="block", mode="train", causal=True)
    x = make_inputs(c)
    valid = padding.valid_rows(c)
    assert np.all(x["g"][~valid] == 0) and np.all(x["g"][valid] != 0)
    got = reference.outputs(c, make_weights(c), x)
    assert np.all(got["grad/x"][~valid] == 0) and np.all(np.isfinite(got["grad/wq"]))


def test_the_check_ignores_padding_rows_of_the_output_alone():
    c = case(mode="train")
    got = {"out": np.ones((3, 9, 2, 3)), "grad/q": np.ones((3, 9, 2, 3))}
    kept = without_padding(c, got)
    assert kept["out"][0, :4].all() and not kept["out"][0, 4:].any()
    assert not kept["out"][1].any() and kept["out"][2].all()
    assert kept["grad/q"].all()                             # gradients: judged whole
    rows = np.array([0, 5, 8])
    sampled = without_padding(c, {"out": np.ones((3, 3, 2, 3))}, rows)["out"]
    assert sampled[0, 0].all() and not sampled[0, 1:].any() and sampled[2].all()


# -- costs ---------------------------------------------------------------------

@pytest.mark.parametrize("workload", ["attention", "mha", "block"])
@pytest.mark.parametrize("causal, window", [(False, None), (True, None), (True, 3)])
def test_a_padded_batch_costs_the_sum_of_its_sequences_alone(workload, causal, window):
    c = case(workload=workload, causal=causal, window=window)
    alone = [Case("unit", workload, "torch", "eager", "forward", "float32", "cpu", 1, n,
                  2, 3, causal, 1, window=window) for n in (4, 9)]
    assert costs.flops(c) == sum(costs.flops(a) for a in alone)
    assert costs.tokens(c) == 13


def test_a_padded_batch_moves_the_activations_of_its_tokens_and_every_weight():
    padded, full = case(workload="mha"), case(workload="mha", lengths=None)
    weights = sum(w.size for w in make_weights(full).values()) * 4
    assert costs.bytes_moved(full) - weights == 27 * (costs.bytes_moved(padded) - weights) // 13


# -- the check, the gate and suites ---------------------------------------------

def test_the_check_grid_pads_every_workload_and_mode_with_an_empty_and_a_full_sequence():
    padded = [c for c in grid(backends=["torch"], variants=["eager"]) if c.lengths]
    assert {(c.workload, c.mode) for c in padded} == {
        (w, m) for w in ("attention", "mha", "block", "transformer") for m in ("forward", "train")}
    assert {c.lengths for c in padded} == {PADDED_LENGTHS}
    lengths = padding.key_lengths(padded[0])
    assert 0 in lengths and padded[0].seq_len in lengths and len(set(lengths)) == 3
    assert {c.causal for c in padded} == {False, True} and any(c.window for c in padded)


def test_a_padded_configuration_is_gated_on_its_own_with_padded_cases():
    cell = case(batch=4, seq_len=512, lengths="uniform:0.25", workload="mha")
    plain = cell.replace(lengths=None)
    assert gate.config_key(cell) != gate.config_key(plain)
    assert gate.config_key(cell)[-1] == "padded"
    checks = gate_cases([cell])
    assert [c.lengths for c in checks] == [PADDED_LENGTHS]
    assert gate.config_key(checks[0])[:7] == gate.config_key(cell)[:7]


def test_a_suite_pads_forward_and_train_cells_and_not_decode_ones():
    doc = {"sweep": [{"workload": ["mha"], "backend": ["torch"], "mode": ["forward", "decode"],
                      "batch": [4], "seq_len": [64], "heads": [2], "head_dim": [8],
                      "causal": [True], "lengths": ["none", "uniform:0.5"]}]}
    cases = [c for c in parse_suite(doc).cases if c.variant == "eager"]
    forward = [c for c in cases if c.mode == "forward"]
    assert sorted(str(c.lengths) for c in forward) == ["None", "uniform:0.5"]
    assert all(c.lengths is None for c in cases if c.mode == "decode")
    doc["sweep"][0]["lengths"] = ["uniform:2"]
    with pytest.raises(SuiteError, match="lengths"):
        parse_suite(doc)
