"""The report's tables: backends and variants side by side, one table per question.

Rows of one or more runs (any machines) become one long frame with a few derived
columns (`label`, `device`, the verdict); each table pivots it: one row per
configuration and shape (mode, dtype, device, B, N, H, D, mask), one column per
backend and variant. A cell that computes the wrong thing keeps its number but
carries a ✗, and one timed while others used the machine a ‡ (contended), so
neither is read as a fair comparison.
"""
from __future__ import annotations

import pandas as pd

from harness.report import device_view
from harness.spec import CASE_FIELDS

WRONG = "✗"               # after any figure of a row whose correct is false
CONTENDED = "‡"           # after any timing of a row timed on a busy machine
INDEX = ["mode", "dtype", "device", "batch", "seq_len", "heads", "head_dim", "causal"]
TABLES = {                # name -> what its cells hold
    "latency": "median ms ± IQR",
    "speedup": "times faster than the baseline (its median over this one's)",
    "memory": "peak MB one step adds (the allocator's figure; on GPUs, in brackets, NVML's "
              "for the whole worker: CUDA context and pools); `scores MB` is one B·H·q_len·N "
              "matrix in the dtype",
    "throughput": "TFLOP/s (percent of the roof for the dtype: a GPU's datasheet peak, a "
                  "CPU's calibration)",
    "bandwidth": "GB/s: the least bytes a step moves (weights, inputs, the KV cache, outputs) "
                 "over its median; what bounds a decode step",
    "correctness": "verdict and worst error ratio against float64 (pass: ≤ 2)",
    "first_call": "first call ms: tracing and compiling included",
    **device_view.TABLES,
}


def is_wrong(frame: pd.DataFrame) -> pd.Series:
    return (frame["status"] == "ok") & (frame["correct"] == False)  # noqa: E712


def is_contended(frame: pd.DataFrame) -> pd.Series:
    """Rows timed while others used the machine (docs/measurement.md, "Contention")."""
    if "contended" not in frame:
        return pd.Series(False, index=frame.index)
    return (frame["status"] == "ok") & (frame["contended"] == True)  # noqa: E712


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows to report, with `label` ("torch sdpa"), `device` (the device's
    model, so runs of the same GPU type on different hosts merge), `wrong`; of a
    cell measured on one device type more than once, the latest row is kept."""
    frame = frame[frame["status"] != "unsupported"].copy()
    frame["label"] = frame["backend"] + " " + frame["variant"]
    name = frame["device_name"] if "device_name" in frame else frame["device"]
    frame["device"] = name.fillna(frame["device"]).astype(str)
    frame["wrong"] = is_wrong(frame)
    frame["busy"] = is_contended(frame)
    # Index columns without NaN, which a pivot would drop: 0 is no window.
    for column, default in (("kv_heads", "heads"), ("q_len", "seq_len")):
        frame[column] = frame[column].fillna(frame[default]) if column in frame \
            else frame[default]
    frame["window"] = frame["window"].fillna(0).astype(int) if "window" in frame else 0
    frame["lengths"] = frame["lengths"].fillna("") if "lengths" in frame else ""   # unpadded
    if "started_at" in frame:
        frame = frame.sort_values("started_at", kind="stable")
    keys = [c for c in CASE_FIELDS if c not in ("suite", "device")] + ["device"]
    return frame.drop_duplicates(subset=keys, keep="last")


def default_baseline(frame: pd.DataFrame) -> str | None:
    """The label most cells can be compared with: the one present in most rows."""
    if frame.empty:
        return None
    return frame["label"].value_counts().index[0]


def _index(frame: pd.DataFrame) -> list[str]:
    index = list(INDEX)
    if "kv_heads" in frame and (frame["kv_heads"] != frame["heads"]).any():
        index.insert(index.index("heads") + 1, "kv_heads")      # grouped heads in the run
    if "q_len" in frame and (frame["q_len"] != frame["seq_len"]).any():
        index.insert(index.index("seq_len"), "q_len")           # decode steps in the run
    if "window" in frame and (frame["window"] > 0).any():
        index.append("window")                                  # 0: none
    if (frame["lengths"] != "").any():
        index.append("lengths")                                 # padded batches in the run
    if (frame["workload"] == "transformer").any():
        index.append("layers")
    return index


def _pivot(frame: pd.DataFrame, values: pd.Series) -> pd.DataFrame:
    rows = frame.assign(_value=values)
    table = rows.pivot_table(index=_index(frame), columns="label", values="_value",
                             aggfunc="last", sort=False)
    return table[[c for c in label_order(frame) if c in table.columns]].fillna("").reset_index()


def figure(value: float) -> str:
    """A time or size at a readable precision, never in scientific notation."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def spread(value: float) -> str:
    """An IQR: two significant digits at most, it is a noise figure."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def label_order(frame: pd.DataFrame) -> list[str]:
    """Labels in registry order (torch, tensorflow, jax; each backend's variants
    as it lists them), plug-in backends after."""
    from harness.spec.catalog import REGISTRY  # the registry only: no framework
    rank = {f"{b} {v}": (i, j) for i, (b, info) in enumerate(REGISTRY.items())
            for j, v in enumerate(info.variant_names)}
    labels = list(dict.fromkeys(frame["label"]))
    return sorted(labels, key=lambda label: rank.get(label, (len(rank), labels.index(label))))


def _mark(text: str, row) -> str:
    """The figure with ✗ when the row computes the wrong thing, ‡ when it was timed
    on a busy machine, ↓ when its GPU was throttled meanwhile."""
    marks = (WRONG if row["wrong"] else "") + (CONTENDED if row.get("busy") else "") \
        + (device_view.THROTTLED if row.get("throttled") == True else "")  # noqa: E712
    return f"{text} {marks}" if marks and text else text


def _failed(row) -> str | None:
    """What a cell that did not run shows instead of a figure."""
    return None if row["status"] == "ok" else row["status"]


def latency(frame: pd.DataFrame) -> pd.DataFrame:
    def text(row) -> str:
        timing = f"{figure(row['median_ms'])} ± {spread(row['iqr_ms'])}"
        between = row.get("between_spread_pct")
        if (row.get("repeats") or 1) > 1 and pd.notna(between):
            timing += f" [{between:.0f} %]"        # between its processes (--repeat)
        return _failed(row) or _mark(timing, row)
    return _pivot(frame, frame.apply(text, axis=1))


def speedups(frame: pd.DataFrame, baseline: str) -> pd.Series:
    """Baseline median over each cell's, matched on every index column."""
    keys = _index(frame) + ["workload"]
    base = frame[(frame["label"] == baseline) & (frame["status"] == "ok")]
    base = base.set_index(keys)["median_ms"]
    joined = frame.join(base.rename("_base"), on=keys)
    return joined["_base"] / frame["median_ms"].where(frame["status"] == "ok")


