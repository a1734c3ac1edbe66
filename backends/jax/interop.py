"""JAX arrays for code that is not a backend: the attn_benchmark fixture
(harness/pytest_plugin/__init__.py) times a user's own callable on a Case's inputs.
Imported only where jax may be imported (a pytest process that asked for it)."""
from __future__ import annotations

import jax
import numpy as np

# Read-back is the backend's own, so a user's call's output is compared as its cells' are.
from backends.jax.backend import jax_device
from backends.jax.steps import DTYPES, MATMUL_PRECISION, to_numpy  # noqa: F401


def pin_precision(dtype: str) -> None:
    """float32 is full float32, tf32 is TF32 (JAX's GPU default is TF32 for both).
    Global, where the backend traces its own step under jax.default_matmul_precision:
    a user's callable is jitted (or not) by the user, outside any context of ours."""
    jax.config.update("jax_default_matmul_precision", MATMUL_PRECISION.get(dtype))


def to_device(array: np.ndarray, device: str, dtype: str) -> jax.Array:
    return jax.device_put(array.astype(DTYPES[dtype]), jax_device(device))


def sync(result) -> None:
    """Dispatch is asynchronous on every device, the CPU included."""
    jax.block_until_ready(result)
