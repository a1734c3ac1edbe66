"""The correctness verdict: error against float64 at most MULTIPLE times the
low-precision reference's error, plus a floor relative to each tensor's scale
(at least ZERO_SCALE times the case's largest tensor)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.correctness.accuracy import FLOOR, MULTIPLE, ZERO_SCALE, judge
from harness.spec import DTYPES


def tensors(seed=0):
    """Exact tensors with largest magnitude exactly 1 (out) and 4 (grad/wq)."""
    rng = np.random.default_rng(seed)
    out = rng.uniform(-0.5, 0.5, (4, 8))
    out[0, 0] = 1.0
    wq = rng.uniform(-2.0, 2.0, (8, 8))
    wq[1, 1] = 4.0
    return {"out": out, "grad/wq": wq}


def plant(exact, errors):
    """A copy of `exact` with one element of each named tensor moved by errors[name]."""
    got = {k: v.copy() for k, v in exact.items()}
    for name, e in errors.items():
        got[name][2, 3] += e
    return got


def test_exact_output_passes():
    exact = tensors()
    v = judge(exact, exact, plant(exact, {"out": 1e-4}), "float32")
    assert v.correct and v.max_abs_err == 0.0 and v.err_ratio == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_three_times_the_reference_error_fails_and_one_and_a_half_passes(dtype):
    exact = tensors()
    base = 10 * FLOOR[dtype]              # reference error on `out` (scale 1), above the floor
    low = plant(exact, {"out": base})
    # ratio = k*base / (base + FLOOR*1/MULTIPLE) = k * 10 / 10.5
    bad = judge(plant(exact, {"out": 3 * base}), exact, low, dtype)
    assert not bad.correct and bad.worst == "out"
    assert bad.err_ratio == pytest.approx(3 * 10 / 10.5)
    assert bad.max_abs_err == pytest.approx(3 * base)
    ok = judge(plant(exact, {"out": 1.5 * base}), exact, low, dtype)
    assert ok.correct and ok.err_ratio == pytest.approx(1.5 * 10 / 10.5)


def test_float32_floor_forgives_summation_order_only():
    exact = tensors()
    # The reference is exact here; the floor is 1e-6 * 1 / 2 = 5e-7 on `out`.
    assert judge(plant(exact, {"out": 8e-7}), exact, exact, "float32").correct
    assert not judge(plant(exact, {"out": 2e-5}), exact, exact, "float32").correct


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_output_fails(bad):
    exact = tensors()
    got = plant(exact, {})
    got["grad/wq"][0, 0] = bad
    v = judge(got, exact, plant(exact, {"out": 1e-3}), "bfloat16")
    assert not v.correct and v.worst == "grad/wq" and v.max_abs_err == np.inf


def test_missing_tensor_or_wrong_shape_raises():
    exact = tensors()
    with pytest.raises(ValueError, match="grad/wq"):
        judge({"out": exact["out"]}, exact, exact, "float32")
    with pytest.raises(ValueError, match="grad/wq"):
        judge({**exact, "grad/wq": exact["grad/wq"].T[:4]}, exact, exact, "float32")


def test_a_tensor_zero_by_construction_is_judged_on_the_case_scale():
    # grad/bk is ~0 in exact arithmetic; what is left is rounding noise of terms of the
    # size of the other tensors (largest 4), so its scale is ZERO_SCALE * 4 = 0.4.
    exact = {**tensors(), "grad/bk": np.full((4, 4), 1e-12)}
    low = plant(exact, {"grad/bk": 2e-8})
    # ratio = 2e-7 / (2e-8 + 1e-6 * 0.4 / 2) = 2e-7 / 2.2e-7 = 0.91
    noise = judge(plant(exact, {"grad/bk": 2e-7}), exact, low, "float32")
    assert ZERO_SCALE == 0.1
    assert noise.correct and noise.err_ratio == pytest.approx(2e-7 / 2.2e-7)
    fault = judge(plant(exact, {"grad/bk": 1e-4}), exact, low, "float32")
    assert not fault.correct and fault.worst == "grad/bk"


def test_reports_the_worst_tensor_and_the_largest_error():
    exact = tensors()
    low = plant(exact, {"out": 1e-3, "grad/wq": 4e-3})
    # bfloat16 floor terms: out 2^-7 * 1 / 2 = 0.0039, grad/wq 2^-7 * 4 / 2 = 0.0156.
    # out 5e-3 / 0.0049 = 1.02 and grad/wq 2e-2 / 0.0196 = 1.02: both pass.
    v = judge(plant(exact, {"out": 5e-3, "grad/wq": 2e-2}), exact, low, "bfloat16")
    assert v.correct and v.max_abs_err == pytest.approx(2e-2)
    v = judge(plant(exact, {"out": 5e-3, "grad/wq": 6e-2}), exact, low, "bfloat16")  # 3.06
    assert not v.correct and v.worst == "grad/wq" and v.max_abs_err == pytest.approx(6e-2)
    v = judge(plant(exact, {"out": 2e-2, "grad/wq": 2e-2}), exact, low, "bfloat16")  # 4.08
    assert not v.correct and v.worst == "out"


@given(k_out=st.floats(0, 4), k_wq=st.floats(0, 4), dtype=st.sampled_from(DTYPES))
def test_err_ratio_follows_the_rule_and_decides_the_verdict(k_out, k_wq, dtype):
    exact = tensors()
    base = {"out": 10 * FLOOR[dtype], "grad/wq": 40 * FLOOR[dtype]}   # scales 1 and 4
    low = plant(exact, base)
    v = judge(plant(exact, {"out": k_out * base["out"], "grad/wq": k_wq * base["grad/wq"]}),
              exact, low, dtype)
    expected = max(k_out, k_wq) * 10 / 10.5       # k*10F / (10F + F/2), same for both
    assert v.err_ratio == pytest.approx(expected, rel=1e-6)
    assert v.correct == (v.err_ratio <= MULTIPLE)
    if abs(expected - MULTIPLE) > 1e-6:
        assert v.correct == (expected <= MULTIPLE)


def test_non_finite_low_precision_reference_does_not_pass_anything():
    exact = tensors()
    low = plant(exact, {})
    low["grad/wq"][0, 0] = np.nan
    got = plant(exact, {"grad/wq": 100.0})
    assert not judge(got, exact, low, "float16").correct


def test_all_zero_reference_still_fails_a_non_finite_output():
    zeros = {"out": np.zeros(3)}
    verdict = judge({"out": np.array([np.nan, 0.0, 0.0])}, zeros, zeros, "float32")
    assert not verdict.correct
