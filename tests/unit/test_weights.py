"""Seeded weights and inputs: the same numbers for every backend and precision, in
canonical names and (in, out) layouts."""
import numpy as np
import pytest

from harness.spec import Case
from harness.spec.precision import round_to
from harness.spec.weights import input_shapes, make_inputs, make_weights, weight_shapes

MHA = ["wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"]
BLOCK = MHA + ["ln1_g", "ln1_b", "ln2_g", "ln2_b", "w1", "b1", "w2", "b2"]


def case(workload="block", mode="train", dtype="float32", backend="torch", variant="eager",
         batch=2, seq_len=5, heads=2, head_dim=3, causal=False, layers=2):
    return Case("unit", workload, backend, variant, mode, dtype, "cpu",
                batch, seq_len, heads, head_dim, causal, layers)


def draws(c):
    return {**make_weights(c), **make_inputs(c)}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("workload", ["attention", "mha", "block", "transformer"])
def test_deterministic_and_shared_across_backends_and_variants(workload):
    c = case(workload)
    assert_same(draws(c), draws(c))
    assert_same(draws(c), draws(c.replace(backend="jax", variant="jit", device="cuda:0")))
    assert_same(draws(c), draws(c.replace(suite="other", variant="compile")))


def test_forward_sees_the_same_numbers_as_train():
    fwd, train = draws(case(mode="forward")), draws(case(mode="train"))
    assert set(train) - set(fwd) == {"g"}
    assert_same(fwd, {k: v for k, v in train.items() if k != "g"})


@pytest.mark.parametrize("dtype", ["tf32", "bfloat16", "float16"])
def test_other_dtypes_are_the_float32_draws_rounded(dtype):
    f32, other = draws(case()), draws(case(dtype=dtype))
    assert other.keys() == f32.keys()
    for k in f32:
        assert other[k].dtype == np.float32 and f32[k].dtype == np.float32
        np.testing.assert_array_equal(other[k], round_to(f32[k], dtype), err_msg=k)
    if dtype != "tf32":
        assert any(not np.array_equal(other[k], f32[k]) for k in f32)   # really rounded


def test_bfloat16_values_are_exactly_representable():
    for k, a in draws(case(dtype="bfloat16")).items():
        assert not (a.view(np.uint32) & 0xFFFF).any(), k     # low 16 bits of float32 zero
        np.testing.assert_array_equal(round_to(a, "bfloat16"), a, err_msg=k)


def test_different_shapes_give_different_draws():
    base = draws(case("transformer"))
    for other in (dict(seq_len=6), dict(batch=3), dict(causal=True), dict(layers=3)):
        # same (d, d) shape for wq, yet other numbers: the seed follows the shape
        assert not np.array_equal(base["layer0.wq"],
                                  draws(case("transformer", **other))["layer0.wq"])
    # `layers` matters for transformer alone: a block draws the same for any value
    assert_same(draws(case("block", layers=1)), draws(case("block", layers=3)))
    # heads/head_dim swapped: same d_model, different shape key
    assert not np.array_equal(draws(case("mha", heads=3, head_dim=2))["wq"],
                              draws(case("mha", heads=2, head_dim=3))["wq"])


def test_names_and_shapes_attention():
    c = case("attention", batch=2, seq_len=5, heads=2, head_dim=3)
    assert weight_shapes(c) == {} and make_weights(c) == {}
    assert {k: v.shape for k, v in make_inputs(c).items()} == {
        "q": (2, 5, 2, 3), "k": (2, 5, 2, 3), "v": (2, 5, 2, 3), "g": (2, 5, 2, 3)}


def test_names_and_shapes_mha_and_block():
    d, f = 6, 24                                              # heads 2 * head_dim 3; 4 * d
    mha = {k: v.shape for k, v in make_weights(case("mha")).items()}
    assert list(mha) == MHA
    assert mha["wq"] == mha["wo"] == (d, d) and mha["bq"] == mha["bo"] == (d,)
    block = {k: v.shape for k, v in make_weights(case("block")).items()}
    assert list(block) == BLOCK
    assert block["w1"] == (d, f) and block["b1"] == (f,)      # (in, out)
    assert block["w2"] == (f, d) and block["b2"] == (d,)
    assert block["ln1_g"] == block["ln2_b"] == (d,)
    assert {k: v.shape for k, v in make_inputs(case("block")).items()} == {
        "x": (2, 5, d), "g": (2, 5, d)}


def test_names_and_shapes_transformer():
    w = make_weights(case("transformer", layers=3))
    expected = [f"layer{i}.{k}" for i in range(3) for k in BLOCK] + ["lnf_g", "lnf_b"]
    assert list(w) == expected
    assert w["layer2.w1"].shape == (6, 24) and w["lnf_g"].shape == w["lnf_b"].shape == (6,)
    assert not np.array_equal(w["layer0.wq"], w["layer1.wq"])    # layers drawn apart


def test_g_only_in_train_mode():
    for workload in ("attention", "mha", "block", "transformer"):
        assert "g" not in input_shapes(case(workload, mode="forward"))
        assert "g" not in make_inputs(case(workload, mode="forward"))
        shapes = input_shapes(case(workload, mode="train"))
        out = "q" if workload == "attention" else "x"
        assert shapes["g"] == shapes[out]


def test_scales_of_the_draws():
    w = make_weights(case("block", heads=4, head_dim=64))        # d = 256, MLP 1024
    assert w["wq"].std() == pytest.approx(1 / 16, rel=0.05)     # 1/sqrt(in = 256)
    assert w["w2"].std() == pytest.approx(1 / 32, rel=0.05)     # 1/sqrt(in = 1024)
    assert abs(w["ln1_g"].mean() - 1) < 0.05 and w["ln1_g"].std() < 0.2
    assert 0 < np.abs(w["bq"]).max() < 1                        # biases non-zero, small
