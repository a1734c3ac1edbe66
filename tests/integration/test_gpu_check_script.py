"""scripts/gpu_check.sh (`make gpu-check`) run as a user runs it, with a stand-in
python3 (PYTHON=...) that can make chosen steps fail, overrun their limit, or see
a GPU that NVML cannot list: the check exits non-zero and says which step did
what, one verdict line each; on this machine without a GPU it passes and says so."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import NamedTuple

import pytest

from harness.measure import devices
from tests.integration.runs_helpers import ROOT

SCRIPT = ROOT / "scripts" / "gpu_check.sh"
STEPS = ("gpu", "env", "gpu-tests", "suite", "figures", "check")
# Stand-ins for every step but the GPU probe (python -c): each exits at once.
QUICK = {"-m harness env": "exit:0", "-m pytest": "exit:0", "-m harness run": "exit:0",
         "gpu_figures.py": "exit:0", "-m harness check": "exit:0"}

# The stand-in python3: a step whose arguments contain a FAKE_STEPS key does what
# its value says (exit:N, or sleep:S then exit 0); FAKE_GPU_ROOT makes the GPU
# probe see that folder's GPU signs and no nvidia-ml-py; anything else runs as is.
FAKE_PYTHON = """#!{python}
import json, os, sys, time
args = " ".join(sys.argv[1:])
for marker, action in json.loads(os.environ.get("FAKE_STEPS", "{{}}")).items():
    if marker in args:
        kind, _, value = action.partition(":")
        if kind == "sleep":
            time.sleep(float(value))
        sys.exit(int(value) if kind == "exit" else 0)
if sys.argv[1] == "-c" and os.environ.get("FAKE_GPU_ROOT"):
    sys.path.insert(0, os.getcwd())
    sys.modules["pynvml"] = None
    from harness.measure import devices
    devices.GPU_SIGN_ROOT = os.environ["FAKE_GPU_ROOT"]
    exec(sys.argv[2])
    sys.exit()
os.execv(sys.executable, [sys.executable] + sys.argv[1:])
"""


class Finished(NamedTuple):
    returncode: int
    stdout: str
    log: str


def gpu_check(tmp_path, steps: dict, **env: str) -> tuple[Finished, dict]:
    """Run the script into tmp_path/out; returns how it ended (its output, and its
    log as it was the moment the script returned) and its verdict lines."""
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    run_env = {**os.environ, "PYTHON": str(fake), "FAKE_STEPS": json.dumps(steps), **env}
    with open(tmp_path / "stdout.txt", "w") as out:      # a file, so that wait() returns
        proc = subprocess.Popen(["bash", str(SCRIPT), str(tmp_path / "out")],  # with bash
                                env=run_env, stdout=out, stderr=subprocess.STDOUT)
        returncode = proc.wait(timeout=300)
    log = (tmp_path / "out" / "gpu-check.log").read_text()
    done = Finished(returncode, (tmp_path / "stdout.txt").read_text(), log)
    summary = done.stdout.split("=== gpu-check summary", 1)[-1]
    verdicts = {m[1]: m[2].strip() for m in re.finditer(r"^  (\S+) +(.+?) +\d+ s$",
                                                        summary, re.MULTILINE)}
    return done, verdicts


def last_line(text: str) -> str:
    return text.rstrip("\n").rsplit("\n", 1)[-1]


def test_a_failing_step_fails_the_check_and_is_named(tmp_path):
    proc, verdicts = gpu_check(tmp_path, {**QUICK, "-m harness run": "exit:3"})
    assert proc.returncode == 1, proc.stdout
    assert verdicts == {**{s: "ok" for s in STEPS}, "suite": "FAILED  exit 3"}
    assert last_line(proc.stdout) == "gpu-check FAILED: 1 of 6 steps (suite)"
    # The log is complete when the script returns: it ends as the output does.
    assert last_line(proc.log) == last_line(proc.stdout) and "=== suite" in proc.log


def test_a_step_past_its_limit_is_a_timeout(tmp_path):
    started = time.monotonic()
    proc, verdicts = gpu_check(tmp_path, {**QUICK, "-m harness check": "sleep:60"},
                               GPU_CHECK_LIMIT_CHECK="1")
    assert time.monotonic() - started < 30        # stopped at 1 s, not after 60
    assert proc.returncode == 1, proc.stdout
    assert verdicts["check"] == "TIMED OUT at its 1 s limit"
    assert [s for s, v in verdicts.items() if v != "ok"] == ["check"]
    assert "=== check (limit 1 s)" in proc.stdout
    assert last_line(proc.stdout) == "gpu-check FAILED: 1 of 6 steps (check)"


def test_a_gpu_nvml_cannot_list_fails_the_check_and_is_not_no_gpu(tmp_path):
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    (root / "dev" / "nvidia0").touch()
    proc, verdicts = gpu_check(tmp_path, QUICK, FAKE_GPU_ROOT=str(root))
    assert proc.returncode == 1, proc.stdout
    assert verdicts["gpu"] == "FAILED  exit 1"
    assert f"NVML failed on a machine that shows an NVIDIA GPU ({root}/dev/nvidia0): " \
           "nvidia-ml-py is not installed" in proc.stdout
    assert "no GPU on this machine" not in proc.stdout
    assert last_line(proc.stdout) == "gpu-check FAILED: 1 of 6 steps (gpu)"


def test_without_a_gpu_the_check_passes_and_says_there_is_none(tmp_path):
    """The real steps (the GPU tests aside: they have their own run in make test)."""
    kind, line = devices.presence()
    if kind != "none":
        pytest.skip(f"this machine is not without a GPU ({line}): make gpu-check runs it")
    proc, verdicts = gpu_check(tmp_path, {"-m pytest": "exit:0"})
    assert proc.returncode == 0, proc.stdout
    assert verdicts == {s: "ok" for s in STEPS}
    assert last_line(proc.stdout).startswith(
        "gpu-check passed (all 6 steps ok), but no GPU on this machine")
    assert line in proc.stdout and (tmp_path / "out" / "run" / "results.jsonl").exists()
