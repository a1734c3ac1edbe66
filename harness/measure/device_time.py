"""Device time from a profiler's trace: what the device spent on one step, beside the
wall-clock median, so launch overhead can be told from slow kernels.

A backend profiles a few steps in a separate pass, after the timed part and never
inside it (harness/run/cell.py), and hands the trace here in the Chrome trace-event
format that torch's Kineto exports and JAX's profiler writes for Perfetto: a list of
events, complete ones ("ph": "X") with a start ("ts") and a duration ("dur") in
microseconds, and metadata ones ("ph": "M") naming each process. Framework-free, so
it is tested on recorded and made-up traces alone (tests/unit/test_device_time.py).

- On a GPU, device_ms is the summed duration of the device's events over the steps:
  Kineto's kernels, memcpys and memsets (by category), or the events of a process
  named for a GPU ("/device:GPU:0", as XLA's traces name it).
- On a CPU no kernel runs apart from the host, so device_ms is the time the host
  spent inside the framework's ops: the union of the intervals of its op events
  (nested ops counted once), over the steps; what remains of the wall time is the
  Python and dispatch around them.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

# Kineto's categories of work that runs on the GPU.
DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
# Kineto's category of a framework op on the host; XLA's CPU traces name their ops'
# process "/host:CPU".
HOST_OP_CATEGORIES = ("cpu_op",)


def load(path: str | Path) -> list[dict]:
    """The trace's events, from a .json or .json.gz file ({"traceEvents": [...]} or a list)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        found = json.load(f)
    return found.get("traceEvents", []) if isinstance(found, dict) else found


def _process_names(events: list[dict]) -> dict:
    return {e.get("pid"): str(e.get("args", {}).get("name", ""))
            for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}


def _complete(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("ph") == "X" and isinstance(e.get("dur"), (int, float))]


def device_events(events: list[dict]) -> list[dict]:
    """The events that ran on a GPU."""
    names = _process_names(events)
    return [e for e in _complete(events) if e.get("cat") in DEVICE_CATEGORIES
            or names.get(e.get("pid"), "").startswith("/device:GPU")]


def host_op_events(events: list[dict]) -> list[dict]:
    """The framework's ops on the host (Kineto's cpu_op events, XLA's /host:CPU ops)."""
    names = _process_names(events)
    return [e for e in _complete(events) if e.get("cat") in HOST_OP_CATEGORIES
            or names.get(e.get("pid"), "").startswith("/host:CPU")]


def busy_us(events: list[dict]) -> float:
    """Microseconds covered by at least one event: overlaps and nesting counted once."""
    total, end = 0.0, None
    for start, stop in sorted((e["ts"], e["ts"] + e["dur"]) for e in events):
        if end is None or start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def step_ms(events: list[dict], steps: int, gpu: bool) -> tuple[float | None, str]:
    """(ms a step, what was summed), or (None, why) when the trace holds none of it."""
    if steps < 1:
        return None, "no profiled steps"
    if gpu:
        found = device_events(events)
        if not found:
            return None, "the trace holds no GPU kernel"
        return sum(e["dur"] for e in found) / steps / 1e3, \
            f"summed GPU kernels, memcpys and memsets over {steps} profiled steps"
    found = host_op_events(events)
    if not found:
        return None, "the trace holds no framework op on the host"
    return busy_us(found) / steps / 1e3, \
        f"host time inside the framework's ops (their union) over {steps} profiled steps"


def columns(device_ms: float | None, how: str, median_ms: float | None,
            profiler: str) -> dict:
    """The row's device-time columns; launch overhead is the wall median minus them."""
    if device_ms is None:
        return {"device_ms": None, "launch_overhead_ms": None, "device_time_method": None,
                "device_time_note": how}
    overhead = median_ms - device_ms if median_ms is not None else None
    return {"device_ms": device_ms, "launch_overhead_ms": overhead,
            "device_time_method": f"{profiler}: {how}", "device_time_note": None}
