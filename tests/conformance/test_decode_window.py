"""Fewer query rows than keys (q_len, the causal mask aligned bottom-right), sliding
windows, and decode steps against a KV cache, in every backend and variant, judged
against the float64 reference as test_backends.py judges the rest; and torch's SDPA
in float64, an outside check of the bottom-right alignment and of the window, against
the reference and against each backend.

One odd shape (B 2, N 33, 6 query heads on 2 key/value heads, D 8): q_len 1 and 7,
window 5. Compiled variants run a sample (COMPILED), so that `make test` pays few
compiles; `make check` runs every combination in every dtype.
"""
from __future__ import annotations

import numpy as np
import pytest

from backends.base import REGISTRY
from harness.correctness.accuracy import judge
from harness.spec import Case, reference
from harness.spec.weights import make_inputs

from .test_backends import DEVICE, assert_matches_reference, data, runnable_backend

SHAPE = dict(batch=2, seq_len=33, heads=6, head_dim=8, layers=2, kv_heads=2)
# (workload, mode, causal, q_len, window): the new axes, each on the workloads that take it.
COMBINATIONS = [
    ("attention", "forward", True, 7, None),      # bottom-right causal
    ("attention", "forward", False, 1, None),
    ("attention", "train", True, 7, None),
    ("attention", "forward", True, 33, 5),        # a window, every row
    ("attention", "train", True, 7, 5),
    ("mha", "train", True, 33, 5),
    ("block", "forward", True, 33, 5),
    ("mha", "decode", True, 1, None),             # one token against the cache
    ("mha", "decode", False, 7, None),
    ("block", "decode", True, 7, 5),
    ("transformer", "decode", True, 7, None),     # a cache for each of 2 layers
    ("transformer", "decode", True, 1, 5),
]
# Compiled variants (seconds a compile here): a sample that still meets each axis.
COMPILED = {("torch", "compile"), ("torch", "flex"), ("tensorflow", "xla"), ("jax", "dpa"),
            ("jax", "jit"), ("tensorflow", "function")}
COMPILED_SAMPLE = {0, 4, 9, 10}
# flex compiles its whole step too, and each compile takes longer: one layer's decode.
FLEX_SAMPLE = {0, 4, 9}


def make(backend: str, variant: str, workload: str, mode: str, causal: bool, q_len: int,
         window: int | None, dtype: str = "float32") -> Case:
    return Case("conformance", workload, backend, variant, mode, dtype, DEVICE,
                causal=causal, q_len=q_len, window=window, **SHAPE)


def params() -> list:
    out = []
    for info in REGISTRY.values():
        for variant in info.variant_names:
            flex = (info.name, variant) == ("torch", "flex")
            sample = FLEX_SAMPLE if flex else COMPILED_SAMPLE
            for i, combination in enumerate(COMBINATIONS):
                if (info.name, variant) in COMPILED and i not in sample:
                    continue
                case = make(info.name, variant, *combination)
                workload, mode, causal, q_len, window = combination
                out.append(pytest.param(case, id=f"{info.name}-{variant}-{workload}-{mode}-"
                                                 f"{'causal' if causal else 'full'}-q{q_len}"
                                                 f"-w{window or 0}"))
    # Half precision once a backend: the mask's -inf and the cache's dtype; and one
    # float16 query, whose few outputs show a scale stored in float16 (jax jit did).
    for info in REGISTRY.values():
        case = make(info.name, info.variant_names[0], "block", "decode", True, 7, 5,
                    dtype="bfloat16")
        out.append(pytest.param(case, id=f"{info.name}-{case.variant}-block-decode-bf16"))
        one = make(info.name, info.variant_names[0], "attention", "forward", False, 1, None,
                   dtype="float16").replace(kv_heads=1)
        out.append(pytest.param(one, id=f"{info.name}-{one.variant}-attention-q1-fp16"))
    return out


@pytest.mark.parametrize("case", params())
def test_new_axes_match_the_reference(case: Case):
    assert_matches_reference(case)


@pytest.mark.parametrize("case", [p.values[0] for p in params()
                                  if p.values[0].mode == "decode"][:3])
def test_a_decode_step_repeats_to_the_same_output(case: Case):
    """A timed loop calls the step again and again: the cache write must leave the
    cache as the next call expects it (the same slots, overwritten)."""
    backend = runnable_backend(case)
    w, x, _, _ = data(case)
    prepared = backend.prepare(case, w, x)
    first = prepared.outputs()["out"]
    for _ in range(2):
        prepared.step()
    np.testing.assert_array_equal(prepared.outputs()["out"], first)


@pytest.mark.parametrize("q_len, window", [(1, None), (7, None), (33, 5), (7, 5)])
def test_torch_sdpa_in_float64_agrees_with_the_reference(q_len, window):
    """Outside agreement: torch's SDPA with grouped heads and an explicit boolean mask
    built from torch's own causal_lower_right bias (and the window by hand), float64."""
    pytest.importorskip("torch")
    case = make("torch", "sdpa", "attention", "forward", True, q_len, window)
    x = make_inputs(case)
    want = reference.outputs(case, {}, x)["out"]
    np.testing.assert_allclose(_torch_sdpa_float64(case, x), want, rtol=1e-12, atol=1e-13)


def _torch_sdpa_float64(case: Case, x: dict) -> np.ndarray:
    """torch's SDPA in float64, grouped heads, its own bottom-right causal mask (and
    a window by hand)."""
    import torch
    from torch.nn.attention.bias import causal_lower_right
    q, k, v = (torch.from_numpy(x[n].astype(np.float64)).transpose(1, 2) for n in "qkv")
    n, q_len = case.seq_len, case.q_len
    mask = causal_lower_right(q_len, n)._materialize(torch.device("cpu"))
    if case.window:
        rows = torch.arange(n - q_len, n)[:, None]
        mask = mask & (torch.arange(n)[None, :] > rows - case.window)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                           enable_gqa=True)
    return out.transpose(1, 2).numpy()


OUTSIDE = [(b, v) for b, v in (("torch", "eager"), ("torch", "sdpa"), ("tensorflow", "eager"),
                               ("tensorflow", "xla"), ("jax", "jit"), ("jax", "dpa"))]


@pytest.mark.parametrize("q_len", [1, 7])
@pytest.mark.parametrize("backend, variant", OUTSIDE)
def test_each_backend_agrees_with_torch_sdpa_in_float64_on_grouped_decode(backend, variant,
                                                                          q_len):
    """Outside agreement, backend by backend: a grouped (6 on 2 heads) bottom-right
    causal decode of the core, judged with torch's float64 SDPA in the reference's
    place (the same rule: at most MULTIPLE times the float32 reference's error)."""
    pytest.importorskip("torch")
    case = make(backend, variant, "attention", "decode", True, q_len, None)
    runnable = runnable_backend(case)
    x = make_inputs(case)
    outside = {"out": _torch_sdpa_float64(case, x)}
    low = {"out": reference.outputs(case, {}, x, dtype="float32")["out"]}
    verdict = judge(runnable.prepare(case, {}, x).outputs(), outside, low, "float32")
    assert verdict.correct, (case.name, verdict.err_ratio)
