"""JAX's environment, set by the runner before the worker imports jax.

Framework-free on purpose: the runner reads it without importing jax.
"""
from __future__ import annotations

import os


def environment(device: str, threads: int, scratch: str) -> dict[str, str]:
    """`scratch` is an empty folder of this worker's own, removed when it ends."""
    env = {
        # Otherwise JAX maps 75% of the GPU at its first use: the allocator's peak
        # (step_peak) and every other process on the GPU would see that instead.
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        # The platform the cell runs on and no other: a CPU cell never initializes
        # CUDA (and pays nothing for it), a GPU cell fails loudly without jax[cuda]
        # rather than silently running on the CPU.
        "JAX_PLATFORMS": "cuda" if device.startswith("cuda") else "cpu",
    }
    # No XLA_FLAGS for threads: XLA's CPU client sizes its pool from the process's
    # CPU affinity, which the worker restricts to `threads` CPUs before the import
    # (harness.run.environment.limit_cpus); XLA has no flag for the pool size itself.
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        # No persistent compilation cache, so first_call_ms is a real trace and
        # compile, never a lookup of what an earlier run left on disk. Set
        # JAX_COMPILATION_CACHE_DIR yourself to measure a warm one.
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return env
