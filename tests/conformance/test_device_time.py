"""Device time from each framework's own profiler (backend.profile, read by
harness/measure/device_time.py), through the harness's profiled pass
(harness.run.cell.profiled) on a small attention step, per (backend, variant).

Where a framework gives a figure, device_ms is positive and, on the CPU, about the
host time inside its ops: below the wall time of a step, give or take what
profiling and a busy machine add (BOUND). Where it cannot, the row is None with
the reason in device_time_note: such an entry names a fragment of that reason.
A backend whose framework is missing, or that refuses the case, is skipped.
"""
from __future__ import annotations

import statistics
import time

import pytest

from harness.run.cell import profiled
from harness.spec import Case

from .test_backends import DEVICE, data, runnable_backend

# (backend, variant, profiler's name in device_time_method, or None and the
# fragment of device_time_note where the framework gives no figure).
PROFILED = [
    ("torch", "eager", "torch.profiler", None),
    ("torch", "sdpa", "torch.profiler", None),
    ("torch", "compile", "torch.profiler", None),      # one compile, about a second
    ("jax", "jit", "jax.profiler", None),
    ("tensorflow", "function", "tf.profiler", None),
]
SHAPE = dict(batch=1, seq_len=64, heads=2, head_dim=16)
TIMED_CALLS = 20


def bound_ms(median_ms: float) -> float:
    """Generous: profiled steps of a sub-millisecond op read up to 3x their timed
    median on the shared 2-core machine (TF eager, 2.6 against 1.2 ms)."""
    return 10 * median_ms + 10


def median_ms(prepared) -> float:
    """The step's wall time (the timing loop's median stands in), after a warm-up."""
    prepared.step()
    prepared.sync()
    times = []
    for _ in range(TIMED_CALLS):
        started = time.perf_counter()
        prepared.step()
        prepared.sync()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


@pytest.mark.parametrize("backend_name, variant, profiler, note", PROFILED,
                         ids=[f"{b}-{v}" for b, v, _, _ in PROFILED])
def test_profiled_pass_gives_device_time_or_says_why(backend_name, variant, profiler,
                                                     note):
    case = Case("conformance", "attention", backend_name, variant, "forward", "float32",
                DEVICE, causal=True, **SHAPE)
    backend = runnable_backend(case)
    weights, inputs, _, _ = data(case)
    prepared = backend.prepare(case, weights, inputs)
    wall = median_ms(prepared)
    row = profiled(backend, case, prepared, wall)
    if note is not None:
        assert row["device_ms"] is None and note in row["device_time_note"]
        return
    assert row["device_time_note"] is None
    assert 0 < row["device_ms"] < bound_ms(wall), (row, wall)
    assert row["device_time_method"].startswith(profiler)
    assert row["launch_overhead_ms"] == pytest.approx(wall - row["device_ms"])
