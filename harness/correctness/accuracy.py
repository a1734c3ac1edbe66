"""The correctness verdict: FlashAttention's rule, applied to every tensor.

A backend's error against the float64 reference may be at most MULTIPLE times the
error of the reference computed in the Case's own dtype (reference.py emulates
it), plus a tiny floor so float32, whose reference error is ~1e-7, is not judged
on the order of summation alone. Gradients are judged the same way, each tensor
on its own scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MULTIPLE = 2.0
# The floor, relative to the tensor's largest magnitude. float32: a tiny floor,
# ~17 ulps, so the order of summation alone never fails a cell. Low precision:
# two units of roundoff (2 * 2^-8 for bfloat16), because real kernels round in
# places the emulation does not, and a fault smaller than that cannot be told
# from rounding in those dtypes anyway (faults are planted in float32).
FLOOR = {"float32": 1e-6, "tf32": 2.0**-10, "bfloat16": 2.0**-7, "float16": 2.0**-10}
# A tensor that is ~0 by construction (grad/bk: softmax ignores a per-row shift
# of the scores) holds rounding noise of the terms that cancel in it, so every
# tensor is judged on at least ZERO_SCALE times the case's largest tensor.
ZERO_SCALE = 0.1


@dataclass(frozen=True)
class Verdict:
    max_abs_err: float      # largest |backend - float64| over every tensor
    err_ratio: float        # worst err / (low-precision reference err + floor / MULTIPLE)
    correct: bool           # err_ratio <= MULTIPLE for every tensor
    worst: str              # the tensor with the worst ratio ("out", "grad/wq", ...)


def _abs_max(a) -> float:
    """max |a| without an |a| copy (GPU-sized gradients are judged on the host);
    NaN propagates."""
    a = np.asarray(a)
    return float(np.maximum(a.max(), -a.min())) if a.size else 0.0


def allowances(exact: dict, low: dict, dtype: str) -> dict[str, float]:
    """Per tensor, the error a correct backend may reach divided by MULTIPLE: the
    reference's own error in `dtype` plus the floor on the tensor's scale."""
    scales = {name: _abs_max(ref) for name, ref in exact.items()}
    largest = max(scales.values(), default=0.0)
    allowed = {}
    for name, ref in exact.items():
        base = _abs_max(np.subtract(low[name], ref, dtype=np.float64))
        if not np.isfinite(base):      # the yardstick overflowed: judge on the floor alone
            base = 0.0
        scale = max(scales[name], ZERO_SCALE * largest)
        allowed[name] = base + FLOOR[dtype] * scale / MULTIPLE
    return allowed


def max_error(got, ref: np.ndarray, name: str) -> float:
    """Largest |got - ref|; inf when either holds a NaN or an infinity."""
    out = np.asarray(got)
    if out.shape != ref.shape:
        raise ValueError(f"{name}: shape {out.shape}, expected {ref.shape}")
    err = _abs_max(np.subtract(out, ref, dtype=np.float64))
    return err if np.isfinite(err) else float("inf")


def ratio(err: float, allowed: float) -> float:
    return err / allowed if allowed > 0 else (0.0 if err == 0 else float("inf"))


def judge(got: dict, exact: dict, low: dict, dtype: str) -> Verdict:
    missing = sorted(set(exact) - set(got))
    if missing:
        raise ValueError(f"backend returned no {', '.join(missing)}")
    allowed = allowances(exact, low, dtype)
    max_err, worst_ratio, worst = 0.0, 0.0, "out"
    for name, ref in exact.items():
        err = max_error(got[name], ref, name)
        tensor_ratio = ratio(err, allowed[name])
        max_err = max(max_err, err)
        if tensor_ratio > worst_ratio or (worst_ratio == 0.0 and name == "out"):
            worst_ratio, worst = tensor_ratio, name
    return Verdict(max_err, worst_ratio, bool(worst_ratio <= MULTIPLE), worst)
