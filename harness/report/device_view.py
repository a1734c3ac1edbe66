"""The device's side of a run, as tables: each cell on the roofline (% of the roof's
bandwidth and FLOP/s, its arithmetic intensity and the roof that bounds it) and its
energy (TFLOP per joule, watts). Marks as the other tables' (tables.py)."""
from __future__ import annotations

import pandas as pd

THROTTLED = "↓"           # after any timing of a row whose GPU was throttled while timed
TABLES = {
    "roofline": "FLOPs a byte (arithmetic intensity), and the share of the roof it is "
                "bound by: % of peak bandwidth where memory-bound (mem), of peak FLOP/s "
                "where compute-bound (flop); docs/measurement.md, \"The roofline\"",
    "energy": "TFLOP per joule, and the average watts over the timed samples (NVML on "
              "GPUs, RAPL on CPUs where readable)",
}


def _number(row, column: str):
    value = row.get(column)
    return None if value is None or pd.isna(value) else value


def roofline_text(row) -> str:
    """'3.1 F/B · mem 42%' (or 'flop 61%'); the intensity alone without a roof."""
    intensity = _number(row, "arith_intensity")
    if row["status"] != "ok" or intensity is None:
        return "" if row["status"] == "ok" else row["status"]
    text = f"{intensity:.3g} F/B"
    bound = row.get("bound")
    pct = _number(row, "pct_peak_bw" if bound == "memory" else "pct_peak")
    if bound in ("memory", "compute") and pct is not None:
        text += f" · {'mem' if bound == 'memory' else 'flop'} {pct:.0f}%"
    return text


def energy_text(row) -> str:
    """'0.52 TFLOP/J · 410 W'; empty without an energy figure."""
    if row["status"] != "ok":
        return row["status"]
    per_joule, watts = _number(row, "tflop_per_j"), _number(row, "avg_watts")
    if per_joule is None:
        return ""
    return f"{per_joule:.3g} TFLOP/J" + (f" · {watts:.0f} W" if watts is not None else "")


def has_energy(frame: pd.DataFrame) -> bool:
    return "tflop_per_j" in frame and bool(frame["tflop_per_j"].notna().any())


def is_throttled(frame: pd.DataFrame) -> pd.Series:
    """Rows whose GPU slowed down while they were timed (harness/measure/energy.py)."""
    if "throttled" not in frame:
        return pd.Series(False, index=frame.index)
    return (frame["status"] == "ok") & (frame["throttled"] == True)  # noqa: E712
