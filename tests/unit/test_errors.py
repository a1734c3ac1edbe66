"""Every error a user can fix is a UserError, and the command line turns each into
one line on stderr and exit status 2, never a traceback."""
from __future__ import annotations

import pytest

from harness import cli
from harness.results.pytest_benchmark_format import FormatError
from harness.results.store import StoreError
from harness.run.executors.ray_cluster import ExecutorError
from harness.run.suite import SuiteError
from harness.spec.errors import UserError


@pytest.mark.parametrize("error", [StoreError, SuiteError, FormatError, ExecutorError])
def test_each_parts_error_is_a_user_error(error):
    assert issubclass(error, UserError)


@pytest.mark.parametrize("argv, words", [
    (["run", "suites/smoke.toml", "--address", "ray://x:1", "--dry-run"], "--address"),
    (["run", "suites/smoke.toml", "--resume", "results", "--out", "x"], "--resume DIR"),
    (["report", "/nonexistent/run"], "not a run folder"),
    (["run", "/nonexistent/suite.toml"], "suite.toml"),
])
def test_a_user_error_is_one_line_and_exit_2(argv, words, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnbench: error:") and words in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
