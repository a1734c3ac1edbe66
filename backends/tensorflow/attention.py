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
A padded batch (Case.lengths) passes its mask in instead: `padded_visible`, built
once per cell in prepare, adds each sequence's key lengths to the same mask.
"""
from __future__ import annotations

import math

import tensorflow as tf

from harness.spec import Case, padding

# A padded batch's fill for hidden scores: finite, so a row that sees no key (padding
# past its window, an all-padding sequence) is a finite uniform row, not NaN, at no
# extra op; beside any seen key exp() underflows to exactly 0, as exp(-inf) does.
PADDED_FILL = 0.7 * tf.float32.min


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


def padded_visible(case: Case) -> tf.Tensor | None:
    """A padded batch's (B, 1, N, N) mask, True where query i may see key j: j below
    its sequence's length L_b, and visible(); (B, 1, 1, N), the key mask alone,
    without a causal mask. None when no sequence is short of seq_len."""
    if not case.padded:
        return None
    lengths = tf.constant(padding.key_lengths(case), tf.int32)
    keys = tf.range(case.seq_len, dtype=tf.int32)[None, None, None, :] < \
        lengths[:, None, None, None]
    allowed = visible(case.q_len, case.seq_len, case.mask_hides_keys, case.window)
    return keys if allowed is None else tf.logical_and(keys, allowed[None, None])


def attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, causal: bool,
              window: int | None = None, padded: tf.Tensor | None = None) -> tf.Tensor:
    """softmax(q k^T / sqrt(D) + mask) v per head, on (B, H, S, D) queries and
    (B, KV, N, D) keys and values; k and v may have fewer heads (grouped), each
    repeated for its group of query heads. `padded`: padded_visible's mask, which
    replaces the causal and window one (it holds them)."""
    if k.shape[1] != q.shape[1]:
        group = q.shape[1] // k.shape[1]
        k, v = tf.repeat(k, group, axis=1), tf.repeat(v, group, axis=1)
    scale = 1.0 / math.sqrt(q.shape[-1])
    # The spec computes softmax in float32 whatever the storage dtype, and the
    # scaling goes with it: a scale stored in float16 or bfloat16 is itself
    # rounded (1/sqrt(8) by 1.1e-4 of itself in float16), an error in every score that
    # torch, which multiplies by a Python float in float32, does not make.
    scores = tf.cast(tf.linalg.matmul(q, k, transpose_b=True), tf.float32) * scale
    if padded is not None:          # built in prepare (padded_visible), untimed
        allowed, fill = padded, PADDED_FILL
    else:
        # Built in the step, as the torch backend builds its mask (a graph folds it
        # to a constant).
        allowed = visible(scores.shape[-2], scores.shape[-1], causal, window)
        fill = float("-inf")
    if allowed is not None:
        scores = tf.where(allowed, scores, tf.constant(fill, tf.float32))
    probs = tf.cast(tf.nn.softmax(scores, axis=-1), q.dtype)
    return tf.linalg.matmul(probs, v)
