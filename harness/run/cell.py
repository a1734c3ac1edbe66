"""One measured cell, in the steps the worker and the pytest plugin share.

  measured = measure_step(backend, case, backend.prepare(case, weights, inputs), loop)
  columns = finish(case, measured, device_name, weights, inputs, refs, rerun)

measure_step times the prepared step with the timing loop it is given, probes the
step's peak memory and takes its outputs; finish adds TFLOP/s and % of peak at the
median and the correctness verdict. The worker (harness/run/worker.py) passes
harness.measure.timing.loop, the pytest plugin pytest-benchmark's pedantic
(harness/pytest_plugin/pedantic.py): everything else is measured the same way
(docs/measurement.md, "Timing" and "Memory"). The caller hands in the backend;
nothing here imports a framework.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from harness.correctness.judging import References, judge_outputs
from harness.measure import contention, device_time, devices, energy, roofs
from harness.measure.timing import TimingLoop
from harness.spec import Case, costs
from harness.spec.catalog import device_kind


@dataclass
class Measured:
    columns: dict       # timing (from the loop), peak memory, kernel
    got: dict           # the step's outputs (and gradients), for the verdict


def measure_step(backend, case: Case, prepared, loop: TimingLoop, *,
                 flush_l2: bool = False, nvml_device: str | None = None,
                 quiet=None, profile: bool = False) -> Measured:
    """Time `prepared` (step, sync and outputs, as backends/base.py's Prepared
    declares them, and its `kernel` attribute where the backend sets one) with
    `loop`, then probe one step's peak memory and take its outputs. Pass the
    prepared step inline (`backend.prepare(...)`) so that it is freed on return,
    before a sampled check asks the backend again. nvml_device: also record NVML's
    figure for this process on that GPU (the runner's numbering). Who else used the
    machine while it was timed goes in the contention columns. `quiet()`, when
    given, returns once nothing else of ours runs (harness/run/worker.py), and
    returns what to call once the timed calls are over."""
    flush = cache_flusher(backend, case) if flush_l2 else None
    timed_done = quiet() if quiet is not None else None
    watch = contention.Watch(_gpu_index(nvml_device))
    watch.start()
    meter = energy.meter_for(nvml_device or case.device)
    unmetered = energy.blank("not measured with flush_l2: the flushes would count")
    columns = {**(unmetered if flush else {}),
               **loop(prepared.step, prepared.sync, flush, meter=meter)}
    columns.update(watch.columns())
    if profile:
        # After the timed calls, but still in the quiet window: the profiler's clocks
        # run on while a stopped worker waits (side by side, the runner stops the others).
        columns.update(profiled(backend, case, prepared, columns.get("median_ms")))
    if timed_done is not None:
        timed_done()
    del flush                    # its 256 MB buffer is not part of the step's peak

    def one_step():
        prepared.step()
        prepared.sync()

    taken: dict = {}
    # A CPU probe runs the step twice, the first only to empty the allocator: that
    # one may as well take the outputs (harness.measure.memory.cpu_step_peak).
    one_step.first = lambda: taken.update(outputs=prepared.outputs())
    started = time.perf_counter()
    peak, method = backend.step_peak(case, one_step)
    columns.update(peak_mem_bytes=peak, mem_method=method)
    if nvml_device is not None:
        columns["nvml_mem_bytes"], columns["nvml_mem_method"] = gpu_process_memory(nvml_device)
    columns["kernel"] = getattr(prepared, "kernel", None)
    probed = time.perf_counter()
    got = taken["outputs"] if taken else prepared.outputs()
    columns.update(phase_memory_s=probed - started, phase_outputs_s=time.perf_counter() - probed)
    return Measured(columns, got)


PROFILED_STEPS = 3


def profiled(backend, case: Case, prepared, median_ms: float | None) -> dict:
    """device_ms and launch_overhead_ms from the backend's profiler over a few steps
    (harness/measure/device_time.py); None with the reason where it has none or fails."""
    profile = getattr(backend, "profile", None)
    if profile is None:
        return device_time.columns(None, f"{case.backend} has no profiler pass", None, "")
    started = time.perf_counter()
    try:
        events, profiler = profile(case, prepared.step, prepared.sync, PROFILED_STEPS)
        ms, how = device_time.step_ms(events, PROFILED_STEPS, case.device.startswith("cuda"))
    except Exception as exc:          # the profiler is a figure, never the cell
        ms, how, profiler = None, f"profiler failed: {type(exc).__name__}: {exc}"[:300], ""
    return {**device_time.columns(ms, how, median_ms, profiler),
            "phase_profile_s": time.perf_counter() - started}


def _gpu_index(device: str | None) -> int | None:
    return int(device.split(":")[1]) if device and device.startswith("cuda:") else None


def finish(case: Case, measured: Measured, device_name: str, weights: dict, inputs: dict,
           refs: References, rerun=None, threads: int | None = None) -> dict:
    """A measured cell's columns: the loop's, memory and kernel, throughput at the
    median, and the verdict against the references (harness.correctness.judging),
    with the time the references and the judging took."""
    return {**measured.columns,
            **throughput(case, device_name, measured.columns.get("median_ms"), threads),
            **efficiency(case, measured.columns),
            **judged(case, measured.got, weights, inputs, refs, rerun)}


def judged(case: Case, got: dict, weights: dict, inputs: dict, refs: References,
           rerun=None) -> dict:
    """The verdict's columns (harness.correctness.judging), with the seconds the
    references and the judging took."""
    started, before = time.perf_counter(), refs.spent_s
    verdict = judge_outputs(case, got, weights, inputs, refs, rerun)
    reference_s = refs.spent_s - before
    return {**verdict, "phase_reference_s": reference_s,
            "phase_judge_s": time.perf_counter() - started - reference_s}


def throughput(case: Case, device_name: str, median_ms: float | None,
               threads: int | None = None) -> dict:
    """TFLOP/s at the median (docs/measurement.md, "FLOPs convention"), the GB/s the
    least bytes a step moves come to (costs.bytes_moved), and their place under the
    device's roof for the dtype (harness/measure/roofs.py: a GPU's datasheet, a CPU's
    calibration at these threads); None where unknown."""
    seconds = median_ms * 1e-3 if median_ms else None
    flops, moved = costs.flops(case), costs.bytes_moved(case)
    tflops = flops / seconds / 1e12 if seconds else None
    gb_s = moved / seconds / 1e9 if seconds else None
    roof = roofs.roof(device_name, device_kind(case.device) == "cuda", case.dtype, threads)
    return {"tflops": tflops, "gb_s": gb_s, **roofs.roofline(flops, moved, tflops, gb_s, roof)}


def efficiency(case: Case, columns: dict) -> dict:
    """TFLOP per joule, from the meter's joules a step (energy.py); None without them."""
    joules = columns.get("energy_j")
    return {"tflop_per_j": costs.flops(case) / joules / 1e12 if joules else None}


def cache_flusher(backend, case: Case):
    """The backend's way to evict its device's caches; a backend without one
    cannot honour flush_l2, and its cell fails saying so."""
    make = getattr(backend, "cache_flusher", None)
    if make is None:
        raise NotImplementedError(f"{case.backend} has no cache_flusher: flush_l2 unsupported")
    return make(case)


def gpu_process_memory(device: str) -> tuple[int | None, str | None]:
    """NVML's figure for this process on its GPU (context and pools included), the
    second memory column beside the allocator's peak; None on the CPU. NVML counts
    GPUs by PCI bus, as the runner's cuda:N does (CUDA_DEVICE_ORDER=PCI_BUS_ID)."""
    if not device.startswith("cuda:"):
        return None, None
    return devices.process_gpu_memory(int(device.split(":")[1]), os.getpid())
