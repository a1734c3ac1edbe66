"""Suites through real processes: `python -m harness run` -> runner -> executor ->
worker processes -> run folder. Shapes and measuring budgets are tiny; the point is
the plumbing (one row per cell whatever happens, crash and timeout recovery, the
run folder's files and columns), not the numbers.

Planted failures (the faulty backend) are in test_faulty_run.py.
"""
from __future__ import annotations

import csv
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results import store
from harness.run import plan
from harness.run.suite import Suite, parse_suite
from harness.spec import CASE_FIELDS, RESULT_COLUMNS, Case

from .runs_helpers import ROOT, RUN_LIMIT_S, harness_run, jsonl_rows, write_suite

CONTRACT_COLUMNS = (*CASE_FIELDS, *RESULT_COLUMNS)


def cell(row: dict) -> Case:
    return Case.from_dict(row)


# --- a real torch run -------------------------------------------------------------

TORCH_WORKLOADS = ("attention", "mha")
TORCH_VARIANTS = ("eager", "sdpa", "sdpa-flash")
TORCH_CELLS = len(TORCH_WORKLOADS) * 2 * len(TORCH_VARIANTS)


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    tmp = tmp_path_factory.mktemp("torch")
    suite = write_suite(tmp, "tinytorch", """\
        [[sweep]]
        workload = ["attention", "mha"]
        backend  = ["torch"]
        mode     = ["forward", "train"]
        dtype    = ["float32"]
        device   = ["cpu"]
        batch    = [1]
        seq_len  = [16]
        heads    = [2]
        head_dim = [8]
        causal   = [true]

        [sweep.variants]
        torch = ["eager", "sdpa", "sdpa-flash"]
        """, device_time=True)
    out = tmp / "run"
    harness_run(suite, out, "--threads", "1")
    return out


def test_torch_run_folder_files(torch_run):
    for name in ("results.jsonl", "results.csv", "env.json", "report.md"):
        assert (torch_run / name).is_file(), name


