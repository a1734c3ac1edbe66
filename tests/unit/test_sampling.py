"""The sampled check computes exactly what the full reference computes, on its rows:
its output rows are the full output's rows, and its gradients are the full
reference's gradients of the loss on those rows (g zeroed elsewhere), in float64
and in each dtype's emulation, unblocked and in blocks of query rows."""
import numpy as np
import pytest

from harness.correctness import sampling
from harness.spec import Case, reference, reference_core
from harness.spec.weights import make_inputs, make_weights

ROWS = np.array([0, 3, 4, 10])


def case(workload, mode="train", causal=True, dtype="float64", **shape):
    fields = dict(batch=2, seq_len=11, heads=2, head_dim=4, layers=2)
    fields.update(shape)
    return Case("test", workload, "reference", "numpy", mode, dtype, "cpu",
                causal=causal, **fields)


def both(c, dtype, rows=ROWS):
    """(full reference on the rows' loss, sampled reference) for one case."""
    w, x = make_weights(c), sampling.on_rows(make_inputs(c), rows)
    full = reference.outputs(c, w, x, dtype=dtype)
    return full, reference.outputs(c, w, x, dtype=dtype, rows=rows)


def assert_same(full, sampled, rows, atol):
    assert set(full) == set(sampled)
    largest = max(float(np.abs(v).max()) for v in full.values())
    for name, value in full.items():
        expected = value[:, rows] if name in sampling.ROW_TENSORS else value
        # grad/bk is ~0 by construction (softmax ignores a shift): rounding noise of
        # the case's scale, judged on a tenth of it as accuracy.py does
        scale = max(float(np.abs(expected).max()), 0.1 * largest)
        np.testing.assert_allclose(sampled[name], expected, rtol=0, atol=atol * scale,
                                   err_msg=name)


PREFIX = np.array([0, 2, 5])       # causal: positions 6 to 10 are cut off


@pytest.mark.parametrize("workload", ["attention", "mha", "block", "transformer"])
@pytest.mark.parametrize("mode", ["forward", "train"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("rows", [ROWS, PREFIX], ids=["to-the-end", "prefix"])
def test_sampled_float64_reference_is_the_full_one_on_its_rows(workload, mode, causal, rows):
    full, sampled = both(case(workload, mode, causal), "float64", rows)
    assert sampled["out"].shape[1] == len(rows)
    assert_same(full, sampled, rows, atol=1e-12)


@pytest.mark.parametrize("workload", ["attention", "block"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "tf32"])
def test_sampled_emulation_is_the_full_one_on_its_rows(workload, dtype):
    """Same roundings in the same order; only BLAS's summation order may differ,
    which can move a result by one unit of the storage dtype."""
    c = case(workload, dtype=dtype)
    full, sampled = both(c, dtype)
    assert_same(full, sampled, ROWS, atol=2.0**-7)


def test_attention_gradients_are_judged_at_the_rows_and_dq_is_zero_elsewhere():
    c = case("attention")
    full, sampled = both(c, "float64")
    assert {k: v.shape[1] for k, v in sampled.items()} == dict.fromkeys(sampled, len(ROWS))
    outside = np.setdiff1d(np.arange(11), ROWS)
    assert not full["grad/q"][:, outside].any()       # what the rows' check leaves out
    assert full["grad/k"][:, outside].any()           # keys outside get gradient, unjudged
    got = sampling.wanted(full, ROWS)
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in sampled.items()}


@pytest.mark.parametrize("workload", ["attention", "transformer"])
def test_blocks_of_query_rows_give_the_unblocked_result(workload, monkeypatch):
    c = case(workload, seq_len=13)
    w, x = make_weights(c), make_inputs(c)
    whole = reference.outputs(c, w, x)
    monkeypatch.setattr(reference_core, "BLOCK_SCORES", 2 * 2 * 13 * 3)   # 3 rows a block
    blocked = reference.outputs(c, w, x)
    for name in whole:
        np.testing.assert_allclose(blocked[name], whole[name], rtol=1e-12, atol=1e-13,
                                   err_msg=name)


def test_a_causal_stack_is_judged_within_its_first_positions():
    c = Case("t", "transformer", "torch", "sdpa", "train", "bfloat16", "cuda:0",
             2, 8192, 16, 128, True, 4)
    rows = sampling.check_rows(c)
    assert len(rows) == sampling.SAMPLED_ROWS
    assert rows.max() == sampling.CAUSAL_STACK_ROWS - 1 and {511, 512} <= set(rows.tolist())
    assert sampling.check_rows(c.replace(causal=False)).max() == 8191


def test_forward_cells_are_sampled_wherever_the_rows_are_a_quarter_of_the_sequence():
    at = sampling.SAMPLE_FORWARD_FROM
    rows = sampling.check_rows(case("mha", mode="forward", seq_len=at))
    assert len(rows) == sampling.SAMPLED_ROWS and rows.max() == at - 1
    assert sampling.check_rows(case("mha", mode="forward", seq_len=at - 1)) is None
    assert sampling.check_rows(case("mha", mode="train", seq_len=at)) is None


def test_small_cells_are_judged_whole():
    assert sampling.check_rows(case("attention", seq_len=1024, heads=8, head_dim=64,
                                    batch=1)) is None


def test_large_cells_are_judged_on_edges_and_drawn_rows():
    c = Case("t", "attention", "torch", "sdpa", "forward", "bfloat16", "cuda:0",
             1, 4096, 16, 128, True, 1)
    rows = sampling.check_rows(c)
    assert len(rows) == sampling.SAMPLED_ROWS == len(set(rows.tolist()))
    assert list(rows) == sorted(rows) and 0 <= rows.min() and rows.max() < 4096
    assert {0, 1, 63, 64, 1023, 1024, 2047, 2048, 4094, 4095} <= set(rows.tolist())
    assert (rows > 1024).sum() >= 16           # past a tile boundary, many of them
    np.testing.assert_array_equal(rows, sampling.check_rows(c))        # seeded
    other = sampling.check_rows(c.replace(seq_len=4095))
    assert set(other.tolist()) != set(rows.tolist())


def test_on_rows_zeroes_the_cotangent_elsewhere_and_keeps_the_rest():
    c = case("mha")
    x = make_inputs(c)
    masked = sampling.on_rows(x, ROWS)
    np.testing.assert_array_equal(masked["g"][:, ROWS], x["g"][:, ROWS])
    assert not np.delete(masked["g"], ROWS, axis=1).any()
    assert masked["x"] is x["x"]
    forward = make_inputs(case("mha", mode="forward"))
    assert sampling.on_rows(forward, ROWS) is forward
