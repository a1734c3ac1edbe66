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

Masks: with fewer queries T than keys S, query i sits at position S - T + i
(bottom-right, as harness/spec/case.py says), and a sliding window w hides keys
at or before position - w. jax.nn.dot_product_attention's is_causal and
local_window_size both count positions from the top-left (jax/_src/nn/functions.py,
_get_causal_mask: tril of (T, S); _get_window_mask: query_pos from 0), so they
are exact only when T == S; otherwise the core passes the mask itself.

Padding (a padded batch, harness/spec/padding.py): sequence b's keys j >= L_b are
hidden. `jit` ANDs a (B, 1, 1, S) key mask into the scores' mask. `dpa` passes
query_seq_lengths = key_value_seq_lengths = L_b: its xla implementation ANDs both
into the same mask (_apply_masks) and zeroes the output's padding query rows; its
cuDNN one runs them as its PADDING(_CAUSAL) mask type, which zeroes those rows too
(jax's own cuDNN tests expect so), so every row that sees no key (all padding, or a
window past a sequence's end) is a padding row. Hidden scores take a large finite
value, not -inf, in jit as in xla: a row that sees no key is then a finite uniform
average, not 0/0 = NaN, and with its cotangent zero every gradient at a padding
position is exactly zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from harness.spec import Case

BHND, BNHD = "bhnd", "bnhd"


def hides_keys(n_queries: int, n_keys: int, causal: bool, window: int | None) -> bool:
    """Whether the mask hides any key at all: not when one query, at the last
    position, sees every key (a decode step of one token, without a window)."""
    return causal and (n_queries > 1 or (window is not None and window < n_keys))


def visible_keys(n_queries: int, n_keys: int, window: int | None) -> jax.Array:
    """(T, S) booleans, True where query i (at position S - T + i) sees key j:
    j <= its position, and j > position - window under a window. Built from
    iotas, so XLA fuses it rather than storing a T x S constant."""
    position = jnp.arange(n_keys - n_queries, n_keys)[:, None]
    key = jnp.arange(n_keys)[None, :]
    seen = key <= position
    return seen & (key > position - window) if window is not None else seen


def unpadded_keys(lengths: jax.Array, n_keys: int) -> jax.Array:
    """(B, 1, 1, S) booleans, True where key j < L_b: within its sequence."""
    return jnp.arange(n_keys)[None, :] < lengths[:, None, None, None]


# The fill of a hidden score (jax.nn.dot_product_attention's own, in float32): finite,
# so a row that sees no key gets a uniform softmax where -inf would give NaN.
HIDDEN = -0.7 * float(jnp.finfo(jnp.float32).max)


def einsum_attention(q: jax.Array, k: jax.Array, v: jax.Array, causal: bool,
                     window: int | None = None, lengths: jax.Array | None = None,
                     precision=None) -> jax.Array:
    """softmax(q k^T / sqrt(D) + mask) v on (B, H, T, D) queries and (B, KV, S, D)
    keys and values, op by op as the torch backend's eager core: scores in the
    storage dtype, softmax in float32. Grouped heads: k and v repeated for each
    query head of their group, as torch's does. lengths: (B,) int32, keys past
    each sequence's length hidden (padding rows then attend uniformly: unjudged)."""
    if k.shape[1] != q.shape[1]:
        group = q.shape[1] // k.shape[1]
        k, v = jnp.repeat(k, group, axis=1), jnp.repeat(v, group, axis=1)
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k, precision=precision)
    # Scaled in float32, then stored: a scale stored in float16 is itself rounded
    # (1/sqrt(8) by 1.1e-4 of itself), an error in every score (as TF's core says).
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (scores.astype(jnp.float32) * scale).astype(q.dtype).astype(jnp.float32)
    t, s = q.shape[-2], k.shape[-2]
    seen = visible_keys(t, s, window) if hides_keys(t, s, causal, window) else None
    if lengths is not None:
        keys = unpadded_keys(lengths, s)
        seen = keys if seen is None else seen & keys
    if seen is not None:
        scores = jnp.where(seen, scores, HIDDEN)
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    return jnp.einsum("bhqk,bhkd->bhqd", probs, v, precision=precision)


