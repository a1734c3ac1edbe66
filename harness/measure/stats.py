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


def shift(base_ms, new_ms, seed: int = 0, base_groups=None, new_groups=None) -> Shift:
    """The rank test and the bootstrap interval of the median ratio, as asv judges
    a change: decisive only when the test rejects and the whole interval lies past
    the threshold (docs/measurement.md, "Comparing runs"). `*_groups`: how many of
    the samples each process gave, in order (`run --repeat K`); with more than one
    process on either side, the median is that of the process medians and the
    interval resamples processes, then samples within each."""
    from scipy import stats  # only where runs are compared

    base = np.asarray(base_ms, dtype=np.float64)
    new = np.asarray(new_ms, dtype=np.float64)
    p_value = float(stats.mannwhitneyu(new, base, alternative="two-sided").pvalue)
    rng = np.random.default_rng(seed)
    if len(_processes(base, base_groups)) > 1 or len(_processes(new, new_groups)) > 1:
        base_parts, new_parts = _processes(base, base_groups), _processes(new, new_groups)
        ratios = _process_bootstrap(new_parts, rng) / _process_bootstrap(base_parts, rng)
        tail = 50 * (1 - RATIO_CONFIDENCE)
        low, high = np.percentile(ratios, [tail, 100 - tail])
        ratio = _median_of_medians(new_parts) / _median_of_medians(base_parts)
        return Shift(p_value, float(ratio), float(low), float(high))

    def ratio(b, n, axis=-1):
        return np.median(n, axis=axis) / np.median(b, axis=axis)

    interval = stats.bootstrap((base, new), ratio, n_resamples=_RESAMPLES, vectorized=True,
                               method="percentile", confidence_level=RATIO_CONFIDENCE,
                               rng=rng).confidence_interval
    return Shift(p_value, float(ratio(base, new)), float(interval.low), float(interval.high))


def _processes(samples: np.ndarray, groups) -> list[np.ndarray]:
    """The samples split by process; one part when the counts are missing or wrong."""
    if not isinstance(groups, (list, tuple, np.ndarray)) or len(groups) < 2 \
            or sum(groups) != samples.size or min(groups) < 1:
        return [samples]
    return np.split(samples, np.cumsum(groups)[:-1])


def _median_of_medians(parts: list[np.ndarray]) -> float:
    return float(np.median([np.median(p) for p in parts]))


def _process_bootstrap(parts: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """_RESAMPLES medians of process medians, each drawing the processes with
    replacement, then each drawn process's samples with replacement."""
    bank = np.stack([_sample_medians(p, rng) for p in parts])     # (processes, resamples)
    drawn = rng.integers(len(parts), size=(_RESAMPLES, len(parts)))
    return np.median(bank[drawn, np.arange(_RESAMPLES)[:, None]], axis=1)


def _sample_medians(part: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """_RESAMPLES bootstrap medians of one process's samples, drawn in chunks that
    keep the index array under ~4 M entries."""
    step = max(1, 4_000_000 // part.size)
    return np.concatenate([
        np.median(part[rng.integers(part.size, size=(min(step, _RESAMPLES - i), part.size))],
                  axis=1)
        for i in range(0, _RESAMPLES, step)])
