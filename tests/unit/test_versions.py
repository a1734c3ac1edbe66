"""`run --versions`: what an environment is made of, and the flags passed on to each
run. (Making the environments themselves is the published history's job: it
downloads frameworks.)"""
from __future__ import annotations

import pytest

from harness.run import versions
from harness.spec.errors import UserError


def test_each_comma_item_is_an_environment_and_plus_joins_its_pins():
    assert versions.parse("jax==0.9.2,jax==0.10.2+flax==0.12.8") == [
        ["jax==0.9.2"], ["jax==0.10.2", "flax==0.12.8"]]
    assert versions.parse("jax[cuda12]==0.9.2, torch>=2.12") == [
        ["jax[cuda12]==0.9.2"], ["torch>=2.12"]]


@pytest.mark.parametrize("text, words", [
    ("jax==0.9.2", "at least two"),
    ("jax,jax==0.10.2", "'jax' is not a pinned requirement"),
    ("jax==0.9.2,,jax==0.10.2", "'' is not a pinned requirement"),
    ("jax==0.9.2;rm -rf /,jax==1", "not a pinned requirement"),
])
def test_a_bad_versions_value_is_one_user_error(text, words):
    with pytest.raises(UserError, match=words.replace("[", r"\[")):
        versions.parse(text)


def test_the_companions_come_from_the_requirements_file_unless_pinned():
    lines = {line.split("==")[0]: line for line in versions.REQUIREMENTS.read_text().split()
             if "==" in line}
    assert versions.companions(["jax==0.9.2"]) == [lines["flax"]]
    assert versions.companions(["jax==0.9.2", "flax==0.12.0"]) == []
    assert versions.companions(["torch==2.12.0"]) == []       # torch has none listed


def test_slugs_are_folder_names_and_differ_by_version():
    assert versions.slug(["jax==0.9.2", "flax==0.12.0"]) == "jax==0.9.2+flax==0.12.0"
    assert versions.slug(["jax[cuda12]==0.9.2"]).startswith("jax_cuda12_==0.9.2-")
    assert versions.slug(["jax==0.9.2"]) != versions.slug(["jax==0.10.2"])


def test_versions_and_out_are_not_passed_on_to_each_run():
    argv = ["suites/default.toml", "--backend", "jax", "--versions", "jax==1,jax==2",
            "--out=results/x", "--quiet"]
    assert versions.without_flags(argv, ("--versions", "--out")) == [
        "suites/default.toml", "--backend", "jax", "--quiet"]


def test_environments_live_outside_the_pruned_cache(monkeypatch, tmp_path):
    """The cache deletes its oldest files past its limit (results/cache.py): a run
    there once pruned an environment's bin/ between two runs of --versions."""
    from harness.results import cache
    monkeypatch.delenv("ATTNBENCH_VENVS", raising=False)
    monkeypatch.delenv("ATTNBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert not versions.venvs_root().is_relative_to(cache.root())
    monkeypatch.setenv("ATTNBENCH_VENVS", str(tmp_path / "v"))
    assert versions.venvs_root() == tmp_path / "v"


def test_an_environment_missing_its_python_is_made_again(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNBENCH_VENVS", str(tmp_path))
    folder = tmp_path / versions.slug(["jax==0.10.2"])
    (folder / "bin").mkdir(parents=True)
    (folder / ".installed").write_text("jax==0.10.2\n")        # its python pruned away
    made = []

    def fake_run(command, **_):
        made.append(command[:3])
        if command[1:3] == ["-m", "venv"]:
            (folder / "bin" / "python").touch()
        return None
    monkeypatch.setattr(versions.subprocess, "run", fake_run)
    assert versions.environment(["jax==0.10.2"], lambda _: None) == folder / "bin" / "python"
    assert [c[1:3] for c in made] == [["-m", "venv"], ["-m", "pip"]]
    made.clear()
    versions.environment(["jax==0.10.2"], lambda _: None)          # whole now: reused
    assert made == []


def test_a_plus_inside_a_local_version_stays_in_its_pin():
    assert versions.parse("torch==2.4.0+cpu,torch==2.5.0+cpu+numpy==2.1") == [
        ["torch==2.4.0+cpu"], ["torch==2.5.0+cpu", "numpy==2.1"]]


def test_specs_that_read_alike_once_made_safe_get_folders_of_their_own():
    assert versions.slug(["jax>=0.9"]) != versions.slug(["jax<=0.9"])
    assert versions.slug(["jax==0.9"]) == "jax==0.9"                 # nothing replaced


def test_another_build_of_the_pinned_module_is_no_companion():
    assert "tensorflow-cpu" not in " ".join(versions.companions(["tensorflow==2.20.0"]))


def test_an_environment_made_for_another_spec_is_made_again(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNBENCH_VENVS", str(tmp_path))
    folder = tmp_path / versions.slug(["jax==0.10.2"])
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").touch()
    (folder / ".installed").write_text("jax==0.10.1\n")
    made = []
    monkeypatch.setattr(versions.subprocess, "run", lambda command, **_: made.append(command))
    versions.environment(["jax==0.10.2"], lambda _: None)
    assert len(made) == 2 and (folder / ".installed").read_text().split() == ["jax==0.10.2"]
