"""The reference's numerics and its attention core, for any set of query rows.

An attention output row depends only on its own query row and on every key and
value, so the core takes the query rows it is asked for (`q_pos`: their positions
in the sequence, for the causal mask) and all keys and values. The full reference
passes every row; the sampled check (harness/correctness/sampling.py) passes a few. Long
sequences go through in blocks of query rows, so the host never holds a whole
B·H·N² matrix, and the backward recomputes each block's probabilities (as
FlashAttention's does) rather than keeping them all.
"""
from __future__ import annotations

import numpy as np

from harness.spec.precision import round_tf32, round_to

# Score elements (B·H·rows·N) per block: 2^24 float64 values are 128 MiB each.
BLOCK_SCORES = 2**24


class Numerics:
    """How one precision stores and computes: float64 exactly, or an emulation."""

    def __init__(self, dtype: str):
        self.dtype = dtype
        self.wide = np.float64 if dtype == "float64" else np.float32

    def r(self, x) -> np.ndarray:
        """Store a result: round to the storage dtype."""
        return round_to(np.asarray(x, dtype=self.wide), self.dtype)

    def mm_wide(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """A matmul's wide accumulation, before it is stored: operands in storage
        precision (tf32-rounded for tf32)."""
        if self.dtype == "tf32":
            a, b = round_tf32(a), round_tf32(b)
        return np.matmul(a.astype(self.wide, copy=False), b.astype(self.wide, copy=False))

    def mm(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """A matmul, stored."""
        return self.r(self.mm_wide(a, b))


def _blocks(q_pos: np.ndarray, batch_heads: int, n_keys: int) -> list[slice]:
    rows = max(1, BLOCK_SCORES // max(1, batch_heads * n_keys))
    return [slice(i, i + rows) for i in range(0, len(q_pos), rows)]


def hidden(q_pos: np.ndarray, n_keys: int, causal: bool, window: int | None,
           lengths: np.ndarray | None = None) -> np.ndarray:
    """(rows, keys), or (B, 1, rows, keys) with per-sequence `lengths`: True where the
    query at position p may not see key j: j > p under the causal mask, j <= p - window
    under a sliding window, and j >= L_b past sequence b's length (harness.spec.padding)."""
    j, p = np.arange(n_keys)[None, :], np.asarray(q_pos)[:, None]
    out = (j > p) if causal else np.zeros((len(q_pos), n_keys), bool)
    out = out | (j <= p - window) if window else out
    if lengths is None:
        return out
    return out[None, None] | (j >= np.asarray(lengths)[:, None, None, None])


def _probabilities(nx: Numerics, qt, kt, q_pos, causal: bool, window: int | None,
                   lengths=None):
    """Scores and softmax of one block of query rows: (p stored, p wide, scale). A row
    that sees no key (padding, harness.spec.padding) gets probabilities 0, and so a
    zero output, as FlashAttention's varlen kernels give it."""
    scale = 1.0 / np.sqrt(qt.shape[-1])
    s = nx.r(nx.mm(qt, kt.swapaxes(-1, -2)) * scale).astype(nx.wide, copy=False)
    if causal or window or lengths is not None:
        s = np.where(hidden(q_pos, kt.shape[2], causal, window, lengths), -np.inf, s)
    top = s.max(axis=-1, keepdims=True)
    s -= np.where(np.isfinite(top), top, 0.0)
    e = np.exp(s, out=s)
    total = e.sum(axis=-1, keepdims=True)
    p_wide = e / np.where(total > 0, total, 1.0)
    return nx.r(p_wide), p_wide, scale


def attention(nx: Numerics, q, k, v, causal: bool, q_pos=None, window: int | None = None,
              lengths=None):
    """softmax(q k^T / sqrt(D) + mask) v per head, softmax in float32 or wider.
    q: (B, S, H, D), the query rows at positions q_pos (when None, the last S of
    the N: the mask aligns bottom-right, as a decode step's queries follow the
    cache); k, v: (B, N, KV, D), KV dividing H: query head h reads key/value head
    h // (H // KV); `lengths` (B,): keys past each sequence's length are hidden.
    Returns the S output rows and the backward's cache."""
    n = k.shape[1]
    q_pos = np.arange(n - q.shape[1], n) if q_pos is None else np.asarray(q_pos)
    group = q.shape[2] // k.shape[2]
    qt, kt, vt = (a.transpose(0, 2, 1, 3) for a in (q, k, v))      # (B, H, rows, D)
    kt, vt = (np.repeat(a, group, axis=1) for a in (kt, vt))       # a copy per query head
    blocks = _blocks(q_pos, q.shape[0] * q.shape[2], k.shape[1])
    outs, kept = [], None
    for block in blocks:
        probs = _probabilities(nx, qt[:, :, block], kt, q_pos[block], causal, window, lengths)
        outs.append(nx.mm(probs[0], vt))
        kept = probs if len(blocks) == 1 else None    # one small block: keep, not recompute
    o = np.concatenate(outs, axis=2) if len(outs) > 1 else outs[0]
    return o.transpose(0, 2, 1, 3), (qt, kt, vt, q_pos, (causal, window, lengths), blocks, kept,
                                    group)


def attention_backward(nx: Numerics, do, cache, key_rows=None):
    """Gradients for the query rows of the forward (dq) and for the keys and
    values at `key_rows` (all when None): dk, dv sum over those query rows (and
    over the query heads sharing a key/value head), each stored once."""
    qt, kt, vt, q_pos, mask, blocks, kept, group = cache
    dot = do.transpose(0, 2, 1, 3)
    keys = slice(None) if key_rows is None else key_rows
    dq_parts, dk, dv = [], 0.0, 0.0
    for block in blocks:
        qb, dob = qt[:, :, block], dot[:, :, block]
        p, p_wide, scale = kept or _probabilities(nx, qb, kt, q_pos[block], *mask)
        dv = dv + nx.mm_wide(p[..., keys].swapaxes(-1, -2), dob)
        dp = nx.mm(dob, vt.swapaxes(-1, -2)).astype(nx.wide, copy=False)
        ds = nx.r(p_wide * (dp - (dp * p_wide).sum(axis=-1, keepdims=True)))
        ds = nx.r(ds * scale)
        dq_parts.append(nx.mm(ds, kt))
        dk = dk + nx.mm_wide(ds[..., keys].swapaxes(-1, -2), qb)
    dq = np.concatenate(dq_parts, axis=2) if len(dq_parts) > 1 else dq_parts[0]
    b, h, rows, d = dk.shape
    dk, dv = (a.reshape(b, h // group, group, rows, d).sum(axis=2) for a in (dk, dv))
    return tuple(a.transpose(0, 2, 1, 3) for a in (dq, nx.r(dk), nx.r(dv)))
