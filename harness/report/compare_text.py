"""`attnbench compare` in words: the rule it decides by, the counts, what moved
every cell alike, and one line per cell (harness/report/compare.py decides)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.measure.stats import ALPHA, RATIO_CONFIDENCE
from harness.report.compare import VERDICTS, is_regression
from harness.report.tables import shape_text

RULE = """\
A cell is a **regression** when its new median is more than {pct:g}% slower than the
base median *and* the slowdown is decisive: with both runs' raw samples, a Mann-Whitney
U test rejects "same distribution" at p < {alpha:g} and the whole {conf:.0%} bootstrap
interval of the new/base median ratio lies above {slower:.3f}x (shown as
[low, high]; for runs made with `--repeat K`, the medians are those of the process
medians, the interval resamples processes first, and it must also clear the cell's
spread between its own processes in either run, `between_spread_pct`, where that is
wider than {pct:g}%); without samples, the interquartile ranges do not overlap (new q1 > base
q3, from median ± IQR/2). **faster** is the mirror image (below {faster:.3f}x). A change
past the threshold that is not decisive is **noise**; one within it is **same**. A cell that ran before and now fails
(error, oom, timeout) or now computes the wrong thing counts as a regression whatever
its time; **fixed** ran wrong or not at all before and runs right now. A cell timed
while other processes used the machine in either run is **contended**: never called a
regression or an improvement, whatever its ratio."""

ONE_PROCESS = """\
{runs}: one process per cell, so how far separate processes differ is not in these
intervals (on a 2-core VM the same code read up to 1.7x apart between processes);
run both with `attnbench run --repeat 3` for verdicts that hold across processes."""



def counts_line(result: pd.DataFrame) -> str:
    """'2 regressions, 1 faster, 10 same': every verdict present, in VERDICTS order."""
    counts = result["verdict"].value_counts()
    parts = [f"{counts[v]} {v}{'s' if v == 'regression' and counts[v] != 1 else ''}"
             for v in VERDICTS if counts.get(v, 0)]
    return ", ".join(parts) or "no cells"


def shared_shift_line(result: pd.DataFrame) -> str:
    """The median new/base ratio over every cell both runs timed: what moved every
    cell alike (the machine between the runs, or a change that touches every cell)."""
    ratios = result["ratio"][result["verdict"].isin(("regression", "noise", "faster", "same"))]
    ratios = ratios[np.isfinite(ratios.astype(float))]
    if len(ratios) < 2:
        return ""
    low, high = np.percentile(ratios, [25, 75])
    return (f"Across the {len(ratios)} cells both runs timed, the median ratio is "
            f"{np.median(ratios):.2f}x (quartiles {low:.2f}-{high:.2f}): a shift every cell "
            f"shares is the machine between the runs, or a change that touches every cell.")


def markdown(result: pd.DataFrame, threshold_pct: float, base_name: str, new_name: str,
             one_process: tuple[str, ...] = ()) -> str:
    """The comparison as markdown: the rule, the counts, then one line per cell,
    regressions first, the rest slowest-first (ratio descending). `one_process`:
    the runs timed in one process per cell, which the text warns about."""
    bound = 1 + threshold_pct / 100
    lines = [f"# attnbench compare: {base_name} → {new_name}", "",
             RULE.format(pct=threshold_pct, slower=bound, faster=1 / bound, alpha=ALPHA,
                         conf=RATIO_CONFIDENCE), "",
             counts_line(result), ""]
    if (line := shared_shift_line(result)):
        lines[-1:-1] = [line, ""]
    if one_process:
        lines[-1:-1] = [ONE_PROCESS.format(runs=" and ".join(one_process)), ""]
    if len(result):
        lines.append(_table(result).to_markdown(index=False))
    return "\n".join(lines) + "\n"


def _table(result: pd.DataFrame) -> pd.DataFrame:
    ordered = (result.assign(_later=~result["verdict"].map(is_regression))
               .sort_values(["_later", "ratio"], ascending=[True, False],
                            na_position="last", kind="stable"))
    table = pd.DataFrame({
        "backend": ordered["backend"] + " " + ordered["variant"],
        "workload": ordered["workload"], "mode": ordered["mode"], "dtype": ordered["dtype"],
    })
    if ordered["device"].nunique() > 1:          # otherwise the same word on every line
        table["device"] = ordered["device"]
    records = ordered.to_dict("records")
    table["B·N·H·D"] = [_shape(r) for r in records]
    table["causal"] = ["yes" if r["causal"] else "no" for r in records]
    table["base ms"] = [_time(r, "base") for r in records]
    table["new ms"] = [_time(r, "new") for r in records]
    table["ratio"] = [_ratio_text(r) for r in records]
    table["verdict"] = [f"**{v}**" if is_regression(v) else v for v in ordered["verdict"]]
    return table


def _ratio_text(row: dict) -> str:
    """'1.23x [1.20, 1.26]': the ratio and, with samples, its interval."""
    if math.isnan(row["ratio"]):
        return ""
    low, high = row["ratio_low"], row["ratio_high"]
    interval = "" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]"
    return f"{row['ratio']:.2f}x{interval}"


def _shape(row: dict) -> str:
    shape = shape_text(row)
    return shape + (f" ×{row['layers']}" if row["workload"] == "transformer" else "")


def _time(row: dict, side: str) -> str:
    """'1.234 ± 0.050' for a cell that ran; its status (oom, error...) for one that did not."""
    status, ms, iqr = row[f"{side}_status"], row[f"{side}_ms"], row[f"{side}_iqr_ms"]
    if status is not None and status != "ok":
        return str(status)
    if math.isnan(ms):
        return ""
    return f"{ms:.3f}" + ("" if math.isnan(iqr) else f" ± {iqr:.3f}")
