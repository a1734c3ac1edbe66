"""Grouped key/value heads (kv_heads < heads) in every backend and variant, against
the float64 reference, forward and gradients, as test_backends.py judges the rest;
and torch's SDPA with enable_gqa in float64 against the reference, an outside
check of the reference's grouping (query head h reads key/value head h // group)."""
from __future__ import annotations

import numpy as np
import pytest

from backends.base import REGISTRY
from harness.correctness.accuracy import judge
from harness.spec import Case, reference
from harness.spec.weights import make_inputs

from .test_backends import DEVICE, assert_matches_reference, data

HEADS = 6
# MQA on the core alone, GQA (3 query heads a group) on every workload; one
# odd shape, float32, causal, so that each compile below is paid once.
KV_WORKLOADS = [(1, "attention"), (2, "attention"), (2, "mha"), (2, "block")]
COMPILED_SAMPLE = {("attention", "train")}      # torch compile, flex: one cell of its grid


def grouped(backend: str, variant: str, workload: str, mode: str, kv: int) -> Case:
    return Case("conformance", workload, backend, variant, mode, "float32", DEVICE,
                1, 13, HEADS, 8, True, 1, kv_heads=kv)


def params() -> list:
    out = []
    for info in REGISTRY.values():
        for variant in info.variant_names:
            for (kv, workload), mode in ((kw, m) for kw in KV_WORKLOADS
                                         for m in ("forward", "train")):
                if (variant in ("compile", "flex")
                        and (workload, mode) not in COMPILED_SAMPLE):
                    continue
                case = grouped(info.name, variant, workload, mode, kv)
                out.append(pytest.param(case, id=f"{info.name}-{variant}-{workload}-"
                                                 f"{mode}-kv{kv}"))
    return out


@pytest.mark.parametrize("case", params())
def test_grouped_heads_match_the_reference(case: Case):
    assert_matches_reference(case)


@pytest.mark.parametrize("kv", [1, 2, 3])
def test_torch_sdpa_with_enable_gqa_agrees_with_the_reference_in_float64(kv):
    torch = pytest.importorskip("torch")
    case = grouped("torch", "sdpa", "attention", "forward", kv).replace(batch=2, seq_len=11)
    x = make_inputs(case)
    q, k, v = (torch.from_numpy(x[n].astype(np.float64)).transpose(1, 2) for n in "qkv")
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                           enable_gqa=True)
    want = reference.outputs(case, {}, x)["out"]
    np.testing.assert_allclose(out.transpose(1, 2).numpy(), want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kv, bites", [(2, True), (3, True), (1, False)])
def test_a_planted_wrong_grouping_is_caught_where_it_bites(kv, bites):
    """Tiling the key/value heads (query head h reads h % kv_heads) in place of
    repeating each (h // group): the check must fail it, except with one key/value
    head, where both read the same head and the planted fault changes nothing."""
    torch = pytest.importorskip("torch")
    case = grouped("torch", "eager", "attention", "forward", kv).replace(device="cpu")
    w, x, exact, low = data(case)
    q, k, v = (torch.from_numpy(x[n]).transpose(1, 2) for n in "qkv")
    group = HEADS // kv
    tiled = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1), is_causal=True)
    verdict = judge({"out": tiled.transpose(1, 2).numpy()}, exact, low, case.dtype)
    assert verdict.correct is not bites, verdict
