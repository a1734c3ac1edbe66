"""PyTorch's environment, set by the runner before the worker imports torch.

Framework-free on purpose: the runner reads it without importing torch.
"""
from __future__ import annotations

import os


def environment(device: str, threads: int, scratch: str) -> dict[str, str]:
    """`scratch` is an empty folder of this worker's own, removed when it ends."""
    # OpenMP and MKL size their pools at import; torch.set_num_threads follows
    # in the backend too, since some builds ignore the variables.
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        # A cold compile cache per worker, so `compile`'s first_call_ms is a real
        # compile (docs/measurement.md, "A cold inductor cache per worker").
        env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(scratch, "inductor")
    return env
