"""Peak memory held to a physical bound, through real worker processes on this CPU.

The attention core op by op (torch eager, TensorFlow eager, JAX jit and dpa)
materializes one B*H*N^2 score matrix, so its recorded peak is at least that
(the row's mem_scores_bytes); torch's fused SDPA never holds it, so its peak
stays below. Before the probe returned what glibc's thread arenas kept, JAX dpa
at N=1024 read 0.5 MB here against an 8 MB matrix (docs/measurement.md,
"Memory"). Every memory figure also names how it was read.
"""
from __future__ import annotations

import importlib.util

import pytest

from tests.integration.runs_helpers import harness_run, jsonl_rows, write_suite

VARIANTS = {"torch": ["eager", "sdpa"], "tensorflow": ["eager"], "jax": ["jit", "dpa"]}
MATERIALIZED = {("torch", "eager"), ("tensorflow", "eager"), ("jax", "jit"), ("jax", "dpa")}
FUSED = {("torch", "sdpa")}
SEQ_LENS = (512, 1024, 2048)


def installed() -> list[str]:
    """The backends whose framework imports here (found, not imported: TF is slow)."""
    return [b for b in VARIANTS if importlib.util.find_spec(b)]


def sweep(backends: list[str]) -> str:
    variants = "\n".join(f"{b} = {VARIANTS[b]}" for b in backends).replace("'", '"')
    names = ", ".join(f'"{b}"' for b in backends)
    return f"""\
[[sweep]]
workload = ["attention"]
backend  = [{names}]
mode     = ["forward"]
dtype    = ["float32"]
device   = ["cpu"]
batch    = [1]
seq_len  = {list(SEQ_LENS)}
heads    = [2]
head_dim = [64]
causal   = [false]

[sweep.variants]
{variants}
"""


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict]:
    backends = installed()
    if not backends:
        pytest.skip("no framework installed")
    folder = tmp_path_factory.mktemp("bound")
    harness_run(write_suite(folder, "bound", sweep(backends)), folder / "run", "--no-gate")
    got = jsonl_rows(folder / "run")
    assert len(got) == len(SEQ_LENS) * sum(len(VARIANTS[b]) for b in backends)
    assert all(r["status"] == "ok" for r in got), [(r["backend"], r["reason"]) for r in got]
    return got


def mb(value: int) -> str:
    return f"{value / 2**20:.1f} MB"


def test_op_by_op_attention_holds_at_least_one_score_matrix(rows):
    checked = [r for r in rows if (r["backend"], r["variant"]) in MATERIALIZED]
    assert checked
    for r in checked:
        assert r["mem_scores_bytes"] == 4 * r["batch"] * r["heads"] * r["seq_len"] ** 2
        assert r["peak_mem_bytes"] >= r["mem_scores_bytes"], (
            f"{r['backend']} {r['variant']} N={r['seq_len']}: peak {mb(r['peak_mem_bytes'])} "
            f"< scores {mb(r['mem_scores_bytes'])} ({r['mem_method']})")


def test_fused_attention_stays_below_one_score_matrix(rows):
    checked = [r for r in rows if (r["backend"], r["variant"]) in FUSED]
    if not checked:
        pytest.skip("torch is not installed")
    for r in checked:
        assert 0 <= r["peak_mem_bytes"] < r["mem_scores_bytes"], (
            f"{r['variant']} N={r['seq_len']}: peak {mb(r['peak_mem_bytes'])} "
            f">= scores {mb(r['mem_scores_bytes'])}")


def test_every_memory_figure_names_its_method(rows):
    for r in rows:
        for figure, method in (("peak_mem_bytes", "mem_method"),
                               ("nvml_mem_bytes", "nvml_mem_method")):
            if r.get(figure) is not None:
                assert r.get(method) and not r[method].startswith("unavailable"), (
                    r["backend"], r["variant"], figure, r.get(method))
