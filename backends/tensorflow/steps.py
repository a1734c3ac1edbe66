"""One cell's step in TensorFlow: the Prepared cell a worker times (backend.py builds
it), and the name of what it runs (the row's `kernel`).

A step is one call of the variant's callable (eager, tf.function, or XLA-compiled) on
inputs already on the device; in train mode it returns the gradients of sum(out * g)
with respect to the inputs and every weight too (GradientTape). In decode mode the
layers write the new tokens' keys and values into their tf.Variable caches
(layers.KVCache), so calling the step again overwrites the same slots.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from backends.base import Outputs
from backends.common import canonical_outputs
from harness.spec import Case

DTYPES = {"float32": tf.float32, "tf32": tf.float32,
          "bfloat16": tf.bfloat16, "float16": tf.float16}
KERNELS = {"eager": "matmul + softmax (TF ops, eager)",
           "function": "matmul + softmax (TF graph)",
           "xla": "matmul + softmax (XLA fusion)"}


def to_numpy(t: tf.Tensor) -> np.ndarray:
    return tf.cast(t, tf.float32).numpy()


class Prepared:
    """One cell ready to run: variables and inputs on the device, the step built."""

    def __init__(self, case: Case, fn, args: list[tf.Tensor], names: list[str],
                 train: bool, bhnd: bool):
        self.case, self.fn, self.args, self.names = case, fn, args, names
        self.train = train
        self.bhnd = bhnd              # attention workload: tensors kept as (B, H, N, D)
        self.gpu = case.device.startswith("cuda")
        self.kernel = kernel_name(case)         # what runs the attention core

    def step(self):
        """Forward: out. Train: (out, [gradients of sum(out * g) w.r.t. names])."""
        return self.fn(*self.args)

    def sync(self) -> None:
        if self.gpu:                  # the CPU is synchronous (module docstring)
            tf.test.experimental.sync_devices()

    def outputs(self) -> Outputs:
        result = self.step()
        self.sync()
        out, grads = result if self.train else (result, ())
        # Weights are (in, out) in TF already: only the core's tensors change layout.
        return canonical_outputs(self.case, to_numpy(out),
                                 zip(self.names, map(to_numpy, grads)), bhnd=self.bhnd)


def kernel_name(case: Case) -> str:
    """KERNELS[variant], with what the mask and the cache add to it; the square
    causal and the unmasked core keep the name their rows always had."""
    name = KERNELS[case.variant]
    parts = []
    if case.mask_hides_keys and (case.q_len < case.seq_len or case.window or case.padded):
        parts.append("bottom-right causal" if case.q_len < case.seq_len else "causal")
        parts += ["sliding window"] if case.window else []
    parts += ["padding keys"] if case.padded else []        # attention.padded_visible
    if parts:
        name += f", boolean mask ({', '.join(parts)})"
        name += " with a finite fill" if case.padded else ""      # attention.PADDED_FILL
    if case.mode == "decode" and case.workload != "attention":
        name += ", KV cache tf.Variable (ResourceStridedSliceAssign)"
    return name
