"""Tables of a run: the console summary and report.md (one table per workload)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table

from harness.measure import devices
from harness.report import tables, time_spent
from harness.report.tables import TABLES, caption, split_constant, versions_text
from harness.results import store
from harness.spec import WORKLOADS, Case
from harness.spec.errors import UserError

CONVENTIONS = """\
Conventions. Latency: median of per-call samples (IQR beside it), after a
separately timed first call (tracing and compiling) and a warm-up; in a run made
with --repeat K, the median of its K processes' medians, with [the spread between
them] after it. FLOPs: attention
core 4·B·H·N²·D (causal: half), projections 8·B·N·d² (grouped heads: 4·B·N·d·(d + kv·D)),
MLP 16·B·N·d²; train = 3.5x
the core and 3x the matmuls; softmax, LayerNorm and GELU not counted. Peak memory:
what one step adds above the resident weights and inputs (CPU: resident high-water
mark). Error: max |backend − float64 reference| over the output (and every
gradient in train mode); ratio: that error over the error of the reference
computed in the cell's own dtype; correct: ratio ≤ 2 for every tensor, and the
cell's configuration (backend, variant, workload, mode, dtype, mask) passes the
same check on small odd shapes (the run's check/ folder). Cells whose full
reference would pass 2 GiB, and forward cells of 256 positions or more, are judged on 64 sampled query rows and every gradient
of those rows' loss (check_rows; docs/correctness.md); "yes (config)": the cell's
own check could not run and that configuration check alone judges it. Marks: ✗ computes
the wrong thing, ‡ timed while others used the machine, ↓ its GPU throttled while
timed (a slowing clock-event reason, or the SM clock down 5 %). Roofline: FLOPs a byte,
and % of the roof that bounds the cell (a GPU's datasheet; a CPU's own, measured by
`attnbench env --calibrate`)."""

_SHAPE = ["batch", "q_len", "seq_len", "heads", "kv_heads", "head_dim", "causal", "window",
          "lengths", "layers"]


def _shown(rows: pd.DataFrame, column: str) -> bool:
    """The newer axes only where a row leaves their default: fewer queries, grouped
    heads, a window, a padded batch."""
    if column in ("q_len", "kv_heads"):
        other = rows["seq_len" if column == "q_len" else "heads"]
        return bool((rows[column].notna() & (rows[column] != other)).any())
    if column == "window":
        return bool((rows["window"].fillna(0) > 0).any())
    if column == "lengths":
        return "lengths" in rows and bool((rows["lengths"].fillna("") != "").any())
    return True


def _mb(value) -> str:
    return "" if pd.isna(value) else f"{value / 2**20:,.1f}"


def _num(value, fmt: str) -> str:
    return "" if value is None or pd.isna(value) else format(value, fmt)


def _verdict(correct, status: str, judged_by) -> str:
    if status != "ok":
        return ""
    if correct is None or pd.isna(correct):
        return "not checked"
    if not correct:
        return "NO"
    # Its own check could not run: its configuration passed the gate.
    return "yes (config)" if judged_by == "config" else "yes"


def _judged_by(rows: pd.DataFrame):
    return rows["judged_by"] if "judged_by" in rows else [None] * len(rows)


BUSY_NOTE = ("**{n} cells were timed while other processes used the machine** (contended, "
             "marked ‡ in the tables): their times are not comparable with the others'.")


def busy_count(frame: pd.DataFrame) -> int:
    """Cells timed while others used the machine (docs/measurement.md, "Contention")."""
    return int(tables.is_contended(frame).sum())


def wrong(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that ran but compute the wrong thing (their own check or the gate)."""
    return frame[(frame["status"] == "ok") & (frame["correct"] == False)]  # noqa: E712


def table(frame: pd.DataFrame, workload: str) -> pd.DataFrame:
    """The readable table of one workload, sorted so backends sit side by side."""
    rows = frame[frame["workload"] == workload]
    if workload != "transformer":
        rows = rows.drop(columns=["layers"])
    shape = [c for c in _SHAPE if c in rows and _shown(rows, c)]
    rows = rows.sort_values(["mode", "dtype", *shape, "backend", "variant"])
    out = pd.DataFrame({
        "backend": rows["backend"], "variant": rows["variant"], "mode": rows["mode"],
        "dtype": rows["dtype"], "device": rows["device"],
        **{c: rows[c] for c in shape},
        "median ms": [_num(v, ".3f") for v in rows["median_ms"]],
        "IQR ms": [_num(v, ".3f") for v in rows["iqr_ms"]],
        "first call ms": [_num(v, ".0f") for v in rows["first_call_ms"]],
        "TFLOP/s": [_num(v, ".3f") for v in rows["tflops"]],
        "% peak": [_num(v, ".1f") for v in rows["pct_peak"]],
        "peak MB": [_mb(v) for v in rows["peak_mem_bytes"]],
        "max abs err": [_num(v, ".1e") for v in rows["max_abs_err"]],
        "err ratio": [_num(v, ".2f") for v in rows["err_ratio"]],
        "correct": [_verdict(v, s, j) for v, s, j in
                    zip(rows["correct"], rows["status"], _judged_by(rows))],
        "status": [s if s == "ok" else f"{s}: {r}" for s, r in zip(rows["status"], rows["reason"])],
    })
    return out.reset_index(drop=True)


def write_markdown(frame: pd.DataFrame, path: str | Path, envs: list[dict] | dict | None = None,
                   pivots: dict | None = None) -> None:
    """report.md: the runs' environment, the wrong rows first, then per workload
    its side-by-side tables (`pivots`, see tables.py) and every cell in full."""
    envs = [envs] if isinstance(envs, dict) else (envs or [])
    runs = ", ".join(e.get("run_id", "") for e in envs)
    lines = [f"# attnbench {'run' if len(envs) < 2 else 'runs'} {runs}".rstrip(), ""]
    for env in envs:
        lines += [f"Suite `{env.get('suite', '')}` on {env.get('host', '')}: "
                  f"{env.get('cpu', '')}, {env.get('threads', '')} threads"
                  + "".join(f", {g.get('name')}" for g in env.get("gpus") or []) + "; "
                  f"{versions_text(env)}.",
                  ""]
    lines += [CONVENTIONS, ""]
    bad = wrong(frame)
    if len(bad):
        lines += [f"**{len(bad)} rows compute the wrong thing** (correct = NO below): their "
                  f"times are not comparable with the others'.", ""]
        lines += [f"- {name}: {why}" for name, why in wrong_reasons(bad)] + [""]
    if busy := busy_count(frame):
        lines += [BUSY_NOTE.format(n=busy), ""]
    for workload in WORKLOADS:
        if not (frame["workload"] == workload).any():
            continue
        lines += [f"## {workload}", ""]
        for name, pivot in (pivots or {}).get(workload, {}).items():
            shown, fixed = split_constant(pivot)
            lines += [f"### {name.replace('_', ' ')}: {TABLES[name]}", ""]
            lines += [f"All rows: {caption(fixed)}.", ""] if fixed else []
            lines += [shown.to_markdown(index=False), ""]
        lines += ["### every cell" if pivots else "", "",
                  table(frame, workload).to_markdown(index=False), ""]
    for env in envs:
        lines += time_spent.markdown(frame, env)
    Path(path).write_text("\n".join(lines))


def write_report(folders: list[str | Path], out: str | Path,
                 baseline: str | None = None) -> Path:
    """Everything a report holds, from one or more run folders (any machines):
    report.md, report.csv (every cell, derived columns included), tables/*.csv,
    plots/*.svg and the self-contained report.html. Returns the page's path."""
    from harness.report import page  # matplotlib only when a report is made
    from harness.report import plots
    out = Path(out)
    frame = store.load(*folders)
    envs = [store.read_env(f) for f in folders]
    cells = tables.prepare(frame)
    baseline = baseline or tables.default_baseline(cells)
    if baseline and not (cells["label"] == baseline).any():
        raise UserError(f"baseline {baseline!r} is in none of these runs; they hold "
                               f"{', '.join(dict.fromkeys(cells['label']))}")
    pivots = tables.all_tables(cells, baseline)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    write_markdown(frame, out / "report.md", envs, pivots)
    tables.long_table(cells, baseline).to_csv(out / "report.csv", index=False)
    for workload, named in pivots.items():
        for name, pivot in named.items():
            pivot.to_csv(out / "tables" / f"{workload}-{name}.csv", index=False)
    figures = plots.all_svgs(cells, jobs=devices.cpu_threads())
    for name, text in figures.items():
        (out / "plots" / f"{name}.svg").write_text(text)
    title = f"attnbench: {', '.join(e.get('run_id', '') for e in envs)}"
    html = page.render(title, pivots, figures, envs, list(wrong_reasons(wrong(frame))),
                       CONVENTIONS, baseline, busy_count(frame))
    (out / "report.html").write_text(html, encoding="utf-8")
    return out / "report.html"


def wrong_reasons(bad: pd.DataFrame):
    for row in bad.to_dict("records"):
        why = row.get("check_note")
        if not isinstance(why, str) or not why:
            why = f"{row.get('err_tensor')} err_ratio {row.get('err_ratio'):.3g}"
        yield Case.from_dict(row).name, why


def print_summary(frame: pd.DataFrame, console: Console) -> None:
    """One line per cell that ran, the essentials only, for the terminal."""
    shown = frame[frame["status"] != "unsupported"]
    summary = Table(title="attnbench", header_style="bold", box=box.SIMPLE_HEAD,
                    pad_edge=False)
    for name in ("workload", "backend", "mode", "dtype", "B·N·H·D", "causal"):
        summary.add_column(name, no_wrap=True)
    for name in ("median ms", "TFLOP/s", "peak MB", "err ratio", "status"):
        summary.add_column(name, justify="right", no_wrap=True)
    for _, r in shown.iterrows():
        ok = r["status"] == "ok"
        is_wrong = ok and r.get("correct") is not None and not pd.isna(r.get("correct")) \
            and not r.get("correct")
        summary.add_row(
            r["workload"], f"{r['backend']} {r['variant']}", r["mode"], r["dtype"],
            tables.shape_text(r),
            "yes" if r["causal"] else "no",
            _num(r["median_ms"], ".3f") if ok else "", _num(r["tflops"], ".3f") if ok else "",
            _mb(r["peak_mem_bytes"]) if ok else "",
            (_num(r["err_ratio"], ".2f") + (" [red]WRONG[/]" if is_wrong else "")) if ok else "",
            "ok" if ok else f"[red]{r['status']}[/]")
    print_whole(summary, console)
    bad = wrong(frame)
    if len(bad):
        console.print(f"[red]{len(bad)} rows compute the wrong thing[/] (WRONG above; "
                      f"why in report.md)")
    skipped = len(frame) - len(shown)
    if skipped:
        console.print(f"{skipped} cells unsupported on this machine (reasons in report.md)")
    sources = shown["roof_source"].dropna().astype(str) if "roof_source" in shown else []
    if any(s.startswith("not calibrated") for s in sources):
        console.print("% of peak is empty on this CPU until its roof is measured: `make "
                      "calibrate` (attnbench env --calibrate --threads N, as the run's threads)")


def on_screen(console: Console) -> bool:
    """True on a terminal; False for a file, a pipe or a CI log (FORCE_COLOR may
    color those, but nobody resizes them)."""
    isatty = getattr(console.file, "isatty", None)
    try:
        return console.is_terminal and bool(isatty and isatty())
    except ValueError:                  # a closed file
        return False


def print_whole(table: RenderableType, console: Console) -> None:
    """Print a table; into a log as wide as its widest row, since rich would fit it
    to 80 columns and cut every name ("tens…")."""
    if on_screen(console):
        console.print(table)
        return
    wide = Measurement.get(console, console.options.update_width(10_000), table).maximum
    width = console.width
    console.width = max(width, wide)
    try:
        console.print(table)
    finally:
        console.width = width
