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
    assert versions.slug(["jax[cuda12]==0.9.2"]) == "jax_cuda12_==0.9.2"
    assert versions.slug(["jax==0.9.2"]) != versions.slug(["jax==0.10.2"])


def test_versions_and_out_are_not_passed_on_to_each_run():
    argv = ["suites/default.toml", "--backend", "jax", "--versions", "jax==1,jax==2",
            "--out=results/x", "--quiet"]
    assert versions.without_flags(argv, ("--versions", "--out")) == [
        "suites/default.toml", "--backend", "jax", "--quiet"]
