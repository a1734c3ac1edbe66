"""What only a GPU can show: NVML and the frameworks agree on the GPUs, the peak
is known, TF32 is on for tf32 and off for float32, each pinned SDPA kernel is
the one that runs and is recorded, allocator peaks see (or do not see) the N^2
matrix, and a run through the runner writes GPU rows (device, peak, kernel, cold
caches, NVML's figure, no JAX preallocation). Skipped, with the reason, only where
no GPU is present at all; failed where a GPU is present but NVML cannot list it
(tests/gpu/conftest.py). `make gpu-check` (scripts/gpu_check.sh) runs them on one.

Frameworks load in this process (tests/conftest.py turns off JAX's preallocation
first), so any of torch and JAX may be missing: their tests skip, saying so.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from backends import load_backend
from harness.correctness import judging, sampling
from harness.correctness.accuracy import judge
from harness.measure import devices
from harness.measure.timing import TIMER_FLUSHED
from harness.spec import Case, reference
from harness.spec.weights import make_inputs, make_weights
from tests.integration.runs_helpers import harness_run, jsonl_rows, write_suite

GPUS, NVML_ERROR = devices.discover()      # run, skip or fail: tests/gpu/conftest.py
pytestmark = pytest.mark.gpu
NVML_METHODS = (devices.NVML_PROCESS_USED, devices.NVML_DEVICE_USED)


def case(backend: str, variant: str, dtype: str = "bfloat16", workload: str = "attention",
         mode: str = "forward", n: int = 256, heads: int = 2, head_dim: int = 64,
         batch: int = 1, causal: bool = True) -> Case:
    return Case("gpu", workload, backend, variant, mode, dtype, "cuda:0",
                batch, n, heads, head_dim, causal, 1)


def backend_for(c: Case):
    """The case's backend in this process, or skip: not installed, or it refuses."""
    try:
        backend = load_backend(c.backend)
    except ImportError as exc:
        pytest.skip(f"{c.backend} is not installed here: {exc}")
    reason = backend.unsupported(c)
    if reason:
        pytest.skip(reason)
    return backend


def run(c: Case):
    """(prepared, outputs, verdict against float64) for one case on cuda:0."""
    backend = backend_for(c)
    w, x = make_weights(c), make_inputs(c)
    prepared = backend.prepare(c, w, x)
    got = prepared.outputs()
    exact = reference.outputs(c, w, x)
    low = reference.outputs(c, w, x, dtype=c.dtype)
    return prepared, got, exact, judge(got, exact, low, c.dtype)


def test_nvml_and_torch_number_and_name_the_gpus_alike():
    torch = pytest.importorskip("torch")
    assert torch.cuda.is_available(), "NVML sees a GPU, torch does not (CPU build?)"
    assert torch.cuda.device_count() == len(GPUS)
    for gpu in GPUS:          # CUDA_DEVICE_ORDER=PCI_BUS_ID: the same index, the same GPU
        props = torch.cuda.get_device_properties(gpu["index"])
        assert props.name == gpu["name"]
        assert abs(props.total_memory - gpu["memory_total"]) < 0.1 * gpu["memory_total"]


def test_nvml_reads_this_process_gpu_memory_or_names_its_fallback():
    """NVML's per-process figure, or (another PID namespace) the device's whole
    used memory, named so; never unavailable. Either holds this process's pool."""
    torch = pytest.importorskip("torch")
    held = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda:0")
    torch.cuda.synchronize()
    used, method = devices.process_gpu_memory(0, os.getpid())
    assert method in NVML_METHODS, method
    # Per process: our context and torch's pool. Device-wide: every process's, ours too.
    assert used >= torch.cuda.memory_reserved(0) >= held.numel()


def test_every_visible_gpu_has_a_dense_peak():
    for gpu in GPUS:
        assert devices.peak_tflops(gpu["name"], "bfloat16"), (
            f"{gpu['name']} is not in harness.measure.devices.GPU_PEAKS: pct_peak would be empty")


@pytest.mark.parametrize("backend, variant", [("torch", "sdpa"), ("jax", "jit")])
def test_tf32_is_on_for_tf32_and_off_for_float32(backend, variant):
    """mha forward: float32 must be float32-accurate (TF32 off, whatever the
    framework's default) and tf32 visibly less so (TF32 on), both passing."""
    errors = {}
    for dtype in ("float32", "tf32"):
        _, _, _, verdict = run(case(backend, variant, dtype, workload="mha", heads=4))
        assert verdict.correct, (dtype, verdict)
        errors[dtype] = verdict.max_abs_err
    assert errors["tf32"] > 10 * errors["float32"], errors


@pytest.mark.parametrize("variant, kernel", [
    ("sdpa-flash", "sdpa flash_attention"), ("sdpa-efficient", "sdpa efficient_attention"),
    ("sdpa-math", "sdpa math"), ("sdpa-cudnn", "sdpa cudnn_attention")])
@pytest.mark.parametrize("mode", ["forward", "train"])
def test_each_pinned_sdpa_kernel_runs_correctly_and_is_recorded(variant, kernel, mode):
    prepared, _, _, verdict = run(case("torch", variant, mode=mode))
    assert prepared.kernel == kernel
    assert verdict.correct, verdict


