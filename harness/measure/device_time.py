"""Device time from a profiler's trace: what the device spent on one step, beside the
wall-clock median, so launch overhead can be told from slow kernels.

A backend profiles a few steps in a separate pass, after the timed part and never
inside it (harness/run/cell.py), and hands the trace here in the Chrome trace-event
format that torch's Kineto exports and JAX's profiler writes for Perfetto (TF's
backend lays its profiler's trace out the same way): a list of events, complete ones
("ph": "X") with a start ("ts") and a duration ("dur") in microseconds, and metadata
ones ("ph": "M") naming each process and thread. Framework-free, so it is tested on
recorded and made-up traces alone (tests/unit/test_device_time.py).

- On a GPU, device_ms is the summed duration of the device's events over the steps:
  Kineto's kernels, memcpys and memsets (by category), or the events of a process
  named for a GPU ("/device:GPU:0", as XLA's and TF's traces name it) on its streams'
  threads where it names them.
- On a CPU no kernel runs apart from the host, so device_ms is the time the host
  spent inside the framework's ops: the union of the intervals of its op events
  (nested ops counted once), over the steps; what remains of the wall time is the
  Python and dispatch around them. An op event is Kineto's cpu_op (but for Dynamo's
  scopes around a compiled graph, DYNAMO_SCOPES), or in XLA's and TF's "/host:CPU"
  process an event naming its op (HOST_OP_ARGS), or else TF's eager op run (EAGER_OP).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

# Kineto's categories of work that runs on the GPU.
DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
# Kineto's category of a framework op on the host.
HOST_OP_CATEGORIES = ("cpu_op",)
# torch.compile's scopes, cpu_op events too, around the compiled graph's call ("##
# Call CompiledFxGraph <key> ##", which holds inductor's kernels and counts): guards,
# frame and wrapper are dispatch, as JAX's PjitFunction is (torch 2.13's names).
DYNAMO_SCOPES = ("TorchDynamo Cache Lookup", "Torch-Compiled Region", "Pregraph bytecode",
                 "AOTDispatcher Runtime Wrapper")
# XLA's and TF's traces (TSL's trace viewer format) put a GPU's work on its streams'
# threads ("Stream #7", "Stream #7(Kernel,MemcpyH2D)"); TF's converter (xprof) adds
# derived threads to the same process ("XLA Ops", "XLA Modules", "Framework Ops",
# "Steps", ...) that repeat that time, and CUPTI's own cost has a thread of its own.
STREAM_THREAD = "Stream #"
# Their host process, "/host:CPU", holds every thread's events, the Python
# tracer's and the client's dispatch too: an op there is an event naming the op
# it runs: XLA's compiled ops carry "hlo_op" (JAX, TF's xla), TF's op kernels
# "is_eager" (graph and tf.function).
HOST_PROCESS = "/host:CPU"
HOST_OP_ARGS = ("hlo_op", "is_eager")
# TF's eager ops where no kernel is traced: TF 2.21 runs each eager op as a one-op
# function and traces no kernel inside it at the profiler's default level (which
# its ProfilerOptions cannot change: "host_tracer_level expects an i value").
EAGER_OP = "EagerKernelExecute"


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


def _thread_names(events: list[dict]) -> dict:
    return {(e.get("pid"), e.get("tid")): str(e.get("args", {}).get("name", ""))
            for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}


def device_events(events: list[dict]) -> list[dict]:
    """The events that ran on a GPU: Kineto's by category; in a "/device:GPU"
    process, those on its streams' threads, or all of them where no thread of the
    process is named for a stream."""
    names, threads = _process_names(events), _thread_names(events)
    gpus = {pid for pid, name in names.items() if name.startswith("/device:GPU")}
    streamed = {pid for (pid, _), name in threads.items()
                if pid in gpus and name.startswith(STREAM_THREAD)}

    def on_gpu(e: dict) -> bool:
        pid = e.get("pid")
        return pid in gpus and (pid not in streamed or threads.get(
            (pid, e.get("tid")), "").startswith(STREAM_THREAD))
    return [e for e in _complete(events) if e.get("cat") in DEVICE_CATEGORIES or on_gpu(e)]


def host_op_events(events: list[dict]) -> list[dict]:
    """The framework's ops on the host: Kineto's cpu_op events, less Dynamo's
    scopes; in a "/host:CPU" process, the events naming an op (HOST_OP_ARGS), or
    else TF's eager ops."""
    names = _process_names(events)
    host = [e for e in _complete(events)
            if names.get(e.get("pid"), "").startswith(HOST_PROCESS)]
    ops = [e for e in host if any(a in e.get("args", {}) for a in HOST_OP_ARGS)]
    kineto = [e for e in _complete(events) if e.get("cat") in HOST_OP_CATEGORIES
              and not str(e.get("name", "")).startswith(DYNAMO_SCOPES)]
    return kineto + (ops or [e for e in host if e.get("name") == EAGER_OP])


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
    what = "the framework's ops" if any(e.get("name") != EAGER_OP for e in found) else \
        f"TF's eager op runs ({EAGER_OP}; no kernel is traced inside them)"
    return busy_us(found) / steps / 1e3, \
        f"host time inside {what}, their union, over {steps} profiled steps"


def columns(device_ms: float | None, how: str, median_ms: float | None,
            profiler: str) -> dict:
    """The row's device-time columns; launch overhead is the wall median minus them."""
    if device_ms is None:
        return {"device_ms": None, "launch_overhead_ms": None, "device_time_method": None,
                "device_time_note": how}
    overhead = median_ms - device_ms if median_ms is not None else None
    return {"device_ms": device_ms, "launch_overhead_ms": overhead,
            "device_time_method": f"{profiler}: {how}", "device_time_note": None}
