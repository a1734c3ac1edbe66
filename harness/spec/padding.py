"""Padded batches (varlen): each sequence's length, and which positions are padding.

`Case.lengths` states how long each of the batch's sequences is:
- "uniform:LO" draws each length uniformly from the integers ceil(LO * seq_len) to
  seq_len, seeded by the case (stream 3, after weights and inputs), so every backend
  and dtype sees the same lengths;
- "17,0,33" gives them, one per sequence (the check's zero-length and full ones).
Sequence b holds positions 0 .. L_b - 1 and padding after (right padding, as
FlashAttention's varlen and jax's *_seq_lengths count it). Its keys past L_b are never
attended; its query rows past L_b are padding: their outputs are unspecified (a query
that sees no key at all has none) and the check ignores them, and in train mode the
output's cotangent is zero there, so they add nothing to any gradient.
"""
from __future__ import annotations

import math

import numpy as np

UNIFORM = "uniform:"
_STREAM = 3
RULE = ('"uniform:LO" (lengths drawn from ceil(LO * seq_len) to seq_len, 0 <= LO <= 1) '
        'or one length per sequence, "17,0,33"')


def canonical(text, batch: int, seq_len: int) -> str | None:
    """The lengths as the Case keeps them, or None for none (None, NaN, ""); a
    ValueError in one line when they cannot be read or do not fit the batch."""
    if text is None or text != text or str(text).strip() in ("", "none"):
        return None
    text = str(text).replace(" ", "")
    if text.startswith(UNIFORM):
        try:
            low = float(text[len(UNIFORM):])
        except ValueError:
            low = -1.0
        if not 0.0 <= low <= 1.0:
            raise ValueError(f"lengths = {text!r}: expected {RULE}")
        return f"{UNIFORM}{low:g}"
    try:
        given = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"lengths = {text!r}: expected {RULE}") from None
    if len(given) != batch or not all(0 <= n <= seq_len for n in given):
        raise ValueError(f"lengths = {text!r}: one length per sequence (batch = {batch}), "
                         f"each 0 to seq_len = {seq_len}")
    return ",".join(map(str, given))


def tag(text: str) -> str:
    """The lengths in a shape key (a file name): 'uniform0.25', '17_0_33'."""
    return text.replace(":", "").replace(",", "_")


def key_lengths(case) -> np.ndarray | None:
    """(B,) int64: each sequence's length, or None when the batch is not padded."""
    if case.lengths is None:
        return None
    n = case.seq_len
    if case.lengths.startswith(UNIFORM):
        low = math.ceil(float(case.lengths[len(UNIFORM):]) * n)
        rng = np.random.default_rng([case.seed, _STREAM])
        return rng.integers(low, n, size=case.batch, endpoint=True).astype(np.int64)
    return np.array([int(part) for part in case.lengths.split(",")], np.int64)


def valid_rows(case, positions=None) -> np.ndarray | None:
    """(B, rows) bool: True where the row at that position holds a token, for the
    given positions (every one when None); None when nothing is padding."""
    lengths = key_lengths(case)
    if lengths is None:
        return None
    positions = np.arange(case.seq_len) if positions is None else np.asarray(positions)
    return positions[None, :] < lengths[:, None]


def valid_tokens(case) -> int:
    """Tokens that are not padding, over the batch."""
    lengths = key_lengths(case)
    return case.batch * case.seq_len if lengths is None else int(lengths.sum())
