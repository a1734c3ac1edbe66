"""Names that become folders (a suite's `name`, `publish --name`) are one safe
folder component; a run's folder is one this process can write in; --resume
refuses a folder another suite wrote (issue 18, items 5-6)."""
from __future__ import annotations

import pytest

from harness.report import publish
from harness.results import store
from harness.run import run_folder
from harness.run import suite_messages as msg
from harness.run.suite import SuiteError, load_suite, parse_suite
from harness.spec import Case
from harness.spec.errors import UserError

BAD_NAMES = {"dotdot": "..", "slash": "/", "nested": "a/b", "nul": "a\x00b",
             "long": "x" * 300, "hidden": ".hidden", "escape": "../../../somewhere/else",
             "empty": "", "newline": "a\n", "space": "a b", "backslash": "a\\b"}
GOOD_NAMES = ["default", "gpu-check", "cpu_xeon.2core", "A1", "-x", "_", "x" * 100]
SWEEP = {"workload": "attention", "backend": "torch", "batch": 1, "seq_len": 8, "heads": 2,
         "head_dim": 4, "variants": {"torch": ["eager"]}}


def suite_doc(**top) -> dict:
    return {"sweep": [dict(SWEEP)], **top}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_a_bad_suite_name_is_one_line_naming_file_value_and_rule(name):
    with pytest.raises(SuiteError) as info:
        parse_suite(suite_doc(name=name), "s.toml")
    line = str(info.value)
    assert len(line.splitlines()) == 1 and line.startswith("s.toml: name: ")
    assert msg.NAME_RULE in line and msg.show(name) in line
    assert len(line) < 300                        # the value is cut short


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_a_bad_publish_name_is_refused_before_anything_is_read(name, tmp_path):
    with pytest.raises(UserError) as info:
        publish.publish(tmp_path / "no-run", name, root=tmp_path / "published")
    assert "--name" in str(info.value) and len(str(info.value).splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names_pass_both_checks(name):
    assert parse_suite(suite_doc(name=name), "s.toml").name == name
    publish.check_name(name)


def test_the_two_copies_of_the_rule_agree():
    """publish (report, rank 3) cannot import the run part's rule: same text, same regex."""
    assert publish.NAME_RULE == msg.NAME_RULE            # one rule: harness/spec/names.py


@pytest.mark.parametrize("stem, name", [("my suite", "my-suite"), (".hidden", "hidden"),
                                        ("...", "suite"), ("x" * 200, "x" * 100)],
                         ids=["space", "hidden", "dots", "long"])
def test_a_name_taken_from_the_file_stem_is_made_safe(tmp_path, stem, name):
    path = tmp_path / f"{stem}.toml"
    path.write_text('[[sweep]]\nworkload = "attention"\nbackend = "torch"\nbatch = 1\n'
                    'seq_len = 8\nheads = 2\nhead_dim = 4\n')
    assert load_suite(path).name == name


# -- the suite's hash ------------------------------------------------------------------

def test_the_hash_follows_grid_and_measure_not_spelling_or_description():
    base = parse_suite(suite_doc(name="s"), "a.toml").hash
    assert len(base) == 16
    reordered = {"sweep": [dict(reversed(list(SWEEP.items())))], "name": "s",
                 "description": "other words", "measure": {"min_samples": 10}}  # the default
    assert parse_suite(reordered, "b.toml").hash == base
    assert parse_suite({**suite_doc(name="s"), "measure": {"min_samples": 3}}).hash != base
    wider = {"sweep": [{**SWEEP, "seq_len": [8, 16]}], "name": "s"}
    assert parse_suite(wider).hash != base


def written_run(folder, suite: str, suite_hash: str | None = None):
    case = Case(suite, "attention", "torch", "eager", "forward", "float32", "cpu",
                1, 8, 2, 4, False)
    with store.RunWriter(folder) as writer:
        writer.write_env({"run_id": "r", "suite": suite,
                          **({"suite_hash": suite_hash} if suite_hash else {})})
        writer.append({**case.to_dict(), "run_id": "r", "status": "ok"})
    return folder


def test_resume_compares_name_and_hash(tmp_path):
    suite = parse_suite(suite_doc(name="s"), "s.toml")
    planned = list(suite.cases)
    same = written_run(tmp_path / "same", "s", suite.hash)
    assert run_folder.resumed_run(suite, planned, same).skipped == 1
    legacy = written_run(tmp_path / "legacy", "s")               # no hash: name alone
    assert run_folder.resumed_run(suite, planned, legacy).skipped == 1
    for folder, words in ((written_run(tmp_path / "named", "t", suite.hash), "'t', not 's'"),
                          (written_run(tmp_path / "edited", "s", "0" * 16), "another grid")):
        with pytest.raises(store.StoreError) as info:
            run_folder.resumed_run(suite, planned, folder)
        assert words in str(info.value) and "--resume-any-suite" in str(info.value)


def test_resume_any_suite_adopts_the_folders_suite_name(tmp_path):
    suite = parse_suite(suite_doc(name="s"), "s.toml")
    folder = written_run(tmp_path / "run", "t", "0" * 16)
    adopted = run_folder.adopt(suite, folder)
    assert adopted.name == "t" and {c.suite for c in adopted.cases} == {"t"}
    resumed = run_folder.resumed_run(adopted, list(adopted.cases), folder)
    assert resumed.skipped == 1 and resumed.cases == []          # its ok cell is kept


# -- folders ------------------------------------------------------------------------

def test_writable_folder_refuses_a_file_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        run_folder.writable_folder(tmp_path / "file", "--out")
    with pytest.raises(UserError, match="cannot write there"):
        run_folder.writable_folder(tmp_path / "file" / "sub", "--out")
    with pytest.raises(UserError, match="cannot write there"):   # a name too long
        run_folder.writable_folder(tmp_path / "made" / ("y" * 300), "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]   # "made" removed again
    assert run_folder.writable_folder(tmp_path / "a" / "b", "--out").is_dir()
