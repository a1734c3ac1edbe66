"""Reports from rows written through the store: a CPU run and a run that stands
for a GPU (rows as a GPU worker writes them), merged. The tables' values are
recomputed here from the rows; the plots are inspected as matplotlib figures; the
page is parsed as HTML."""
from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest

from harness.measure import devices, roofs
from harness.report import plots, publish, run_report, tables
from harness.results import store
from harness.spec import Case, costs
from harness.spec.errors import UserError

H100 = "NVIDIA H100 80GB HBM3"
XEON = "Intel(R) Xeon(R) Processor"
SEQ = (128, 256, 512)
LABELS = (("torch", "eager"), ("torch", "sdpa"), ("jax", "jit"))


def _row(case: Case, device_name: str, median: float, run_id: str, **extra) -> dict:
    rng = np.random.default_rng(case.seq_len)
    samples = list(median * (1 + 0.02 * rng.standard_normal(15)))
    q1, q3 = np.percentile(samples, [25, 75])
    flops = costs.flops(case)
    tflops = flops / (float(np.median(samples)) * 1e-3) / 1e12
    peak = devices.peak_tflops(device_name, case.dtype)
    seconds = float(np.median(samples)) * 1e-3
    gb_s = costs.bytes_moved(case) / seconds / 1e9
    roof = roofs.roof(device_name, bool(peak), case.dtype)
    place = roofs.roofline(flops, costs.bytes_moved(case), tflops, gb_s, roof)
    power = {"energy_j": 300 * seconds, "avg_watts": 300.0,
             "tflop_per_j": flops / (300 * seconds) / 1e12} if peak else {}
    return {**case.to_dict(), **place, **power, "run_id": run_id, "started_at": "2026-11-29T00:00:00+00:00",
            "host": "gpuhost" if peak else "cpuhost", "device_name": device_name,
            "status": "ok", "reason": "", "samples_ms": samples,
            "median_ms": float(np.median(samples)), "iqr_ms": float(q3 - q1),
            "first_call_ms": 10 * median, "peak_mem_bytes": 3 * case.seq_len ** 2 * 64,
            "flops": flops, "tflops": tflops, "gb_s": gb_s,
            "max_abs_err": 1e-7, "err_ratio": 0.5, "correct": True,
            **{f"mem_{k}": v for k, v in costs.memory(case).items()}, **extra}


def _write(folder, rows, env):
    with store.RunWriter(folder) as writer:
        writer.write_env(env)
        for row in rows:
            writer.append(row)


@pytest.fixture
def runs(tmp_path):
    """A CPU run (3 labels x 3 seq_lens, float32, one wrong cell, one oom) and a GPU
    run of the same cells in bfloat16 and float32, each in its own folder."""
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    cpu_rows, gpu_rows = [], []
    for (backend, variant), n in [(label, n) for label in LABELS for n in SEQ]:
        case = Case("s", "attention", backend, variant, "forward", "float32", "cpu", 2, n, 4,
                    32, False)
        speed = {"eager": 1.0, "sdpa": 0.5, "jit": 0.8}[variant]
        extra = {}
        if (variant, n) == ("jit", 256):
            extra = {"correct": False, "err_ratio": 9.5, "check_note": "configuration fails"}
        if (variant, n) == ("sdpa", 512):
            extra = {"status": "oom", "reason": "MemoryError", "median_ms": None}
        cpu_rows.append(_row(case, XEON, speed * n / 10, "cpu-run", **extra))
        for dtype in ("float32", "bfloat16"):
            g = case.replace(device="cuda:0", dtype=dtype)
            gpu_rows.append(_row(g, H100, speed * n / 1000, "gpu-run",
                                 nvml_mem_bytes=512 * 2**20 + 7 * n ** 2))
    _write(cpu, cpu_rows, {"run_id": "cpu-run", "suite": "s", "host": "cpuhost",
                           "cpu": XEON, "threads": 2, "versions": {"torch": "2.13.0"}})
    _write(gpu, gpu_rows, {"run_id": "gpu-run", "suite": "s", "host": "gpuhost",
                           "gpus": [{"name": H100}], "versions": {"jax": "jax 0.10.2"}})
    return cpu, gpu


def _cell(table, label, **where):
    rows = table
    for key, value in where.items():
        rows = rows[rows[key] == value]
    assert len(rows) == 1, (where, rows)
    return rows.iloc[0][label]


