"""The report's plots (matplotlib, no display needed): for each workload and mode,
latency, peak memory and TFLOP/s against seq_len, one panel per dtype and one line
per backend and variant (and device, when runs span several); a device
comparison when they do; per device the roofline and the energy figures
(roofline_plots.py). Points of rows that compute the wrong thing are crossed
out in red, never drawn as if they were fair."""
from __future__ import annotations

import io
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import matplotlib

matplotlib.use("Agg")                       # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator  # noqa: E402

from harness.measure import devices  # noqa: E402
from harness.report import roofline_plots, tables
from harness.spec import DTYPES, WORKLOADS  # noqa: E402

SHAPE = ["batch", "heads", "head_dim", "causal", "layers", "kv_heads", "q_len", "window",
         "lengths"]
# Text stays text in the SVG (searchable, a third of the size); any sans font renders it.
plt.rcParams.update({"svg.fonttype": "none", "figure.dpi": 100, "font.size": 9,
                     # A report holds many figures at once; svg() closes each.
                     "figure.max_open_warning": 0})


def _series(rows: pd.DataFrame, several_devices: bool):
    """(name, points) per line: a label (and device, when the figure spans several)
    at one fixed shape, by seq_len. The shape goes into the name only where a label
    has several in the panel."""
    order = {label: i for i, label in enumerate(tables.label_order(rows))}
    if "q_len" in rows:              # every row (q_len = seq_len) is one line along seq_len
        rows = rows.assign(q_len=rows["q_len"].where(rows["q_len"] != rows["seq_len"], 0))
    rows = rows.assign(**{c: rows[c] if c in rows else 0 for c in SHAPE})
    groups = rows.groupby(["label", "device"], sort=False)
    for (label, device), group in sorted(groups, key=lambda g: order[g[0][0]]):
        shapes = list(group.groupby(SHAPE, sort=False, dropna=False))
        for shape, points in shapes:
            name = label + (f" @ {device}" if several_devices else "")
            if len(shapes) > 1:
                name += f" ({_shape_name(dict(zip(SHAPE, shape)))})"
            yield name, points.sort_values("seq_len")


def _shape_name(shape: dict) -> str:
    """B2 H8/2 D64 q1 w4096 len uniform:0.5 causal: what tells lines of one label apart."""
    kv, q_len, window = (shape.get(k) for k in ("kv_heads", "q_len", "window"))
    grouped = kv and kv == kv and kv != shape["heads"]            # kv == kv: not NaN
    heads = f"{shape['heads']}/{kv:g}" if grouped else f"{shape['heads']}"
    return " ".join([f"B{shape['batch']}", f"H{heads}", f"D{shape['head_dim']}"]
                    + ([f"q{q_len:g}"] if q_len and q_len == q_len else [])
                    + ([f"w{window:g}"] if window and window == window else [])
                    + ([f"len {shape['lengths']}"] if isinstance(shape.get("lengths"), str)
                       and shape["lengths"] else [])
                    + (["causal"] if shape["causal"] else []))


def _panels(frame: pd.DataFrame, title: str, ylabel: str):
    dtypes = [d for d in DTYPES if (frame["dtype"] == d).any()]
    width, height = 5.2 * len(dtypes), 3.8
    fig, axes = plt.subplots(1, len(dtypes), figsize=(width, height), squeeze=False,
                             sharey=False)
    # Margins in inches, for tick labels of up to 6 characters: tight_layout would
    # measure every label first, a third of a report's time.
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, bottom=0.5 / height,
                        top=1 - 0.65 / height, wspace=0.9 / 4.5)
    fig.suptitle(title)
    for ax, dtype in zip(axes[0], dtypes):
        ax.set_title(dtype)
        decode = (frame["mode"] == "decode").any()
        ax.set_xlabel("cache length (seq_len)" if decode else "seq_len")
        ax.set_ylabel(ylabel)
        _log_scale(ax, "x", 2)
        ax.grid(True, which="major", alpha=0.3)
    return fig, dict(zip(dtypes, axes[0]))


