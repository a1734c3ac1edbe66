"""What `attnbench history` writes: history.md, history.html (self-contained, like
report.html), steps.csv and series.csv."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from harness.history import analysis, plots
from harness.history.analysis import History
from harness.history.series import Run, Series
from harness.history.steps import Drift, Step
from harness.report.page import CSS, _table
from harness.report.tables import versions_text

LEGEND = ("The median of each run, oldest first; ▲ a slower step, ▼ a faster one, hollow "
          "while provisional (the cell's last run alone past it).")
MOVED = "Level changes without a step"
MOVED_NOTE = ("Between steps, the last runs sit at least the threshold away from the first "
              "ones, but no single boundary passed the rules: a slow drift, or a step too "
              "small against the runs' own noise (more runs either side can confirm it).")


def steps_frame(steps: list[Step]) -> pd.DataFrame:
    """One row per step, the largest first."""
    rows = [{"cell": s.series.label, "change %": round(s.size_pct, 1),
             "across the boundary %": round(s.jump_pct, 1),
             "ms before": round(s.level_before_ms, 4), "ms after": round(s.level_after_ms, 4),
             "last run before": s.before.run_id, "first run after": s.after.run_id,
             "what changed": "; ".join(s.changed) or "nothing recorded",
             "p": "" if s.p_value is None else f"{s.p_value:.1e}",
             "provisional": "its last run alone" if s.provisional else ""}
            for s in sorted(steps, key=lambda s: -abs(s.size_pct))]
    return pd.DataFrame(rows, columns=["cell", "change %", "across the boundary %",
                                       "ms before", "ms after", "last run before",
                                       "first run after", "what changed", "p", "provisional"])


def drifts_frame(drifts: list[Drift]) -> pd.DataFrame:
    return pd.DataFrame([{"cell": d.series.label, "change %": round(d.change_pct, 1),
                          "from run": d.series.runs[d.start].run_id,
                          "to run": d.series.runs[d.end].run_id,
                          "runs": d.end - d.start + 1} for d in drifts],
                        columns=["cell", "change %", "from run", "to run", "runs"])


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    return pd.DataFrame([{"run": r.run_id, "started": r.started_at.strftime("%Y-%m-%d %H:%M"),
                          "versions": versions_text({"versions": r.versions}),
                          "commit": (r.commit or "")[:10], "machine": r.machine,
                          "driver": r.drivers, "source": r.source} for r in runs])


def series_frame(series: list[Series]) -> pd.DataFrame:
    """Every point, long form: what a user plots for themselves."""
    return pd.DataFrame([{**s.cell, "run": r.run_id, "started": r.started_at.isoformat(),
                          "median_ms": m} for s in series for r, m in zip(s.runs, s.medians)])


def summary(h: History) -> str:
    slower = sum(s.size_pct > 0 for s in h.steps)
    short = analysis.too_short(h)
    return (f"{len(h.runs)} runs, {len(h.series)} cells, {len(h.steps)} steps of at least "
            f"{h.min_step_pct:g}% ({slower} slower, {len(h.steps) - slower} faster; "
            f"{sum(s.provisional for s in h.steps)} provisional), {len(h.drifts)} level "
            f"changes without a step"
            + (f"; {short} cells in fewer than {analysis.MIN_RUNS} runs, where no step can "
               f"be judged" if short else ""))


def write(h: History, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    steps, drifts, runs = steps_frame(h.steps), drifts_frame(h.drifts), runs_frame(h.runs)
    steps.to_csv(out / "steps.csv", index=False)
    series_frame(h.series).to_csv(out / "series.csv", index=False)
    md = ["# attnbench history", "", summary(h) + ".", "", "## Steps, largest first", "",
          steps.to_markdown(index=False) if len(steps) else "No steps.", "",
          f"## {MOVED}", "", MOVED_NOTE, "",
          drifts.to_markdown(index=False) if len(drifts) else "None.", "",
          "## Runs, oldest first", "", runs.to_markdown(index=False), ""]
    (out / "history.md").write_text("\n".join(md))
    figures = plots.trend_figures(h.series, h.steps, h.runs) if h.series else {}
    page = out / "history.html"
    page.write_text(_html(h, steps, drifts, runs, figures))
    return page


def _html(h: History, steps, drifts, runs, figures: dict[str, str]) -> str:
    parts = ["<h1>attnbench history</h1>",
             f"<p class='note'>{html.escape(summary(h))}. A step is a change of level that "
             f"holds over the runs after it; a lone noisy run is not one, nor is a slow "
             f"drift (docs/history.md).</p>",
             "<nav>" + "".join(f"<a href='#{html.escape(w)}'>{html.escape(w)}</a>"
                               for w in figures)
             + "<a href='#steps'>steps</a><a href='#runs'>runs</a></nav>"]
    for workload, svg in figures.items():
        parts.append(f"<section id='{html.escape(workload)}'><h2>{html.escape(workload)}</h2>"
                     f"<p class='note'>{LEGEND}</p><div class='figure'>{svg}</div></section>")
    parts += ["<section id='steps'><h2>steps, largest first</h2>",
              f"<div class='wide'>{_table(steps)}</div>" if len(steps) else "<p>No steps.</p>",
              f"<h3>{MOVED.lower()}</h3><p class='note'>{html.escape(MOVED_NOTE)}</p>",
              f"<div class='wide'>{_table(drifts)}</div>" if len(drifts) else "<p>None.</p>",
              "</section>"]
    parts.append(f"<section id='runs'><h2>runs, oldest first</h2>"
                 f"<div class='wide'>{_table(runs)}</div></section>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>attnbench history</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
