"""The command line through real processes: help, env, and every kind of bad
input ending as one line on stderr with exit status 2 (no traceback)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.measure import devices
from harness.run import plan
from harness.run.suite import load_suite

ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 120
SCRIPT = Path(sys.executable).parent / "attnbench"


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "ATTNBENCH_BACKENDS"}


def harness(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=LIMIT_S)


def assert_one_line_error(proc: subprocess.CompletedProcess, *names: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert proc.stderr.strip() == lines[0]       # not even blank lines around it
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# --- help and env -------------------------------------------------------------------

def test_installed_script_help():
    if not SCRIPT.exists():
        pytest.skip("attnbench is not installed in this environment")
    proc = subprocess.run([str(SCRIPT), "--help"], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=LIMIT_S)
    assert proc.returncode == 0, proc.stderr
    assert "example" in proc.stdout and "attnbench run suites/" in proc.stdout
    for command in ("run", "env", "report"):
        assert command in proc.stdout


def test_module_help():
    proc = harness("--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: attnbench" in proc.stdout and "example" in proc.stdout


@pytest.mark.parametrize("command", ["run", "env", "report"])
def test_command_help_shows_an_example(command):
    proc = harness(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"usage: attnbench {command}" in proc.stdout
    assert "example" in proc.stdout
    assert f"  attnbench {command} " in proc.stdout     # the example itself


def test_env_names_torch():
    proc = harness("env")
    assert proc.returncode == 0, proc.stderr
    assert "torch" in proc.stdout
    assert "backend torch" in proc.stdout


def test_no_command_is_a_one_line_error():
    assert_one_line_error(harness(), "COMMAND")


# --- bad suites -------------------------------------------------------------------

GOOD_SWEEP = {
    "workload": '["attention"]', "backend": '["torch"]', "mode": '["forward"]',
    "dtype": '["float32"]', "device": '["cpu"]', "batch": "[1]", "seq_len": "[8]",
    "heads": "[2]", "head_dim": "[4]",
}


def suite_text(**changes: str | None) -> str:
    """A valid suite with some sweep keys changed (None removes a key)."""
    sweep = {**GOOD_SWEEP, **changes}
    body = "\n".join(f"{k} = {v}" for k, v in sweep.items() if v is not None)
    return f'name = "bad"\n\n[[sweep]]\n{body}\n'


BAD_SUITES = {
    # id: (file text, words the error must name)
    "unknown-key": (suite_text(sequence_length="[8]"), ["sequence_length", "unknown key"]),
    "wrong-type": (suite_text(batch='"two"'), ["batch", "'two'"]),
    "bad-dtype": (suite_text(dtype='["float64"]'), ["dtype", "float64"]),
    "heads-zero": (suite_text(heads="0"), ["heads", "got 0"]),
    "unknown-backend": (suite_text(backend='["nope"]'), ["backend", "'nope'"]),
    "unknown-workload": (suite_text(workload='["attn"]'), ["workload", "'attn'"]),
    "empty-grid": (suite_text(seq_len="[]"), ["seq_len", "empty"]),
    "not-toml": ("this is not = = toml\n[[[\n", ["not valid TOML"]),
    "measure-zero-timeout": (suite_text() + "\n[measure]\ntimeout_s = 0\n",
                             ["measure.timeout_s", "got 0"]),
}


@pytest.mark.parametrize("text,names", BAD_SUITES.values(), ids=BAD_SUITES.keys())
def test_bad_suite_is_one_line_exit_2(tmp_path, text, names):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    line = assert_one_line_error(harness("run", path, "--dry-run"), *names)
    assert str(path) in line                       # names the file too
    assert line.startswith("attnbench: error:")


def test_missing_file_is_one_line_exit_2(tmp_path):
    path = tmp_path / "nowhere.toml"
    assert_one_line_error(harness("run", path, "--dry-run"), str(path), "no such file")


def test_good_suite_text_is_accepted(tmp_path):
    """The baseline the bad suites are made from is itself valid."""
    path = tmp_path / "good.toml"
    path.write_text(suite_text())
    proc = harness("run", path, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    cells = len(load_suite(path).cases)       # one per torch variant
    assert cells > 1
    assert f"bad: {cells} cells planned" in proc.stdout


def test_workload_keeps_that_workloads_cells_alone():
    suite = load_suite(ROOT / "suites/default.toml")
    wanted = sum(c.workload == "attention" for c in suite.cases)
    assert 0 < wanted < len(suite.cases)
    proc = harness("run", "suites/default.toml", "--workload", "attention", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"default: {wanted} cells planned" in proc.stdout


# --- bad options ---------------------------------------------------------------------

def test_a_workload_the_suite_lacks_and_a_single_version_are_one_line():
    assert_one_line_error(harness("run", "suites/flash.toml", "--workload", "transformer"),
                          "suites/flash.toml", "no cell of workload transformer")
    assert_one_line_error(harness("run", "suites/smoke.toml", "--versions", "jax==0.10.2"),
                          "--versions", "at least two")
    # No abbreviations: --version is not --versions (whose runs would read it again).
    assert_one_line_error(harness("run", "suites/smoke.toml", "--version", "jax==1,jax==2"),
                          "unrecognized arguments", "--version")


def test_unknown_backend_option(tmp_path):
    assert_one_line_error(harness("run", "suites/smoke.toml", "--backend", "nope", "--dry-run"),
                          "--backend", "nope")


def test_threads_zero(tmp_path):
    assert_one_line_error(harness("run", "suites/smoke.toml", "--threads", "0", "--dry-run"),
                          "--threads", "0")


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    assert_one_line_error(harness("report", tmp_path), str(tmp_path), "not a run folder")


# --- dry runs of the shipped suites ----------------------------------------------------

@pytest.mark.parametrize("name", ["smoke", "default"])
def test_dry_run_prints_the_cell_count(name):
    path = ROOT / "suites" / f"{name}.toml"
    suite = load_suite(path)
    expected = len(plan.planned_cases(suite))
    if not devices.gpus():
        assert expected == len(suite.cases)
    proc = harness("run", f"suites/{name}.toml", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"{suite.name}: {expected} cells planned" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr
    # Nothing ran: no run folder was written.
    assert "results:" not in proc.stderr
