"""Fewer queries than keys (q_len, bottom-right causal), sliding windows and decode
steps against a KV cache: the Case's rules, the float64 reference (checked against
loops written from the definitions, and decode against the forward of the whole
sequence) and their costs."""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

from harness.spec import Case, costs, params, reference
from harness.spec.reference import Numerics, layernorm, linear
from harness.spec.weights import input_shapes, make_inputs, make_weights

F64 = Numerics("float64")


def case(workload="attention", mode="forward", causal=True, seq_len=11, q_len=None,
         window=None, heads=4, kv_heads=2, layers=1) -> Case:
    return Case("unit", workload, "torch", "eager", mode, "float64", "cpu", 2, seq_len, heads,
                3, causal, layers, kv_heads=kv_heads, q_len=q_len, window=window)


# -- the Case ---------------------------------------------------------------------

def test_q_len_defaults_to_every_row_and_to_one_token_in_decode():
    assert case().q_len == 11 and case(mode="decode").q_len == 1
    assert case(q_len=4).q_offset == 7
    assert case(q_len=float("nan")).q_len == 11          # a pandas row's missing value


@pytest.mark.parametrize("changes, words", [
    (dict(q_len=12), "q_len = 12 must be 1 to seq_len"),
    (dict(workload="mha", q_len=4), "in mode decode"),
    (dict(causal=False, window=3), "with causal = true"),
    (dict(window=-1), "a sliding window is 1 key or more"),
])
def test_impossible_combinations_are_refused_in_words(changes, words):
    with pytest.raises(ValueError, match=words):
        case(**changes)


def test_the_shape_key_names_the_new_axes_only_when_they_are_used():
    assert "-Q" not in case().shape_key and "-W" not in case().shape_key
    assert "-N11-Q4-" in case(q_len=4).shape_key and case(window=5).shape_key.endswith("-W5")
    assert "-Q1-" in case("mha", "decode").shape_key       # decode reads a cache: its own key
    assert case(q_len=4).seed != case().seed


def test_rows_from_before_the_new_fields_read_as_every_row_and_no_window():
    row = case().to_dict()
    del row["q_len"], row["window"]
    assert Case.from_dict(row) == case()


def test_replace_keeps_every_row_every_row():
    assert case().replace(seq_len=20).q_len == 20
    assert case(q_len=4).replace(seq_len=20).q_len == 4
    assert case("mha").replace(mode="decode").q_len == 1


# -- the reference against loops from the definitions ------------------------------

