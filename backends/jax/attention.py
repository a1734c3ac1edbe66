"""The attention core in JAX: the spec's math as einsums, and jax.nn.dot_product_attention.

Layout, chosen per variant on purpose:
- `jit` works on (B, H, N, D): XLA's CPU dot wants the batch dimensions leading
  (docs/measurement.md, "Layouts of the core"). The attention workload's inputs
  are converted to it before timing; mha transposes after its projections
  (timed, as any real model would, and as the torch backend does).
- `dpa` and `dpa-cudnn` work on (B, N, H, D), the only layout
  jax.nn.dot_product_attention takes: any transpose would be inside the call.

Precision: every einsum takes the cell's matmul precision explicitly
(HIGHEST for float32, HIGH = TF32 for tf32, the storage dtype's own otherwise);
dot_product_attention has no precision argument, so the backend also traces the
whole step under jax.default_matmul_precision (see backends/jax/__init__.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

BHND, BNHD = "bhnd", "bnhd"


def einsum_attention(q: jax.Array, k: jax.Array, v: jax.Array, causal: bool,
                     precision=None) -> jax.Array:
    """softmax(q k^T / sqrt(D) + mask) v on (B, H, N, D), op by op as the torch
    backend's eager core: scores in the storage dtype, softmax in float32. Grouped
    heads: k and v repeated for each query head of their group, as torch's does."""
    if k.shape[1] != q.shape[1]:
        group = q.shape[1] // k.shape[1]
        k, v = jnp.repeat(k, group, axis=1), jnp.repeat(v, group, axis=1)
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k, precision=precision)
    scores = (scores * jnp.asarray(1.0 / math.sqrt(q.shape[-1]), q.dtype)).astype(jnp.float32)
    if causal:
        n = q.shape[-2]
        hidden = jnp.triu(jnp.ones((n, n), dtype=bool), k=1)     # key j > query i
        scores = jnp.where(hidden, -jnp.inf, scores)
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    return jnp.einsum("bhqk,bhkd->bhqd", probs, v, precision=precision)


def dpa_attention(implementation: str):
    def core(q: jax.Array, k: jax.Array, v: jax.Array, causal: bool,
             precision=None) -> jax.Array:
        # float32: the logits einsum inside takes jax.default_matmul_precision;
        # bfloat16/float16: it pins BF16_BF16_F32 / F16_F16_F32 itself.
        return jax.nn.dot_product_attention(q, k, v, is_causal=causal,
                                            implementation=implementation)
    return core


@dataclass(frozen=True)
class Core:
    """An attention core and the layout of its q, k, v and output."""

    layout: str                 # BHND or BNHD
    fn: Callable
    precision: object = None    # jax.lax.Precision for the einsums, or None

    def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array, causal: bool) -> jax.Array:
        return self.fn(q, k, v, causal, precision=self.precision)


_CORES = {
    "jit": (BHND, einsum_attention),
    "dpa": (BNHD, dpa_attention("xla")),
    "dpa-cudnn": (BNHD, dpa_attention("cudnn")),
}


def core_for(variant: str, precision=None) -> Core:
    layout, fn = _CORES[variant]
    return Core(layout, fn, precision)


KERNELS = {
    "jit": "einsum + softmax (XLA fusion)",
    "dpa": "dot_product_attention, implementation xla",
    "dpa-cudnn": "dot_product_attention, implementation cudnn (fused)",
}
