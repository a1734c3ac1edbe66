"""TensorFlow tensors for code that is not a backend: the attn_benchmark fixture
(harness/pytest_plugin/__init__.py) times a user's own callable on a Case's inputs.
Imported only where tensorflow may be imported (a pytest process that asked for it)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from backends.tensorflow.backend import DTYPES, tf_device


def pin_precision(dtype: str) -> None:
    """float32 is full float32, tf32 is TF32 (TF's own default is TF32)."""
    tf.config.experimental.enable_tensor_float_32_execution(dtype == "tf32")


def to_device(array: np.ndarray, device: str, dtype: str) -> tf.Tensor:
    with tf.device(tf_device(device)):
        return tf.identity(tf.constant(array, dtype=DTYPES[dtype]))


# Asked once, not inside every timed call.
_GPUS = bool(tf.config.list_logical_devices("GPU"))


def sync(result) -> None:
    """GPU kernels are queued on streams; the CPU is synchronous (backend.py)."""
    if _GPUS:
        tf.test.experimental.sync_devices()


def to_numpy(result) -> np.ndarray:
    return tf.cast(result, tf.float32).numpy()
