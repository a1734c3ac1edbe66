"""The roof a cell is measured against (harness/measure/roofs.py): a GPU's datasheet
row, a CPU's calibration per dtype and thread count, or none said in words; and a
row's place under it (pct_peak, pct_peak_bw, arithmetic intensity, the bounding roof)."""
from __future__ import annotations

import pytest

from harness.measure import devices, roofs
from harness.run import cell
from harness.spec import Case, costs

CPU = "Intel(R) Xeon(R) Test CPU"


def calibrated(tmp_path, monkeypatch, threads=2) -> dict:
    monkeypatch.setenv("ATTNBENCH_ROOFS", str(tmp_path / "roofs.json"))
    entry = {"tflops": {"float32": 0.25, "bfloat16": 0.65}, "gb_s": 20.0,
             "measured_at": "2026-11-30T16:00:00", "how": "torch matmul 4096, 2 threads"}
    roofs.save(entry, CPU, threads)
    return entry


def test_a_gpu_is_measured_against_its_datasheet_row():
    roof = roofs.roof("NVIDIA H200", True, "bfloat16")
    assert roof.source == "datasheet"
    assert roof.tflops == devices.peak_tflops("NVIDIA H200", "bfloat16") is not None
    assert roof.gb_s == devices.peak_bandwidth_gb_s("NVIDIA H200") is not None
    assert roofs.roof("NVIDIA H200", True, "float32").tflops < roof.tflops


def test_an_uncalibrated_cpu_has_no_roof_and_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBENCH_ROOFS", str(tmp_path / "none.json"))
    roof = roofs.roof(CPU, False, "float32", 2)
    assert roof.tflops is None and roof.gb_s is None and "--calibrate" in roof.source


def test_a_calibrated_cpu_is_measured_against_its_dtype_and_thread_count(tmp_path, monkeypatch):
    calibrated(tmp_path, monkeypatch)
    fp32, bf16 = (roofs.roof(CPU, False, d, 2) for d in ("float32", "bfloat16"))
    assert (fp32.tflops, bf16.tflops, fp32.gb_s) == (0.25, 0.65, 20.0)
    assert fp32.source.startswith("calibrated 2026-11-30")
    assert roofs.roof(CPU, False, "float16", 2).tflops is None      # not measured
    assert roofs.roof(CPU, False, "float32", 4).tflops is None      # other threads
    roofs.save({"tflops": {"float32": 0.5}, "gb_s": 30.0}, CPU, 4)
    assert roofs.roof(CPU, False, "float32", 2).tflops == 0.25       # both kept


@pytest.mark.parametrize("flops, moved, bound", [(10**12, 10**9, "compute"),
                                                  (10**9, 10**9, "memory")])
def test_the_ridge_decides_which_roof_bounds_a_cell(flops, moved, bound):
    roof = roofs.Roof(0.25, 20.0, "calibrated")           # ridge: 12.5 FLOPs a byte
    row = roofs.roofline(flops, moved, 0.1, 5.0, roof)
    assert row["bound"] == bound and row["arith_intensity"] == flops / moved
    assert row["pct_peak"] == pytest.approx(40.0) and row["pct_peak_bw"] == pytest.approx(25.0)


def test_without_a_roof_there_is_no_percentage_and_no_bound():
    row = roofs.roofline(10**9, 10**6, 0.1, 5.0, roofs.Roof(None, None, "none"))
    assert row["pct_peak"] is None and row["pct_peak_bw"] is None and row["bound"] is None
    assert row["arith_intensity"] == 1000.0


def test_a_cpu_cells_throughput_is_taken_against_the_calibration(tmp_path, monkeypatch):
    calibrated(tmp_path, monkeypatch)
    case = Case("unit", "attention", "torch", "sdpa", "forward", "bfloat16", "cpu",
                1, 512, 8, 64, False)
    row = cell.throughput(case, CPU, 2.0, threads=2)
    assert row["tflops"] == pytest.approx(costs.flops(case) / 2e-3 / 1e12)
    assert row["pct_peak"] == pytest.approx(100 * row["tflops"] / 0.65)
    assert row["pct_peak_bw"] == pytest.approx(100 * row["gb_s"] / 20.0)
    assert row["roof_source"].startswith("calibrated") and row["bound"] in ("memory", "compute")