def test_tables_hold_the_rows_figures_side_by_side(runs):
    cpu, gpu = runs
    frame = store.load(cpu, gpu)
    cells = tables.prepare(frame)
    pivots = tables.all_tables(cells, "torch eager")["attention"]
    latency = pivots["latency"]
    assert list(latency.columns[-3:]) == ["torch eager", "torch sdpa", "jax jit"]
    assert set(latency["device"]) == {XEON, H100}
    for row in frame[frame["status"] == "ok"].to_dict("records"):
        device = row["device_name"]
        text = _cell(latency, f"{row['backend']} {row['variant']}", device=device,
                     dtype=row["dtype"], seq_len=row["seq_len"])
        expected = f"{tables.figure(row['median_ms'])} ± {tables.spread(row['iqr_ms'])}"
        assert text.startswith(expected)
        assert text.endswith(tables.WRONG) == (row["correct"] is False)
    assert _cell(latency, "torch sdpa", device=XEON, seq_len=512) == "oom"
    eager = frame[(frame["variant"] == "eager") & (frame["device_name"] == H100)
                  & (frame["dtype"] == "bfloat16") & (frame["seq_len"] == 256)].iloc[0]
    jit = frame[(frame["variant"] == "jit") & (frame["device_name"] == H100)
                & (frame["dtype"] == "bfloat16") & (frame["seq_len"] == 256)].iloc[0]
    assert _cell(pivots["speedup"], "jax jit", device=H100, dtype="bfloat16", seq_len=256) \
        == f"{eager['median_ms'] / jit['median_ms']:.2f}x"
    assert _cell(pivots["memory"], "scores MB", device=XEON, seq_len=512) == \
        f"{2 * 4 * 512 ** 2 * 4 / 2**20:,.1f}"
    gpu = frame[(frame["variant"] == "eager") & (frame["device_name"] == H100)
                & (frame["dtype"] == "bfloat16") & (frame["seq_len"] == 512)].iloc[0]
    assert _cell(pivots["throughput"], "torch eager", device=H100, dtype="bfloat16",
                 seq_len=512) == f"{gpu['tflops']:.3g} ({gpu['pct_peak']:.0f}%)"
    assert "%" not in _cell(pivots["throughput"], "torch eager", device=XEON, seq_len=512)
    # GPU memory: the allocator's peak, then NVML's figure for the whole worker.
    assert _cell(pivots["memory"], "torch eager", device=H100, dtype="bfloat16",
                 seq_len=512) == (f"{gpu['peak_mem_bytes'] / 2**20:,.1f} "
                                  f"(nvml {gpu['nvml_mem_bytes'] / 2**20:,.0f})")
    assert "nvml" not in _cell(pivots["memory"], "torch eager", device=XEON, seq_len=128)
    assert _cell(pivots["correctness"], "jax jit", device=XEON, seq_len=256).startswith("NO")


def test_plots_draw_one_line_per_backend_and_device_per_dtype_panel(runs):
    cells = tables.prepare(store.load(*runs))
    fig = plots.latency(cells, "attention", "forward")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["float32", "bfloat16"]
    for ax in fig.axes:
        assert ax.get_xlabel() == "seq_len" and ax.get_xscale() == "log"
        assert ax.get_yscale() == "log"
    f32 = {line.get_label() for line in fig.axes[0].get_lines()}
    assert {f"{b} {v} @ {d}" for b, v in LABELS for d in (XEON, H100)} <= f32
    assert "✗ wrong (correct = false)" in f32          # the wrong CPU cell, crossed out
    bf16 = {line.get_label() for line in fig.axes[1].get_lines()}
    assert bf16 == {f"{b} {v} @ {H100}" for b, v in LABELS}
    memory = plots.memory(cells, "attention", "forward")
    analytic = [l for l in memory.axes[0].get_lines() if l.get_label().startswith("analytic")]
    assert len(analytic) == 1
    assert list(analytic[0].get_ydata()) == pytest.approx([2 * 4 * n * n * 4 / 2**20
                                                           for n in SEQ])
    throughput = plots.throughput(cells, "attention", "forward")
    peaks = [l for l in throughput.axes[1].get_lines() if "peak" in str(l.get_label())]
    assert [l.get_ydata()[0] for l in peaks] == [devices.peak_tflops(H100, "bfloat16")]
    comparison = plots.device_comparison(cells)
    assert comparison is not None
    bars = [c for c in comparison.axes[0].containers]
    assert len(bars) == 2                               # one set of bars per device
    assert plots.device_comparison(tables.prepare(store.load(runs[0]))) is None


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.svgs, self.wrong_cells, self.tables = [], 0, 0, 0
        self.scripts, self.links = 0, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        self.svgs += tag == "svg"
        self.tables += tag == "table"
        self.wrong_cells += tag == "td" and attrs.get("class") == "wrong"
        self.scripts += tag == "script"
        self.links += tag in ("link", "img") or (tag == "script" and "src" in attrs)


