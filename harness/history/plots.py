"""Trend figures: per workload, a panel per cell family (backend and variant, and
the device where the runs span several), a line per cell (mode, dtype, shape)
across the runs, steps marked."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt

from harness.history.series import Run, Series
from harness.history.steps import Step
from harness.report.plots import svg

SLOWER, FASTER = "#c0392b", "#1e8449"


def run_labels(runs: list[Run]) -> list[str]:
    """A tick label per run: its date, and the versions that differ between runs."""
    names = sorted({n for r in runs for n in r.versions})
    varying = [n for n in names if len({r.versions.get(n) for r in runs}) > 1]
    labels = []
    for run in runs:
        said = [str(run.versions.get(n, "-")).removeprefix(f"{n} ").split(",")[0]
                for n in varying]
        labels.append("\n".join([run.started_at.strftime("%m-%d %H:%M"), *said]))
    return labels


def trend_figures(series: list[Series], steps: list[Step], runs: list[Run]) -> dict[str, str]:
    """workload -> inline SVG."""
    order = {id(r): i for i, r in enumerate(runs)}      # two runs may share a run_id
    labels = run_labels(runs)
    figures = {}
    for workload in dict.fromkeys(s.cell["workload"] for s in series):
        mine = [s for s in series if s.cell["workload"] == workload]
        families = {}
        several = len({s.cell["device_model"] for s in mine}) > 1
        for s in mine:
            name = f"{s.cell['backend']} {s.cell['variant']}"
            name += f"\non {s.cell['device_model']}" if several else ""
            families.setdefault(name, []).append(s)
        figures[workload] = svg(_figure(families, steps, order, labels))
    return figures


def _figure(families: dict, steps: list[Step], order: dict, labels: list):
    cols = min(3, len(families))
    rows = math.ceil(len(families) / cols)
    longest = max(len(members) for members in families.values())
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, (4.0 + 0.13 * longest) * rows),
                             squeeze=False)
    marked = {(id(s.series), s.index): s for s in steps}
    for ax, (family, members) in zip(axes.flat, families.items()):
        for s in members:
            x = [order[id(r)] for r in s.runs]
            line, = ax.plot(x, s.medians, marker="o", markersize=3, linewidth=1,
                            label=_line_name(s))
            for i, _ in enumerate(s.runs):
                step = marked.get((id(s), i))
                if step:
                    ax.plot(x[i], s.medians[i], marker="^" if step.size_pct > 0 else "v",
                            markersize=9, color=SLOWER if step.size_pct > 0 else FASTER,
                            fillstyle="none" if step.provisional else "full", zorder=5)
        ax.set_title(family, fontsize=9)
        ax.set_yscale("log")
        ax.set_ylabel("median ms per step")
        ax.set_xticks(range(len(labels)), labels, fontsize=6)
        ax.grid(alpha=0.3)
        # Below the panel: inside, a legend of a dozen cells hides the lines.
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
                  frameon=False)
    for ax in list(axes.flat)[len(families):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def _line_name(s: Series) -> str:
    """The cell's label less what the panel and page already say (workload, backend,
    variant, device)."""
    c = s.cell
    head = f"{c['workload']} {c['backend']} {c['variant']} "
    return s.label.removeprefix(head).removesuffix(f" on {c['device_model']}")
