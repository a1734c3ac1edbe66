"""Rounding to the spec's storage dtypes in NumPy, which has no bfloat16 or tf32.

Inputs and weights are drawn once and rounded to the Case's dtype, so that every
backend and the float64 reference start from exactly the same numbers. The
low-precision reference uses the same functions to round each op's result.
"""
from __future__ import annotations

import numpy as np

ITEMSIZE = {"float64": 8, "float32": 4, "tf32": 4, "bfloat16": 2, "float16": 2}


def _drop_mantissa_bits(x: np.ndarray, bits: int) -> np.ndarray:
    """Round float32 to nearest-even, keeping 23 - bits mantissa bits."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    # In uint32: a finite value plus at most 2^bits stays below 2^32 (0xFF7FFFFF is the
    # largest finite bit pattern); only NaNs wrap, and they are put back below.
    rounded = (u >> bits) & np.uint32(1)
    rounded += np.uint32((1 << (bits - 1)) - 1)
    rounded += u
    rounded &= np.uint32(~((1 << bits) - 1) & 0xFFFFFFFF)
    out = rounded.view(np.float32)
    special = ~np.isfinite(x)          # rounding must not turn inf/nan into something else
    if special.any():
        out[special] = x[special]
    return out


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """Values of `x` rounded to `dtype`, returned as float32 (float64 stays float64)."""
    if dtype == "float64":
        return np.asarray(x, dtype=np.float64)
    if dtype in ("float32", "tf32"):      # tf32 is a matmul mode; storage is float32
        return np.asarray(x, dtype=np.float32)
    if dtype == "bfloat16":
        return _drop_mantissa_bits(x, 16)
    if dtype == "float16":
        return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)
    raise ValueError(f"unknown dtype {dtype!r}")


def round_tf32(x: np.ndarray) -> np.ndarray:
    """A TF32 matmul operand: float32 with 10 mantissa bits."""
    return _drop_mantissa_bits(x, 13)