def speedup(frame: pd.DataFrame, baseline: str) -> pd.DataFrame:
    values = speedups(frame, baseline)

    def text(row, value) -> str:
        return "" if pd.isna(value) else _mark(f"{value:.2f}x", row)
    return _pivot(frame, pd.Series([text(r, v) for (_, r), v in
                                    zip(frame.iterrows(), values)], index=frame.index))


def memory(frame: pd.DataFrame) -> pd.DataFrame:
    def text(row) -> str:
        peak = row.get("peak_mem_bytes")
        if _failed(row) or peak is None or pd.isna(peak):
            return _failed(row) or ""
        nvml = row.get("nvml_mem_bytes")
        whole = "" if nvml is None or pd.isna(nvml) else f" (nvml {nvml / 2**20:,.0f})"
        return _mark(f"{peak / 2**20:,.1f}{whole}", row)
    table = _pivot(frame, frame.apply(text, axis=1))
    scores = frame.groupby(_index(frame), sort=False)["mem_scores_bytes"].first()
    table.insert(len(_index(frame)), "scores MB",
                 [_mb(scores.loc[tuple(k)])
                  for k in table[_index(frame)].itertuples(index=False)])
    return table


def _mb(value) -> str:
    """Bytes as MB; blank where unknown (a benchmark from outside attnbench)."""
    return "" if value is None or pd.isna(value) else f"{value / 2**20:,.1f}"


def throughput(frame: pd.DataFrame) -> pd.DataFrame:
    def text(row) -> str:
        if _failed(row) or pd.isna(row.get("tflops")):
            return _failed(row) or ""
        pct = row.get("pct_peak")
        extra = "" if pct is None or pd.isna(pct) else f" ({pct:.0f}%)"
        return _mark(f"{row['tflops']:.3g}{extra}", row)
    return _pivot(frame, frame.apply(text, axis=1))


