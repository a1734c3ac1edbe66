"""Whether the GPU tests run, skip or fail. They run where NVML lists a GPU. They
skip, saying why, only where no GPU shows at all: not to NVML, not to the
framework-free signs (harness.measure.devices.gpu_signs), not to torch or JAX. Where a
GPU shows but NVML lists none, each test fails with NVML's message: a broken
NVML (the core plans and measures GPUs through it) must never read as "no GPU"."""
from __future__ import annotations

import functools

import pytest

from harness.measure import devices


def frameworks_seeing_a_gpu() -> list[str]:
    """What torch and JAX, where installed, say about GPUs in this process."""
    seen = []
    try:
        import torch
        if torch.cuda.is_available():
            seen.append(f"torch sees {torch.cuda.device_count()} CUDA device(s)")
    except ImportError:
        pass
    try:
        import jax
        seen.append(f"JAX sees {len(jax.devices('gpu'))} GPU device(s)")
    except (ImportError, RuntimeError):      # RuntimeError: JAX has no GPU backend
        pass
    return seen


@functools.cache
def gpu_verdict() -> tuple[str, str]:
    """("run", ""), ("skip", why) or ("fail", why), decided once per session."""
    found, nvml_error = devices.discover()
    if found:
        return "run", ""
    shown = devices.gpu_signs() + frameworks_seeing_a_gpu()
    nvml = nvml_error or "NVML finds no NVIDIA driver or GPU"
    if shown:
        return "fail", (f"a GPU is present ({'; '.join(shown)}) but NVML lists none: "
                        f"{nvml}")
    return "skip", f"no GPU on this machine ({nvml}; no GPU device file, torch or JAX GPU)"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    kind, why = gpu_verdict()
    if kind == "skip":
        pytest.skip(why)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    kind, why = gpu_verdict()
    if kind == "fail":
        pytest.fail(why, pytrace=False)
