"""Summary statistics of raw samples, on samples small enough to work out by hand.
Percentiles use linear interpolation between order statistics: the p-th percentile
of n sorted values sits at index p/100 * (n - 1)."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.measure.stats import NOISY_IQR_FRACTION, median_ci, summarize


def test_summary_of_four_unsorted_samples():
    s = summarize([4.0, 1.0, 3.0, 2.0])       # sorted 1, 2, 3, 4
    assert s["n_samples"] == 4
    assert s["median_ms"] == pytest.approx(2.5)   # index 1.5
    assert s["p10_ms"] == pytest.approx(1.3)      # index 0.3: 1 + 0.3
    assert s["p90_ms"] == pytest.approx(3.7)      # index 2.7: 3 + 0.7
    assert s["iqr_ms"] == pytest.approx(1.5)      # p75 3.25 (index 2.25) - p25 1.75 (0.75)
    assert s["min_ms"] == 1.0
    assert s["mean_ms"] == pytest.approx(2.5)


def test_summary_of_one_to_ten():
    s = summarize(list(range(10, 0, -1)))
    assert s["median_ms"] == pytest.approx(5.5)
    assert s["iqr_ms"] == pytest.approx(4.5)      # p75 7.75 (index 6.75) - p25 3.25 (2.25)
    assert s["p10_ms"] == pytest.approx(1.9)      # index 0.9
    assert s["p90_ms"] == pytest.approx(9.1)      # index 8.1
    assert s["noisy"]                             # 4.5 / 5.5 is far over 10%


def test_one_sample():
    s = summarize([7.0])
    assert (s["median_ms"], s["iqr_ms"], s["min_ms"], s["p10_ms"], s["p90_ms"]) == (7, 0, 7, 7, 7)
    assert (s["ci_low_ms"], s["ci_high_ms"]) == (7.0, 7.0)
    assert not s["noisy"]


def test_noisy_flag_at_the_ten_percent_boundary():
    assert NOISY_IQR_FRACTION == 0.10
    # Five samples: p25 is the 2nd value, p50 the 3rd, p75 the 4th.
    at_boundary = summarize([9.5, 9.5, 10.0, 10.5, 10.5])    # IQR 1.0 = 10% of 10
    assert at_boundary["iqr_ms"] == pytest.approx(1.0) and not at_boundary["noisy"]
    just_over = summarize([9.5, 9.5, 10.0, 10.51, 10.51])    # IQR 1.01 > 10%
    assert just_over["noisy"]
    quiet = summarize([9.9, 9.95, 10.0, 10.05, 10.1])        # IQR 0.1 = 1%
    assert not quiet["noisy"]


def test_empty_samples_raise():
    with pytest.raises(ValueError):
        summarize([])


def test_median_ci_order_statistics_small_n():
    # n = 10: z*sqrt(n)/2 = 1.96*3.162/2 = 3.10; lower index floor(5 - 3.10) = 1.
    lo, hi = median_ci(np.arange(1.0, 11.0))
    assert lo == 2.0 and hi in (9.0, 10.0)
    # n = 3: the interval is the whole range.
    assert median_ci(np.array([3.0, 1.0, 2.0])) == (1.0, 3.0)


@given(st.lists(st.floats(0.001, 1e4, allow_nan=False), min_size=1, max_size=200))
def test_median_ci_contains_the_median_and_is_ordered(samples):
    s = summarize(samples)
    assert s["ci_low_ms"] <= s["median_ms"] <= s["ci_high_ms"]
    assert min(samples) <= s["ci_low_ms"] and s["ci_high_ms"] <= max(samples)
    assert s["ci_low_ms"] in samples and s["ci_high_ms"] in samples   # order statistics
    assert s["min_ms"] <= s["p10_ms"] <= s["median_ms"] <= s["p90_ms"] <= max(samples)
    assert s["iqr_ms"] >= 0


def test_median_ci_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    big = rng.normal(10.0, 1.0, 2000)
    lo, hi = median_ci(big)
    # The median of N(10, 1) has standard error ~ 1.2533/sqrt(2000) = 0.028.
    assert lo < 10.0 < hi and hi - lo < 0.2


def test_median_ci_covers_at_least_95_percent():
    # Exact coverage of (s[lo], s[hi]) for a continuous distribution:
    # P(lo < Binomial(n, 1/2) <= hi), 0-based indices.
    for n in (10, 20, 50, 100, 101):
        x = np.arange(float(n))
        lo, hi = (int(v) for v in median_ci(x))
        cover = sum(math.comb(n, k) for k in range(lo + 1, hi + 1)) / 2 ** n
        assert cover >= 0.94, (n, lo, hi, cover)


def test_median_ci_is_symmetric_under_reflection():
    x = np.arange(100.0)
    lo, hi = median_ci(x)
    nlo, nhi = median_ci(-x)
    assert (nlo, nhi) == (-hi, -lo)
