"""No command writes outside the folder it names (issue 18, items 5-6): a bad suite
name, an --out that is a file or cannot be written, a publish root that cannot be
made, a --resume of another suite's folder: each is one line on stderr, exit 2,
and every folder around is as it was."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results import store
from harness.spec import Case
from tests.integration.runs_helpers import ROOT

LIMIT_S = 120
SWEEP = """
[[sweep]]
workload = ["attention"]
backend = ["torch"]
batch = [1]
seq_len = [8]
heads = [2]
head_dim = [4]
"""
BAD_NAMES = {"dotdot": "..", "root": "/", "nested": "a/b", "nul": "a\x00b",
             "long": "x" * 300, "hidden": ".hidden", "escape": "../../../somewhere/else"}


def harness(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ATTNBENCH_BACKENDS", "PYTHONPATH")}
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=LIMIT_S)


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1, proc.stderr
    assert line.startswith(("attnbench: error:", "attnbench run: error:")), line
    for word in words:
        assert word in line, (word, line)
    return line


def snapshot(folder: Path) -> dict:
    """Every path under the sandbox, and its parent's listing."""
    return {folder: sorted(str(p) for p in folder.rglob("*")),
            folder.parent: sorted(p.name for p in folder.parent.iterdir())}


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


# What these commands could make in the repository, were a path to escape; others
# work there meanwhile, so only such names count.
OURS = ("tiny", "smoke", "bad", "somewhere", "else", "published", "check-", "report-")


@pytest.fixture
def sandbox(tmp_path):
    """tmp_path/work (the commands' cwd) with a run folder, a file and a suite; and
    a check that nothing was made or changed around it."""
    work = tmp_path / "work"
    run = work / "run"
    case = Case("tiny", "attention", "torch", "eager", "forward", "float32", "cpu",
                1, 8, 2, 4, False)
    with store.RunWriter(run) as writer:
        writer.write_env({"run_id": "r", "suite": "tiny", "suite_hash": "0" * 16})
        writer.append({**case.to_dict(), "run_id": "r", "status": "ok", "median_ms": 1.0,
                       "samples_ms": [1.0, 1.1, 0.9], "calls_per_sample": 1})
    (work / "file").write_text("not a folder\n")
    (work / "tiny.toml").write_text('name = "tiny"\n' + SWEEP)
    before, repo = snapshot(tmp_path), {f: listing(f) for f in (ROOT, ROOT / "results")}
    yield work
    assert snapshot(tmp_path) == before
    for folder, names in repo.items():
        assert not [n for n in listing(folder) - names if any(w in n for w in OURS)]


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_a_bad_suite_name_is_refused_before_any_folder_is_made(sandbox, name):
    suite = sandbox / "bad.toml"
    suite.write_text(f"name = {json.dumps(name)}\n" + SWEEP)   # TOML reads JSON's escapes
    line = one_line_error(harness("run", suite, "--threads", "1", "--no-gate", cwd=sandbox),
                          str(suite), "name:", "not starting with '.'")
    assert len(line) < 400
    suite.unlink()
    assert not (sandbox / "results").exists()


@pytest.mark.parametrize("name", [n for n in BAD_NAMES.values() if "\x00" not in n],
                         ids=[k for k, n in BAD_NAMES.items() if "\x00" not in n])
def test_a_bad_publish_name_is_refused(sandbox, name):
    one_line_error(harness("publish", "run", "--name", name, cwd=sandbox), "--name",
                   "letters, digits")
    assert not (sandbox / "results").exists()


PATH_CASES = {
    # id: (arguments, with {file} and {missing} filled in; words the line must hold)
    "run-out-file": (["run", "tiny.toml", "--threads", "1", "--out", "file"],
                     ["--out 'file'", "is a file, not a folder"]),
    "run-out-under-file": (["run", "tiny.toml", "--threads", "1", "--out", "file/sub"],
                           ["--out 'file/sub'", "cannot write there"]),
    "export-no-folder": (["export", "run", "--format", "pytest-benchmark", "--out",
                          "missing/x.json"], ["--out 'missing/x.json'", "no folder 'missing'"]),
    "export-onto-folder": (["export", "run", "--format", "pytest-benchmark", "--out", "run"],
                           ["--out 'run'", "is a folder, not a file"]),
    "export-under-file": (["export", "run", "--format", "pytest-benchmark", "--out",
                           "file/x.json"], ["no folder 'file'"]),
    "report-out-file": (["report", "run", "--out", "file"], ["--out 'file'", "is a file"]),
    "compare-no-folder": (["compare", "run", "run", "--out", "missing/c.md"],
                          ["--out 'missing/c.md'", "no folder"]),
    "check-out-file": (["check", "--out", "file"], ["--out 'file'", "is a file"]),
    "resume-other-suite": (["run", str(ROOT / "suites" / "smoke.toml"), "--resume", "run"],
                           ["suite 'tiny', not 'smoke'", "--resume-any-suite"]),
    "resume-edited-suite": (["run", "tiny.toml", "--resume", "run"],
                            ["another grid or [measure]", "--resume-any-suite"]),
    "any-suite-alone": (["run", "tiny.toml", "--resume-any-suite"], ["--resume DIR"]),
}


@pytest.mark.parametrize("args, words", PATH_CASES.values(), ids=PATH_CASES.keys())
def test_a_bad_place_to_write_is_one_line(sandbox, args, words):
    one_line_error(harness(*args, cwd=sandbox), *words)


def test_publish_where_results_is_a_file(sandbox):
    (sandbox / "results").write_text("a file where the folder would be\n")
    one_line_error(harness("publish", "run", "--name", "ok", cwd=sandbox),
                   "'results/published'", "cannot write there")
    (sandbox / "results").unlink()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_export_into_a_read_only_folder(sandbox):
    locked = sandbox / "locked"
    locked.mkdir(mode=0o500)
    try:
        one_line_error(harness("export", "run", "--format", "pytest-benchmark", "--out",
                               "locked/x.json", cwd=sandbox), "cannot write there")
    finally:
        locked.rmdir()


# sysfs takes no new files, even from root: a folder that cannot be written.
@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="no sysfs here")
@pytest.mark.parametrize("args", [
    ["export", "run", "--format", "pytest-benchmark", "--out", "/sys/attnbench-x.json"],
    ["run", "tiny.toml", "--threads", "1", "--out", "/sys/attnbench-run"],
    ["report", "run", "--out", "/sys/attnbench-report"],
    ["compare", "run", "run", "--out", "/sys/attnbench-c.md"],
], ids=["export", "run", "report", "compare"])
def test_a_folder_that_cannot_be_written(sandbox, args):
    before = listing(Path("/sys"))
    one_line_error(harness(*args, cwd=sandbox), "'/sys/attnbench-", "cannot write there")
    assert listing(Path("/sys")) == before


def test_run_help_explains_resume_any_suite(tmp_path):
    proc = harness("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "--resume-any-suite" in text and "another suite, or an edited one" in text
