"""PyTorch tensors for code that is not a backend: the attn_benchmark fixture
(harness/pytest_plugin/__init__.py) times a user's own callable on a Case's inputs.
Imported only where torch may be imported (a pytest process that asked for it)."""
from __future__ import annotations

import numpy as np
import torch

# Precision and read-back are the backend's own, so a user's call runs as its cells do.
from backends.torch.backend import pin_precision  # noqa: F401
from backends.torch.steps import DTYPES, to_numpy  # noqa: F401


def to_device(array: np.ndarray, device: str, dtype: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=DTYPES[dtype])


def sync(result) -> None:
    """CUDA work is queued: wait for it on the result's GPU (the CPU runs torch ops
    synchronously)."""
    if isinstance(result, torch.Tensor) and result.is_cuda:
        torch.cuda.synchronize(result.device)
    elif torch.cuda.is_initialized():
        torch.cuda.synchronize()
