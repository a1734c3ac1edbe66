"""One cell's step in PyTorch: the Prepared cell a worker times (backend.py builds it).

A step is one call of the workload's module (or the core) on inputs already on the
device; in train mode it also takes the gradients of sum(out * g) with respect to
the inputs and every weight (torch.autograd.grad, no optimizer). In decode mode the
layers write the new tokens' keys and values into their caches in place
(layers.MultiHeadAttention), so calling the step again overwrites the same slots.
GraphedPrepared (the sdpa-graph variant) captures that step once in a CUDA graph
and replays it (docs/measurement.md, "CUDA graphs").
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from backends.base import Outputs
from backends.common import canonical_outputs, input_names
from backends.torch import layers
from backends.torch.attention import sdpa_attention
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


# Steps run before the capture, so that lazy set-up (cuBLAS handles and workspaces,
# SDPA's kernel choice, autograd's device threads) happens outside it.
GRAPH_WARMUPS = 3


class GraphedPrepared(Prepared):
    """The same step captured once in a CUDA graph; `step` replays it. Inputs,
    weights, caches and g already are static buffers (prepare puts them on the
    device once and no step replaces them); the outputs and gradients are the
    tensors the captured step returned, which every replay rewrites in place, so
    Prepared.outputs() reads them through `step` as it reads the eager ones.
    `capture_peak`: the bytes the capture allocated at its peak, which the graph's
    pool keeps for every replay (a replay allocates nothing)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            self.graph, self.result, self.capture_peak = capture(super().step,
                                                                self.case.device)
        except Exception as exc:       # the cell's error, with torch's reason
            raise RuntimeError(f"cannot capture the sdpa step in a CUDA graph: "
                               f"{refusal(exc)}") from exc

    def step(self):
        self.graph.replay()
        return self.result


def capture(step, device: str, warmups: int = GRAPH_WARMUPS):
    """(graph, what `step` returned while captured, bytes allocated at the capture's
    peak), on `device`: warm-up on a side stream, then the capture, as torch's
    CUDA graph docs do it."""
    with torch.cuda.device(device):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmups):
                step()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            result = step()
        return graph, result, torch.cuda.max_memory_allocated() - before


@functools.cache
def graph_refusal(device: str, dtype: torch.dtype, head_dim: int, grouped: bool,
                  masked: bool, train: bool) -> str | None:
    """torch's own refusal to capture an SDPA step (and its backward, in train mode)
    in a CUDA graph, from a capture on a tiny input with the case's dtype, head
    size, grouping and mask or causal path; None: it captures. Any failure, the
    inputs' too, is a reason, never the run's end."""
    def step():
        out = sdpa_attention(q, kv, kv, True, mask=mask)
        return torch.autograd.grad(out, (q, kv), g) if train else out

    try:
        q = torch.randn(1, 2, 16, head_dim, device=device, dtype=dtype,
                        requires_grad=train)
        kv = torch.randn(1, 1 if grouped else 2, 16, head_dim, device=device, dtype=dtype,
                         requires_grad=train)
        g = torch.randn_like(q)
        mask = (torch.ones(16, 16, dtype=torch.bool, device=device).tril() if masked
                else None)
        capture(step, device, warmups=1)
    except Exception as exc:
        return refusal(exc)
    return None


def refusal(exc: BaseException) -> str:
    """The first cause's type and first line: a failed capture's exit raises an
    error of its own ("capture invalidated") over the op that broke it."""
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
