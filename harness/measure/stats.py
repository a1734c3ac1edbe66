"""Pure functions over raw samples (milliseconds per call)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NOISY_IQR_FRACTION = 0.10     # docs/measurement.md: flag a cell whose IQR/median passes 10%


def median_ci(samples: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free ~95% confidence interval of the median (order statistics)."""
    s = np.sort(samples)
    n = len(s)
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half - 0.5))  # continuity correction: >= 95% exact coverage
    hi = n - 1 - lo                       # the mirror image of lo
    return float(s[lo]), float(s[hi])


def quartiles(samples_ms) -> tuple[float, float]:
    """q1 and q3 of per-call times: the spread every figure here is stated with."""
    q1, q3 = np.percentile(np.asarray(samples_ms, dtype=np.float64), [25, 75])
    return float(q1), float(q3)


def summarize(samples_ms) -> dict:
    """The result columns of a list of per-call times: the one summary the worker,
    the pytest plugin, pytest-benchmark files and compare all use."""
    s = np.asarray(samples_ms, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no samples")
    p10, p50, p90 = np.percentile(s, [10, 50, 90])
    q1, q3 = quartiles(s)
    lo, hi = median_ci(s)
    iqr = q3 - q1
    return {
        "n_samples": int(s.size),
        "median_ms": float(p50),
        "iqr_ms": iqr,
        "min_ms": float(s.min()),
        "mean_ms": float(s.mean()),
        "p10_ms": float(p10),
        "p90_ms": float(p90),
        "ci_low_ms": lo,
        "ci_high_ms": hi,
        "noisy": bool(iqr > NOISY_IQR_FRACTION * p50),
    }


ALPHA = 0.01                  # the rank test's level: a call needs p below it
RATIO_CONFIDENCE = 0.95       # the bootstrap interval of the new/base median ratio
_RESAMPLES = 2000


@dataclass(frozen=True)
class Shift:
    """How a cell's new samples differ from its base samples."""
    p_value: float            # Mann-Whitney U, two-sided: do the samples differ at all
    ratio: float              # new median over base median
    ratio_low: float          # RATIO_CONFIDENCE bootstrap interval of that ratio
    ratio_high: float


def shift(base_ms, new_ms, seed: int = 0) -> Shift:
    """The rank test and the bootstrap interval of the median ratio, as asv judges
    a change: decisive only when the test rejects and the whole interval lies past
    the threshold (docs/measurement.md, "Comparing runs")."""
    from scipy import stats  # only where runs are compared

    base = np.asarray(base_ms, dtype=np.float64)
    new = np.asarray(new_ms, dtype=np.float64)
    p_value = float(stats.mannwhitneyu(new, base, alternative="two-sided").pvalue)

    def ratio(b, n, axis=-1):
        return np.median(n, axis=axis) / np.median(b, axis=axis)

    interval = stats.bootstrap((base, new), ratio, n_resamples=_RESAMPLES, vectorized=True,
                               method="percentile", confidence_level=RATIO_CONFIDENCE,
                               rng=np.random.default_rng(seed)).confidence_interval
    return Shift(p_value, float(ratio(base, new)), float(interval.low), float(interval.high))