def _log_scale(ax, which: str = "y", base: int = 10) -> None:
    """A log axis ticked at 1, 2 and 5 times each power (powers alone in base 2),
    labelled in plain text ("0.2", "500", "1e+03"), without minor ticks: the
    default mathtext labels and minor ticks took two thirds of a report's time."""
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=base)
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(base=base, subs=(1.0, 2.0, 5.0) if base == 10
                                      else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(NullLocator())


def _lines(ax, rows: pd.DataFrame, column: str, several_devices: bool) -> None:
    wrong_drawn = False
    for name, points in _series(rows, several_devices):
        ok = points[points["status"] == "ok"]
        if ok.empty:
            continue
        ax.plot(ok["seq_len"], ok[column], marker="o", markersize=3, label=name)
        bad = ok[ok["wrong"]]
        if len(bad):
            ax.plot(bad["seq_len"], bad[column], linestyle="none", marker="x", color="red",
                    markersize=9, label=None if wrong_drawn else "✗ wrong (correct = false)")
            wrong_drawn = True


def _finish(fig, axes: dict) -> None:
    for ax in axes.values():
        if ax.get_lines():
            ax.legend(fontsize=7, loc="best")


def latency(frame: pd.DataFrame, workload: str, mode: str):
    rows = frame[(frame["workload"] == workload) & (frame["mode"] == mode)]
    fig, axes = _panels(rows, f"{workload} {mode}: latency", "median ms")
    for dtype, ax in axes.items():
        _log_scale(ax)
        _lines(ax, rows[rows["dtype"] == dtype], "median_ms", rows["device"].nunique() > 1)
    _finish(fig, axes)
    return fig


def memory(frame: pd.DataFrame, workload: str, mode: str):
    """Peak memory on log-log axes, with the analytic size of one B·H·N² score
    matrix: a line parallel to it grows as N², one flatter does not keep scores."""
    rows = frame[(frame["workload"] == workload) & (frame["mode"] == mode)]
    rows = rows.assign(peak_mb=rows["peak_mem_bytes"] / 2**20)
    fig, axes = _panels(rows, f"{workload} {mode}: peak memory", "peak MB")
    for dtype, ax in axes.items():
        here = rows[rows["dtype"] == dtype]
        _log_scale(ax)
        _lines(ax, here, "peak_mb", rows["device"].nunique() > 1)
        shape = here[SHAPE[:2]].value_counts().index[0] if len(here) else None
        if shape is not None:
            line = here[(here["batch"] == shape[0]) & (here["heads"] == shape[1])]
            line = line.drop_duplicates("seq_len").sort_values("seq_len")
            ax.plot(line["seq_len"], line["mem_scores_bytes"] / 2**20, linestyle="--",
                    color="black",
                    label=f"analytic: one B·H·N² matrix (B{shape[0]} H{shape[1]})")
    _finish(fig, axes)
    return fig


def throughput(frame: pd.DataFrame, workload: str, mode: str):
    rows = frame[(frame["workload"] == workload) & (frame["mode"] == mode)]
    fig, axes = _panels(rows, f"{workload} {mode}: throughput", "TFLOP/s")
    for dtype, ax in axes.items():
        here = rows[rows["dtype"] == dtype]
        _lines(ax, here, "tflops", rows["device"].nunique() > 1)
        for device in dict.fromkeys(here["device"]):
            # The roof the rows were measured against: a GPU's datasheet, a CPU's calibration.
            peaks = here.loc[here["device"] == device, "peak_tflops"] \
                if "peak_tflops" in here else pd.Series(dtype=float)
            peak = peaks.max() if peaks.notna().any() else devices.peak_tflops(device, dtype)
            if peak:
                ax.axhline(peak, linestyle=":", color="gray", label=f"{device} peak {peak:g}")
    _finish(fig, axes)
    return fig


def bandwidth(frame: pd.DataFrame, workload: str, mode: str):
    """GB/s of the least bytes a step moves (the decode view, beside its latency):
    a decode step reads its whole KV cache for a few FLOPs a byte."""
    rows = frame[(frame["workload"] == workload) & (frame["mode"] == mode)]
    fig, axes = _panels(rows, f"{workload} {mode}: bandwidth", "GB/s")
    for dtype, ax in axes.items():
        _lines(ax, rows[rows["dtype"] == dtype], "gb_s", rows["device"].nunique() > 1)
        for device in dict.fromkeys(rows.loc[rows["dtype"] == dtype, "device"]):
            peak = devices.peak_bandwidth_gb_s(device)
            if peak:
                ax.axhline(peak, linestyle=":", color="gray", label=f"{device} {peak:g} GB/s")
    _finish(fig, axes)
    return fig


def device_comparison(frame: pd.DataFrame):
    """The cells measured on more than one device, side by side: one group of
    bars per cell, one bar per device (median ms, log scale). None if no cell was."""
    ok = frame[frame["status"] == "ok"]
    keys = ["workload", "label", "mode", "dtype", "seq_len", *SHAPE]
    shared = ok.groupby(keys, sort=False, dropna=False).filter(
        lambda g: g["device"].nunique() > 1)
    if shared.empty:
        return None
    names = list(dict.fromkeys(shared["device"]))
    cells = list(shared.groupby(keys, sort=False, dropna=False))[:40]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(cells) * len(names)), 4.5))
    width = 0.8 / len(names)
    for i, device in enumerate(names):
        heights = [g.loc[g["device"] == device, "median_ms"].min() for _, g in cells]
        ax.bar([j + i * width for j in range(len(cells))], heights, width, label=device)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cells))])
    ax.set_xticklabels([f"{k[0]} {k[1]} {k[2]} {k[3]} N{k[4]}" for k, _ in cells],
                       rotation=60, ha="right", fontsize=7)
    _log_scale(ax)
    ax.set_ylabel("median ms")
    ax.set_title("the same cells on each device")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def all_figures(frame: pd.DataFrame) -> dict[str, object]:
    """name -> Figure, in reading order."""
    figures = {name: DRAW[kind](frame, workload, mode)
               for name, (kind, workload, mode) in figure_plan(frame).items()}
    comparison = device_comparison(frame)
    if comparison is not None:
        figures["devices"] = comparison
    return figures


