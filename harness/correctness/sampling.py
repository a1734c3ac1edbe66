"""Which query rows a large cell is judged on, so every cell is judged at its own size.

The float64 reference of a GPU-sized cell costs far more than the step it judges
(its B·H·N² matrices, twice: float64 and the cell's own dtype). Past
FULL_REFERENCE_LIMIT_BYTES, and in forward mode wherever SAMPLED_ROWS are at most
a quarter of the sequence, a cell is judged on SAMPLED_ROWS query rows instead:
an attention output row depends only on its own query row and on every key and
value, so the reference computes keys and values in full and queries, outputs,
LayerNorms and MLPs for those rows alone (a stack: its last block; every row of
the blocks before feeds it). In train mode the backend is asked once more, for the
gradients of the loss on those rows, sum(out[:, rows] * g[:, rows]): the cotangent
g is zeroed elsewhere. Every gradient of mha, block and stack is then judged
whole against the reference's, at the cost of a forward on the rows, not of the
full backward; the attention core's dq, dk and dv are judged at the rows'
positions (its inputs are as long as the sequence, so whole tensors would cost
more than the sample saves). The verdict is the same rule (accuracy.py) on
those tensors; docs/correctness.md says what a sample can and cannot catch.
"""
from __future__ import annotations

import numpy as np

from harness.spec import Case, costs, padding

# Past this a cell's full reference is not computed. Below it, a train cell is judged
# on every row: its full reference is computed once per shape and dtype for every
# backend and then kept (harness/results/cache.py), while a sampled train check asks
# each backend for one more step on every run (B=1, H=8, N=2048: 1.1 GiB, 3-4 s once,
# against 0.3-1.7 s a backend each run).
FULL_REFERENCE_LIMIT_BYTES = 2**31
SAMPLED_ROWS = 64
# A forward cell is judged on sampled rows wherever they are at most a quarter of its
# sequence, whatever its size: the sampled reference then costs a fraction of the
# full one and needs nothing more of the backend. A train cell is sampled past the
# limit alone, since its sample asks the backend once more (a re-trace, a compile).
SAMPLE_FORWARD_FROM = 4 * SAMPLED_ROWS
# A stack's blocks before the last run on every row its sampled rows can see; under
# the causal mask that is the positions up to the last sampled one, so a causal
# stack's rows are drawn from its first CAUSAL_STACK_ROWS positions. Its kernels are
# judged further out by the attention, mha and block cells of the same lengths.
CAUSAL_STACK_ROWS = 1024
# Tile edges of the fused kernels (64 to 256 rows) and of split-KV paths: the rows
# on each side of every power of two are always among those judged.
_FIRST_EDGE = 64


def check_rows(case: Case) -> np.ndarray | None:
    """The sorted query rows a cell is judged on (positions, when the queries are the
    whole sequence), or None: every row. A decode step's few rows are judged whole,
    as is a train cell with fewer queries than keys (dk and dv have other rows)."""
    n = case.q_len
    cheaper = case.mode == "forward" and n >= SAMPLE_FORWARD_FROM
    short = case.q_len < case.seq_len and case.mode != "forward"
    if n <= SAMPLED_ROWS or short or not (
            cheaper or costs.reference_bytes(case) > FULL_REFERENCE_LIMIT_BYTES):
        return None
    if case.workload == "transformer" and case.causal:
        n = min(n, CAUSAL_STACK_ROWS)
    edges = {0, 1, n - 2, n - 1}
    power = _FIRST_EDGE
    while power < n:
        edges.update((power - 1, power))
        power *= 2
    rest = np.setdiff1d(np.arange(n), sorted(edges))
    rng = np.random.default_rng([case.seed, 2])          # stream 2: after weights, inputs
    drawn = rng.choice(rest, size=max(0, SAMPLED_ROWS - len(edges)), replace=False)
    return np.union1d(sorted(edges), drawn).astype(np.int64)


def on_rows(inputs: dict, rows: np.ndarray | None) -> dict:
    """The inputs of the check: in train mode the cotangent g zeroed outside the rows."""
    if rows is None or "g" not in inputs:
        return inputs
    g = np.zeros_like(inputs["g"])
    g[:, rows] = inputs["g"][:, rows]
    return {**inputs, "g": g}


# Tensors judged on the rows alone: the output, and the attention core's gradients
# (one row of dq, dk or dv per position; mha's and block's gradients are judged whole).
ROW_TENSORS = ("out", "grad/q", "grad/k", "grad/v")


def without_padding(case: Case, tensors: dict, rows: np.ndarray | None = None) -> dict:
    """The tensors with the outputs of padding rows set to zero (at the given positions,
    all when None): unspecified, so not judged (harness.spec.padding). Gradients are
    judged whole: g is zero on padding rows, so they add nothing to any of them."""
    valid = padding.valid_rows(case, rows)
    if valid is None or "out" not in tensors:
        return tensors
    out = np.array(tensors["out"], copy=True)
    out[~valid] = 0
    return {**tensors, "out": out}


def wanted(got: dict, rows: np.ndarray | None) -> dict:
    """A backend's results as the reference gives them, on the rows where it does."""
    if rows is None:
        return got
    return {name: np.asarray(value)[:, rows] if name in ROW_TENSORS else value
            for name, value in got.items()}
