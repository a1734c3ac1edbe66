"""Conformance: every backend in the registry, every variant it declares, against
the float64 reference (docs/design.md: "Variants", "The math and the layouts").

One suite for all backends: the parameter lists are built from
`backends.base.REGISTRY`, so a backend added there (TensorFlow, JAX) is tested
here with no new test code. A case the backend refuses (`backend.unsupported`:
GPU-only variants, tf32 on the CPU) is skipped with its reason, and so is every
case of a backend whose framework is not installed.

Each case is judged as the harness judges a measured cell (harness.correctness.accuracy):
the error against float64 may be at most MULTIPLE times the error of the
reference computed in the case's own dtype.

Cost: `torch.compile` compiles afresh for every shape, dtype and mode (seconds
each on a small CPU), so only COMPILE_SAMPLE runs by default; the rest of the
expensive variants' grid is marked `slow` (`make check-all` runs it, `make test`
does not). See `params`.
"""
from __future__ import annotations

import functools
import itertools
import os

import numpy as np
import pytest

from backends.base import REGISTRY, load_backend
from harness.correctness.accuracy import MULTIPLE, ZERO_SCALE, judge
from harness.correctness.grid import CAUSAL, SHAPES
from harness.correctness.sampling import without_padding
from harness.spec import DTYPES, MODES, WORKLOADS, Case, reference
from harness.spec.weights import make_inputs, make_weights

# ATTNBENCH_TEST_DEVICE=cuda:0 runs the same tests on a GPU, where the GPU-only
# variants and tf32 run too (scripts/gpu_check.sh runs `attnbench check` there instead,
# a few minutes for every variant and dtype).
DEVICE = os.environ.get("ATTNBENCH_TEST_DEVICE", "cpu")
# SHAPES and CAUSAL are those of `attnbench check` (harness/run/check.py says why).

# Variants that compile for every new shape, dtype and mode cost seconds per case
# here, so by default only a sample of their grid runs; the rest is marked slow
# (`make check-all` runs it, `make test` does not).
# torch.compile and flex (compiled too), the slowest (~3-25 s a case): a fixed sample,
# as (mode, workload, causal), in float32 at SHAPES[0] (flex's train case runs on a GPU
# alone: torch has no CPU backward for it).
COMPILE_SAMPLE_ONLY = {("torch", "compile"), ("torch", "flex")}
COMPILE_SAMPLE = {("forward", "block", True), ("train", "mha", False)}
# XLA and graph variants (~0.5-2 s a case): every (workload, mode, dtype) once, at
# one (causal, shape) that rotates with it, so both masks and both shapes are
# still covered.
ROTATED = {("tensorflow", "function"), ("tensorflow", "xla"),
           ("jax", "jit"), ("jax", "dpa"), ("jax", "dpa-cudnn")}


# -- the parameter lists --------------------------------------------------------

def make_case(backend: str, variant: str, workload: str, mode: str, dtype: str,
              causal: bool, shape: dict) -> Case:
    return Case("conformance", workload, backend, variant, mode, dtype, DEVICE,
                causal=causal, **shape)


def in_default_set(case: Case) -> bool:
    """The sampling rule: everything runs by default, except the compiled variants
    (COMPILE_SAMPLE_ONLY, ROTATED), which run a sample; the rest is slow."""
    variant = (case.backend, case.variant)
    if case.mode == "decode":        # test_decode_window.py samples decode for `make test`
        return False
    if variant in COMPILE_SAMPLE_ONLY:
        return (case.dtype == "float32" and case.shape_key == _shape_key(case, SHAPES[0])
                and (case.mode, case.workload, case.causal) in COMPILE_SAMPLE)
    if variant in ROTATED:
        causal, shape = _rotation(case)
        return case.causal == causal and case.shape_key == _shape_key(case, shape)
    return True


