"""Padded batches (lengths) in every backend and variant, judged against the float64
reference as test_backends.py judges the rest (padding rows' outputs unjudged, every
gradient whole); torch's SDPA in float64 as an outside check of the key mask; and a
padded batch's tokens computing what each sequence alone would.

The check's lengths (harness/correctness/grid.py): three sequences of 17, 0 and 33 of
33 positions: part padding, all padding (its every query sees no key), none. Compiled
variants run a sample (COMPILED), so that `make test` pays few compiles; `make check`
runs every combination in every dtype.
"""
from __future__ import annotations

import numpy as np
import pytest

from backends.base import REGISTRY
from harness.correctness.grid import PADDED_LENGTHS, PADDED_SHAPE
from harness.correctness.sampling import without_padding
from harness.spec import Case, padding, reference
from harness.spec.weights import make_inputs, make_weights

from .test_backends import DEVICE, assert_matches_reference, data, runnable_backend

# (workload, mode, causal, window, kv_heads)
COMBINATIONS = [
    ("attention", "forward", True, None, 3),
    ("attention", "train", False, None, 1),
    ("attention", "train", True, 5, 2),          # a window: padding rows see no key
    ("mha", "train", True, None, 3),
    ("block", "forward", False, None, 1),
    ("block", "train", True, 5, 2),
    ("transformer", "train", True, None, 6),
]
COMPILED = {("torch", "compile"), ("torch", "flex"), ("tensorflow", "xla"),
            ("tensorflow", "function"), ("jax", "dpa"), ("jax", "jit")}
COMPILED_SAMPLE = {2, 4}       # a windowed train step, an unmasked padded forward


def make(backend: str, variant: str, workload: str, mode: str, causal: bool,
         window: int | None, kv_heads: int, dtype: str = "float32",
         lengths: str = PADDED_LENGTHS) -> Case:
    return Case("conformance", workload, backend, variant, mode, dtype, DEVICE,
                causal=causal, window=window, kv_heads=kv_heads, lengths=lengths,
                **PADDED_SHAPE)


def params() -> list:
    out = []
    for info in REGISTRY.values():
        for variant in info.variant_names:
            for i, combination in enumerate(COMBINATIONS):
                if (info.name, variant) in COMPILED and i not in COMPILED_SAMPLE:
                    continue
                workload, mode, causal, window, kv = combination
                out.append(pytest.param(
                    make(info.name, variant, *combination),
                    id=f"{info.name}-{variant}-{workload}-{mode}-"
                       f"{'causal' if causal else 'full'}-w{window or 0}-kv{kv}"))
        # Half precision once a backend: the mask's fill value in bfloat16.
        case = make(info.name, info.variant_names[0], "block", "train", True, None, 2,
                    dtype="bfloat16")
        out.append(pytest.param(case, id=f"{info.name}-{case.variant}-block-train-bf16"))
    return out


@pytest.mark.parametrize("case", params())
def test_padded_batches_match_the_reference(case: Case):
    assert_matches_reference(case)


def gradient_cases() -> list:
    """A train case a backend, windowed, so padding rows see no key at all: of the
    core and of a block, in the first variant."""
    return [pytest.param(make(info.name, info.variant_names[0], *COMBINATIONS[i]),
                         id=f"{info.name}-{COMBINATIONS[i][0]}")
            for info in REGISTRY.values() for i in (2, 5)]


@pytest.mark.parametrize("case", gradient_cases())
def test_padding_adds_nothing_to_the_gradients(case: Case):
    """The gradients of a padded batch's inputs are zero on padding positions (g is
    zero there and padding keys are hidden): a backend whose padding rows leak a NaN
    or a value into them fails here even where the verdict's scale would hide it."""
    backend = runnable_backend(case)
    w, x, _, _ = data(case)
    got = backend.prepare(case, w, x).outputs()
    valid = padding.valid_rows(case)
    for name in ("grad/q", "grad/k", "grad/v", "grad/x"):
        if name in got:
            assert np.all(np.asarray(got[name])[~valid] == 0), name


def test_torch_sdpa_in_float64_agrees_with_the_reference_on_padding():
    """Outside agreement: torch's SDPA in float64 with a boolean key mask of the
    lengths (and its causal mask, and grouped heads), on every row not padding."""
    torch = pytest.importorskip("torch")
    case = make("torch", "sdpa", "attention", "forward", True, None, 3)
    x = make_inputs(case)
    q, k, v = (torch.from_numpy(x[n].astype(np.float64)).transpose(1, 2) for n in "qkv")
    lengths = torch.from_numpy(padding.key_lengths(case))
    n = case.seq_len
    keys = torch.arange(n)
    mask = (keys[None, :] <= keys[:, None])[None, None] \
        & (keys[None, None, None, :] < lengths[:, None, None, None])
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                           enable_gqa=True)
    got = without_padding(case, {"out": out.transpose(1, 2).numpy()})["out"]
    want = without_padding(case, reference.outputs(case, {}, x))["out"]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("workload", ["attention", "transformer"])
def test_each_sequence_of_a_padded_batch_is_computed_as_if_alone(workload):
    """The reference's padded rows: sequence b's tokens give what a batch of that one
    sequence, unpadded and cut to its length, gives (outputs and every gradient);
    the all-padding sequence contributes nothing to the weights' gradients."""
    case = make("torch", "eager", workload, "train", True, 5, 2)
    w, x = make_weights(case), make_inputs(case)
    padded = reference.outputs(case, w, x)
    summed = {}
    for b, length in enumerate(padding.key_lengths(case)):
        if length == 0:
            continue
        alone = Case("conformance", workload, "torch", "eager", "train", "float32", DEVICE,
                     batch=1, seq_len=int(length), heads=6, head_dim=8, layers=2,
                     kv_heads=2, causal=True, window=5)
        got = reference.outputs(alone, w, {k: v[b:b + 1, :length] for k, v in x.items()})
        for name, value in got.items():
            if name == "out" or name in ("grad/q", "grad/k", "grad/v", "grad/x"):
                np.testing.assert_allclose(padded[name][b:b + 1, :length], value,
                                           rtol=1e-9, atol=1e-12, err_msg=name)
            else:
                summed[name] = summed.get(name, 0) + value
    for name, value in summed.items():
        np.testing.assert_allclose(padded[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
