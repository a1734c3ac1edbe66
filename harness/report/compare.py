"""Compare two runs cell by cell, and call a slowdown a regression only when it is real.

Two runs of the same code differ by a few percent from machine drift, and one noisy
cell can move its median by a third, so a threshold alone cries wolf. With both runs'
raw samples, a cell is a regression only when a rank test (Mann-Whitney U) says the
samples differ and the whole bootstrap interval of the new/base median ratio lies past
the threshold, as asv decides; without them (a CSV), when the median is past the
threshold and the two interquartile ranges do not overlap. Runs made with `--repeat
K` are judged by process (the interval resamples processes, then samples), and a
change must also clear the cell's own spread between processes. A cell that stops running,
or starts computing the wrong thing, is a regression whatever its time: a fast wrong
answer is no improvement.

Framework-free: stdlib, numpy and pandas only (docs/design.md, "The house").
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.measure.stats import ALPHA, Shift, quartiles, shift, summarize
from harness.results import store
from harness.spec import CASE_FIELDS

# The suite is a label, not part of what was measured: renamed suites still compare.
MATCH_FIELDS = tuple(field for field in CASE_FIELDS if field != "suite")

REGRESSION_VERDICTS = ("regression", "now wrong", "now fails")
# Every verdict, in the order of the count line.
VERDICTS = ("regression", "now fails", "now wrong", "contended", "noise", "faster", "same",
            "fixed", "still wrong", "not run", "only in base", "only in new")
UNMATCHED_VERDICTS = ("only in base", "only in new")

COLUMNS = (*CASE_FIELDS, "base_status", "new_status", "base_ms", "base_iqr_ms",
           "new_ms", "new_iqr_ms", "ratio", "ratio_low", "ratio_high", "p_value", "verdict")

def single_process(frame: pd.DataFrame) -> bool:
    """Whether a run's timed cells each come from one process (no --repeat)."""
    timed = frame[frame["status"] == "ok"]
    return len(timed) > 0 and not (timed["repeats"].fillna(1) > 1).any()


def is_regression(verdict: str) -> bool:
    """Whether a verdict should fail a regression gate (`attnbench compare` exits 1)."""
    return verdict in REGRESSION_VERDICTS


