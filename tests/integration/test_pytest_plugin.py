"""The pytest plugin for real: pytest subprocesses run a small suite and a user's
own attention function through pytest-benchmark, and the JSON they write is read
back by attnbench (report) and by pytest-benchmark (compare, on an export)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from harness.results import store
from harness.spec import CASE_FIELDS, Case, costs
from tests.integration.runs_helpers import ROOT, harness_run, write_suite

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")

SWEEP = """\
[[sweep]]
workload = ["attention", "mha"]
backend  = ["torch"]
mode     = ["forward", "train"]
batch    = [1]
seq_len  = [32]
heads    = [2]
head_dim = [8]
causal   = [true]

[sweep.variants]
torch = ["eager", "sdpa", "sdpa-flash"]
"""


def pytest_run(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    """pytest in a subprocess, the plugin named with -p as on a checkout that is not
    installed (where the entry point registers it too, -p must not clash)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "harness.pytest_plugin",
                           "-p", "no:cacheprovider", "-q", "-rs", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def plugin_json(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin")
    suite = write_suite(folder, "plug", SWEEP)
    out = folder / "bench.json"
    proc = pytest_run("--attnbench-suite", str(suite), "--benchmark-json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return suite, json.loads(out.read_text()), proc.stdout


def test_one_benchmark_per_runnable_cell_with_the_extra_columns(plugin_json):
    suite, doc, stdout = plugin_json
    names = {b["name"]: b for b in doc["benchmarks"]}
    expected = {Case("plug", w, "torch", v, m, "float32", "cpu", 1, 32, 2, 8, True).name
                for w in ("attention", "mha") for v in ("eager", "sdpa")
                for m in ("forward", "train")}
    assert set(names) == expected                     # and nothing from tests/
    assert "4 skipped" in stdout and "torch sdpa-flash runs on cuda only" in stdout
    for bench in doc["benchmarks"]:
        extra, stats = bench["extra_info"], bench["stats"]
        case = Case.from_dict({f: extra[f] for f in CASE_FIELDS})
        assert case.name == bench["name"]
        assert extra["flops"] == costs.flops(case)
        assert extra["tflops"] == pytest.approx(extra["flops"] / stats["median"] / 1e12)
        assert extra["correct"] is True and extra["err_ratio"] < 2
        assert extra["peak_mem_bytes"] is not None and extra["first_call_ms"] > 0
        assert extra["kernel"] and extra["device_name"]
        assert stats["rounds"] >= 3 and stats["iterations"] == extra["iterations"]
        assert bench["group"].startswith(f"{case.workload} {case.mode} float32")


def test_its_json_loads_into_a_report(plugin_json, tmp_path):
    _, doc, _ = plugin_json
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    harness_report = subprocess.run([sys.executable, "-m", "harness", "report", str(path),
                                     "--out", str(tmp_path / "report")], cwd=ROOT,
                                    capture_output=True, text=True, timeout=300)
    assert harness_report.returncode == 0, harness_report.stderr[-2000:]
    assert (tmp_path / "report" / "report.html").is_file()
    frame = store.load(path)
    assert len(frame) == len(doc["benchmarks"])
    medians = {b["name"]: b["stats"]["median"] * 1e3 for b in doc["benchmarks"]}
    for _, row in frame.iterrows():
        assert row["median_ms"] == pytest.approx(medians[Case.from_dict(row).name])
        assert row["correct"] is True


def test_attn_benchmark_times_a_users_function_and_checks_it(tmp_path):
    (tmp_path / "test_mine.py").write_text(textwrap.dedent("""\
        import torch.nn.functional as F
        from harness.spec import Case

        CASE = Case("mine", "attention", "torch", "my-sdpa", "forward", "float32", "cpu",
                    1, 64, 2, 16, True)

        def my_attention(q, k, v):                     # (B, N, H, D) in and out
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                 v.transpose(1, 2), is_causal=True)
            return out.transpose(1, 2)

        def forgot_the_mask(q, k, v):
            return F.scaled_dot_product_attention(q, k, v)      # and in (B, H, N, D)

        def test_mine(attn_benchmark):
            extra = attn_benchmark(my_attention, CASE)
            assert extra["correct"] is True

        def test_wrong(attn_benchmark):
            attn_benchmark(forgot_the_mask, CASE, layout="bhnd")
        """))
    out = tmp_path / "mine.json"
    proc = pytest_run(str(tmp_path / "test_mine.py"), "--benchmark-json", str(out),
                      "--rootdir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:]          # test_wrong fails
    assert "1 failed, 1 passed" in proc.stdout
    assert "computes the wrong thing" in proc.stdout
    benches = {b["name"]: b["extra_info"] for b in json.loads(out.read_text())["benchmarks"]}
    assert benches["test_mine"]["correct"] is True
    assert benches["test_mine"]["kernel"] == "my_attention"
    assert benches["test_wrong"]["correct"] is False        # recorded all the same
    assert benches["test_wrong"]["err_ratio"] > 2


def test_pytest_benchmark_compare_reads_an_exported_run(tmp_path):
    sweep = SWEEP.replace('workload = ["attention", "mha"]', 'workload = ["attention"]')
    suite = write_suite(tmp_path, "exp", sweep)
    harness_run(suite, tmp_path / "run", "--no-gate")
    proc = subprocess.run([sys.executable, "-m", "harness", "export", str(tmp_path / "run"),
                           "--format", "pytest-benchmark", "--out", str(tmp_path / "e.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [r for r in store.latest_rows(store.read_rows(tmp_path / "run"))
            if r["status"] == "ok"]
    compare = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare",
                              str(tmp_path / "e.json")], capture_output=True, text=True,
                             timeout=120)
    assert compare.returncode == 0, compare.stderr[-2000:]
    for row in rows:
        assert Case.from_dict(row).name in compare.stdout
    back = store.load(tmp_path / "e.json")                  # and back, figures intact
    by_name = {Case.from_dict(r).name: r for r in rows}
    for _, row in back.iterrows():
        original = by_name[Case.from_dict(row).name]
        assert row["median_ms"] == pytest.approx(original["median_ms"])
        assert row["samples_ms"] == pytest.approx(original["samples_ms"])
        assert row["correct"] == original["correct"]


def test_the_installed_package_registers_the_plugin_with_pytest():
    from importlib.metadata import entry_points
    if not any(ep.value == "harness.pytest_plugin" for ep in entry_points(group="pytest11")):
        pytest.skip("attnbench is not installed here (a checkout: use -p harness.pytest_plugin)")
    proc = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert "--attnbench-suite" in proc.stdout