def _rotation(case: Case) -> tuple[bool, dict]:
    i = WORKLOADS.index(case.workload) + MODES.index(case.mode) + DTYPES.index(case.dtype)
    return CAUSAL[i % 2], SHAPES[(i // 2) % len(SHAPES)]


def _shape_key(case: Case, shape: dict) -> str:
    return case.replace(**shape).shape_key


def case_id(case: Case) -> str:
    shape = f"B{case.batch}N{case.seq_len}H{case.heads}D{case.head_dim}"
    causal = "causal" if case.causal else "full"
    return (f"{case.backend}-{case.variant}-{case.workload}-{case.mode}-{case.dtype}"
            f"-{causal}-{shape}")


def params(workloads=WORKLOADS, modes=MODES, dtypes=DTYPES, causals=CAUSAL,
           shapes=SHAPES) -> list:
    """One pytest.param per (backend, variant, workload, mode, dtype, causal, shape),
    every backend and variant taken from the registry; slow where in_default_set
    says so."""
    out = []
    for info in REGISTRY.values():
        for variant, workload, mode, dtype, causal, shape in itertools.product(
                info.variant_names, workloads, modes, dtypes, causals, shapes):
            case = make_case(info.name, variant, workload, mode, dtype, causal, shape)
            marks = () if in_default_set(case) else (pytest.mark.slow,)
            out.append(pytest.param(case, id=case_id(case), marks=marks))
    return out


# -- backends, loaded once per session -----------------------------------------

@functools.cache
def _load(name: str):
    """The backend, or the reason it cannot load (its framework is missing)."""
    try:
        return load_backend(name), None
    except ImportError as exc:
        return None, f"{name} backend not importable: {exc}"


def runnable_backend(case: Case):
    """The case's backend, or skip: framework missing, or the case unsupported."""
    backend, missing = _load(case.backend)
    if backend is None:
        pytest.skip(missing)
    reason = backend.unsupported(case)
    if reason is not None:
        pytest.skip(reason)
    return backend


# -- data and references, computed once per numbers (not per backend) ----------

def _numbers_key(case: Case) -> Case:
    """What fixes weights, inputs and the references: not the backend or variant."""
    return case.replace(suite="", backend="", variant="", device="")


@functools.cache
def _data(key: Case):
    w, x = make_weights(key), make_inputs(key)
    exact = reference.outputs(key, w, x)
    low = reference.outputs(key, w, x, dtype=key.dtype)
    return w, x, exact, low


def data(case: Case):
    """Weights and inputs (fresh copies, so no backend can alter the cached ones),
    the float64 reference and the reference in the case's own dtype."""
    w, x, exact, low = _data(_numbers_key(case))
    copy = lambda d: {k: v.copy() for k, v in d.items()}
    return copy(w), copy(x), exact, low


def expected_names(case: Case, w: dict, x: dict) -> set[str]:
    if case.mode != "train":
        return {"out"}
    wrt = [n for n in x if n != "g"] + list(w)
    return {"out", *(f"grad/{n}" for n in wrt)}


def error_table(got: dict, exact: dict, low: dict) -> str:
    """Per tensor: the backend's error and the low-precision reference's, vs float64."""
    largest = max(float(np.abs(t).max(initial=0.0)) for t in exact.values())
    lines = []
    for name, ref in exact.items():
        g = np.asarray(got[name], dtype=np.float64)
        scale = max(float(np.abs(ref).max(initial=0.0)), ZERO_SCALE * largest)
        err = float(np.abs(g - ref).max(initial=0.0))
        base = float(np.abs(low[name].astype(np.float64) - ref).max(initial=0.0))
        lines.append(f"  {name:<22} err {err:.3g}  ref-in-dtype err {base:.3g}  "
                     f"scale {scale:.3g}")
    return "\n".join(lines)


# -- the tests ------------------------------------------------------------------

def assert_matches_reference(case: Case) -> None:
    """The case's outputs (and, in train mode, every gradient) carry the reference's
    names and shapes and pass the harness's verdict."""
    backend = runnable_backend(case)
    w, x, exact, low = data(case)
    got = backend.prepare(case, w, x).outputs()

    assert set(exact) == expected_names(case, w, x)       # the reference itself
    assert set(got) == set(exact), (
        f"{case.name}: tensor names differ from the reference: "
        f"missing {sorted(set(exact) - set(got))}, extra {sorted(set(got) - set(exact))}")
    for name, ref in exact.items():
        assert np.shape(got[name]) == ref.shape, (
            f"{case.name}: {name} has shape {np.shape(got[name])}, expected {ref.shape}")

    # Padding rows' outputs are unspecified (harness.spec.padding): not judged.
    got, exact, low = (without_padding(case, t) for t in (got, exact, low))
    verdict = judge(got, exact, low, case.dtype)
    assert verdict.correct, (
        f"{case.name}: worst tensor {verdict.worst!r}, err_ratio {verdict.err_ratio:.3g} "
        f"> {MULTIPLE} (max_abs_err {verdict.max_abs_err:.3g})\n"
        + error_table(got, exact, low))


@pytest.mark.parametrize("case", params())
def test_matches_reference(case: Case):
    """Every output (and, in train mode, every gradient) passes the harness's verdict."""
    assert_matches_reference(case)


def float32_params() -> list:
    """float32 at the first shape; for the compiled variants (ROTATED) the train
    cases go to `make check-all`: test_matches_reference already judges their
    gradients by default, and each costs a compile of the backward pass."""
    out = []
    for param in params(dtypes=("float32",), shapes=SHAPES[:1]):
        case = param.values[0]
        if (case.backend, case.variant) in ROTATED and case.mode == "train":
            param = pytest.param(case, id=param.id, marks=(pytest.mark.slow,))
        out.append(param)
    return out


@pytest.mark.parametrize("case", float32_params())
def test_forward_surface_equals_outputs(case: Case):
    """backend.forward (the in-process Python surface) is outputs()["out"]: bit for
    bit for the same forward computation; in train mode, forward() runs the
    forward case, so up to float32 reassociation (autograd may fuse differently)."""
    backend = runnable_backend(case)
    w, x, _, _ = data(case)
    out = backend.prepare(case, w, x).outputs()["out"]
    w, x, _, _ = data(case)
    surface = backend.forward(case, w, x)
    assert isinstance(surface, np.ndarray)
    assert surface.shape == out.shape
    if case.mode == "forward":
        np.testing.assert_array_equal(surface, out, err_msg=case.name)
    else:
        scale = float(np.abs(out).max())
        np.testing.assert_allclose(surface, out, rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=case.name)


@pytest.mark.parametrize("case", float32_params())
def test_float32_is_close_to_float64(case: Case):
    """Directly, without the verdict's yardstick: float32 results within rtol 1e-4 of
    float64. atol is relative to the tensor's scale (at least ZERO_SCALE times the
    case's largest tensor, as in the verdict), since elements near zero carry
    absolute, not relative, rounding error."""
    backend = runnable_backend(case)
    w, x, exact, _ = data(case)
    got = backend.prepare(case, w, x).outputs()
    largest = max(float(np.abs(t).max()) for t in exact.values())
    for name, ref in exact.items():
        scale = max(float(np.abs(ref).max()), ZERO_SCALE * largest)
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=f"{case.name}: {name}")