def compare(base: pd.DataFrame, new: pd.DataFrame, threshold_pct: float = 5.0) -> pd.DataFrame:
    """One row per cell of either run (frames as `harness.results.store.load` returns them),
    matched on MATCH_FIELDS: the Case fields, the suite's name aside. Cells in one run
    alone get the verdict `only in base` / `only in new`; `unmatched` selects them."""
    base_cells, new_cells = _cells(base), _cells(new)
    rows = [_row(b, new_cells.get(key), threshold_pct) for key, b in base_cells.items()]
    rows += [_row(None, n, threshold_pct) for key, n in new_cells.items()
             if key not in base_cells]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def unmatched(base: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The cells present in just one of the two runs."""
    result = compare(base, new)
    return result[result["verdict"].isin(UNMATCHED_VERDICTS)].reset_index(drop=True)


def _cells(frame: pd.DataFrame) -> dict[tuple, dict]:
    """Rows by match key; where a key repeats (several folders loaded at once), the
    last row wins, as in store.latest_rows."""
    return {_key(row): row for row in frame.to_dict("records")}


def _key(row: dict) -> tuple:
    return tuple(store.field_text(row.get(field)) for field in MATCH_FIELDS)


def _row(base: dict | None, new: dict | None, threshold_pct: float) -> dict:
    either = base if base is not None else new
    change = None
    base_ms, new_ms = _median(base), _median(new)
    ratio = new_ms / base_ms if base_ms > 0 and math.isfinite(new_ms) else math.nan
    if base is None:
        verdict = "only in new"
    elif new is None:
        verdict = "only in base"
    else:
        change = _shift(base, new)
        verdict = _verdict(base, new, ratio, threshold_pct, change)
    return {**{field: either.get(field) for field in CASE_FIELDS},
            "base_status": _get(base, "status"), "new_status": _get(new, "status"),
            "base_ms": base_ms, "base_iqr_ms": _number(_get(base, "iqr_ms")),
            "new_ms": new_ms, "new_iqr_ms": _number(_get(new, "iqr_ms")),
            "ratio": ratio, **_interval(change), "verdict": verdict}


def _verdict(base: dict, new: dict, ratio: float, threshold_pct: float,
             change: Shift | None) -> str:
    """Whether it runs, then whether it is right, then (only for two right runs) time."""
    base_ok, new_ok = base.get("status") == "ok", new.get("status") == "ok"
    if not base_ok and not new_ok:
        return "not run"
    if not new_ok:
        return "now fails"
    if _is_false(new.get("correct")):
        # Wrong now; a regression unless base was known wrong or did not run.
        return "now wrong" if base_ok and not _is_false(base.get("correct")) else "still wrong"
    if not base_ok or _is_false(base.get("correct")):
        return "fixed"
    if _is_true(base.get("contended")) or _is_true(new.get("contended")):
        return "contended"
    if not math.isfinite(ratio):
        return "not run"              # "ok" without a time: nothing to compare
    bound = 1 + threshold_pct / 100
    if abs(math.log(ratio)) <= math.log(bound):
        return "same"
    if change is not None:
        decisive = change.p_value < ALPHA
        past = 1 + max(threshold_pct, _spread(base), _spread(new)) / 100
        if ratio > bound:
            return "regression" if decisive and change.ratio_low > past else "noise"
        return "faster" if decisive and change.ratio_high < 1 / past else "noise"
    (base_q1, base_q3), (new_q1, new_q3) = _quartiles(base), _quartiles(new)
    if ratio > bound:
        return "regression" if new_q1 > base_q3 else "noise"
    return "faster" if new_q3 < base_q1 else "noise"


def _shift(base: dict, new: dict) -> Shift | None:
    """The rank test and the ratio's interval, where both runs ran the cell and
    kept its samples."""
    base_samples, new_samples = _samples(base), _samples(new)
    if base.get("status") != "ok" or new.get("status") != "ok" \
            or base_samples is None or new_samples is None:
        return None
    return shift(base_samples, new_samples, base_groups=base.get("process_n_samples"),
                 new_groups=new.get("process_n_samples"))


def _spread(row: dict) -> float:
    """The cell's spread between its own processes in %, 0 without --repeat: a
    second run of the same code lands anywhere in that band."""
    spread = _number(row.get("between_spread_pct"))
    return 0.0 if math.isnan(spread) else spread


def _interval(change: Shift | None) -> dict:
    if change is None:
        return {"ratio_low": math.nan, "ratio_high": math.nan, "p_value": math.nan}
    return {"ratio_low": change.ratio_low, "ratio_high": change.ratio_high,
            "p_value": change.p_value}


def _quartiles(row: dict) -> tuple[float, float]:
    """q1 and q3 of the raw samples when the row kept them (results.jsonl does),
    else the median ∓ IQR/2 (results.csv does not keep samples)."""
    samples = _samples(row)
    if samples is not None:
        return quartiles(samples)
    half = _number(row.get("iqr_ms")) / 2
    half = 0.0 if math.isnan(half) else half
    median = _median(row)
    return median - half, median + half


def _samples(row: dict | None) -> np.ndarray | None:
    samples = _get(row, "samples_ms")
    if isinstance(samples, (list, tuple, np.ndarray)) and len(samples):
        return np.asarray(samples, dtype=np.float64)
    return None


def _median(row: dict | None) -> float:
    median = _number(_get(row, "median_ms"))
    if math.isnan(median) and (samples := _samples(row)) is not None:
        median = summarize(samples)["median_ms"]
    return median


def _get(row: dict | None, field: str):
    return None if row is None else row.get(field)


def _number(value) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _is_true(flag) -> bool:
    return isinstance(flag, (bool, np.bool_)) and bool(flag)


def _is_false(correct) -> bool:
    """Known wrong: False, not None/NaN (not checked)."""
    return isinstance(correct, (bool, np.bool_)) and not correct
