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
Fewer query rows than keys (q_len < N, a decode step) and sliding windows go
through the same boolean mask, built for (q_len, N) and aligned bottom-right.
"""
from __future__ import annotations

import math

import tensorflow as tf


def visible(rows: int, keys: int, causal: bool, window: int | None) -> tf.Tensor | None:
    """(rows, keys), True where query row i may see key j; None when it sees every
    key. Bottom-right: row i sits at position keys - rows + i and sees j <= that
    position, and with a window only j > position - window. With rows == keys and
    no window this is the square causal mask, the same values as ever."""
    if not causal:                  # a window comes only with causal (harness.spec.Case)
        return None
    position = tf.range(keys - rows, keys)[:, None]
    key = tf.range(keys)[None, :]
    allowed = position >= key
    if window:
        allowed = tf.logical_and(allowed, key > position - window)
    return allowed


def attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, causal: bool,
              window: int | None = None) -> tf.Tensor:
    """softmax(q k^T / sqrt(D) + mask) v per head, on (B, H, S, D) queries and
    (B, KV, N, D) keys and values; k and v may have fewer heads (grouped), each
    repeated for its group of query heads."""
    if k.shape[1] != q.shape[1]:
        group = q.shape[1] // k.shape[1]
        k, v = tf.repeat(k, group, axis=1), tf.repeat(v, group, axis=1)
    scale = 1.0 / math.sqrt(q.shape[-1])
    # The spec computes softmax in float32 whatever the storage dtype, and the
    # scaling goes with it: a scale stored in float16 or bfloat16 is itself
    # rounded (1/sqrt(8) by 1.1e-4 of itself in float16), an error in every score that
    # torch, which multiplies by a Python float in float32, does not make.
    scores = tf.cast(tf.linalg.matmul(q, k, transpose_b=True), tf.float32) * scale
    # Built in the step, as the torch backend builds its mask (a graph folds it
    # to a constant).
    allowed = visible(scores.shape[-2], scores.shape[-1], causal, window)
    if allowed is not None:
        scores = tf.where(allowed, scores, tf.constant(float("-inf"), tf.float32))
    probs = tf.cast(tf.nn.softmax(scores, axis=-1), q.dtype)
    return tf.linalg.matmul(probs, v)
