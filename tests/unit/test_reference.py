"""The float64 reference is itself checked: forward against a plain loop,
backward against central finite differences, and the low-precision emulation
against known rounding behaviour."""
import itertools

import numpy as np
import pytest

from harness.spec import Case, reference
from harness.spec.precision import round_tf32, round_to
from harness.spec.weights import make_inputs, make_weights


def case(workload, mode="forward", causal=False, dtype="float32", **shape):
    fields = dict(batch=2, seq_len=5, heads=2, head_dim=3, layers=2)
    fields.update(shape)
    return Case("test", workload, "reference", "numpy", mode, dtype, "cpu",
                causal=causal, **fields)


def plain_attention(q, k, v, causal):
    b, n, h, d = q.shape
    out = np.zeros_like(q, dtype=np.float64)
    for bi, hi, i in itertools.product(range(b), range(h), range(n)):
        keys = range(i + 1) if causal else range(n)
        scores = [q[bi, i, hi] @ k[bi, j, hi] / np.sqrt(d) for j in keys]
        weights = np.exp(np.array(scores) - max(scores))
        weights /= weights.sum()
        out[bi, i, hi] = sum(wj * v[bi, j, hi] for wj, j in zip(weights, keys))
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_a_plain_loop(causal):
    c = case("attention", causal=causal, seq_len=7, head_dim=5)
    x = {k: v.astype(np.float64) for k, v in make_inputs(c).items()}
    got = reference.forward(c, {}, x)
    np.testing.assert_allclose(got, plain_attention(x["q"], x["k"], x["v"], causal),
                               rtol=1e-12, atol=1e-12)


def test_causal_first_query_sees_only_the_first_key():
    c = case("attention", causal=True)
    x = make_inputs(c)
    out = reference.forward(c, {}, x)
    np.testing.assert_allclose(out[:, 0], x["v"][:, 0], rtol=1e-12)


def loss(c, w, x):
    """sum(out * g), the scalar whose gradients train mode returns."""
    return float((reference.forward(c, w, x) * x["g"]).sum())


@pytest.mark.parametrize("workload", ["attention", "mha", "block", "transformer"])
@pytest.mark.parametrize("causal", [False, True])
def test_backward_matches_finite_differences(workload, causal):
    c = case(workload, mode="train", causal=causal)
    w = {k: v.astype(np.float64) for k, v in make_weights(c).items()}
    x = {k: v.astype(np.float64) for k, v in make_inputs(c).items()}
    grads = reference.outputs(c, w, x)
    expected = {f"grad/{k}" for k in [*w, *(n for n in x if n != "g")]}
    assert set(grads) == expected | {"out"}
    rng = np.random.default_rng(0)
    eps = 1e-6
    for name in sorted(expected):
        key = name.removeprefix("grad/")
        table = w if key in w else x
        flat = table[key].reshape(-1)
        for idx in rng.choice(flat.size, size=min(4, flat.size), replace=False):
            old = flat[idx]
            flat[idx] = old + eps
            up = loss(c, w, x)
            flat[idx] = old - eps
            down = loss(c, w, x)
            flat[idx] = old
            numeric = (up - down) / (2 * eps)
            analytic = grads[name].reshape(-1)[idx]
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-7), (name, idx)


def test_bfloat16_rounding_is_round_to_nearest_even():
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-7, -2.5, np.inf], np.float32)
    got = round_to(x, "bfloat16")
    # 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
    np.testing.assert_array_equal(got, [1.0, 1.0, 1 + 2**-6, 1 + 2**-7, -2.5, np.inf])


def test_tf32_keeps_ten_mantissa_bits():
    x = np.array([1 + 2**-10, 1 + 2**-11, 1 + 2**-12], np.float32)
    np.testing.assert_array_equal(round_tf32(x), [1 + 2**-10, 1.0, 1.0])


# The emulation stores each op's result rounded once (relative error at most the
# unit roundoff u) and accumulates in float32. A block's train step chains ~26
# such roundings on its longest path (ln1's gradient: 13 forward, 13 backward);
# independent roundings add like a random walk, sqrt(26) u ~ 5u, so every tensor
# stays within 8u of its scale (measured: bfloat16 2.7u, float16 2.3u, tf32 3.2u).
# float32's error is its accumulation's: at most the longest sum's depth (64
# terms, the MLP's 4 d_model) times u (measured 8.4u). The output errs by at
# least u/4: skipping the rounding, or rounding a bfloat16 case to float16
# (0.14u) or a float16 case to bfloat16 (32u), fails.
UNIT_ROUNDOFF = {"float32": 2.0**-24, "tf32": 2.0**-11, "bfloat16": 2.0**-8,
                 "float16": 2.0**-11}
WITHIN = {"float32": 64, "tf32": 8, "bfloat16": 8, "float16": 8}


@pytest.mark.parametrize("dtype", list(UNIT_ROUNDOFF))
def test_low_precision_reference_errs_by_its_dtype(dtype):
    """The emulated reference is off from float64 by what its dtype implies."""
    u = UNIT_ROUNDOFF[dtype]
    c = case("block", mode="train", dtype=dtype, seq_len=16, heads=2, head_dim=8)
    w, x = make_weights(c), make_inputs(c)
    exact = reference.outputs(c, w, x)
    low_p = reference.outputs(c, w, x, dtype=dtype)
    largest = max(np.abs(t).max() for t in exact.values())
    for name in exact:
        scale = np.abs(exact[name]).max()
        if scale < 1e-8 * largest:      # grad/bk is 0: softmax ignores a per-row shift
            continue
        err = np.abs(low_p[name] - exact[name]).max() / scale
        assert err < WITHIN[dtype] * u, (name, err / u)
        if name == "out":          # some gradients (grad/b2 = sum of g) skip matmuls
            assert err > u / 4, (name, err / u)
