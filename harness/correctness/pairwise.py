"""Backends against each other: do PyTorch, TensorFlow and JAX give the same numbers?

Check workers save what each case computed (outputs/<case>.npz). For every
configuration and shape that two backends both ran, each tensor's largest
difference between them is divided by the sum of what either may differ from
float64 (accuracy.allowances, once per side). A pair agrees when that ratio is at
most accuracy.MULTIPLE, the same yardstick as a single backend's check.

By the triangle inequality two backends that both pass against float64 also agree
with each other, so a disagreement always comes with a failed case; what the
pairwise table adds is the figure users ask for: how far apart two frameworks are,
in units of what the dtype allows.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from harness.correctness.accuracy import MULTIPLE, allowances, max_error, ratio
from harness.correctness.sampling import without_padding
from harness.spec import Case, reference
from harness.spec.catalog import REGISTRY
from harness.spec.weights import make_inputs, make_weights

# What fixes the numbers a case computes, apart from who computes them.
SAME_NUMBERS = ("workload", "mode", "dtype", "device", "batch", "seq_len", "heads",
                "head_dim", "causal", "layers", "kv_heads", "q_len", "window",
                "lengths")
COLUMNS = (*SAME_NUMBERS, "a", "b", "max_abs_diff", "pair_ratio", "tensor", "agree")


def _load(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as saved:
            return {name: saved[name] for name in saved.files}
    except (OSError, ValueError):
        return None


def compare(frame: pd.DataFrame, outputs: Path) -> pd.DataFrame:
    """One row per pair of (backend, variant) from different backends that both ran
    the same case shape: the worst tensor's difference and its ratio."""
    rows = []
    ok = frame[frame["status"] == "ok"]
    # dropna=False: no window is None (NaN in the frame), and those cases count too.
    for _, group in ok.groupby(list(SAME_NUMBERS), sort=False, dropna=False):
        # Registry order, so that a pair reads the same way whichever worker
        # finished first: "torch eager" : "jax jit", never the other way round.
        cases = sorted((Case.from_dict(r) for r in group.to_dict("records")), key=_rank)
        got = {c: _load(outputs / f"{c.file_stem}.npz") for c in cases}
        got = {c: without_padding(c, tensors) for c, tensors in got.items()
               if tensors is not None}
        if len({c.backend for c in got}) < 2:
            continue
        first = next(iter(got))
        weights, inputs = make_weights(first), make_inputs(first)
        exact, low = (without_padding(first, reference.outputs(first, weights, inputs, dtype=d))
                      for d in ("float64", first.dtype))
        allowed = allowances(exact, low, first.dtype)
        for a, b in itertools.combinations(got, 2):
            if a.backend != b.backend:
                rows.append({**{k: getattr(first, k) for k in SAME_NUMBERS},
                             "a": f"{a.backend} {a.variant}", "b": f"{b.backend} {b.variant}",
                             **_agreement(got[a], got[b], allowed)})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _rank(case: Case) -> tuple[int, int]:
    names = list(REGISTRY)
    info = REGISTRY.get(case.backend)
    variants = list(info.variant_names) if info else []
    return (names.index(case.backend) if info else len(names),
            variants.index(case.variant) if case.variant in variants else len(variants))


def _agreement(a: dict, b: dict, allowed: dict[str, float]) -> dict:
    diff, worst_ratio, worst = 0.0, 0.0, "out"
    for name, limit in allowed.items():
        try:
            err = max_error(a[name], b[name].astype(np.float64), name)
        except (KeyError, ValueError):     # a tensor missing, or of the wrong shape
            err = float("inf")
        pair_ratio = ratio(err, 2 * limit)
        diff = max(diff, err)
        if pair_ratio > worst_ratio:
            worst_ratio, worst = pair_ratio, name
    return {"max_abs_diff": diff, "pair_ratio": worst_ratio, "tensor": worst,
            "agree": bool(worst_ratio <= MULTIPLE)}


def matrix(pairs: pd.DataFrame, dtypes, modes) -> pd.DataFrame:
    """Rows 'torch : jax' (every variant pair folded in), columns dtype/mode:
    'agree 0.41' or 'DIFFER 3.2' with the worst pair ratio."""
    if pairs.empty:
        return pd.DataFrame()
    order = list(REGISTRY)             # torch : tensorflow, not tensorflow : torch
    frameworks = pairs.assign(
        pair=[" : ".join(sorted((x.split()[0], y.split()[0]), key=order.index))
              for x, y in zip(pairs["a"], pairs["b"])])

    def cell(group: pd.DataFrame) -> str:
        word = "agree" if group["agree"].all() else "DIFFER"
        return f"{word} {group['pair_ratio'].max():.2f}"

    cells = frameworks.groupby(["pair", "dtype", "mode"], sort=False).apply(
        cell, include_groups=False)
    table = cells.unstack(["dtype", "mode"]).fillna("-")
    return table[[(d, m) for d in dtypes for m in modes if (d, m) in table.columns]]
