"""Energy and device state over a cell's timed samples: joules a step, average watts,
and on a GPU its clocks, temperature and power at the start and end.

The timing loop (timing.measure) calls `start()` just before its sample blocks and
`stop(calls)` just after them, outside every timed block, so the medians are
untouched. A GPU reads NVML: the total-energy counter (mJ since the driver loaded,
Volta and later), SM and memory clocks, temperature, power draw and the enforced
power limit; a CPU reads RAPL (/sys/class/powercap, Intel and AMD packages) where it
is readable. Where neither can say, the columns are None and `energy_note` says why
(docs/measurement.md, "Energy and device state").
"""
from __future__ import annotations

import time
from pathlib import Path

from harness.measure.contention import throttle_names

POWERCAP = Path("/sys/class/powercap")
NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0
# A cell whose SM clock ends this much below where it started was slowed down.
CLOCK_DROP = 0.95

STATE_COLUMNS = ("sm_clock_mhz_start", "sm_clock_mhz_end", "mem_clock_mhz_start",
                 "mem_clock_mhz_end", "temp_c_start", "temp_c_end", "power_w_start",
                 "power_w_end", "power_limit_w", "throttled")
ENERGY_COLUMNS = ("energy_j", "avg_watts", "energy_method", "energy_note")


def blank(note: str) -> dict:
    """Every column None, with the reason."""
    return {**dict.fromkeys(STATE_COLUMNS), **dict.fromkeys(ENERGY_COLUMNS),
            "energy_note": note}


class NoMeter:
    """Where nothing can be read: every column None, and why."""

    def __init__(self, note: str):
        self.note = note

    def start(self) -> None:
        pass

    def stop(self, calls: int) -> dict:
        return blank(self.note)


