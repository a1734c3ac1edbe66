"""scripts/gpu_figures.py: the GPU check's figures, from rows a GPU worker would write."""
import subprocess
import sys
from pathlib import Path

from harness.spec import Case, costs
from tests.unit.test_report import _row, _write

ROOT = Path(__file__).resolve().parents[2]
H200 = "NVIDIA H200"


def test_figures_table_has_tflops_and_percent_of_peak_per_cell(tmp_path):
    rows = []
    for backend, variant, ms in (("torch", "sdpa-flash", 1.5), ("jax", "dpa", 2.5)):
        for mode in ("forward", "train"):
            c = Case("gpu-check", "attention", backend, variant, mode, "bfloat16", "cuda:0",
                     2, 8192, 16, 128, True, 1)
            rows.append(_row(c, H200, ms * (3.5 if mode == "train" else 1), "r",
                             kernel=f"{variant} kernel", device_ms=ms * 0.9,
                             launch_overhead_ms=ms * 0.1, throttled=mode == "train"))
    off = Case("gpu-check", "attention", "torch", "sdpa-flash", "forward", "bfloat16",
               "cuda:0", 8, 2048, 16, 128, True, 1)
    rows.append(_row(off, H200, 1.0, "r"))                 # another length: not shown
    _write(tmp_path / "run", rows, {"run_id": "r"})
    out = subprocess.run([sys.executable, "scripts/gpu_figures.py", str(tmp_path / "run")],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    table = [line for line in out.splitlines() if line.startswith("| torch") or
             line.startswith("| jax")]
    assert len(table) == 4 and H200 in out and "FlashAttention-2" in out
    for row in rows[:4]:
        line = next(l for l in table if f"| {row['variant']} | {row['mode']} |" in l)
        cells = [c.strip() for c in line.strip("|").split("|")]
        throttled = " ↓" if row["mode"] == "train" else ""
        assert cells[5] == f"{row['median_ms']:.3f}{throttled}"
        assert cells[6:8] == [f"{row['device_ms']:.3f}", f"{row['launch_overhead_ms']:.3f}"]
        assert cells[8] == f"{row['tflops']:.3g}"
        assert cells[9] == f"{row['pct_peak']:.0f}%"
        assert cells[10:12] == [f"{row['avg_watts']:.0f}", f"{row['tflop_per_j']:.3g}"]
        assert cells[12] == f"{row['variant']} kernel" and cells[13] == "True"


def test_the_decode_table_gives_gb_s_and_share_of_the_gpus_bandwidth(tmp_path):
    rows = []
    for n, ms in ((4096, 0.05), (16384, 0.2)):
        c = Case("gpu-check", "mha", "torch", "sdpa", "decode", "bfloat16", "cuda:0",
                 4, n, 32, 128, True, kv_heads=8)
        rows.append(_row(c, H200, ms, "r", gb_s=costs.bytes_moved(c) / (ms * 1e-3) / 1e9,
                         device_ms=ms * 0.4, launch_overhead_ms=ms * 0.6))
    forward = Case("gpu-check", "mha", "torch", "sdpa", "forward", "bfloat16", "cuda:0",
                   4, 4096, 32, 128, True)
    rows.append(_row(forward, H200, 1.0, "r"))              # not a decode step: not shown
    _write(tmp_path / "run", rows, {"run_id": "r"})
    out = subprocess.run([sys.executable, "scripts/gpu_figures.py", str(tmp_path / "run")],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    table = [line for line in out.splitlines() if line.startswith("| mha |")]
    assert len(table) == 2
    for row, line in zip(rows, table):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[4:7] == ["32 / 8", "1", str(row["seq_len"])]
        assert cells[8] == f"{row['gb_s']:.3g}"
        assert cells[9] == f"{100 * row['gb_s'] / 4800:.0f}%"       # the H200's 4.8 TB/s
        assert cells[10:12] == [f"{row['device_ms']:.3f}", f"{row['launch_overhead_ms']:.3f}"]