def test_torch_csv_has_every_contract_column(torch_run):
    with open(torch_run / "results.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        body = list(reader)
    missing = [c for c in CONTRACT_COLUMNS if c not in header]
    assert not missing, missing
    assert header[:len(CONTRACT_COLUMNS)] == list(CONTRACT_COLUMNS)  # contract columns first
    assert "samples_ms" not in header                                 # raw samples stay in jsonl
    assert len(body) == TORCH_CELLS


def test_torch_ok_rows_carry_every_contract_column(torch_run):
    for row in jsonl_rows(torch_run):
        if row["status"] == "ok":
            missing = [c for c in CONTRACT_COLUMNS if c not in row]
            assert not missing, (cell(row).name, missing)


def test_torch_every_json_row_carries_every_contract_column(torch_run):
    for row in jsonl_rows(torch_run):
        missing = [c for c in CONTRACT_COLUMNS if c not in row]
        assert not missing, (cell(row).name, row["status"], missing)


def test_torch_ok_rows(torch_run):
    rows = jsonl_rows(torch_run)
    ok = [r for r in rows if r["status"] == "ok"]
    assert {(r["workload"], r["mode"], r["variant"]) for r in ok} == {
        (w, m, v) for w in TORCH_WORKLOADS for m in ("forward", "train")
        for v in ("eager", "sdpa")}
    for r in ok:
        name = cell(r).name
        assert r["median_ms"] > 0, name
        assert r["flops"] > 0 and r["tflops"] > 0, name
        assert r["n_samples"] >= 3, name
        assert isinstance(r["samples_ms"], list) and len(r["samples_ms"]) == r["n_samples"]
        assert all(s > 0 for s in r["samples_ms"]), name
        assert r["first_call_ms"] > 0, name
        assert r["correct"] is True, (name, r["err_ratio"], r.get("err_tensor"))
        assert r["reason"] == ""
        assert r["pct_peak"] is None            # no dense peak is known for a CPU
        assert r["threads"] == 1
    # Train mode is judged on the gradients too: its flops exceed forward's.
    by = {(r["workload"], r["mode"], r["variant"]): r for r in ok}
    for w in TORCH_WORKLOADS:
        assert by[(w, "train", "eager")]["flops"] > by[(w, "forward", "eager")]["flops"]


def test_torch_sdpa_flash_is_unsupported_on_cpu(torch_run):
    flash = [r for r in jsonl_rows(torch_run) if r["variant"] == "sdpa-flash"]
    assert len(flash) == len(TORCH_WORKLOADS) * 2
    for r in flash:
        assert r["status"] == "unsupported"
        assert "cuda" in r["reason"].lower(), r["reason"]


def test_torch_report_md_sections(torch_run):
    text = (torch_run / "report.md").read_text()
    assert "## attention" in text and "## mha" in text
    assert "## block" not in text and "## transformer" not in text
    assert "unsupported: " in text


def test_torch_report_md_names_the_torch_version(torch_run):
    header = (torch_run / "report.md").read_text().split("\n\n")[1]
    assert f"torch {importlib.metadata.version('torch')}" in header, header


def test_torch_store_load_one_row_per_cell(torch_run):
    frame = store.load(torch_run)
    assert len(frame) == TORCH_CELLS
    assert not frame.duplicated(subset=list(CASE_FIELDS)).any()
    assert list(frame.columns[:len(CONTRACT_COLUMNS)]) == list(CONTRACT_COLUMNS)
    assert set(frame["status"]) == {"ok", "unsupported"}
    assert frame["run_id"].nunique() == 1


def test_torch_env_json(torch_run):
    env = json.loads((torch_run / "env.json").read_text())
    assert env["suite"] == "tinytorch"
    assert env["host"]
    assert env["threads"] == 1
    assert env["versions"]["torch"] == importlib.metadata.version("torch")
    assert env["run_id"] == jsonl_rows(torch_run)[0]["run_id"]
    assert env.get("finished_at")


def test_torch_rows_and_report_say_where_the_time_went(torch_run):
    env = json.loads((torch_run / "env.json").read_text())
    rows = jsonl_rows(torch_run)
    ran = [r for r in rows if r["status"] == "ok"]
    phases = [c for c in ran[0] if c.startswith("phase_") and c != "phase_worker_s"]
    assert len(phases) == 10                                 # profile included
    for row in ran:
        assert all(row[p] >= 0 for p in phases), row
        # the profiled pass: torch.profiler's op time a step, the rest launch overhead
        assert row["device_ms"] > 0 and row["device_time_method"].startswith("torch.profiler")
        assert row["launch_overhead_ms"] == pytest.approx(row["median_ms"] - row["device_ms"])
        # every sample's block lies inside the samples phase
        timed_ms = sum(row["samples_ms"]) * row["calls_per_sample"]
        assert timed_ms <= row["phase_samples_s"] * 1e3 * 1.001
    started = [r["phase_worker_s"] for r in rows if r["phase_worker_s"] is not None]
    assert started and all(s > 0 for s in started)       # the first cell of each worker
    spent = sum(r[p] or 0 for r in rows for p in [*phases, "phase_worker_s"])
    assert 0 < env["gate_s"] and spent + env["gate_s"] <= env["wall_s"]
    report = (torch_run / "report.md").read_text()
    assert f"## Where the time went: {env['run_id']}" in report
    assert "| memory probe" in report and "Timed work (first calls and samples)" in report


def test_torch_report_command_rewrites_the_folder(torch_run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(torch_run, folder)          # the fixture's folder stays as the run left it
    (folder / "report.md").unlink()
    (folder / "results.csv").unlink()
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(folder)],
                          cwd=ROOT, capture_output=True, text=True, timeout=RUN_LIMIT_S)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    text = (folder / "report.md").read_text()
    assert "## attention" in text and "## mha" in text
    assert f"torch {importlib.metadata.version('torch')}" in text
    assert (folder / "results.csv").read_text() == (torch_run / "results.csv").read_text()


# --- a backend whose framework is missing ------------------------------------------

