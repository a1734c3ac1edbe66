"""Reports of a real run on this machine: `attnbench run` ends with report.html,
`attnbench report` merges it with a run that stands for a GPU, `attnbench compare`
gates on a real slowdown, and the page renders in a real headless Chromium (skipped,
with the reason, where the system has none)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.measure.devices import cpu_name
from harness.report.roofline_plots import slug
from harness.results import store

from .runs_helpers import ROOT, RUN_LIMIT_S, harness_run, jsonl_rows, write_suite

H100 = "NVIDIA H100 80GB HBM3"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("report")
    suite = write_suite(tmp, "tinyreport", """\
        [[sweep]]
        workload = ["attention"]
        backend  = ["torch"]
        mode     = ["forward"]
        dtype    = ["float32"]
        device   = ["cpu"]
        batch    = [1]
        seq_len  = [32, 64, 128]
        heads    = [2]
        head_dim = [16]

        [sweep.variants]
        torch = ["eager", "sdpa"]
        """, min_samples=12)     # a rank test on 3 samples a side can never reject
    out = tmp / "run"
    # Its verdicts need uncontended cells: wait out what an earlier test left running
    # (once, in CI, every cell of this run read as contended and compare said nothing).
    return out, harness_run(suite, out, "--threads", "1", "--no-gate", "--quiet-machine", "30")


def _gpu_twin(run: Path, folder: Path) -> Path:
    """The real run's rows as a GPU worker would write them (bfloat16 on an H100)."""
    with store.RunWriter(folder) as writer:
        writer.write_env({"run_id": "h100-run", "suite": "tinyreport", "host": "gpuhost",
                          "gpus": [{"name": H100}], "versions": {"torch": "2.13.0+cu130"}})
        for row in jsonl_rows(run):
            writer.append({**row, "device": "cuda:0", "device_name": H100, "host": "gpuhost",
                           "run_id": "h100-run", "median_ms": row["median_ms"] / 50,
                           "samples_ms": [s / 50 for s in row["samples_ms"]]})
    return folder


def test_run_ends_with_its_report(real_run):
    out, proc = real_run
    assert f"report: {out / 'report.html'}" in proc.stderr.replace("\n", "")
    roofline = f"roofline-{slug(cpu_name())}.svg"            # this CPU's, every cell a point
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted([
        "attention-forward-latency.svg", "attention-forward-memory.svg",
        "attention-forward-throughput.svg", roofline])
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 4
    assert "torch eager" in page and "torch sdpa" in page


def test_report_merges_a_cpu_and_a_gpu_run(real_run, tmp_path):
    out, _ = real_run
    gpu = _gpu_twin(out, tmp_path / "gpu")
    merged = tmp_path / "merged"
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(out), str(gpu),
                           "--out", str(merged), "--baseline", "torch eager"], cwd=ROOT,
                          capture_output=True, text=True, timeout=RUN_LIMIT_S)
    assert proc.returncode == 0, proc.stderr
    page = (merged / "report.html").read_text()
    assert H100 in page and "gpuhost" in page and "id='plot-devices'" in page
    assert (merged / "plots" / "devices.svg").is_file()
    speedups = (merged / "tables" / "attention-speedup.csv").read_text()
    assert "1.00x" in speedups


def test_compare_flags_a_real_slowdown_and_passes_a_rerun(real_run, tmp_path):
    out, _ = real_run
    same = subprocess.run([sys.executable, "-m", "harness", "compare", str(out), str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stdout + same.stderr
    slow = tmp_path / "slow"
    with store.RunWriter(slow) as writer:
        writer.write_env(json.loads((out / "env.json").read_text()))
        for row in jsonl_rows(out):
            factor = 1.5 if row["variant"] == "sdpa" else 1.0
            samples = [s * factor for s in row["samples_ms"]]
            writer.append({**row, "samples_ms": samples,
                           "median_ms": float(np.median(samples))})
    proc = subprocess.run([sys.executable, "-m", "harness", "compare", str(out), str(slow),
                           "--threshold", "10"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "regression" in proc.stdout and "|" in proc.stdout


def _browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason="no Chromium on this system (Debian: "
                    "apt-get install chromium); the page is checked by the other tests")
def test_page_renders_in_headless_chromium(real_run, tmp_path):
    out, _ = real_run
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    page = (out / "report.html").resolve().as_uri()
    dom = subprocess.run([_browser(), *flags, "--dump-dom", page], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == 4                # every plot in the rendered DOM
    assert "id=\"environment\"" in dom.stdout
    shot = tmp_path / "page.png"
    subprocess.run([_browser(), *flags, "--window-size=1200,1600", f"--screenshot={shot}",
                    page], capture_output=True, timeout=120, check=True)
    import matplotlib.image
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.std() > 0.05                          # not a blank page
