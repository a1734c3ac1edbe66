"""Energy and device state around the timed samples (harness/measure/energy.py),
against a fake NVML whose answers change over time and a fake powercap tree; and the
timing loop reading them outside its timed blocks."""
from __future__ import annotations

import pytest

from harness.measure import energy
from harness.measure.timing import measure
from tests.unit import nvml_fake
from tests.unit.nvml_fake import FakeNvml, gpu


def steady(**changes) -> dict:
    readings = {"energy_mj": [1_000_000, 1_030_000], "sm_mhz": [1980], "mem_mhz": [2619],
                "temp_c": [40, 52], "power_mw": [250_000, 600_000], "limit_mw": [700_000],
                "reasons": [0]}
    return {**readings, **changes}


def metered(readings: dict, calls: int = 100) -> dict:
    meter = energy.NvmlMeter(0, FakeNvml([gpu(readings=readings)]))
    meter.start()
    return meter.stop(calls)


def test_the_constants_are_nvmls():
    assert (energy.NVML_CLOCK_SM, energy.NVML_CLOCK_MEM, energy.NVML_TEMPERATURE_GPU) == (
        nvml_fake.NVML_CLOCK_SM, nvml_fake.NVML_CLOCK_MEM, nvml_fake.NVML_TEMPERATURE_GPU)


def test_an_advancing_energy_counter_gives_joules_a_step_and_the_state_at_both_ends():
    row = metered(steady())
    assert row["energy_j"] == pytest.approx(30.0 / 100)              # 30 J over 100 calls
    assert row["avg_watts"] > 0 and row["energy_method"] == "nvml total energy counter"
    assert (row["temp_c_start"], row["temp_c_end"]) == (40, 52)
    assert (row["power_w_start"], row["power_w_end"], row["power_limit_w"]) == (250, 600, 700)
    assert row["sm_clock_mhz_start"] == row["sm_clock_mhz_end"] == 1980
    assert row["throttled"] is False and row["energy_note"] is None


def test_dropping_clocks_or_a_throttle_reason_mark_the_cell_throttled():
    assert metered(steady(sm_mhz=[1980, 1500]))["throttled"] is True
    assert metered(steady(sm_mhz=[1980, 1960]))["throttled"] is False     # within 5 %
    assert metered(steady(reasons=[0, 0x20]))["throttled"] is True        # sw_thermal
    assert metered(steady(reasons=[0x1]))["throttled"] is False           # idle: no slowdown
    unknown = steady()
    del unknown["sm_mhz"], unknown["reasons"]
    assert metered(unknown)["throttled"] is None                           # NVML said neither


def test_a_gpu_without_an_energy_counter_keeps_its_state_and_says_why():
    readings = steady()
    del readings["energy_mj"]
    row = metered(readings)
    assert row["energy_j"] is None and "no total-energy counter" in row["energy_note"]
    assert row["temp_c_end"] == 52


def test_without_nvml_every_column_is_none_with_the_reason():
    fake = FakeNvml([gpu()], init_error=nvml_fake.NVMLError_DriverNotLoaded())
    meter = energy.NvmlMeter(0, fake)
    meter.start()
    row = meter.stop(10)
    assert set(row) == set(energy.STATE_COLUMNS) | set(energy.ENERGY_COLUMNS)
    assert row["energy_j"] is None and "Driver Not Loaded" in row["energy_note"]


def zone(root, name: str, readings: list[int], wrap: int = 2**32):
    path = root / f"intel-rapl:{name[-1]}"
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "max_energy_range_uj").write_text(f"{wrap}\n")
    (path / "energy_uj").write_text(f"{readings[0]}\n")
    return path


def test_rapl_sums_the_packages_and_unwraps_a_counter_that_wrapped(tmp_path):
    a = zone(tmp_path, "package-0", [1_000_000])
    b = zone(tmp_path, "package-1", [2**32 - 500_000])
    (tmp_path / "intel-rapl:0:0").mkdir()           # a sub-zone: not counted again
    meter = energy.meter_for("cpu", powercap=tmp_path)
    meter.start()
    (a / "energy_uj").write_text("3000000\n")       # +2 J
    (b / "energy_uj").write_text("500000\n")        # wrapped: +1 J
    row = meter.stop(4)
    assert row["energy_j"] == pytest.approx(3.0 / 4)
    assert row["energy_method"] == "rapl package-0,package-1" and row["throttled"] is None


def test_no_rapl_says_why(tmp_path):
    row = energy.meter_for("cpu", powercap=tmp_path / "absent").stop(3)
    assert row["energy_j"] is None and "is absent" in row["energy_note"]
    (tmp_path / "intel-rapl:0").mkdir()
    assert "not readable" in energy.meter_for("cpu", powercap=tmp_path).stop(3)["energy_note"]


class Recorder:
    """A meter that notes when it is read, among the loop's calls."""

    def __init__(self, log):
        self.log = log

    def start(self):
        self.log.append("start")

    def stop(self, calls):
        self.log.append("stop")
        return {"energy_j": 1.0, "calls": calls}


def test_the_loop_reads_the_meter_around_its_sample_blocks_and_counts_their_calls():
    log = []
    timing = measure(lambda: log.append("call"), lambda: log.append("sync"),
                     min_run_ms=0, min_samples=3, warmup_ms=0, min_block_ms=0,
                     meter=Recorder(log))
    between = log[log.index("start") + 1:log.index("stop")]
    assert between.count("call") == timing.energy["calls"] == 3 * timing.number
    assert between[0] == "sync" and between[-1] == "sync"     # whole blocks, synced
    assert "call" in log[:log.index("start")]                  # first call and warm-up before


def test_no_meter_with_flushed_caches():
    timing = measure(lambda: None, lambda: None, min_run_ms=0, min_samples=2, warmup_ms=0,
                     flush=lambda: None, meter=Recorder([]))
    assert timing.energy == {}


def test_env_lists_application_clocks_and_the_power_limit_where_nvml_gives_them(monkeypatch):
    from harness.measure import devices
    fake = FakeNvml([gpu(readings={"app_sm_mhz": [1755], "app_mem_mhz": [2619],
                                   "limit_mw": [700_000]}), gpu()])
    listed = devices._list_gpus(fake)
    assert (listed[0]["app_sm_clock_mhz"], listed[0]["app_mem_clock_mhz"],
            listed[0]["power_limit_w"]) == (1755, 2619, 700.0)
    assert listed[1]["app_sm_clock_mhz"] is None and listed[1]["power_limit_w"] is None
