"""report.html: one self-contained page (inline CSS and SVG, no script, nothing
fetched), readable offline and printable, holding every table and plot of a report
and the environment of every run in it."""
from __future__ import annotations

import html
from datetime import datetime, timezone

import pandas as pd

from harness.report.tables import (
    CONTENDED, TABLES, WRONG, caption, split_constant, versions_text,
)

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #1a1a1a; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
td.wrong { background: #fde2e2; color: #a40000; }
.figure svg { max-width: 100%; height: auto; }
.wide { overflow-x: auto; }
.note { color: #555; } .warn { color: #a40000; font-weight: bold; }
nav a { margin-right: 1em; }
@media print { h2 { break-before: page; } .figure, table { break-inside: avoid; }
               body { max-width: none; } .wide { overflow: visible; }
               table { font-size: 9px; } }
"""


def _table(frame: pd.DataFrame) -> str:
    """A DataFrame as an HTML table, cells of wrong rows shaded."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            text = "" if value is None or (isinstance(value, float) and pd.isna(value)) \
                else str(value)
            wrong = ' class="wrong"' if WRONG in text or text.startswith("NO") else ""
            cells.append(f"<td{wrong}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _environment(envs: list[dict]) -> str:
    rows = []
    for env in envs:
        gpus = ", ".join(g.get("name", "") for g in env.get("gpus") or []) or "none"
        versions = versions_text(env)
        rows.append({"run": env.get("run_id", ""), "suite": env.get("suite", ""),
                     "host": env.get("host", ""), "cpu": env.get("cpu", ""),
                     "threads": env.get("threads", ""), "gpus": gpus,
                     "versions": versions, "python": env.get("python", ""),
                     "commit": (env.get("git_commit") or "")[:12],
                     "started": env.get("started_at", ""),
                     "finished": env.get("finished_at") or env.get("interrupted_at", "")})
    return _table(pd.DataFrame(rows)) if rows else "<p>no env.json found</p>"


def render(title: str, tables: dict, figures: dict[str, str], envs: list[dict],
           wrong: list[tuple[str, str]], conventions: str, baseline: str | None,
           contended: int = 0) -> str:
    """tables: workload -> name -> DataFrame; figures: name -> inline SVG text;
    wrong: (cell, why) of every row that computes the wrong thing."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class='note'>Written {stamp} by attnbench report from {len(envs)} run(s)."
             f"{f' Speedups are against {html.escape(baseline)}.' if baseline else ''}</p>",
             "<nav>" + "".join(f"<a href='#{w}'>{w}</a>" for w in tables)
             + ("<a href='#roofline'>roofline</a>"
                if any(n.startswith("roofline-") for n in figures) else "")
             + "<a href='#environment'>environment</a></nav>"]
    if wrong:
        parts.append(f"<p class='warn' id='wrong'>{len(wrong)} rows compute the wrong thing "
                     f"(marked {WRONG}): their figures are not comparable.</p><ul>"
                     + "".join(f"<li>{html.escape(c)}: {html.escape(w)}</li>"
                               for c, w in wrong) + "</ul>")
    if contended:
        parts.append(f"<p class='warn'>{contended} cells were timed while other processes "
                     f"used the machine (contended, marked {CONTENDED}): their times are "
                     f"not comparable with the others'.</p>")
    parts.append(f"<p class='note'>{html.escape(conventions)}</p>")
    for workload, named in tables.items():
        parts.append(f"<section id='{workload}'><h2>{html.escape(workload)}</h2>")
        for name, frame in named.items():
            shown, fixed = split_constant(frame)
            rows = f" All rows: {html.escape(caption(fixed))}." if fixed else ""
            parts.append(f"<h3>{name.replace('_', ' ')}</h3><p class='note'>"
                         f"{html.escape(TABLES[name])}.{rows}</p>"
                         f"<div class='wide'>{_table(shown)}</div>")
        for fig_name, svg in figures.items():
            if fig_name.startswith(f"{workload}-"):
                parts.append(f"<div class='figure' id='plot-{fig_name}'>{svg}</div>")
        parts.append("</section>")
    device_figures = [n for n in figures if n.startswith(("roofline-", "energy-"))]
    if device_figures:
        parts.append("<section id='roofline'><h2>roofline and energy</h2>"
                     + "".join(f"<div class='figure' id='plot-{n}'>{figures[n]}</div>"
                               for n in device_figures) + "</section>")
    if "devices" in figures:
        parts.append("<section id='devices'><h2>devices</h2>"
                     f"<div class='figure' id='plot-devices'>{figures['devices']}</div>"
                     "</section>")
    parts.append(f"<section id='environment'><h2>environment</h2>{_environment(envs)}"
                 "</section>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
