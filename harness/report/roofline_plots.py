"""Per device: the roofline (every cell a point at its arithmetic intensity and
TFLOP/s, under the roof it was measured against, filled when compute-bound and hollow
when memory-bound) and the energy a cell's FLOPs cost (TFLOP per joule). Drawn by
plots.py beside the per-workload figures."""
from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.spec import DTYPES, WORKLOADS

MARKERS = dict(zip(WORKLOADS, ("o", "s", "^", "D")))


def slug(device: str) -> str:
    """A device's name in a figure name (a file name)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()[:60]


def _points(frame: pd.DataFrame, device: str) -> pd.DataFrame:
    rows = frame[(frame["device"] == device) & (frame["status"] == "ok")]
    for column in ("arith_intensity", "tflops"):
        if column not in rows:
            return rows.iloc[:0]
        rows = rows[rows[column].notna() & (rows[column] > 0)]
    return rows


def devices_with_points(frame: pd.DataFrame) -> list[str]:
    return [d for d in dict.fromkeys(frame["device"]) if len(_points(frame, d))]


def roofline(frame: pd.DataFrame, device: str, _=None):
    """One panel per dtype: log-log intensity (FLOPs a byte) against TFLOP/s."""
    rows = _points(frame, device)
    dtypes = [d for d in DTYPES if (rows["dtype"] == d).any()]
    width = 5.0 * len(dtypes) + 1.8                     # and a legend on the right
    fig, axes = plt.subplots(1, len(dtypes), figsize=(width, 4.4), squeeze=False)
    fig.subplots_adjust(left=0.75 / width, right=1 - 2.0 / width, bottom=0.12, top=0.86,
                        wspace=0.25)
    fig.suptitle(f"roofline: {device}")
    labels = list(dict.fromkeys(rows["label"]))
    colors = dict(zip(labels, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for ax, dtype in zip(axes[0], dtypes):
        here = rows[rows["dtype"] == dtype]
        _roof(ax, here)
        for (label, workload), points in here.groupby(["label", "workload"], sort=False):
            compute = points["bound"] == "compute"
            for mask, face in ((compute, colors[label]), (~compute, "none")):
                if mask.any():
                    ax.scatter(points.loc[mask, "arith_intensity"], points.loc[mask, "tflops"],
                               marker=MARKERS.get(workload, "o"), s=22, facecolors=face,
                               edgecolors=colors[label], linewidths=1.0)
        ax.set(xscale="log", yscale="log", title=dtype, ylabel="TFLOP/s",
               xlabel="FLOPs a byte (flops / bytes_moved)")
        ax.grid(True, which="major", alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=6, loc="upper left")            # this dtype's roof
    _key(fig, labels, colors, dict.fromkeys(rows["workload"]))
    return fig


def _key(fig, labels: list[str], colors: dict, workloads) -> None:
    """One legend for every panel, right of them: colour a label, marker a workload."""
    handles = [plt.Line2D([], [], color=colors[label], marker="o", linestyle="none",
                          label=label) for label in labels]
    handles += [plt.Line2D([], [], color="gray", marker=MARKERS.get(w, "o"), linestyle="none",
                           label=w) for w in workloads]
    handles.append(plt.Line2D([], [], color="gray", marker="o", markerfacecolor="none",
                              linestyle="none", label="hollow: memory-bound"))
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)


def _roof(ax, rows: pd.DataFrame) -> None:
    """The roof the rows were measured against: bandwidth times intensity up to the
    ridge, then the dtype's peak; nothing where the device has no roof."""
    peak, bandwidth = (rows[c].max() if c in rows else np.nan
                       for c in ("peak_tflops", "peak_gb_s"))
    if not (peak > 0 and bandwidth > 0):
        sources = rows["roof_source"].dropna() if "roof_source" in rows else []
        why = sources.iloc[0] if len(sources) else "unknown"
        ax.text(0.02, 0.97, f"no roof: {why}", transform=ax.transAxes, fontsize=6, va="top",
                wrap=True)
        return
    ridge = peak * 1e3 / bandwidth
    low = min(rows["arith_intensity"].min(), ridge) / 4
    high = max(rows["arith_intensity"].max(), ridge) * 4
    x = np.geomspace(low, high, 200)
    ax.plot(x, np.minimum(peak, x * bandwidth / 1e3), color="black", linewidth=1,
            label=f"roof: {peak:.3g} TFLOP/s, {bandwidth:.4g} GB/s")
    ax.axvline(ridge, linestyle=":", color="gray", linewidth=1,
               label=f"ridge {ridge:.3g} F/B")


def energy(frame: pd.DataFrame, device: str, _=None):
    """TFLOP per joule of every cell with an energy figure, best first."""
    rows = frame[(frame["device"] == device) & (frame["status"] == "ok")]
    rows = rows[rows["tflop_per_j"].notna()].sort_values("tflop_per_j", ascending=False)[:40]
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.22 * len(rows)))
    names = [f"{r['label']} {r['workload']} {r['mode']} {r['dtype']} N{r['seq_len']}"
             for r in rows.to_dict("records")]
    ax.barh(range(len(rows)), rows["tflop_per_j"], color="tab:green")
    ax.set_yticks(range(len(rows)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("TFLOP per joule (FLOPs over the energy of the timed samples)")
    ax.set_title(f"energy: {device}")
    fig.tight_layout()
    return fig


def has_energy(frame: pd.DataFrame, device: str) -> bool:
    return "tflop_per_j" in frame and bool(
        frame.loc[frame["device"] == device, "tflop_per_j"].notna().any())
