"""One cell's step in JAX: the pure function jax.jit compiles, and the Prepared cell
that calls it (backend.py prepares both).

A step is one call of a jax.jit-compiled pure function of (parameters, inputs):
the Flax NNX module is split into its graphdef and a flat tuple of parameters
when the cell is prepared (layers.Built), so the timed call does no NNX
bookkeeping. In train mode that one function returns (out, grads), the
gradients of sum(out * g) with respect to the inputs and every weight (jax.vjp).
In decode mode (mha, block, transformer) it is (params, x, caches) -> (out,
caches written): the caches are donated, so XLA writes the new tokens' keys and
values into their buffers in place, and Prepared keeps the returned caches for
the next call. The first call traces and compiles; the harness times it apart
(first_call_ms).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from backends.base import Outputs
from backends.common import canonical_outputs
from backends.jax.attention import kernel
from backends.jax.layers import Built
from harness.spec import Case

DTYPES = {"float32": jnp.float32, "tf32": jnp.float32,
          "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# float32 means full float32 and tf32 means TF32, in every framework: JAX's own
# default on GPUs is TF32 for float32 matmuls, so both are pinned. tf32 names the
# dot algorithm itself: Precision.HIGH ("tensorfloat32") is TF32 on some GPUs but
# three bfloat16 passes elsewhere. bfloat16 and float16 operands have no precision
# to choose (the setting acts on float32 operands).
PRECISION = {"float32": jax.lax.Precision.HIGHEST,
             "tf32": jax.lax.DotAlgorithmPreset.TF32_TF32_F32,
             "bfloat16": None, "float16": None}
MATMUL_PRECISION = {"float32": "float32", "tf32": "TF32_TF32_F32"}   # for the context
# The caches' argument in a decode step, donated. XLA:CPU honours the donation
# in jax 0.10.2 (checked: the passed cache is deleted, the returned one has its
# buffer, and no "Some donated buffers were not usable" warning), as XLA:GPU does.
CACHES_ARGUMENT = 2
# XLA:GPU records runs of 5+ kernels (fusions, cuBLAS, cuDNN, custom calls) into
# command buffers, CUDA graphs, by default (xla_gpu_graph_min_graph_size = 5, so
# `jit` already has some); jit-graph lowers the run to 1, every region it can. Per
# compile, so `jit` in the same worker keeps XLA's defaults (docs/measurement.md,
# "CUDA graphs").
COMPILER_OPTIONS = {"jit-graph": {"xla_gpu_graph_min_graph_size": 1}}


def to_numpy(a: jax.Array) -> np.ndarray:
    return np.asarray(a).astype(np.float32)


def _pinned(fn, precision: str | None):
    if precision is None:
        return fn

    def run(*args):
        # Traced under the context, so every matmul (dot_product_attention's
        # included, which takes no precision argument) and its transpose in
        # the backward pass carries it; the layers also pass it explicitly.
        with jax.default_matmul_precision(precision):
            return fn(*args)
    return run


def pure_step(case: Case, built: Built | None, core):
    """The function to jit: (params, *inputs[, g][, lengths]) -> out, or (out, grads)
    in train mode with grads = (gradients of the inputs, gradients of the params); in
    decode mode for the layers, (params, x, caches) -> (out, caches written). The
    attention core alone decodes as a forward of its q_len queries (it has no cache
    to write). lengths, last and only when case.padded: the (B,) int32 sequence
    lengths, an argument rather than a constant, as a server's batch passes them."""
    precision = MATMUL_PRECISION.get(case.dtype)
    if built is None:                       # the attention core: no parameters
        def forward(params, q, k, v, lengths=None):
            return core(q, k, v, case.causal, case.window, lengths)
    elif case.mode == "decode":
        return _pinned(built.decode, precision)
    else:
        forward = built.apply
    if case.mode != "train":
        return _pinned(forward, precision)

    def train(params, *args):
        *inputs, g, lengths = args if case.padded else (*args, None)

        def differentiated(params, *inputs):          # lengths are not differentiated
            return forward(params, *inputs, lengths)
        out, vjp = jax.vjp(differentiated, params, *inputs)
        dparams, *dinputs = vjp(g)                 # gradients of sum(out * g)
        return out, (tuple(dinputs), dparams)
    return _pinned(train, precision)


class Prepared:
    """One cell ready to run: the jitted step, its parameters and inputs on the
    device, and in decode mode every layer's (k, v) caches as the last step left them."""

    def __init__(self, case: Case, fn, params: tuple, args: list, names: list[str],
                 bhnd: bool, caches: tuple | None = None):
        self.case, self.fn, self.params, self.args = case, fn, params, args
        self.names = names            # inputs, then weights, in gradient order
        self.bhnd = bhnd              # attention workload: tensors kept as (B, H, N, D)
        self.caches = caches
        self.last = None
        self.kernel = kernel(case)    # what runs the attention core

    def _arguments(self) -> tuple:
        caches = () if self.caches is None else (self.caches,)
        return (self.params, *self.args, *caches)

    def step(self):
        if self.caches is None:
            self.last = self.fn(*self._arguments())
        else:
            # The caches passed are donated (deleted); the returned ones, the same
            # buffers written, are the next call's.
            self.last, self.caches = self.fn(*self._arguments())
        return self.last

    def sync(self) -> None:
        if self.last is not None:
            jax.block_until_ready((self.last, self.caches))

    def outputs(self) -> Outputs:
        result = self.step()
        self.sync()
        out, grads = result if self.case.mode == "train" else (result, ((), ()))
        dinputs, dparams = grads
        # Weights are (in, out) in Flax already: only the core's tensors change layout.
        return canonical_outputs(self.case, to_numpy(out),
                                 zip(self.names, map(to_numpy, (*dinputs, *dparams))),
                                 bhnd=self.bhnd)

    def memory_analysis(self) -> int | None:
        """XLA's own figure for the compiled step: temporaries plus outputs, less the
        outputs that reuse a donated input's buffer (the caches a decode step writes
        in place add nothing)."""
        compiled = self.fn.lower(*self._arguments()).compile()
        stats = compiled.memory_analysis()
        if stats is None:
            return None
        return int(stats.temp_size_in_bytes + stats.output_size_in_bytes
                   - stats.alias_size_in_bytes)
