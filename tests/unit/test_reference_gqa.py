"""Grouped key/value heads in the float64 reference (harness/spec/reference_core.py):
grouped-query attention is multi-head attention whose key/value heads are copied to
every query head of their group, so its output equals that of the multi-head case
with the copies, and each key/value gradient is the sum of its copies' gradients.
Checked against the reference's own multi-head path, which the backends and
torch's SDPA are checked against elsewhere."""
from __future__ import annotations

import numpy as np
import pytest

from harness.spec import Case, costs, reference
from harness.spec.weights import input_shapes, make_inputs, make_weights

HEADS, D = 6, 4


def case(workload: str, kv: int, causal: bool) -> Case:
    return Case("gqa", workload, "reference", "exact", "train", "float32", "cpu",
                2, 9, HEADS, D, causal, 1, kv_heads=kv)


def copies(a: np.ndarray, group: int, axis: int) -> np.ndarray:
    """Each key/value head's D entries along `axis`, repeated for its query heads."""
    shape = a.shape[:axis] + (a.shape[axis] // D, D) + a.shape[axis + 1:]
    return np.repeat(a.reshape(shape), group, axis=axis).reshape(
        a.shape[:axis] + (-1,) + a.shape[axis + 1:])


def summed(a: np.ndarray, group: int, axis: int) -> np.ndarray:
    """The inverse for gradients: each head's copies summed."""
    kv = a.shape[axis] // D // group
    shape = a.shape[:axis] + (kv, group, D) + a.shape[axis + 1:]
    return a.reshape(shape).sum(axis=axis + 1).reshape(
        a.shape[:axis] + (-1,) + a.shape[axis + 1:])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv", [1, 2, 3])
def test_grouped_attention_is_multi_head_on_copied_key_value_heads(kv, causal):
    grouped, group = case("attention", kv, causal), HEADS // kv
    x = make_inputs(grouped)
    assert x["k"].shape == (2, 9, kv, D)
    mha = {**x, "k": np.repeat(x["k"], group, axis=2), "v": np.repeat(x["v"], group, axis=2)}
    want = reference.outputs(case("attention", HEADS, causal), {}, mha)
    got = reference.outputs(grouped, {}, x)
    np.testing.assert_allclose(got["out"], want["out"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["grad/q"], want["grad/q"], rtol=1e-12, atol=1e-12)
    for name in ("grad/k", "grad/v"):
        full = want[name].reshape(2, 9, kv, group, D).sum(axis=3)
        np.testing.assert_allclose(got[name], full, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kv", [1, 3])
def test_a_grouped_mha_layer_is_the_multi_head_layer_with_copied_projections(kv):
    grouped, group = case("mha", kv, True), HEADS // kv
    w, x = make_weights(grouped), make_inputs(grouped)
    assert w["wk"].shape == (HEADS * D, kv * D) and w["bv"].shape == (kv * D,)
    wide = {k: copies(v, group, v.ndim - 1) if k in ("wk", "bk", "wv", "bv") else v
            for k, v in w.items()}
    want = reference.outputs(case("mha", HEADS, True), wide, x)
    got = reference.outputs(grouped, w, x)
    for name in ("out", "grad/x", "grad/wq", "grad/wo", "grad/bo"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)
    for name in ("grad/wk", "grad/bk", "grad/wv", "grad/bv"):
        full = summed(want[name], group, want[name].ndim - 1)
        np.testing.assert_allclose(got[name], full, rtol=1e-10, atol=1e-12)


def test_kv_heads_names_the_shape_only_when_grouped_and_must_divide_heads():
    mha = case("mha", HEADS, True)
    assert mha.kv_heads == HEADS and "KV" not in mha.shape_key
    assert Case.from_dict({k: v for k, v in mha.to_dict().items() if k != "kv_heads"}) == mha
    assert case("mha", 2, True).shape_key.endswith("H6-KV2-D4-L1-causal")
    with pytest.raises(ValueError, match="must divide"):
        case("mha", 4, True)


def test_grouped_projections_count_their_narrower_width():
    b, n, d, kvd = 2, 9, HEADS * D, 2 * D
    grouped = case("mha", 2, False).replace(mode="forward")
    assert costs.flops(grouped) == 4 * b * n * d * d + 4 * b * n * d * kvd \
        + costs.attention_flops(grouped)
    assert costs.attention_flops(grouped) == 4 * b * HEADS * n * n * D
    assert input_shapes(grouped.replace(workload="attention"))["v"] == (b, n, 2, D)



def test_replacing_heads_keeps_multi_head_multi_head_and_grouped_grouped():
    mha = case("mha", HEADS, True)
    assert mha.replace(heads=4).kv_heads == 4
    assert case("mha", 2, True).replace(heads=4).kv_heads == 2
    with pytest.raises(ValueError):
        case("mha", 3, True).replace(heads=4)