class NvmlMeter:
    """A GPU's energy counter and state, by NVML's numbering of GPUs."""

    def __init__(self, index: int, nvml=None):
        self.index, self.nvml = index, nvml

    def start(self) -> None:
        self.handle, self.note = None, None
        try:
            self.nvml = self.nvml or __import__("pynvml")
            self.nvml.nvmlInit()
            self.handle = self.nvml.nvmlDeviceGetHandleByIndex(self.index)
        except Exception as exc:           # no NVML here: unknown, never a failure
            self.note = f"NVML unavailable: {type(exc).__name__}: {exc}"[:200]
            return
        self.before = self._state()
        self.began, self.mj = time.perf_counter(), self._energy_mj()

    def stop(self, calls: int) -> dict:
        if self.handle is None:
            return blank(self.note)
        mj, seconds = self._energy_mj(), time.perf_counter() - self.began
        after = self._state()
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass
        columns = {**blank(None), **_state_columns(self.before, after)}
        if self.mj is None or mj is None:
            return {**columns, "energy_note": "NVML has no total-energy counter on this GPU"}
        return {**columns, **_energy(mj - self.mj, 1e-3, seconds, calls,
                                     "nvml total energy counter")}

    def _energy_mj(self) -> int | None:
        return _ask(lambda: self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def _state(self) -> dict:
        nvml, h = self.nvml, self.handle
        milli = lambda read: _ask(lambda: read() / 1e3)              # mW -> W
        return {"sm": _ask(lambda: nvml.nvmlDeviceGetClockInfo(h, NVML_CLOCK_SM)),
                "mem": _ask(lambda: nvml.nvmlDeviceGetClockInfo(h, NVML_CLOCK_MEM)),
                "temp": _ask(lambda: nvml.nvmlDeviceGetTemperature(h, NVML_TEMPERATURE_GPU)),
                "power": milli(lambda: nvml.nvmlDeviceGetPowerUsage(h)),
                "limit": milli(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(h)),
                "throttle": _ask(lambda: throttle_names(
                    nvml.nvmlDeviceGetCurrentClocksEventReasons(h)))}


def clocks_and_power(nvml, handle) -> dict:
    """Application clocks (what kernels run at unless throttled) and the enforced power
    limit, for `attnbench env`; None where NVML will not say."""
    limit = _ask(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
    return {"app_sm_clock_mhz": _ask(lambda: nvml.nvmlDeviceGetApplicationsClock(
                handle, NVML_CLOCK_SM)),
            "app_mem_clock_mhz": _ask(lambda: nvml.nvmlDeviceGetApplicationsClock(
                handle, NVML_CLOCK_MEM)),
            "power_limit_w": limit / 1e3 if limit is not None else None}


def _state_columns(before: dict, after: dict) -> dict:
    """Start and end readings; throttled when a slowing reason was set at either end
    or the SM clock dropped (None when NVML said neither)."""
    reasons = [r for r in (before["throttle"], after["throttle"]) if r is not None]
    dropped = None
    if before["sm"] and after["sm"] is not None:
        dropped = after["sm"] < CLOCK_DROP * before["sm"]
    known = [flag for flag in (any(reasons) if reasons else None, dropped) if flag is not None]
    return {"sm_clock_mhz_start": before["sm"], "sm_clock_mhz_end": after["sm"],
            "mem_clock_mhz_start": before["mem"], "mem_clock_mhz_end": after["mem"],
            "temp_c_start": before["temp"], "temp_c_end": after["temp"],
            "power_w_start": before["power"], "power_w_end": after["power"],
            "power_limit_w": after["limit"], "throttled": any(known) if known else None}


class RaplMeter:
    """The CPU packages' energy counters (RAPL through powercap): the whole package,
    so other processes on it count too (the contention columns say whether any ran)."""

    def __init__(self, zones: list[Path]):
        self.zones = zones

    def start(self) -> None:
        self.began, self.uj = time.perf_counter(), [_read_int(z / "energy_uj") for z in self.zones]

    def stop(self, calls: int) -> dict:
        seconds = time.perf_counter() - self.began
        total = 0
        for zone, before in zip(self.zones, self.uj):
            after = _read_int(zone / "energy_uj")
            if before is None or after is None:
                return blank(f"RAPL stopped answering: {zone / 'energy_uj'}")
            wrap = _read_int(zone / "max_energy_range_uj") or 0
            total += after - before if after >= before else after + wrap - before
        names = ",".join((_read_text(z / "name") or z.name) for z in self.zones)
        return {**blank(None), **_energy(total, 1e-6, seconds, calls, f"rapl {names}")}


def rapl_zones(root: Path = POWERCAP) -> tuple[list[Path], str | None]:
    """The package zones whose counters this process can read, or why none."""
    if not root.is_dir():
        return [], f"no RAPL: {root} is absent (a VM, or a CPU without powercap)"
    zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not zones:
        return [], f"no RAPL package zone under {root}"
    readable = [z for z in zones if _read_int(z / "energy_uj") is not None]
    if not readable:
        return [], f"RAPL not readable here ({zones[0] / 'energy_uj'}: needs root)"
    return readable, None


def meter_for(device: str, nvml=None, powercap: Path = POWERCAP):
    """The meter of a cell's device: NVML for cuda:N (the runner numbers GPUs as NVML
    does), RAPL for the CPU, else one that says why not."""
    if device.startswith("cuda:"):
        return NvmlMeter(int(device.split(":")[1]), nvml)
    if device.startswith("cuda"):
        return NoMeter("GPU index unknown to NVML")
    zones, why = rapl_zones(powercap)
    return RaplMeter(zones) if zones else NoMeter(why)


def _energy(amount: int, joules_per_unit: float, seconds: float, calls: int,
            method: str) -> dict:
    joules = amount * joules_per_unit
    if calls <= 0 or seconds <= 0:
        return {"energy_note": "no timed calls to divide the energy among"}
    return {"energy_j": joules / calls, "avg_watts": joules / seconds,
            "energy_method": method, "energy_note": None}


def _ask(read):
    try:
        return read()
    except Exception:                          # one field NVML will not give
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
