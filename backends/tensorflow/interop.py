"""TensorFlow tensors for code that is not a backend: the attn_benchmark fixture
(harness/pytest_plugin/__init__.py) times a user's own callable on a Case's inputs.
Imported only where tensorflow may be imported (a pytest process that asked for it)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

# Precision and read-back are the backend's own, so a user's call runs as its cells do.
from backends.tensorflow.backend import pin_precision, tf_device  # noqa: F401
from backends.tensorflow.steps import DTYPES, to_numpy  # noqa: F401


def to_device(array: np.ndarray, device: str, dtype: str) -> tf.Tensor:
    with tf.device(tf_device(device)):
        return tf.identity(tf.constant(array, dtype=DTYPES[dtype]))


# Asked once, not inside every timed call.
_GPUS = bool(tf.config.list_logical_devices("GPU"))


def sync(result) -> None:
    """GPU kernels are queued on streams; the CPU is synchronous (backend.py)."""
    if _GPUS:
        tf.test.experimental.sync_devices()
