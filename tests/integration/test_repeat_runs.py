"""`attnbench run --repeat K` through real worker processes: K rows per cell, round
after round, merged into one with the spread between processes; and a rerun of the
same code, compared with the first run, called no regression."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

# Two runs of --repeat 2 through real workers (~35 s): `make check-all` runs them;
# tests/unit/test_repeats.py holds the merging rules in make test's 10 minutes.
pytestmark = pytest.mark.slow

from harness.report import compare
from harness.results import store
from tests.integration.runs_helpers import PLUGIN, ROOT, harness_run, jsonl_rows

K = 3
# torch, where installed, and the framework-free faulty backend's exact variant: two
# batches to interleave, without paying a second framework's import six times.
BACKENDS = [b for b in ("torch",) if importlib.util.find_spec(b)] + ["faulty"]
SUITE = """\
name = "repeated"

[measure]
min_run_ms = 100
min_samples = 10
warmup_ms = 10
timeout_s = 120

[[sweep]]
workload = ["attention"]
backend  = {backends}
mode     = ["forward"]
dtype    = ["float32"]
device   = ["cpu"]
batch    = [1]
seq_len  = [128, 256]
heads    = [2]
head_dim = [32]
causal   = [false]

[sweep.variants]
torch  = ["eager", "sdpa"]
faulty = ["exact"]
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repeat")
    suite = folder / "repeated.toml"
    suite.write_text(SUITE.format(backends=str(BACKENDS).replace("'", '"')))
    for name in ("first", "rerun"):
        harness_run(suite, folder / name, "--no-gate", "--repeat", str(K), plugins=PLUGIN)
    return suite, folder / "first", folder / "rerun"


def test_each_cell_has_a_row_per_process_written_round_after_round(runs):
    _, first, _ = runs
    rows = jsonl_rows(first)
    cells = {store.cell_key(r) for r in rows}
    assert len(rows) == K * len(cells)
    repeats = [r["repeat"] for r in rows]
    assert repeats == sorted(repeats)        # every batch's round 0 before any round 1
    for repeat in range(K):
        assert {store.cell_key(r) for r in rows if r["repeat"] == repeat} == cells
    assert store.read_env(first)["repeat"] == K


def test_the_merged_row_says_how_far_the_processes_were_apart(runs):
    _, first, _ = runs
    frame = store.load(first)
    assert (frame["status"] == "ok").all(), frame[["backend", "status", "reason"]]
    for row in frame.to_dict("records"):
        medians = row["process_medians_ms"]
        assert len(medians) == K and row["repeats"] == K
        assert sum(row["process_n_samples"]) == len(row["samples_ms"]) == row["n_samples"]
        assert min(medians) <= row["median_ms"] <= max(medians)
        assert row["between_spread_pct"] == pytest.approx(
            100 * (max(medians) - min(medians)) / row["median_ms"])


def test_a_rerun_of_the_same_code_is_called_no_regression(runs):
    _, first, rerun = runs
    result = compare.compare(store.load(first), store.load(rerun))
    assert len(result) == len(store.load(first))
    assert not result["verdict"].map(compare.is_regression).any(), \
        result[["backend", "variant", "seq_len", "ratio", "ratio_low", "verdict"]]
    assert result["ratio_low"].notna().all()
    cli = subprocess.run([sys.executable, "-m", "harness", "compare", str(first), str(rerun)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ATTNBENCH_BACKENDS": PLUGIN})
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-2000:]
    assert "one process per cell" not in cli.stdout


def test_resume_skips_cells_done_in_every_process_and_keeps_the_count(runs):
    suite, first, _ = runs
    before = len(jsonl_rows(first))
    done = harness_run(suite, None, "--resume", str(first), "--no-gate", plugins=PLUGIN)
    assert "already ok, skipped" in done.stderr and len(jsonl_rows(first)) == before
    other = subprocess.run([sys.executable, "-m", "harness", "run", str(suite), "--resume",
                            str(first), "--repeat", "2", "--quiet"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "ATTNBENCH_BACKENDS": PLUGIN})
    assert other.returncode == 2
    assert other.stderr.strip().count("\n") == 0 and f"--repeat {K}" in other.stderr
