"""torch's sdpa-graph variant (backends/torch/steps.py, GraphedPrepared) where there is
no GPU: the catalogue keeps it to CUDA and the backend refuses it on the CPU with that
reason; its kernel is named; a probe that fails gives a reason, and a failed capture
is told by its first cause; and the step's outputs and gradients reach outputs()
through the replayed step, judged against float64 (the capture faked: its replay
runs the step again into the tensors the capture returned). A real capture needs a
GPU: tests/gpu/test_gpu.py."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from backends.base import REGISTRY, load_backend  # noqa: E402
from backends.torch import steps  # noqa: E402
from backends.torch.attention import GRAPH_VARIANT, kernel_name  # noqa: E402
from harness.correctness.accuracy import judge  # noqa: E402
from harness.spec import Case, reference  # noqa: E402
from harness.spec.weights import make_inputs, make_weights  # noqa: E402


def graph_case(mode: str = "forward", workload: str = "attention",
               device: str = "cpu") -> Case:
    return Case("unit", workload, "torch", GRAPH_VARIANT, mode, "float32", device,
                batch=1, seq_len=16, heads=2, head_dim=8, causal=True)


def test_the_catalogue_keeps_it_to_cuda():
    variant = REGISTRY["torch"].variant(GRAPH_VARIANT)
    assert variant.devices == ("cuda",) and variant.tuned


def test_the_cpu_refuses_it_with_the_catalogue_s_reason():
    backend = load_backend("torch")
    assert backend.unsupported(graph_case()) == "torch sdpa-graph runs on cuda only"
    if not torch.cuda.is_available():
        assert "sees no CUDA device" in backend.unsupported(graph_case(device="cuda:0"))


def test_its_kernel_is_sdpa_s_in_a_cuda_graph():
    assert kernel_name(GRAPH_VARIANT, "flash_attention") == \
        "sdpa flash_attention in a CUDA graph"
    assert kernel_name(GRAPH_VARIANT, "efficient_attention", masked=True) == \
        "sdpa efficient_attention with a boolean mask in a CUDA graph"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU captures: tests/gpu")
def test_a_probe_that_cannot_run_gives_a_reason():
    why = steps.graph_refusal("cuda:0", torch.float32, 8, False, False, True)
    assert why and "\n" not in why


def test_a_failed_capture_is_told_by_its_first_cause():
    with pytest.raises(RuntimeError) as caught:
        try:
            raise RuntimeError("operation not permitted when stream is capturing\n(more)")
        finally:   # as torch.cuda.graph's exit ends a capture that an op broke
            raise RuntimeError("CUDA error: operation failed due to a previous error "
                               "during capture")
    assert steps.refusal(caught.value) == \
        "RuntimeError: operation not permitted when stream is capturing"


def tensors(result) -> list:
    out, grads = result if isinstance(result, tuple) else (result, ())
    return [out, *grads]


class Replayed:
    """Stands in for the CUDA graph: a replay runs the step again and writes its
    results into the captured tensors, as a replay rewrites them in place."""

    def __init__(self, step, result):
        self.step, self.result, self.replays = step, result, 0

    def replay(self):
        fresh = tensors(self.step())
        with torch.no_grad():
            for kept, new in zip(tensors(self.result), fresh):
                kept.copy_(new)
        self.replays += 1


def fake_capture(step, device, warmups=steps.GRAPH_WARMUPS):
    result = step()
    with torch.no_grad():              # a capture computes nothing: no stale results
        for t in tensors(result):
            t.detach().fill_(float("nan"))
    return Replayed(step, result), result, 0


@pytest.mark.parametrize("mode, workload", [
    ("forward", "attention"), ("train", "attention"), ("train", "mha"), ("decode", "mha")])
def test_outputs_and_gradients_come_through_the_replayed_step(monkeypatch, mode, workload):
    monkeypatch.setattr(steps, "capture", fake_capture)
    case = graph_case(mode, workload)
    w, x = make_weights(case), make_inputs(case)
    prepared = load_backend("torch").prepare(case, w, x)
    assert isinstance(prepared, steps.GraphedPrepared)
    assert prepared.kernel.endswith(" in a CUDA graph")
    got = prepared.outputs()
    assert prepared.graph.replays == 1
    exact = reference.outputs(case, w, x)
    assert set(got) == set(exact)
    verdict = judge(got, exact, reference.outputs(case, w, x, dtype=case.dtype), case.dtype)
    assert verdict.correct, verdict