def test_report_page_holds_tables_plots_and_every_runs_environment(runs, tmp_path):
    out = tmp_path / "merged"
    page = run_report.write_report(list(runs), out, baseline="torch eager")
    parsed = _Page()
    text = page.read_text()
    parsed.feed(text)
    assert parsed.scripts == 0 and parsed.links == 0    # self-contained
    assert "attention" in parsed.ids and "environment" in parsed.ids
    assert "devices" in parsed.ids and "wrong" in parsed.ids
    svgs = sorted(p.name for p in (out / "plots").glob("*.svg"))
    assert svgs == ["attention-forward-latency.svg", "attention-forward-memory.svg",
                    "attention-forward-throughput.svg", "devices.svg",
                    "energy-nvidia-h100-80gb-hbm3.svg", "roofline-intel-r-xeon-r-processor.svg",
                    "roofline-nvidia-h100-80gb-hbm3.svg"]
    assert parsed.svgs == len(svgs) and "roofline" in parsed.ids
    assert parsed.tables == 8 + 1                      # eight kinds of table, environment
    assert parsed.wrong_cells >= 5                     # the wrong cell, in every table
    for needle in ("cpuhost", "gpuhost", H100, "torch 2.13.0", "jax 0.10.2", "cpu-run",
                   "gpu-run"):
        assert needle in text, needle
    md = (out / "report.md").read_text()
    assert "**1 rows compute the wrong thing**" in md and "### latency" in md
    csv = (out / "report.csv").read_text().splitlines()
    assert len(csv) == 1 + 3 * 3 + 3 * 3 * 2            # every reported cell
    assert (out / "tables" / "attention-speedup.csv").is_file()


def test_unknown_baseline_is_a_one_line_error(runs, tmp_path):
    with pytest.raises(UserError, match="baseline 'tf eager' is in none"):
        run_report.write_report([runs[0]], tmp_path / "r", baseline="tf eager")


def test_publish_writes_a_run_folder_and_lists_it(runs, tmp_path):
    root = tmp_path / "published"
    dest = publish.publish(runs[0], "cpu-one", root=root)
    publish.publish(runs[1], "gpu-one", root=root)
    assert len(store.load(dest)) == len(store.load(runs[0]))   # readable as a run
    assert (dest / "report.html").is_file() and (dest / "report.md").is_file()
    index = (root / "README.md").read_text()
    assert "[cpu-one](cpu-one/report.md)" in index and "[gpu-one](gpu-one/report.md)" in index
    assert H100 in index and "8 of 9" in index
    with pytest.raises(UserError, match="--name"):
        publish.publish(runs[0], "../escape", root=root)


def test_the_roofline_draws_every_cell_under_its_roof_and_the_tables_place_them(runs):
    from harness.report import device_view, roofline_plots
    cells = tables.prepare(store.load(*runs))
    fig = roofline_plots.roofline(cells, H100)
    (bf16,) = [ax for ax in fig.axes if ax.get_title() == "bfloat16"]
    drawn = [c for c in bf16.collections if len(c.get_offsets())]
    ok = cells[(cells["device"] == H100) & (cells["dtype"] == "bfloat16")
               & (cells["status"] == "ok")]
    assert sum(len(c.get_offsets()) for c in drawn) == len(ok)
    roof = bf16.get_lines()[0].get_ydata()
    assert roof.max() == pytest.approx(devices.peak_tflops(H100, "bfloat16"))
    hollow = [c for c in drawn if not c.get_facecolors().any()]      # memory-bound points
    assert sum(len(c.get_offsets()) for c in hollow) == int((ok["bound"] == "memory").sum())
    row = ok.iloc[0]
    text = device_view.roofline_text(row)
    assert f"{row['arith_intensity']:.3g} F/B" in text
    assert ("mem" if row["bound"] == "memory" else "flop") in text
    assert device_view.energy_text(row) == f"{row['tflop_per_j']:.3g} TFLOP/J · 300 W"
    cpu = cells[cells["device"] == XEON].iloc[0]
    assert device_view.energy_text(cpu) == "" and "·" not in device_view.roofline_text(cpu)


def test_a_throttled_cell_is_marked_in_every_timing(runs):
    from harness.report.device_view import THROTTLED
    cells = tables.prepare(store.load(*runs)).assign(throttled=None)
    first = cells.index[(cells["device"] == H100) & (cells["status"] == "ok")][0]
    cells.loc[first, "throttled"] = True
    marked = tables.latency(cells).to_numpy().ravel().tolist()
    assert sum(THROTTLED in str(v) for v in marked) == 1
