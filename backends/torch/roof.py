"""The device's roof in PyTorch, for `attnbench env --calibrate` (harness/run/calibrate.py):
a square matmul per dtype and a stream copy, each as a (step, sync) pair the harness's
timing loop times. Called in a calibration worker, after load_backend set the threads."""
from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _sync(device: str):
    return (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else (
        lambda: None)


def matmul_step(n: int, dtype: str, device: str):
    """n x n by n x n in `dtype`: 2 n^3 FLOPs a call."""
    torch.set_float32_matmul_precision("highest")       # float32 means float32, not TF32
    a, b = (torch.randn(n, n, device=device).to(DTYPES[dtype]) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=DTYPES[dtype])
    return (lambda: torch.matmul(a, b, out=out)), _sync(device)


def copy_step(nbytes: int, device: str):
    """A float32 buffer of nbytes copied into another: 2 * nbytes moved a call."""
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    return (lambda: dst.copy_(src)), _sync(device)
