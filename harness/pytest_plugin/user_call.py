"""A user's attention function as a prepared step, so that `attn_benchmark` runs it
through the same cell pipeline (harness/run/cell.py) as a backend's own step."""
from __future__ import annotations

import importlib

import numpy as np

from harness.spec import Case


class UserCall:
    """fn(q, k, v) on the Case's inputs, moved to its device as its backend's
    framework's arrays, in (B, N, H, D) or, with layout="bhnd", (B, H, N, D);
    step, sync and outputs as backends/base.py's prepared step has them."""

    def __init__(self, fn, case: Case, inputs: dict[str, np.ndarray], layout: str):
        self.fn = fn
        self.interop = importlib.import_module(f"backends.{case.backend}.interop")
        self.interop.pin_precision(case.dtype)
        self.swap = (lambda a: a.transpose(0, 2, 1, 3)) if layout == "bhnd" else (lambda a: a)
        self.args = tuple(self.interop.to_device(self.swap(inputs[n]), case.device, case.dtype)
                          for n in "qkv")
        self.kernel = getattr(fn, "__qualname__", repr(fn))
        self.last = None

    def step(self) -> None:
        self.last = self.fn(*self.args)

    def sync(self) -> None:
        # Syncs on the last call's result (JAX waits on an array), then lets it go,
        # so that no result outlives its timed call or the memory probe.
        self.interop.sync(self.last)
        self.last = None

    def outputs(self) -> dict[str, np.ndarray]:
        return {"out": self.swap(self.interop.to_numpy(self.fn(*self.args)))}