@pytest.mark.parametrize("backend, variant", [
    ("torch", "sdpa"), ("torch", "sdpa-flash"), ("torch", "sdpa-efficient"),
    ("torch", "sdpa-math"), ("torch", "sdpa-cudnn"), ("torch", "eager"),
    ("jax", "jit"), ("jax", "dpa"), ("jax", "dpa-cudnn")])
@pytest.mark.parametrize("mode", ["forward", "train"])
def test_grouped_heads_on_every_gpu_kernel_match_float64(backend, variant, mode):
    """kv_heads 2 of 6 query heads, bfloat16: a kernel that cannot group heads is
    refused up front with its reason (a skip here); one that runs must be right,
    and torch's must be the kernel the probe named."""
    c = case(backend, variant, mode=mode).replace(heads=6, kv_heads=2, head_dim=64)
    prepared, _, _, verdict = run(c)
    if backend == "torch" and variant.startswith("sdpa-"):
        assert prepared.kernel.startswith("sdpa ") and "unknown" not in prepared.kernel
    assert verdict.correct, verdict


@pytest.mark.parametrize("mode", ["forward", "train", "decode"])
def test_the_sdpa_step_replayed_from_a_cuda_graph_matches_float64(mode):
    """sdpa-graph: mha captured once, then replayed; its outputs (and gradients) come
    from the replay. Where torch cannot capture the mode, the probe says why (a skip
    here). A replay allocates nothing: the step's peak is the capture's."""
    c = case("torch", "sdpa-graph", workload="mha", mode=mode, heads=4)
    prepared, _, _, verdict = run(c)
    assert prepared.kernel.endswith(" in a CUDA graph") and "unknown" not in prepared.kernel
    assert verdict.correct, verdict
    backend = backend_for(c)
    prepared = backend.prepare(c, make_weights(c), make_inputs(c))
    peak, method = backend.step_peak(c, lambda: (prepared.step(), prepared.sync()))
    assert peak == prepared.capture_peak > 0 and "capture" in method


@pytest.mark.parametrize("mode", ["forward", "decode"])
def test_jax_jit_graph_launches_from_more_command_buffers_and_matches_float64(mode):
    """jit-graph compiles with xla_gpu_graph_min_graph_size = 1: its compiled step
    has at least one XLA command buffer (a `%command_buffer` computation, a CUDA
    graph at run time), and no fewer than jit's at XLA's default of 5."""
    c = case("jax", "jit-graph", workload="mha", mode=mode, heads=4)
    prepared, _, _, verdict = run(c)
    assert verdict.correct, verdict

    def buffers(p) -> int:
        return p.fn.lower(*p._arguments()).compile().as_text().count("%command_buffer")
    plain, _, _, _ = run(c.replace(variant="jit"))
    assert buffers(prepared) >= max(1, buffers(plain)), (buffers(prepared), buffers(plain))


@pytest.mark.parametrize("head_dim", [64, 512])
def test_the_pinned_kernel_probe_agrees_with_running_the_case(head_dim):
    """`unsupported` asks torch up front which SDPA kernel would run. Where it says
    the pinned FlashAttention refuses, running the case must fail; where it lets the
    case through, the case must run on that kernel and match float64. (On the H200,
    torch 2.11 refused head_dim 512 with "Invalid backend", words the probe did not
    know yet: it let the case through, and the cell failed mid-run.)"""
    c = case("torch", "sdpa-flash", head_dim=head_dim)
    try:
        torch_backend = load_backend("torch")
    except ImportError as exc:
        pytest.skip(f"torch is not installed here: {exc}")
    reason = torch_backend.unsupported(c)
    if head_dim == 64:
        assert reason is None, reason
    try:
        prepared = torch_backend.prepare(c, make_weights(c), make_inputs(c))
        got = prepared.outputs()
    except RuntimeError as exc:
        assert reason and "refuses" in reason, f"the probe let through a case that fails: {exc}"
        return
    assert reason is None, f"the probe refused a case that runs: {reason}"
    assert prepared.kernel == "sdpa flash_attention"
    w, x = make_weights(c), make_inputs(c)
    verdict = judge(got, reference.outputs(c, w, x), reference.outputs(c, w, x, dtype=c.dtype),
                    c.dtype)
    assert verdict.correct, verdict


@pytest.mark.parametrize("backend, naive, fused", [("torch", "eager", "sdpa-flash"),
                                                   ("jax", "jit", "dpa-cudnn")])
def test_allocator_peak_sees_the_n2_scores_of_naive_attention_only(backend, naive, fused):
    """B=1, H=8, N=4096 bfloat16: the naive core holds B*H*N^2 scores (268 MB in
    bfloat16); a fused kernel holds O(N) per head. The fused one runs first, so
    JAX's never-reset peak is not already above it."""
    peaks = {}
    for variant in (fused, naive):
        c = case(backend, variant, n=4096, heads=8)
        b = backend_for(c)
        prepared = b.prepare(c, make_weights(c), make_inputs(c))

        def one_step():
            prepared.step()
            prepared.sync()
        one_step()
        peaks[variant], method = b.step_peak(c, one_step)
        assert peaks[variant] is not None, method
    scores = 1 * 8 * 4096 ** 2 * 2
    assert peaks[naive] >= scores, peaks
    assert peaks[fused] <= scores / 8, peaks


