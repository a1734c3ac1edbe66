"""The figures a GPU check reports: fused attention at seq_len 8192, head_dim 128,
bfloat16 (torch sdpa-flash and the other pinned kernels, JAX dpa and dpa-cudnn),
forward and train: TFLOP/s and percent of the device's dense peak, device time and
launch overhead, watts and TFLOP per joule, beside the published FlashAttention marks
of docs/measurement.md (↓: the GPU throttled while the cell was timed); and its decode steps: latency
and GB/s against the cache length, with the share of the device's memory bandwidth, and
their device time and launch overhead (what a CUDA graph, sdpa-graph or jit-graph, removes).
Framework-free; markdown out.

usage: python3 scripts/gpu_figures.py RUN_DIR [--seq-len 8192] [--head-dim 128]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.measure import devices  # noqa: E402
from harness.results import store  # noqa: E402

# docs/measurement.md: published marks, TFLOP/s (H100 SXM, head_dim 128, 16k tokens).
MARKS = {"forward": "FlashAttention-3 fp16 forward: ~650-750",
         "train": "FlashAttention-2 forward+backward: ~250-340"}
SHOWN = ("sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "sdpa", "eager", "compile",
         "dpa", "dpa-cudnn", "jit", "xla")


def table(run: Path, seq_len: int, head_dim: int) -> str:
    frame = store.load(run)
    cells = frame[(frame["workload"] == "attention") & (frame["dtype"] == "bfloat16")
                  & (frame["seq_len"] == seq_len) & (frame["head_dim"] == head_dim)
                  & (frame["mode"] != "decode")]
    if cells.empty:
        return f"no bfloat16 attention cells at seq_len {seq_len}, head_dim {head_dim} in {run}"
    lines = [f"bfloat16 attention, seq_len {seq_len}, head_dim {head_dim} "
             f"({cells['device_name'].iloc[0]})", "",
             "| backend | variant | mode | causal | batch x heads | median ms | device ms "
             "| launch ms | TFLOP/s | % of peak | W | TFLOP/J | kernel | correct |",
             "|---" * 14 + "|"]
    order = {v: i for i, v in enumerate(SHOWN)}
    cells = cells.assign(_o=cells["variant"].map(order).fillna(99)).sort_values(
        ["mode", "causal", "_o", "backend"])
    for _, r in cells.iterrows():
        ok = r["status"] == "ok"

        def num(column: str, fmt: str) -> str:
            value = r.get(column)
            return fmt.format(value) if ok and value is not None and value == value else "-"
        throttled = " ↓" if r.get("throttled") == True else ""  # noqa: E712
        lines.append(
            f"| {r['backend']} | {r['variant']} | {r['mode']} | {r['causal']} "
            f"| {r['batch']} x {r['heads']} | {num('median_ms', '{:.3f}')}{throttled} "
            f"| {num('device_ms', '{:.3f}')} | {num('launch_overhead_ms', '{:.3f}')} "
            f"| {num('tflops', '{:.3g}')} | {num('pct_peak', '{:.0f}%')} "
            f"| {num('avg_watts', '{:.0f}')} | {num('tflop_per_j', '{:.3g}')} "
            f"| {r.get('kernel') or '-'} | {r.get('correct') if ok else r['status']} |")
    lines += ["", "Published marks (docs/measurement.md; H100 SXM, head_dim 128, TFLOP/s): "
              + "; ".join(f"{mode}: {mark}" for mode, mark in MARKS.items()) + "."]
    return "\n".join(lines)


def decode_table(run: Path) -> str:
    """Every decode step of the run: one row a cell, by workload, batch and cache."""
    frame = store.load(run)
    cells = frame[frame["mode"] == "decode"].sort_values(
        ["workload", "batch", "seq_len", "backend", "variant"])
    if cells.empty:
        return f"no decode cells in {run}"
    lines = ["Decode steps (q_len new tokens against a KV cache of seq_len)", "",
             "| workload | backend | variant | batch | heads / kv | q_len | cache | median ms "
             "| GB/s | % of bandwidth | device ms | launch ms | kernel | correct |",
             "|---" * 14 + "|"]
    for _, r in cells.iterrows():
        ok = r["status"] == "ok" and r["gb_s"] == r["gb_s"]
        peak = devices.peak_bandwidth_gb_s(str(r.get("device_name") or ""))
        ms, gb_s = (f"{r['median_ms']:.3f}", f"{r['gb_s']:.3g}") if ok else ("-", "-")
        share = f"{100 * r['gb_s'] / peak:.0f}%" if ok and peak else "-"
        # A graph's replay (sdpa-graph, jit-graph) shows here as launch time removed.
        device, launch = (f"{r[c]:.3f}" if ok and r.get(c) == r.get(c) and r.get(c) is not None
                          else "-" for c in ("device_ms", "launch_overhead_ms"))
        lines.append(
            f"| {r['workload']} | {r['backend']} | {r['variant']} | {r['batch']} "
            f"| {r['heads']} / {r['kv_heads']} | {r['q_len']} | {r['seq_len']} | {ms} "
            f"| {gb_s} | {share} | {device} | {launch} | {r.get('kernel') or '-'} "
            f"| {r.get('correct') if r['status'] == 'ok' else r['status']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, metavar="RUN_DIR")
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--head-dim", type=int, default=128)
    args = parser.parse_args()
    try:
        print(table(args.run, args.seq_len, args.head_dim))
        print()
        print(decode_table(args.run))
    except store.StoreError as exc:
        print(f"gpu_figures: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
