"""One cell's step in PyTorch: the Prepared cell a worker times (backend.py builds it).

A step is one call of the workload's module (or the core) on inputs already on the
device; in train mode it also takes the gradients of sum(out * g) with respect to
the inputs and every weight (torch.autograd.grad, no optimizer). In decode mode the
layers write the new tokens' keys and values into their caches in place
(layers.MultiHeadAttention), so calling the step again overwrites the same slots.
"""
from __future__ import annotations

import numpy as np
import torch

from backends.base import Outputs
from backends.common import canonical_outputs, input_names
from backends.torch import layers
from harness.spec import Case

DTYPES = {"float32": torch.float32, "tf32": torch.float32,
          "bfloat16": torch.bfloat16, "float16": torch.float16}


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


class Prepared:
    """One cell ready to run: module, inputs and parameters on the device."""

    def __init__(self, case: Case, fn, args: list[torch.Tensor], params: dict,
                 g: torch.Tensor | None, bhnd: bool):
        self.case, self.fn, self.args, self.params, self.g = case, fn, args, params, g
        self.bhnd = bhnd              # attention workload: tensors kept as (B, H, N, D)
        self.cuda = case.device.startswith("cuda")
        self.names = [*input_names(case), *params]
        self.wrt = [*args, *params.values()]
        self.kernel = ""              # what runs the attention core (the row's `kernel`)

    def step(self):
        if self.g is None:
            with torch.no_grad():
                return self.fn(*self.args)
        out = self.fn(*self.args)
        # Gradients of sum(out * g) with respect to inputs and every weight.
        return out, torch.autograd.grad(out, self.wrt, self.g)

    def sync(self) -> None:
        if self.cuda:        # this cell's GPU, which need not be the current one
            torch.cuda.synchronize(self.case.device)

    def outputs(self) -> Outputs:
        result = self.step()
        self.sync()
        out, grads = (result, ()) if self.g is None else result
        return canonical_outputs(self.case, to_numpy(out),
                                 zip(self.names, map(to_numpy, grads)),
                                 bhnd=self.bhnd, transposed=layers.TRANSPOSED)