GHOST = '''\
from backends.base import BackendInfo, Variant

INFO = BackendInfo(name="ghost", framework="fakeframework", module="ghost_impl",
                   settings="backends.torch.settings",
                   variants=(Variant("eager", "never runs"), Variant("fast", "nor this")))


def make_backend(info):
    import ghost_impl
    return ghost_impl.make_backend(info)
'''


def test_missing_framework_gives_unsupported_rows(tmp_path):
    (tmp_path / "ghost_backend.py").write_text(GHOST)
    (tmp_path / "ghost_impl.py").write_text("import fakeframework\n\n\n"
                                            "def make_backend(info):\n    return None\n")
    suite = write_suite(tmp_path, "ghost", """\
        [[sweep]]
        workload = ["attention"]
        backend  = ["ghost"]
        mode     = ["forward", "train"]
        batch    = [1]
        seq_len  = [8]
        heads    = [2]
        head_dim = [4]
        """)
    out = tmp_path / "run"
    harness_run(suite, out, plugins="ghost_backend", pythonpath=str(tmp_path))
    rows = jsonl_rows(out)
    assert len(rows) == 4
    for r in rows:
        assert r["status"] == "unsupported", r
        assert "fakeframework" in r["reason"], r["reason"]
        assert "No module named 'fakeframework'" in r["reason"], r["reason"]
    assert "unsupported" in (out / "report.md").read_text()


# --- plan and batches, in process ----------------------------------------------------

def _suite(**sweep) -> Suite:
    grid = {"workload": ["attention"], "backend": ["torch"], "batch": [1], "seq_len": [16],
            "heads": [2], "head_dim": [8], **sweep}
    return parse_suite({"name": "plan", "sweep": [grid]})


FAKE_GPUS = [{"index": 0, "name": "Fake GPU A"}, {"index": 1, "name": "Fake GPU B"}]


def test_plan_auto_without_gpus_is_cpu():
    suite = _suite(device=["auto"], mode=["forward", "train"])
    planned = plan.planned_cases(suite, gpus=[])
    assert len(planned) == len(suite.cases)
    assert {c.device for c in planned} == {"cpu"}


def test_plan_auto_with_two_gpus_is_one_cell_per_gpu():
    suite = _suite(device=["auto"], mode=["forward", "train"])
    planned = plan.planned_cases(suite, gpus=FAKE_GPUS)
    assert len(planned) == 2 * len(suite.cases)
    for case in suite.cases:
        assert [c for c in planned if c.replace(device="auto") == case] == [
            case.replace(device="cuda:0"), case.replace(device="cuda:1")]


def test_plan_drops_duplicates_and_filters_backends():
    suite = _suite(device=["auto", "cpu"])
    planned = plan.planned_cases(suite, gpus=[])
    assert len(planned) == len(suite.cases) // 2       # auto became cpu: the same cells
    assert len(set(planned)) == len(planned)
    assert plan.planned_cases(suite, backends=["jax"], gpus=[]) == []


def test_batches_group_by_backend_and_device_and_keep_references_adjacent():
    # Variants are the outermost loop of a sweep, so eager's cells come first and
    # sdpa's cells, which share their references, come long after them.
    suite = _suite(device=["auto"], mode=["forward", "train"], dtype=["float32", "bfloat16"],
                   seq_len=[16, 32], variants={"torch": ["eager", "sdpa"]})
    planned = plan.planned_cases(suite, gpus=FAKE_GPUS)
    groups = plan.batches(planned)
    assert set(groups) == {("torch", "cuda:0"), ("torch", "cuda:1")}
    for (backend, device), group in groups.items():
        mine = [c for c in planned if (c.backend, c.device) == (backend, device)]
        assert sorted(group, key=planned.index) == mine          # a permutation of its cells
        keys = [(c.shape_key, c.mode, c.dtype) for c in group]
        runs = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
        assert len(runs) == len(set(keys)), keys                 # each key in one run
        assert all(n == 2 for n in map(keys.count, set(keys)))   # eager and sdpa
        for key in set(keys):                                    # plan order kept inside
            members = [c for c in group if (c.shape_key, c.mode, c.dtype) == key]
            assert [c.variant for c in members] == ["eager", "sdpa"]
