"""The runner's GPU path through real worker processes, without a GPU: NVML is
replaced by a list of two pretend GPUs and the backend pretends to run on CUDA
(fake_gpu_backend.py). Each GPU gets its own worker with its own
CUDA_VISIBLE_DEVICES, the two run side by side (they must meet to finish), and
every row names its GPU and its peak."""
from __future__ import annotations

import pytest

from backends.base import REGISTRY
from harness.measure import devices
from harness.results import store
from harness.run import runner
from harness.run.suite import Measure, Suite
from harness.spec import Case
from tests.integration import fake_gpu_backend

GPUS = [{"index": i, "name": name, "memory_total": 80 * 2**30, "memory_free": 79 * 2**30,
         "driver": "580.1", "cuda_driver": "13.0"}
        for i, name in enumerate(("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"))]


@pytest.fixture
def two_pretend_gpus(monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "discover", lambda: (GPUS, None))
    monkeypatch.setitem(REGISTRY, "fakegpu", fake_gpu_backend.INFO)
    monkeypatch.setenv("ATTNBENCH_BACKENDS", "tests.integration.fake_gpu_backend")
    (tmp_path / "meet").mkdir()
    monkeypatch.setenv("ATTNBENCH_TEST_RENDEZVOUS", str(tmp_path / "meet"))
    monkeypatch.setenv("ATTNBENCH_TEST_GPUS", "2")


def suite(devices_: list[str], seq_lens: list[int]) -> Suite:
    """Built directly: suite files only name backends known when harness.run.suite loads."""
    cases = tuple(Case("lanes", "attention", "fakegpu", "exact", "forward", "bfloat16", d,
                       1, n, 2, 4, False) for d in devices_ for n in seq_lens)
    measure = Measure(min_run_ms=1, min_samples=2, warmup_ms=0, timeout_s=120)
    return Suite("lanes", "", "lanes.toml", measure, cases)


def test_one_worker_per_gpu_side_by_side(two_pretend_gpus, tmp_path):
    suite_ = suite(["auto", "gpu:V100"], [8, 16])
    folder = runner.run(suite_, out=tmp_path / "run", quiet=True, gate_check=False)
    rows = store.latest_rows(store.read_rows(folder))
    by_device = {}
    for r in rows:
        by_device.setdefault(r["device"], []).append(r)
    assert sorted(by_device) == ["cuda:0", "cuda:1", "gpu:V100"]
    for gpu in GPUS:
        cells = by_device[f"cuda:{gpu['index']}"]
        assert len(cells) == 2 and all(r["status"] == "ok" for r in cells), cells
        for r in cells:
            assert r["device_name"] == gpu["name"] and r["driver"] == "580.1"
            assert r["kernel"] == f"fake, CUDA_VISIBLE_DEVICES={gpu['index']}"
            peak = devices.peak_tflops(gpu["name"], "bfloat16")
            assert r["pct_peak"] == pytest.approx(100 * r["tflops"] / peak)
            assert r["correct"] is True
    # No V100 here: unsupported with the reason, and no worker was started for it.
    assert all(r["status"] == "unsupported" and "no visible GPU is a V100" in r["reason"]
               for r in by_device["gpu:V100"])
    assert not (folder / "logs" / "fakegpu-gpuV100.log").exists()


def test_serial_runs_the_gpus_one_by_one(two_pretend_gpus, tmp_path, monkeypatch):
    """The rendezvous itself can fail: with --serial the first GPU waits alone."""
    monkeypatch.setenv("ATTNBENCH_TEST_RENDEZVOUS_S", "1")
    folder = runner.run(suite(["auto"], [8]), out=tmp_path / "run", quiet=True,
                        gate_check=False, serial=True)
    rows = {r["device"]: r for r in store.latest_rows(store.read_rows(folder))}
    assert rows["cuda:0"]["status"] == "error"
    assert "never came" in rows["cuda:0"]["reason"]
