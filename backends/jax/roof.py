"""The device's roof in JAX, for `attnbench env --calibrate` (harness/run/calibrate.py):
a square matmul per dtype and a stream copy, each as a (step, sync) pair the harness's
timing loop times, jitted and blocked on. Called in a calibration worker."""
from __future__ import annotations

import jax
import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _run(fn, *args):
    """A step whose result the sync blocks on (jax dispatches asynchronously)."""
    held = {}

    def step():
        held["out"] = fn(*args)

    return step, lambda: jax.block_until_ready(held.get("out"))


def matmul_step(n: int, dtype: str, device: str):
    """n x n by n x n in `dtype` (full float32 precision): 2 n^3 FLOPs a call."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a, b = (jax.random.normal(k, (n, n), DTYPES[dtype]) for k in (key_a, key_b))
    fn = jax.jit(lambda x, y: jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST))
    return _run(fn, a, b)


def copy_step(nbytes: int, device: str):
    """A float32 buffer of nbytes read and written once (x * 2: XLA elides a bare copy):
    2 * nbytes moved a call."""
    return _run(jax.jit(lambda x: x * 2.0), jnp.ones(nbytes // 4, jnp.float32))