def bandwidth(frame: pd.DataFrame) -> pd.DataFrame:
    def text(row) -> str:
        if _failed(row) or pd.isna(row.get("gb_s")):
            return _failed(row) or ""
        return _mark(f"{row['gb_s']:.3g}", row)
    return _pivot(frame, frame.apply(text, axis=1))


def correctness(frame: pd.DataFrame) -> pd.DataFrame:
    def text(row) -> str:
        if _failed(row):
            return _failed(row)
        ratio = row.get("err_ratio")
        figure = "" if ratio is None or pd.isna(ratio) else f" {ratio:.2f}"
        if row["wrong"]:
            return f"NO{figure} {WRONG}"
        if row.get("correct") is None or pd.isna(row.get("correct")):
            return "not checked"
        return "yes (config)" if row.get("judged_by") == "config" else f"yes{figure}"
    return _pivot(frame, frame.apply(text, axis=1))


def first_call(frame: pd.DataFrame) -> pd.DataFrame:
    def text(row) -> str:
        value = row.get("first_call_ms")
        if _failed(row) or value is None or pd.isna(value):
            return _failed(row) or ""
        return _mark(f"{value:,.0f}", row)
    return _pivot(frame, frame.apply(text, axis=1))


def all_tables(frame: pd.DataFrame, baseline: str | None) -> dict[str, dict[str, pd.DataFrame]]:
    """workload -> table name -> table, for every workload present."""
    out = {}
    for workload in dict.fromkeys(frame["workload"]):
        rows = frame[frame["workload"] == workload]
        tables = {"latency": latency(rows)}
        if baseline and (rows["label"] == baseline).any():
            tables["speedup"] = speedup(rows, baseline)
        tables["memory"] = memory(rows)
        tables["throughput"] = throughput(rows)
        if (rows["mode"] == "decode").any():
            tables["bandwidth"] = bandwidth(rows)
        tables["roofline"] = _pivot(rows, rows.apply(device_view.roofline_text, axis=1))
        if device_view.has_energy(rows):
            tables["energy"] = _pivot(rows, rows.apply(device_view.energy_text, axis=1))
        tables["correctness"] = correctness(rows)
        tables["first_call"] = first_call(rows)
        out[workload] = tables
    return out


def split_constant(table: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """For display: the index columns that hold one value in every row (the device,
    B, H, D of a one-shape sweep) move out of the table into a caption."""
    fixed = {c: table[c].iloc[0] for c in INDEX + ["layers", "q_len", "kv_heads", "window",
                                                 "lengths"]
             if c in table and len(table) > 1 and table[c].nunique(dropna=False) == 1}
    return table.drop(columns=list(fixed)), fixed


def caption(fixed: dict) -> str:
    return "; ".join(f"{k} {v}" for k, v in fixed.items())


def long_table(frame: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """report.csv: every reported cell, its figures and the derived columns."""
    out = frame.drop(columns=["samples_ms"], errors="ignore").copy()
    out["speedup"] = speedups(frame, baseline) if baseline else None
    out["peak_mb"] = frame["peak_mem_bytes"] / 2**20
    out["scores_mb"] = frame["mem_scores_bytes"] / 2**20
    return out


def versions_text(env: dict) -> str:
    """'torch 2.13.0, jax 0.10.2, flax 0.12.8': a backend's version string may
    already start with its framework's name (jax's names flax too)."""
    return ", ".join(v if str(v).startswith(k) else f"{k} {v}"
                     for k, v in (env.get("versions") or {}).items())


def shape_text(row) -> str:
    """B·N·H·D of a row, H as `query/kv` heads where they are grouped (6/2), N as
    `queries/keys` where there are fewer queries (1/8192), a window after (w4096), and
    a padded batch's lengths (len uniform:0.25)."""
    kv, q_len, window = (_given(row.get(k)) for k in ("kv_heads", "q_len", "window"))
    heads = f"{row['heads']}/{kv}" if kv and kv != int(row["heads"]) else f"{row['heads']}"
    n = f"{q_len}/{row['seq_len']}" if q_len and q_len != int(row["seq_len"]) else f"{row['seq_len']}"
    lengths = row.get("lengths")
    padded = f" len {lengths}" if isinstance(lengths, str) and lengths else ""
    return (f"{row['batch']}·{n}·{heads}·{row['head_dim']}" + (f" w{window}" if window else "")
            + padded)


def _given(value) -> int | None:
    return None if value is None or pd.isna(value) or value == 0 else int(value)
