"""PyTorch's environment, set by the runner before the worker imports torch.

Framework-free on purpose: the runner reads it without importing torch.
"""
from __future__ import annotations


def environment(device: str, threads: int) -> dict[str, str]:
    # OpenMP and MKL size their pools at import; torch.set_num_threads follows
    # in the backend too, since some builds ignore the variables.
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
