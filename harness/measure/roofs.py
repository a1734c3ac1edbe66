"""The device's roof: the FLOP/s and bytes/s a cell is measured against.

A GPU's roof is its datasheet row (devices.GPU_PEAKS: dense peak per dtype, memory
bandwidth). A CPU has no such row, so `attnbench env --calibrate` measures the
machine's own (harness/run/calibrate.py): the best large matmul of any installed
framework per dtype, and the best stream copy, at the thread count cells run with.
It is kept in ROOFS_FILE (ATTNBENCH_ROOFS moves it; outside the size-bounded cache,
which may prune), keyed by the CPU's model and the thread count, and a cell's
pct_peak and pct_peak_bw are taken against its own dtype's roof
(docs/measurement.md, "The roofline").
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.measure import devices


@dataclass(frozen=True)
class Roof:
    tflops: float | None          # the dtype's peak, TFLOP/s
    gb_s: float | None            # memory bandwidth, GB/s
    source: str                   # "datasheet", "calibrated <date> (...)", or why none


def roofs_file() -> Path:
    chosen = os.environ.get("ATTNBENCH_ROOFS")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "attnbench" / "roofs.json"


def key(device_name: str, threads: int | None) -> str:
    """A calibration's key: the CPU model and the threads (all this process may use
    when not given, as the runner's default)."""
    return f"{device_name} | {threads or devices.cpu_threads()} threads"


def load(path: Path | None = None) -> dict:
    """Every calibrated roof, by key; {} when none was measured (or the file is bad)."""
    try:
        found = json.loads((path or roofs_file()).read_text())
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


def save(entry: dict, device_name: str, threads: int | None, path: Path | None = None) -> Path:
    """Keep one machine's calibration beside the others, atomically."""
    path = path or roofs_file()
    roofs = {**load(path), key(device_name, threads): entry}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(roofs, f, indent=1, sort_keys=True)
    os.replace(f.name, path)
    return path


def roof(device_name: str, gpu: bool, dtype: str, threads: int | None = None,
         calibrated: dict | None = None) -> Roof:
    """The roof a cell on this device, in this dtype, is measured against."""
    if gpu:
        return Roof(devices.peak_tflops(device_name, dtype),
                    devices.peak_bandwidth_gb_s(device_name), "datasheet")
    entry = (load() if calibrated is None else calibrated).get(key(device_name, threads))
    if not entry:
        return Roof(None, None, f"not calibrated: run `attnbench env --calibrate` "
                                f"(--threads {threads or 'N'})")
    return Roof(entry.get("tflops", {}).get(dtype), entry.get("gb_s"),
                f"calibrated {entry.get('measured_at', '')[:10]} ({entry.get('how', '')})")


def roofline(flops: int, bytes_moved: int, tflops: float | None, gb_s: float | None,
             roof_: Roof) -> dict:
    """A row's place under its roof: % of peak FLOP/s and bandwidth, its arithmetic
    intensity (FLOPs a byte) and which roof bounds it: memory where the intensity is
    below the ridge (peak FLOP/s over peak bytes/s), else compute."""
    intensity = flops / bytes_moved if bytes_moved else None
    bound = None
    if intensity is not None and roof_.tflops and roof_.gb_s:
        bound = "memory" if intensity < roof_.tflops * 1e3 / roof_.gb_s else "compute"
    return {"pct_peak": 100 * tflops / roof_.tflops if roof_.tflops and tflops else None,
            "pct_peak_bw": 100 * gb_s / roof_.gb_s if roof_.gb_s and gb_s else None,
            "arith_intensity": intensity, "bound": bound, "peak_tflops": roof_.tflops,
            "peak_gb_s": roof_.gb_s, "roof_source": roof_.source}
