"""The measurement columns every worker writes, through real worker processes on
this CPU: what ran the attention core (`kernel`), how it was timed (`timer`,
cold caches with flush_l2), and that a GPU-only request on a machine without one
is `unsupported` with its reason, never a crash or a silent CPU run."""
from __future__ import annotations

import pytest

from harness.measure.timing import TIMER_FLUSHED
from harness.spec.catalog import REGISTRY
from tests.integration.runs_helpers import harness_run, jsonl_rows, write_suite

SWEEP = """\
[[sweep]]
workload = ["attention", "mha"]
backend  = [{backend}]
batch    = [1]
seq_len  = [32]
heads    = [2]
head_dim = [8]
causal   = [true]
"""
FLUSHED = "[measure]\nflush_l2 = true\n"
# What the `kernel` column names per variant; torch's SDPA says which of its
# kernels it dispatched to (on this CPU, its fused flash kernel).
KERNEL_WORDS = {("torch", "eager"): "torch ops", ("torch", "sdpa"): "sdpa flash_attention",
                ("torch", "compile"): "inductor around sdpa",
                ("jax", "jit"): "einsum", ("jax", "dpa"): "implementation xla",
                ("tensorflow", "eager"): "eager", ("tensorflow", "function"): "graph",
                ("tensorflow", "xla"): "XLA"}


@pytest.mark.slow          # 17 s; `make check-all` runs it (make test's 10 minutes)
def test_kernel_and_timer_columns_with_cold_caches(tmp_path):
    """Every framework once, in one run, each with its own cache flusher (the
    default timer is covered through the worker in tests/unit/test_gpu_planning.py)."""
    sweep = SWEEP.replace('workload = ["attention", "mha"]', 'workload = ["attention"]')
    sweep = sweep.format(backend='"torch", "jax", "tensorflow"') + (
        '\n[sweep.variants]\ntorch = ["eager", "sdpa"]\njax = ["jit", "dpa"]\n')
    suite = write_suite(tmp_path, "cols", sweep)
    suite.write_text(suite.read_text().replace("[measure]\n", FLUSHED))
    harness_run(suite, tmp_path / "run", "--no-gate")
    rows = [r for r in jsonl_rows(tmp_path / "run") if "not installed" not in r["reason"]]
    assert {r["backend"] for r in rows} >= {"torch"}
    assert rows and all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
    for r in rows:
        assert KERNEL_WORDS[(r["backend"], r["variant"])] in r["kernel"], r["kernel"]
        assert r["timer"] == TIMER_FLUSHED
        assert r["calls_per_sample"] == 1              # each call timed on its own
        assert r["nvml_mem_bytes"] is None             # a CPU cell has no NVML figure


def test_gpu_cells_without_a_gpu_are_unsupported_with_the_reason(tmp_path):
    sweep = SWEEP.format(backend='"torch", "jax"').replace(
        "causal", 'device = ["cuda", "gpu:H100"]\ndtype = ["bfloat16"]\ncausal')
    suite = write_suite(tmp_path, "nogpu", sweep)
    proc = harness_run(suite, tmp_path / "run")
    rows = jsonl_rows(tmp_path / "run")
    variants = sum(len(REGISTRY[b].variants) for b in ("torch", "jax"))   # every one
    assert len(rows) == variants * 2 * 2              # 2 workloads x 2 device values
    assert {r["status"] for r in rows} == {"unsupported"}
    for r in rows:
        if r["device"] == "gpu:H100":
            assert "no visible GPU is a H100" in r["reason"]
        else:            # NVML's answer, or where NVML is missing the framework's own
            assert r["device"] == "cuda:0"
            assert any(words in r["reason"] for words in (
                "no NVIDIA GPU or driver", "torch sees no CUDA", "jax sees no cuda:0",
                "runs on cuda only", "does not run")), r["reason"]
    assert "checking" not in proc.stderr            # nothing to gate: no cell can run
