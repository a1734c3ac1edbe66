"""PyTorch tensors for code that is not a backend: the attn_benchmark fixture
(harness/pytest_plugin/__init__.py) times a user's own callable on a Case's inputs.
Imported only where torch may be imported (a pytest process that asked for it)."""
from __future__ import annotations

import numpy as np
import torch

from backends.torch.backend import DTYPES


def pin_precision(dtype: str) -> None:
    """float32 is full float32, tf32 is TF32: as the backend pins it per cell."""
    torch.set_float32_matmul_precision("high" if dtype == "tf32" else "highest")
    torch.backends.cudnn.allow_tf32 = dtype == "tf32"


def to_device(array: np.ndarray, device: str, dtype: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=DTYPES[dtype])


def sync(result) -> None:
    """CUDA work is queued: wait for it on the result's GPU (the CPU runs torch ops
    synchronously)."""
    if isinstance(result, torch.Tensor) and result.is_cuda:
        torch.cuda.synchronize(result.device)
    elif torch.cuda.is_initialized():
        torch.cuda.synchronize()


def to_numpy(result) -> np.ndarray:
    return result.detach().to("cpu", torch.float32).numpy()
