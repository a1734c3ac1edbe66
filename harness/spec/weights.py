"""Seeded inputs and weights of a Case, in canonical names and (in, out) layouts.

Backends load these and never draw their own, so the float64 reference and every
framework compute on identical numbers. Values are drawn in float32 and rounded
to the Case's dtype (returned as float32 arrays, since NumPy has no bfloat16).
"""
from __future__ import annotations

import numpy as np

from harness.spec.precision import round_to
from harness.spec import MLP_RATIO, Case

MHA_WEIGHTS = ("wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo")
BLOCK_WEIGHTS = MHA_WEIGHTS + ("ln1_g", "ln1_b", "ln2_g", "ln2_b", "w1", "b1", "w2", "b2")
_WEIGHTS_STREAM, _INPUTS_STREAM = 0, 1


def weight_shapes(case: Case) -> dict[str, tuple[int, ...]]:
    """Every weight of the workload, in draw order, with its (in, out) shape."""
    d, f = case.d_model, MLP_RATIO * case.d_model
    mha = {"wq": (d, d), "bq": (d,), "wk": (d, d), "bk": (d,),
           "wv": (d, d), "bv": (d,), "wo": (d, d), "bo": (d,)}
    block = {**mha, "ln1_g": (d,), "ln1_b": (d,), "ln2_g": (d,), "ln2_b": (d,),
             "w1": (d, f), "b1": (f,), "w2": (f, d), "b2": (d,)}
    if case.workload == "attention":
        return {}
    if case.workload == "mha":
        return mha
    if case.workload == "block":
        return block
    shapes = {f"layer{i}.{k}": s for i in range(case.n_layers) for k, s in block.items()}
    return {**shapes, "lnf_g": (d,), "lnf_b": (d,)}


def input_shapes(case: Case) -> dict[str, tuple[int, ...]]:
    """Inputs in draw order; `g` (the output cotangent) only in train mode."""
    b, n, h, dh = case.batch, case.seq_len, case.heads, case.head_dim
    if case.workload == "attention":
        shapes = {"q": (b, n, h, dh), "k": (b, n, h, dh), "v": (b, n, h, dh)}
        out = (b, n, h, dh)
    else:
        shapes = {"x": (b, n, case.d_model)}
        out = (b, n, case.d_model)
    if case.mode == "train":
        shapes["g"] = out
    return shapes


def _draw(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    base = name.rsplit(".", 1)[-1]
    z = rng.standard_normal(shape, dtype=np.float32)
    if base.startswith("w"):                 # keeps activations O(1) through layers
        return z / np.float32(np.sqrt(shape[0]))
    if base.endswith("_g"):                  # LayerNorm scale near 1
        return 1 + np.float32(0.1) * z
    if base.startswith("b") or base.endswith("_b"):
        return np.float32(0.1) * z           # non-zero, so bias gradients matter
    return z


def make_weights(case: Case) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([case.seed, _WEIGHTS_STREAM])
    return {k: round_to(_draw(k, s, rng), case.dtype)
            for k, s in weight_shapes(case).items()}


def make_inputs(case: Case) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([case.seed, _INPUTS_STREAM])
    return {k: round_to(_draw(k, s, rng), case.dtype)
            for k, s in input_shapes(case).items()}
