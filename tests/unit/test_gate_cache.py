"""The gate's cache (harness/run/gating.py): a verdict is reused only while
everything it depends on is unchanged, and changing any of it checks again."""
from __future__ import annotations

import importlib.metadata
import shutil

import pytest

from harness.results import cache
from harness.run import gating
from harness.spec import Case

CASE = Case("check", "mha", "torch", "eager", "train", "float32", "cpu", 2, 19, 2, 24,
            True, 2)


@pytest.fixture
def project(tmp_path):
    """A copy of the project's code, to edit."""
    for part in ("harness", "backends"):
        shutil.copytree(cache.PROJECT_ROOT / part, tmp_path / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def key(base, case=CASE) -> str:
    return gating.GateCache(base / "gate", threads=2, base=base).key(case)


def edit(path, text="\n# changed\n"):
    path.write_text(path.read_text() + text)


def test_the_same_case_and_code_give_the_same_key_and_other_cases_others(project):
    assert key(project) == key(project)
    assert key(project) != key(project, CASE.replace(seq_len=33))
    assert key(project) != key(project, CASE.replace(variant="sdpa"))


def test_changing_the_backends_code_checks_again(project):
    before = key(project)
    edit(project / "backends" / "tensorflow" / "layers.py")
    assert key(project) == before                     # another backend's code
    edit(project / "backends" / "torch" / "attention.py")
    assert key(project) != before
    changed = key(project)
    edit(project / "backends" / "common.py")          # code every backend shares
    assert key(project) != changed


def test_changing_the_tolerance_policy_or_the_reference_checks_again(project):
    before = key(project)
    accuracy = project / "harness" / "correctness" / "accuracy.py"
    accuracy.write_text(accuracy.read_text().replace("MULTIPLE = 2.0", "MULTIPLE = 3.0"))
    policy = key(project)
    assert policy != before
    edit(project / "harness" / "spec" / "reference_core.py")
    assert key(project) != policy
    unrelated = key(project)
    edit(project / "harness" / "report" / "plots.py")   # not what a check runs
    assert key(project) == unrelated


def test_a_framework_version_or_a_framework_variable_checks_again(project, monkeypatch):
    before = key(project)
    real = importlib.metadata.version

    def other_torch(name):
        return "0.0.1" if name == "torch" else real(name)
    monkeypatch.setattr(importlib.metadata, "version", other_torch)
    assert key(project) != before
    monkeypatch.setattr(importlib.metadata, "version", real)
    assert key(project) == before
    monkeypatch.setenv("TORCHINDUCTOR_MAX_AUTOTUNE", "1")
    assert key(project) != before


def test_finished_verdicts_are_kept_and_name_their_run(tmp_path):
    kept = gating.GateCache(tmp_path / "gate", threads=2)
    assert kept.get(CASE) is None
    row = {"status": "ok", "correct": True, "err_ratio": 0.4, "backend": "torch"}
    kept.put(CASE, row, "run-1")
    assert kept.get(CASE) == {**row, "verdict_from": "run-1"}
    other = CASE.replace(seq_len=33)
    kept.put(other, {"status": "timeout", "reason": "ran past 300 s"}, "run-1")
    assert kept.get(other) is None                    # may pass on a quieter machine
    assert gating.GateCache(None, threads=2).get(CASE) is None      # --no-cache


def test_pruning_removes_the_least_recently_used_first(tmp_path):
    import os
    for age, name in enumerate(("old", "mid", "new")):
        path = tmp_path / f"{name}.json"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1000 + age, 1000 + age))
    cache.touch(tmp_path / "old.json")                # used now: the newest
    assert cache.prune(tmp_path, limit=2000) == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json", "old.json"]


def test_env_says_where_the_cache_is_and_how_full(tmp_path, monkeypatch):
    from harness.cli.env import cache_text
    monkeypatch.setenv("ATTNBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("ATTNBENCH_CACHE_MB", "10")
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / "a.json").write_bytes(b"x" * 3 * 2**20)
    assert cache_text().startswith(f"{tmp_path}: 3 MB of 10 MB")