def test_a_gpu_run_writes_gpu_rows(tmp_path):
    """Through the runner and its workers, as a user runs it, with cold caches."""
    suite = write_suite(tmp_path, "gpu-rows", """\
        [[sweep]]
        workload = ["attention"]
        backend  = ["torch", "jax", "tensorflow"]
        mode     = ["forward", "train"]
        dtype    = ["bfloat16"]
        device   = ["auto"]
        batch    = [2]
        seq_len  = [1024]
        heads    = [8]
        head_dim = [64]
        causal   = [true]

        [sweep.variants]
        torch      = ["sdpa-flash", "eager"]
        jax        = ["dpa", "jit"]
        tensorflow = ["xla"]
        """)
    suite.write_text(suite.read_text().replace("[measure]\n", "[measure]\nflush_l2 = true\n"))
    harness_run(suite, tmp_path / "run", "--device", "cuda:0")
    rows = jsonl_rows(tmp_path / "run")
    assert len(rows) == 2 * (2 + 2 + 1)
    gpu = GPUS[0]
    for r in rows:
        if r["backend"] == "tensorflow" and r["status"] == "unsupported":
            assert "not installed" in r["reason"] or "sees no" in r["reason"]
            continue
        assert r["status"] == "ok", r["reason"]
        assert r["device"] == "cuda:0" and r["device_name"] == gpu["name"]
        assert r["driver"] == gpu["driver"]
        peak = devices.peak_tflops(gpu["name"], "bfloat16")
        assert r["pct_peak"] == pytest.approx(100 * r["tflops"] / peak)
        assert r["kernel"] and r["timer"] == TIMER_FLUSHED and r["calls_per_sample"] == 1
        assert r["correct"] is True
        assert r["peak_mem_bytes"] and r["peak_mem_bytes"] > 0
        # NVML's figure for the worker, or the device-wide one named as such: the
        # worker's context and pools on top of its allocator's peak, in either.
        assert r["nvml_mem_method"] in NVML_METHODS, r["nvml_mem_method"]
        assert r["nvml_mem_bytes"] >= r["peak_mem_bytes"]
        if r["backend"] == "jax":                          # no 75% preallocation
            assert r["nvml_mem_bytes"] < 0.5 * gpu["memory_total"]
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["nvml"] == "ok" and [g["name"] for g in env["gpus"]] == [g["name"] for g in GPUS]
    settings = " ".join(env["worker_settings"].values())
    assert "CUDA_VISIBLE_DEVICES=0" in settings
    assert "XLA_PYTHON_CLIENT_PREALLOCATE=false" in settings or "jax" not in env["versions"]


@pytest.mark.skipif(len(GPUS) == 1, reason=f"{len(GPUS)} GPU visible: one worker per GPU "
                                           "needs two to show")
def test_one_worker_per_gpu_each_sees_its_own(tmp_path):
    suite = write_suite(tmp_path, "two", """\
        [[sweep]]
        workload = ["attention"]
        backend  = ["torch"]
        dtype    = ["bfloat16"]
        device   = ["cuda:0", "cuda:1"]
        batch    = [1]
        seq_len  = [256]
        heads    = [2]
        head_dim = [64]

        [sweep.variants]
        torch = ["sdpa"]
        """)
    harness_run(suite, tmp_path / "run", "--no-gate")
    rows = {r["device"]: r for r in jsonl_rows(tmp_path / "run")}
    assert set(rows) == {"cuda:0", "cuda:1"}
    for device, r in rows.items():
        index = int(device.split(":")[1])
        assert r["status"] == "ok" and r["device_name"] == GPUS[index]["name"]
        assert f"CUDA_VISIBLE_DEVICES={index}" in r["settings"]


@pytest.mark.parametrize("backend, variant", [("torch", "sdpa-flash"), ("jax", "dpa-cudnn")])
@pytest.mark.parametrize("mode", ["forward", "train"])
def test_a_long_sequence_is_judged_at_its_own_size(backend, variant, mode):
    """bfloat16 at N=8192, causal, through the fused kernels the figures come from:
    finite, and correct on the sampled rows (tile edges past 1024 among them) and,
    in train mode, on every gradient of those rows' loss (harness/correctness/sampling.py)."""
    c = case(backend, variant, mode=mode, n=8192, heads=2, head_dim=128)
    b = backend_for(c)
    w, x = make_weights(c), make_inputs(c)
    got = b.prepare(c, w, x).outputs()
    assert all(np.isfinite(t).all() for t in got.values())
    result = judging.judge_outputs(c, got, w, x, judging.References(), judging.rerun_on(b, c, w))
    assert result["check_rows"] == sampling.SAMPLED_ROWS < c.seq_len, result
    assert result["correct"] is True, result
