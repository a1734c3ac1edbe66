"""The device's roof in TensorFlow, for `attnbench env --calibrate`
(harness/run/calibrate.py): a square matmul per dtype and a stream copy, each as a
(step, sync) pair the harness's timing loop times, under tf.function. Called in a
calibration worker, after load_backend set the threads."""
from __future__ import annotations

import tensorflow as tf

DTYPES = {"float32": tf.float32, "bfloat16": tf.bfloat16, "float16": tf.float16}


def _run(fn, *args):
    """A step whose result the sync reads back (TF runs synchronously as the backend
    sets it; the read makes sure of it)."""
    held = {}

    def step():
        held["out"] = fn(*args)

    def sync():
        out = held.get("out")
        if out is not None:
            out[:1].numpy()

    return step, sync


def matmul_step(n: int, dtype: str, device: str):
    """n x n by n x n in `dtype`, float32 without TF32: 2 n^3 FLOPs a call."""
    tf.config.experimental.enable_tensor_float_32_execution(False)
    with tf.device(_device(device)):
        a, b = (tf.cast(tf.random.stateless_normal((n, n), seed=(s, 0)), DTYPES[dtype])
                for s in (1, 2))
        return _run(tf.function(tf.linalg.matmul), a, b)


def copy_step(nbytes: int, device: str):
    """A float32 buffer of nbytes read and written once (x * 2): 2 * nbytes a call."""
    with tf.device(_device(device)):
        return _run(tf.function(lambda x: x * 2.0), tf.ones(nbytes // 4, tf.float32))


def _device(device: str) -> str:
    return "/GPU:0" if device.startswith("cuda") else "/CPU:0"
