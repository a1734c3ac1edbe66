"""Seeded inputs and weights of a Case, in canonical names and (in, out) layouts.

Backends load these and never draw their own, so the float64 reference and every
framework compute on identical numbers. Values are drawn in float32 and rounded
to the Case's dtype (returned as float32 arrays, since NumPy has no bfloat16).
"""
from __future__ import annotations

import numpy as np

from harness.spec import padding, params
from harness.spec.case import Case
from harness.spec.precision import round_to

_WEIGHTS_STREAM, _INPUTS_STREAM = 0, 1


def weight_shapes(case: Case) -> dict[str, tuple[int, ...]]:
    """Every weight of the workload, in draw order, with its (in, out) shape
    (harness.spec.params)."""
    return {p.name: p.shape for p in params.layer_params(case)}


def input_shapes(case: Case) -> dict[str, tuple[int, ...]]:
    """Inputs in draw order; `g` (the output cotangent) only in train mode; in
    decode mode (mha, block, transformer) the KV caches, (layers, B, N, KV, D)."""
    b, n, h, dh, kv = case.batch, case.seq_len, case.heads, case.head_dim, case.kv_heads
    q = case.q_len
    if case.workload == "attention":
        shapes = {"q": (b, q, h, dh), "k": (b, n, kv, dh), "v": (b, n, kv, dh)}
        out = (b, q, h, dh)
    elif case.mode == "decode":
        # The new tokens, and every layer's cache as the device holds it: seq_len
        # slots, the last q_len drawn too, as stale values the step must overwrite.
        cache = (case.n_layers, b, n, kv, dh)
        shapes = {"x": (b, q, case.d_model), "k_cache": cache, "v_cache": cache}
        out = (b, q, case.d_model)
    else:
        shapes = {"x": (b, n, case.d_model)}
        out = (b, n, case.d_model)
    if case.mode == "train":
        shapes["g"] = out
    return shapes


def _draw(role: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return params.initial(role, rng.standard_normal(shape, dtype=np.float32))


def make_weights(case: Case) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([case.seed, _WEIGHTS_STREAM])
    return {p.name: round_to(_draw(p.role, p.shape, rng), case.dtype)
            for p in params.layer_params(case)}


def make_inputs(case: Case) -> dict[str, np.ndarray]:
    """Drawn inputs; in a padded batch the output's cotangent g is zero on padding
    rows, whose outputs are unspecified (harness.spec.padding)."""
    rng = np.random.default_rng([case.seed, _INPUTS_STREAM])
    inputs = {k: round_to(_draw(params.INPUT, s, rng), case.dtype)
              for k, s in input_shapes(case).items()}
    valid = padding.valid_rows(case)
    if valid is not None and "g" in inputs:
        inputs["g"][~valid] = 0.0
    return inputs
