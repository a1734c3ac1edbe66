"""One row per cell from the K rows `attnbench run --repeat K` writes for it, one
per fresh worker process.

Two processes running the same code differ more than two samples of one process
do (on a 2-core VM, same-code reruns were up to 1.7x apart), so the cell's figure
is the median of its process medians, and `between_spread_pct` says how far apart
they were. The raw samples are pooled in samples_ms, with process_n_samples
saying which came from which, so that `compare` can resample processes before
samples (harness/measure/stats.py, `shift`). docs/measurement.md, "Comparing runs".
"""
from __future__ import annotations

import numpy as np

from harness.measure.stats import median_ci, summarize


def merge(rows: list[dict]) -> dict:
    """The cell's row from its processes' rows (one per repeat index). A single
    row is returned as it is. A process that did not end ok makes the cell's row
    that process's, saying which of the K it was."""
    if len(rows) == 1:
        return rows[0]
    ordered = sorted(rows, key=lambda r: r.get("repeat") or 0)
    failed = [r for r in ordered if r.get("status") != "ok"]
    if failed:
        return _failed(ordered, failed[0], every=len(failed) == len(ordered))
    return _pooled(ordered)


def _failed(ordered: list[dict], first: dict, every: bool) -> dict:
    reason = first.get("reason") or first.get("status")
    if not every:
        reason = f"process {(first.get('repeat') or 0) + 1} of {len(ordered)}: {reason}"
    return {**first, "reason": reason, "repeat": None, "repeats": len(ordered)}


def _pooled(ordered: list[dict]) -> dict:
    medians = [float(r["median_ms"]) for r in ordered]
    median = float(np.median(medians))
    last = ordered[-1]
    samples = [s for r in ordered for s in (r.get("samples_ms") or [])]
    low, high = median_ci(np.asarray(medians))
    merged = {**last, **(summarize(samples) if samples else {}),
              "median_ms": median, "ci_low_ms": low, "ci_high_ms": high,
              "samples_ms": samples,
              "process_medians_ms": medians,
              "process_n_samples": [len(r.get("samples_ms") or []) for r in ordered],
              "between_spread_pct": 100 * (max(medians) - min(medians)) / median,
              "first_call_ms": _median_of(ordered, "first_call_ms"),
              "peak_mem_bytes": _max_of(ordered, "peak_mem_bytes"),
              "nvml_mem_bytes": _max_of(ordered, "nvml_mem_bytes"),
              "others_cpu_share": _max_of(ordered, "others_cpu_share"),
              "contended": any(r.get("contended") is True for r in ordered),
              **_worst_check(ordered),
              "repeat": None, "repeats": len(ordered)}
    for column in ("tflops", "pct_peak", "gb_s"):   # at the merged median, not the last one's
        if last.get(column) is not None and last.get("median_ms"):
            merged[column] = last[column] * last["median_ms"] / median
    return merged


def _worst_check(ordered: list[dict]) -> dict:
    """The correctness columns of the process whose outputs were furthest off (a
    wrong process makes the cell wrong)."""
    columns = ("correct", "max_abs_err", "err_ratio", "err_tensor", "check_note")
    wrong = [r for r in ordered if r.get("correct") is False]
    if wrong:
        worst = wrong[0]
    else:
        worst = max(ordered, key=lambda r: r.get("err_ratio") or 0.0)
    return {c: worst.get(c) for c in columns}


def _median_of(rows: list[dict], column: str):
    values = [r[column] for r in rows if r.get(column) is not None]
    return float(np.median(values)) if values else None


def _max_of(rows: list[dict], column: str):
    values = [r[column] for r in rows if r.get(column) is not None]
    return max(values) if values else None
