"""`attnbench env --calibrate` (harness/run/calibrate.py): a CPU's own roof, measured
in a framework's worker process, kept, and then what CPU cells are measured against;
the matmul size stepping down for a dtype a framework runs slowly."""
from __future__ import annotations

import time
import types

import pytest

from harness.measure import devices, roofs
from harness.run import calibrate


def test_a_slow_dtype_is_timed_at_a_smaller_size(monkeypatch):
    monkeypatch.setattr(calibrate, "CALL_LIMIT_S", 0.3)
    monkeypatch.setattr(calibrate, "timed", lambda step, sync: 1.0)
    asked = []

    def matmul_step(n, dtype, device):
        asked.append(n)
        return (lambda: time.sleep(1e-11 * n**3)), (lambda: None)

    roof = types.SimpleNamespace(matmul_step=matmul_step)
    tflops, n = calibrate.matmul_tflops(roof, 4096, "float16", "cpu")
    assert asked == [1024, 2048] and n == 2048            # 4096 would take ~0.7 s a call
    assert tflops == pytest.approx(2 * 2048**3 / 1e12)


@pytest.mark.parametrize("backend", [
    "torch", pytest.param("jax", marks=pytest.mark.slow),
    pytest.param("tensorflow", marks=pytest.mark.slow)])
def test_calibration_measures_keeps_and_serves_the_roof(tmp_path, monkeypatch, backend):
    pytest.importorskip(backend)
    monkeypatch.setenv("ATTNBENCH_ROOFS", str(tmp_path / "roofs.json"))
    entry = calibrate.calibrate(threads=1, size=256, backends=[backend])
    (found,) = entry["frameworks"]
    assert "failed" not in found, found
    assert set(found["tflops"]) == set(calibrate.DTYPES) and found["gb_s"] > 0
    assert entry["best_by"]["float32"] == backend and entry["gb_s"] >= found["gb_s"]
    roof = roofs.roof(devices.cpu_name(), False, "bfloat16", 1)
    assert roof.tflops == found["tflops"]["bfloat16"] > 0
    assert roof.source.startswith("calibrated") and roof.gb_s == entry["gb_s"]
    assert roofs.roof(devices.cpu_name(), False, "bfloat16", 2).tflops is None
