"""Steps in a cell's series: where its time changed level, and stayed there.

ruptures' PELT (l1 cost, on the log of the medians, segments of at least two runs)
proposes where the level changes; each proposal is then judged by four rules, so
that neither a lone noisy run nor a slow drift is called a step (docs/history.md,
"How a step is found"):

1. size: the medians of the segments either side differ by at least `min_step_pct`;
2. sharpness: so do the runs at the boundary (the geometric mean of the two runs
   after over the two before), which a drift of a percent a run never reaches;
3. noise: that jump is at least NOISE_FACTOR (4) times the series' own run-to-run noise
   (the spread of consecutive differences, floored by the runs' own sample spread);
4. persistence: each of those two runs after sits past the old level by at least
   half the threshold, and each of the two before short of the new one; and where
   the runs kept their samples, a rank test on them agrees (p < ALPHA).

The newest run alone can start a step (PELT's two-run segments cannot place one
there): judged by the same rules with one run after, it is flagged provisional,
since only the next run can tell a step from an outlier.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.history.series import Run, Series, changes
from harness.measure.stats import ALPHA

MIN_STEP_PCT = 5.0
NOISE_FACTOR = 4
EDGE = 2                  # runs either side of a boundary that the rules look at
NOISE_FLOOR = 0.002       # log units: no series is steadier than 0.2 % a run


@dataclass
class Step:
    series: Series
    index: int                # the first run at the new level
    size_pct: float           # new level over old, less one, in percent (+ is slower)
    jump_pct: float           # the same across the boundary's runs alone
    level_before_ms: float
    level_after_ms: float
    p_value: float | None     # rank test on the boundary runs' samples, where kept
    provisional: bool         # the newest run alone is past the boundary
    changed: list[str] = field(default_factory=list)

    @property
    def before(self) -> Run:
        return self.series.runs[self.index - 1]

    @property
    def after(self) -> Run:
        return self.series.runs[self.index]


@dataclass
class Drift:
    """A level that moved by at least the threshold within a segment, with no step."""
    series: Series
    start: int
    end: int                  # inclusive
    change_pct: float


def find_steps(series: Series, min_step_pct: float = MIN_STEP_PCT) -> list[Step]:
    """The steps of one series, oldest first."""
    y = np.log(np.asarray(series.medians, float))
    if len(y) < 2:
        return []
    noise = run_noise(series, y)
    bounds = [0, *_proposals(y, noise), len(y)]
    steps = []
    for i in range(1, len(bounds) - 1):
        step = _judge(series, y, bounds[i - 1], bounds[i], bounds[i + 1], noise,
                      min_step_pct)
        if step:
            steps.append(step)
    start = steps[-1].index if steps else 0
    if len(y) - start >= 3:            # the newest run alone, past the last level
        newest = _judge(series, y, start, len(y) - 1, len(y), noise, min_step_pct)
        if newest:
            steps.append(newest)
    return steps


def run_noise(series: Series, y: np.ndarray) -> float:
    """A run's own scatter in log units, as a standard deviation: the median
    absolute difference between consecutive runs (a step moves one difference, not
    their median); never below the runs' median relative sample spread, or
    NOISE_FLOOR."""
    diffs = np.abs(np.diff(y))
    from_runs = 1.4826 * float(np.median(diffs)) / np.sqrt(2) if len(diffs) else 0.0
    spreads = [_relative_iqr(s) for s in series.samples if s is not None and len(s) >= 4]
    own = float(np.median(spreads)) / 1.349 if spreads else 0.0
    return max(from_runs, own, NOISE_FLOOR)


def _relative_iqr(samples: np.ndarray) -> float:
    q1, q2, q3 = np.percentile(samples, [25, 50, 75])
    return float((q3 - q1) / q2) if q2 > 0 else 0.0


def _proposals(y: np.ndarray, noise: float) -> list[int]:
    """PELT's change points (the first index of each new segment but the first)."""
    if len(y) < 2 * EDGE:
        return []
    import ruptures  # only where a history is drawn

    # A penalty of one noise unit per segment: PELT only proposes; the rules judge.
    ends = ruptures.Pelt(model="l1", min_size=EDGE, jump=1).fit(y.reshape(-1, 1)) \
        .predict(pen=noise)
    return [int(e) for e in ends[:-1]]


def _judge(series: Series, y: np.ndarray, start: int, k: int, end: int, noise: float,
           min_step_pct: float) -> Step | None:
    """The step at k between segments y[start:k] and y[k:end], or None."""
    threshold = np.log1p(min_step_pct / 100)
    old, new = float(np.median(y[start:k])), float(np.median(y[k:end]))
    before, after = y[max(start, k - EDGE):k], y[k:min(end, k + EDGE)]
    size, jump = new - old, float(after.mean() - before.mean())
    if abs(size) < threshold or abs(jump) < threshold or np.sign(size) != np.sign(jump):
        return None
    if abs(jump) < NOISE_FACTOR * noise:
        return None
    sign = np.sign(size)
    if np.any(sign * (after - old) < threshold / 2) \
            or np.any(sign * (new - before) < threshold / 2):
        return None
    p_value = _rank_test(series, range(max(start, k - EDGE), k), range(k, min(end, k + EDGE)))
    if p_value is not None and p_value >= ALPHA:
        return None
    return Step(series=series, index=k, size_pct=100 * float(np.expm1(size)),
                jump_pct=100 * float(np.expm1(jump)), level_before_ms=float(np.exp(old)),
                level_after_ms=float(np.exp(new)), p_value=p_value,
                provisional=k == len(y) - 1, changed=changes(series.runs[k - 1],
                                                              series.runs[k]))


def _rank_test(series: Series, before: range, after: range) -> float | None:
    """Mann-Whitney U on the pooled samples of the runs either side, where all kept
    theirs; None where any did not (a CSV, a pytest-benchmark file without data)."""
    chosen = [series.samples[i] for i in (*before, *after)]
    if any(s is None for s in chosen):
        return None
    from scipy import stats  # only where a history is drawn

    old = np.concatenate(chosen[:len(before)])
    new = np.concatenate(chosen[len(before):])
    return float(stats.mannwhitneyu(new, old, alternative="two-sided").pvalue)


def find_drifts(series: Series, steps: list[Step],
                min_step_pct: float = MIN_STEP_PCT) -> list[Drift]:
    """Segments between steps whose level moved by the threshold from their first
    runs to their last ones: reported as drift, never as a step."""
    y = np.log(np.asarray(series.medians, float))
    cuts = [0, *(s.index for s in steps), len(y)]
    drifts = []
    for start, end in zip(cuts, cuts[1:]):
        if end - start < 2 * EDGE + 1:
            continue
        change = float(np.expm1(y[end - EDGE:end].mean() - y[start:start + EDGE].mean()))
        if abs(change) * 100 >= min_step_pct:
            drifts.append(Drift(series, start, end - 1, 100 * change))
    return drifts
