"""JAX's peak memory on the CPU, in this process: the resident high-water mark
sees XLA's buffers and those its fused YNNPACK kernels allocate (which XLA's own
memory analysis does not count), and never reads below XLA's own figure."""
from __future__ import annotations

import sys

import pytest

pytest.importorskip("jax")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="VmHWM and clear_refs are Linux /proc files")

from backends.base import load_backend  # noqa: E402
from harness.measure.memory import CPU_METHOD, pin_allocator  # noqa: E402
from harness.spec import Case  # noqa: E402
from harness.spec.weights import make_inputs, make_weights  # noqa: E402

B, H, N, D = 1, 8, 512, 64
SCORES = 4 * B * H * N * N          # one float32 score matrix: 8 MiB


@pytest.fixture(scope="module")
def backend():
    return load_backend("jax")


def prepared_step(backend, variant: str, mode: str):
    case = Case("mem", "attention", "jax", variant, mode, "float32", "cpu",
                batch=B, seq_len=N, heads=H, head_dim=D, causal=False)
    prepared = backend.prepare(case, make_weights(case), make_inputs(case))

    def step():
        prepared.step()
        prepared.sync()

    pin_allocator()                  # as the worker runs its timed steps
    for _ in range(3):
        step()
    return case, prepared, step


@pytest.mark.parametrize("variant", ["jit", "dpa"])
def test_forward_holds_its_score_matrix(backend, variant):
    # Both materialize the scores: dpa in XLA's buffers, jit inside one YNNPACK
    # fusion that XLA counts as no temporaries at all. The old probe read 0 MB.
    case, prepared, step = prepared_step(backend, variant, "forward")
    peak, method = backend.step_peak(case, step)
    assert method == CPU_METHOD or method.startswith("xla_memory_analysis")
    assert peak >= SCORES, (peak, method)
    assert peak >= prepared.memory_analysis()


@pytest.mark.parametrize("variant", ["jit", "dpa"])
def test_train_covers_the_backward_pass(backend, variant):
    # One jitted call runs forward and backward: the probabilities kept for the
    # backward pass and the scores' gradient are live at once.
    case, prepared, step = prepared_step(backend, variant, "train")
    peak, method = backend.step_peak(case, step)
    assert peak >= 2 * SCORES, (peak, method)
    assert prepared.memory_analysis() >= 2 * SCORES


def test_xla_figure_stands_in_where_the_mark_reads_less(backend, monkeypatch):
    import backends.jax.backend as jax_backend
    case, prepared, step = prepared_step(backend, "dpa", "forward")
    planned = prepared.memory_analysis()
    assert planned >= 2 * SCORES          # scores and probabilities, both XLA's
    monkeypatch.setattr(jax_backend, "cpu_step_peak", lambda run: (run(), (0, CPU_METHOD))[1])
    assert backend.step_peak(case, step) == (
        planned, "xla_memory_analysis temp+output (above cpu_rss_hwm)")
    refused = "unavailable: /proc/self/clear_refs refused"
    monkeypatch.setattr(jax_backend, "cpu_step_peak", lambda run: (run(), (None, refused))[1])
    peak, method = backend.step_peak(case, step)
    assert peak == planned and method.startswith("xla_memory_analysis") and refused in method


def test_the_mark_stands_where_it_reads_more(backend, monkeypatch):
    import backends.jax.backend as jax_backend
    case, prepared, step = prepared_step(backend, "jit", "forward")
    monkeypatch.setattr(jax_backend, "cpu_step_peak", lambda run: (run(), (10**9, CPU_METHOD))[1])
    assert backend.step_peak(case, step) == (10**9, CPU_METHOD)
