"""The check grid: which small, odd cases check a configuration, and the result of
checking them (judged rows and pairwise agreement). Run by harness.run.check."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import pandas as pd

from harness.correctness import gate
from harness.spec import DTYPES, WORKLOADS, Case
from harness.spec.catalog import REGISTRY

# Small and odd on purpose: seq_len not a power of two, head_dim not a multiple of
# 16, d_model 48 and 24, batch and heads unequal, so no kernel is checked only on
# its fast path and no transpose of B and H goes unseen.
SHAPES = (
    dict(batch=2, seq_len=19, heads=2, head_dim=24, layers=2),
    dict(batch=1, seq_len=33, heads=3, head_dim=8, layers=2),
)
CAUSAL = (False, True)
FULL_MODES = ("forward", "train")      # decode runs on NEW_AXES below
# Grouped key/value heads, checked once per (variant, workload, mode), causal, in
# float32 and bfloat16 (grouping is dtype-free code, but the fused GPU kernels run
# half precision alone): three query heads a key/value head, so neither tiling nor
# a shared head passes.
GROUPED = dict(batch=1, seq_len=13, heads=6, head_dim=8, layers=2, kv_heads=2)
GROUPED_DTYPES = ("float32", "bfloat16")
ALL_DTYPES = DTYPES
# Fewer queries than keys, windows and decode steps, on one odd shape with six query
# heads on 1, 2 or 3 key/value heads: (workloads, modes, causal, q_len, window,
# kv_heads, dtypes). Masks are dtype-free code, so windows run in two dtypes alone.
WINDOW = 5
NEW_AXES_SHAPE = dict(batch=2, seq_len=33, heads=6, head_dim=8, layers=2)
_LAYERS = ("mha", "block", "transformer")
NEW_AXES = (
    (("attention",), ("forward", "train"), True, 7, None, 3, ALL_DTYPES),  # bottom-right
    (("attention",), ("forward",), False, 1, None, 1, ALL_DTYPES),
    (WORKLOADS, ("forward", "train"), True, None, WINDOW, 2, GROUPED_DTYPES),
    (_LAYERS, ("decode",), True, 7, None, 3, ALL_DTYPES),                 # against a cache
    (_LAYERS, ("decode",), False, 1, None, 1, ALL_DTYPES),
    (WORKLOADS, ("decode",), True, 1, WINDOW, 2, GROUPED_DTYPES),
)

# Padded batches: three sequences of 17, 0 and 33 of the 33 positions (part padding,
# all padding, none), with the causal mask (every dtype), without it, and with a
# window: (causal, window, kv_heads, dtypes).
PADDED_SHAPE = dict(NEW_AXES_SHAPE, batch=3)
PADDED_LENGTHS = "17,0,33"
PADDED = (
    (True, None, 3, ALL_DTYPES),
    (False, None, 1, GROUPED_DTYPES),
    (True, WINDOW, 2, GROUPED_DTYPES),
)


def shapes_for(dtype: str, causal: bool, all_shapes: bool = False) -> tuple[dict, ...]:
    """The shapes a (..., dtype, causal) combination runs at. By default one: the
    shape alternates with dtype and mask, so every variant, workload and mode meets
    every shape with both masks and in every dtype pair-wise (a covering design),
    at half the cases of the full product; `all_shapes` runs the full product."""
    if all_shapes:
        return SHAPES
    return (SHAPES[(DTYPES.index(dtype) + causal) % len(SHAPES)],)


def grid(backends=None, dtypes=None, workloads=None, device: str = "cpu",
         all_shapes: bool = False, variants=None) -> list[Case]:
    cases = []
    for info in REGISTRY.values():
        if backends and info.name not in backends:
            continue
        names = [v for v in info.variant_names if not variants or v in variants]
        for variant, workload, mode, dtype, causal in itertools.product(
                names, workloads or WORKLOADS, FULL_MODES, dtypes or DTYPES, CAUSAL):
            grouped = (GROUPED,) if causal and dtype in GROUPED_DTYPES else ()
            for shape in (*shapes_for(dtype, causal, all_shapes), *grouped):
                cases.append(Case("check", workload, info.name, variant, mode, dtype, device,
                                  causal=causal, **shape))
        cases += _new_axes(info.name, names, workloads or WORKLOADS, dtypes or DTYPES, device)
    return cases


def _new_axes(backend: str, variants, workloads, dtypes, device: str) -> list[Case]:
    cases = []
    for variant in variants:
        for axis_workloads, modes, causal, q_len, window, kv, axis_dtypes in NEW_AXES:
            for workload, mode, dtype in itertools.product(axis_workloads, modes, dtypes):
                if workload in workloads and dtype in axis_dtypes:
                    cases.append(Case("check", workload, backend, variant, mode, dtype, device,
                                      causal=causal, q_len=q_len, window=window,
                                      kv_heads=kv, **NEW_AXES_SHAPE))
        for (causal, window, kv, axis_dtypes), workload, mode, dtype in itertools.product(
                PADDED, workloads, FULL_MODES, dtypes):
            if dtype in axis_dtypes:
                cases.append(Case("check", workload, backend, variant, mode, dtype, device,
                                  causal=causal, window=window, kv_heads=kv,
                                  lengths=PADDED_LENGTHS, **PADDED_SHAPE))
    return cases


def gate_cases(cases: list[Case]) -> list[Case]:
    """The check cases for the configurations of a run's cells (harness.correctness.gate)."""
    seen, out = set(), []
    for case in cases:
        key = gate.config_key(case)
        if key in seen:
            continue
        seen.add(key)
        # Grouped heads: one key/value head for the shapes' 2 and 3 query heads;
        # fewer queries: 1 or 7 of them; a window of WINDOW keys; padding on PADDED_SHAPE.
        kv = 1 if case.kv_heads != case.heads else None
        window = WINDOW if case.window else None
        if case.lengths:          # padded: the check's lengths, with a zero and a full one
            out.append(Case("check", case.workload, case.backend, case.variant, case.mode,
                            case.dtype, case.device, causal=case.causal, kv_heads=kv,
                            window=window, lengths=PADDED_LENGTHS, **PADDED_SHAPE))
            continue
        for shape in SHAPES:
            q_len = shape["seq_len"] if case.q_len == case.seq_len else min(case.q_len, 7)
            out.append(Case("check", case.workload, case.backend, case.variant, case.mode,
                            case.dtype, case.device, causal=case.causal, kv_heads=kv,
                            q_len=q_len, window=window, **shape))
    return out


@dataclass
class CheckResult:
    cases: pd.DataFrame      # one row per case, with its verdict
    pairs: pd.DataFrame      # one row per pair of backends on the same case shape

    @property
    def failures(self) -> pd.DataFrame:
        return self.cases[self.cases["verdict"] == "FAIL"]

    @property
    def disagreements(self) -> pd.DataFrame:
        return self.pairs[~self.pairs["agree"].astype(bool)]
