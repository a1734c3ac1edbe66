"""The attention core in TensorFlow: the spec's math op by op.

Layout: (B, H, N, D). tf.linalg.matmul batches over the leading axes, so in this
layout each (batch, head) pair is one contiguous (N, D) matrix and the core runs
as two batched GEMMs with no transpose inside it; on (B, N, H, D) an einsum
transposes inside every call, measurably slower (docs/measurement.md, "Layouts
of the core"). The attention
workload's inputs are converted to (B, H, N, D) before timing; mha transposes
after its projections (timed, as any real model would), as the torch backend does.

TensorFlow has no fused attention op; under the `xla` variant XLA fuses what it
can of this same code. Every variant (eager, function, xla) runs this one function.
"""
from __future__ import annotations

import math

import tensorflow as tf


def attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, causal: bool) -> tf.Tensor:
    """softmax(q k^T / sqrt(D) + mask) v per head, on (B, H, N, D) tensors; k and
    v may have fewer heads (grouped), each repeated for its group of query heads."""
    if k.shape[1] != q.shape[1]:
        group = q.shape[1] // k.shape[1]
        k, v = tf.repeat(k, group, axis=1), tf.repeat(v, group, axis=1)
    scale = 1.0 / math.sqrt(q.shape[-1])
    # The spec computes softmax in float32 whatever the storage dtype, and the
    # scaling goes with it: a scale stored in float16 or bfloat16 is itself
    # rounded (1/sqrt(8) by 1.1e-4 of itself in float16), an error in every score that
    # torch, which multiplies by a Python float in float32, does not make.
    scores = tf.cast(tf.linalg.matmul(q, k, transpose_b=True), tf.float32) * scale
    if causal:
        n = scores.shape[-1]
        # Key j is visible to query i when j <= i (True = allowed); built in the
        # step, as the torch backend builds its mask (a graph folds it to a constant).
        allowed = tf.range(n)[:, None] >= tf.range(n)[None, :]
        scores = tf.where(allowed, scores, tf.constant(float("-inf"), tf.float32))
    probs = tf.cast(tf.nn.softmax(scores, axis=-1), q.dtype)
    return tf.linalg.matmul(probs, v)