DRAW = {"latency": latency, "memory": memory, "throughput": throughput,
        "bandwidth": bandwidth, "roofline": roofline_plots.roofline,
        "energy": roofline_plots.energy}
# A decode step's view: latency and GB/s against the cache length.
DECODE_DRAW = ("latency", "bandwidth", "memory")


def figure_plan(frame: pd.DataFrame) -> dict[str, tuple[str, str, str]]:
    """name -> (kind, workload, mode) of every per-workload figure, in reading order.
    Benchmarks read from outside attnbench (workload "custom") have no seq_len to
    plot against: their figures are in the tables alone."""
    plan = {}
    for workload in [w for w in dict.fromkeys(frame["workload"]) if w in WORKLOADS]:
        for mode in dict.fromkeys(frame.loc[frame["workload"] == workload, "mode"]):
            kinds = DECODE_DRAW if mode == "decode" else ("latency", "memory", "throughput")
            for kind in kinds:
                plan[f"{workload}-{mode}-{kind}"] = (kind, workload, mode)
    for device in roofline_plots.devices_with_points(frame):      # per device: (kind, device)
        plan[f"roofline-{roofline_plots.slug(device)}"] = ("roofline", device, "")
        if roofline_plots.has_energy(frame, device):
            plan[f"energy-{roofline_plots.slug(device)}"] = ("energy", device, "")
    return plan


def all_svgs(frame: pd.DataFrame, jobs: int = 1) -> dict[str, str]:
    """name -> SVG text of every figure, in reading order, drawn by `jobs` processes
    at once (matplotlib draws on one core; a report's 24 figures took 8 s on one)."""
    plan = list(figure_plan(frame).items())
    if jobs <= 1 or len(plan) < 2 * jobs:
        return {name: svg(fig) for name, fig in all_figures(frame).items()}
    shares = [(frame, dict(plan[i::jobs]), i == 0) for i in range(jobs)]
    # fork: the children have matplotlib and pandas already, and nothing else runs.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        drawn = {}
        for part in pool.map(_draw_share, shares):
            drawn.update(part)
    return {name: drawn[name] for name in [*dict(plan), "devices"] if name in drawn}


def _draw_share(share: tuple) -> dict[str, str]:
    frame, plan, with_devices = share
    drawn = {name: svg(DRAW[kind](frame, workload, mode))
             for name, (kind, workload, mode) in plan.items()}
    comparison = device_comparison(frame) if with_devices else None
    if comparison is not None:
        drawn["devices"] = svg(comparison)
    return drawn


def svg(fig) -> str:
    """The figure as SVG text, to inline in a page or write to a file."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]          # inline in HTML: no XML prologue