def looped_attention(q, k, v, causal, window):
    """One query at a time, position p = N - S + i, visible keys listed."""
    b, s, h, d = q.shape
    n, group = k.shape[1], h // k.shape[2]
    out = np.zeros_like(q)
    for i, head in itertools.product(range(s), range(h)):
        p = n - s + i
        keys = [j for j in range(n) if not (causal and j > p)
                and not (window and j <= p - window)]
        kh, vh = k[:, keys, head // group], v[:, keys, head // group]
        scores = np.einsum("bd,bkd->bk", q[:, i, head], kh) / np.sqrt(d)
        weights = np.exp(scores - scores.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        out[:, i, head] = np.einsum("bk,bkd->bd", weights, vh)
    return out


@pytest.mark.parametrize("causal, q_len, window", [
    (True, 1, None), (True, 4, None), (False, 4, None), (True, 11, 3), (True, 4, 3),
    (True, 4, 1)])
def test_the_core_masks_bottom_right_and_by_window(causal, q_len, window):
    c = case(causal=causal, q_len=q_len, window=window)
    x = make_inputs(c)
    got = reference.outputs(c, {}, x)["out"]
    np.testing.assert_allclose(got, looped_attention(x["q"], x["k"], x["v"], causal, window),
                               rtol=1e-12, atol=1e-14)


def test_fewer_queries_are_the_last_rows_of_the_whole_sequence():
    c = case(q_len=4, window=5)
    x = make_inputs(c)
    whole = {**x, "q": np.concatenate([np.ones((2, 7, 4, 3)), x["q"]], axis=1)}
    full = reference.outputs(c.replace(q_len=None), {}, whole)["out"]
    np.testing.assert_allclose(reference.outputs(c, {}, x)["out"], full[:, 7:], rtol=1e-12)


def test_the_window_gradient_is_zero_for_keys_no_query_sees():
    c = case(mode="train", q_len=2, window=3)     # queries at 9 and 10 see keys 7 to 10
    grads = reference.outputs(c, {}, make_inputs(c))
    assert np.all(grads["grad/k"][:, :7] == 0) and np.all(grads["grad/v"][:, :7] == 0)
    assert np.all(np.abs(grads["grad/v"][:, 7:]).sum(axis=(0, 2, 3)) > 0)


# -- decode: one step against a cache equals the whole sequence's last rows --------

def caches_of_the_whole_sequence(c: Case, w: dict, x_all: np.ndarray) -> dict:
    """Every layer's k and v of the whole sequence, as a prefill would leave them."""
    tree = params.by_module(c, w)
    shape = (c.batch, c.seq_len, c.kv_heads, c.head_dim)
    ks, vs, h = [], [], x_all
    for i in range(c.n_layers):
        layer = params.within(tree, params.layer_module(i)) if c.workload == "transformer" \
            else tree
        attn = layer if c.workload == "mha" else params.within(layer, params.ATTENTION)
        a = h if c.workload == "mha" else layernorm(F64, h, layer["ln1"])[0]
        ks.append(linear(F64, a, attn["k"])[0].reshape(shape))
        vs.append(linear(F64, a, attn["v"])[0].reshape(shape))
        if c.workload == "transformer":
            h = reference.block(F64, h, layer, c.heads, (c.causal, c.window))[0]
    return {"k_cache": np.stack(ks), "v_cache": np.stack(vs)}


@pytest.mark.parametrize("workload, layers, causal, q_len, window", [
    ("mha", 1, True, 1, None), ("mha", 1, False, 3, None), ("block", 1, True, 3, 4),
    ("transformer", 2, True, 1, None), ("transformer", 2, True, 3, 4)])
def test_a_decode_step_is_the_forward_of_the_whole_sequence(workload, layers, causal,
                                                            q_len, window):
    c = case(workload, "decode", causal, q_len=q_len, window=window, layers=layers)
    whole = c.replace(mode="forward", q_len=None)
    w, x_all = make_weights(c), make_inputs(whole)["x"]
    inputs = {"x": x_all[:, -q_len:], **caches_of_the_whole_sequence(c, w, x_all)}
    stale = {k: v.copy() for k, v in inputs.items()}
    for name in ("k_cache", "v_cache"):      # the step must overwrite the new tokens' slots
        stale[name][:, :, -q_len:] = 1e3
    want = reference.outputs(whole, w, {"x": x_all})["out"][:, -q_len:]
    np.testing.assert_allclose(reference.outputs(c, w, stale)["out"], want, rtol=1e-10,
                               atol=1e-12)


def test_decode_inputs_hold_a_cache_per_layer():
    c = case("transformer", "decode", layers=3, q_len=2)
    shapes = input_shapes(c)
    assert shapes == {"x": (2, 2, 12), "k_cache": (3, 2, 11, 2, 3), "v_cache": (3, 2, 11, 2, 3)}


# -- costs --------------------------------------------------------------------------

def continuous_area(c: Case) -> Fraction:
    """The visible area from its definition: the strip of queries [p, p + 1) sees
    min(p', window) keys at p', on average min(p + 1/2, window) (exact: the bound is
    linear within each strip, its corner at a whole position)."""
    w = c.window or c.seq_len
    return sum((min(Fraction(2 * p + 1, 2), w) if c.causal else Fraction(c.seq_len)
                for p in range(c.q_offset, c.seq_len)), Fraction(0))


@pytest.mark.parametrize("n, q_len, causal, window", [
    (n, q, cz, w) for n in (1, 5, 13, 33) for q in (1, 5, 13, 33) for cz in (False, True)
    for w in (None, 1, 3, 40) if q <= n and (cz or w is None)])
def test_attention_flops_count_the_visible_area(n, q_len, causal, window):
    c = case(seq_len=n, q_len=q_len, causal=causal, window=window)
    assert costs.attention_flops(c) == 4 * c.batch * c.heads * c.head_dim * continuous_area(c)


def test_the_causal_square_keeps_the_half_convention_and_a_decode_step_sees_every_key():
    square, step = case(seq_len=64), case(seq_len=64, q_len=1)
    assert costs.attention_flops(square) == 4 * 2 * 4 * 3 * 64 * 64 // 2
    assert costs.attention_flops(step) == pytest.approx(4 * 2 * 4 * 3 * 64, rel=1 / 64)


def test_a_decode_step_projects_only_its_tokens_and_moves_its_whole_cache():
    step = case("block", "decode", q_len=2, seq_len=1000)
    prefill = step.replace(mode="forward", q_len=None)
    dense = lambda c: costs.flops(c) - costs.attention_flops(c)
    assert dense(step) * 500 == dense(prefill)
    cache = 2 * 2 * 1000 * 2 * 3 * 8                     # k and v, B N KV D, float64
    assert costs.bytes_moved(step) > cache > costs.bytes_moved(prefill) / 10


def test_a_window_leaves_the_keys_it_hides_unread():
    step = case("mha", "decode", seq_len=1000, q_len=1, kv_heads=2)
    windowed = step.replace(window=100)
    unread = 2 * 2 * 900 * 2 * 3 * 8          # k and v, B, keys before the window, KV, D
    assert costs.bytes_moved(step) - costs.bytes_moved(windowed) == unread
    assert costs.bytes_moved(step.replace(window=1000)) == costs.bytes_moved(step)


def test_sampled_rows_of_a_decode_step_are_the_rows_of_the_whole_step():
    c = case("mha", "decode", q_len=11)                 # every slot new: no cut of the cache
    w, x = make_weights(c), make_inputs(c)
    rows = np.array([3, 7])
    full = reference.outputs(c, w, x)["out"]
    np.testing.assert_allclose(reference.outputs(c, w, x, rows=rows)["out"], full[:, rows],
                               rtol=1e-12)


def test_rows_from_before_the_newer_fields_keep_their_cell_and_compare_key():
    from harness.report import compare
    from harness.results import store
    mha = case(kv_heads=4)                            # rows from before were multi-head
    new = mha.to_dict()
    old = {k: v for k, v in new.items() if k not in ("kv_heads", "q_len", "window")}
    assert store.cell_key(old) == store.cell_key(new) == store.cell_key(mha)
    assert store.cell_key({**new, "window": float("nan")}) == store.cell_key(new)
    assert compare._key({**new, "window": float("nan")}) == compare._key(new)