def dpa_attention(implementation: str):
    def core(q: jax.Array, k: jax.Array, v: jax.Array, causal: bool,
             window: int | None = None, lengths: jax.Array | None = None,
             precision=None) -> jax.Array:
        # float32: the logits einsum inside takes jax.default_matmul_precision;
        # bfloat16/float16: it pins BF16_BF16_F32 / F16_F16_F32 itself.
        t, s = q.shape[1], k.shape[1]
        if causal and t == s:
            # Native: is_causal, and the window as (left, right) = (w - 1, 0),
            # which cuDNN takes as its sliding_window_length w (functions.py).
            masking = {"is_causal": True,
                       "local_window_size": None if window is None else (window - 1, 0)}
        elif hides_keys(t, s, causal, window):
            # Bottom-right: a boolean mask (cuDNN gets it as an additive bias).
            masking = {"mask": visible_keys(t, s, window)[None, None]}
        else:
            masking = {}
        if lengths is not None:
            # Padded self-attention: queries and keys share each sequence's length.
            # cuDNN needs both (PADDING mask type); xla zeroes padding query rows.
            masking.update(query_seq_lengths=lengths, key_value_seq_lengths=lengths)
        return jax.nn.dot_product_attention(q, k, v, implementation=implementation,
                                            **masking)
    return core


@dataclass(frozen=True)
class Core:
    """An attention core and the layout of its q, k, v and output."""

    layout: str                 # BHND or BNHD
    fn: Callable
    precision: object = None    # jax.lax.Precision for the einsums, or None

    def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array, causal: bool,
                 window: int | None = None, lengths: jax.Array | None = None) -> jax.Array:
        return self.fn(q, k, v, causal, window, lengths, precision=self.precision)


_CORES = {
    "jit": (BHND, einsum_attention),
    "jit-graph": (BHND, einsum_attention),      # jit's core; the compile differs (steps.py)
    "dpa": (BNHD, dpa_attention("xla")),
    "dpa-cudnn": (BNHD, dpa_attention("cudnn")),
}


def core_for(variant: str, precision=None) -> Core:
    layout, fn = _CORES[variant]
    return Core(layout, fn, precision)


KERNELS = {
    "jit": "einsum + softmax (XLA fusion)",
    "jit-graph": "einsum + softmax (XLA fusion), launched from XLA command buffers",
    "dpa": "dot_product_attention, implementation xla",
    "dpa-cudnn": "dot_product_attention, implementation cudnn (fused)",
}


# How each variant takes a padded batch's lengths (case.padded), named in its kernel.
PADDING_KERNELS = {
    "jit": "key mask j < L_b",
    "jit-graph": "key mask j < L_b",
    "dpa": "query_seq_lengths + key_value_seq_lengths",
    "dpa-cudnn": "query_seq_lengths + key_value_seq_lengths (cuDNN padding mask)",
}


def kernel(case: Case) -> str:
    """What runs a case's attention core, with the mask as it is given to it."""
    described = _masked_kernel(case)
    return f"{described}, with {PADDING_KERNELS[case.variant]}" if case.padded \
        else described


def _masked_kernel(case: Case) -> str:
    """The kernel and how the causal mask and window are given to it."""
    t, s, window = case.q_len, case.seq_len, case.window
    base = KERNELS[case.variant]
    if not case.causal or (t == s and window is None):
        return base
    if not hides_keys(t, s, True, window):
        return f"{base}, no mask (its one query sees every key)"
    if case.variant not in ("jit", "jit-graph") and t == s:
        native = "sliding_window_length" if case.variant == "dpa-cudnn" else "local_window_size"
        return f"{base}, is_causal + {native}"
    mask = ("bottom-right" if t < s else "causal") + " boolean mask" \
        + (" with window" if window else "")
    return f"{base}, {mask} as an additive bias" if case.variant == "dpa-cudnn" \
        else f"{base}, {mask}"
