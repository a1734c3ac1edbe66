"""The core never imports a framework: everything the runner's own process does
before it hands a cell to a worker (parse the CLI, plan a suite, read each
backend's settings, build each worker's environment) leaves torch, tensorflow and
jax unimported. Checked in a fresh interpreter, since this test process may
already hold frameworks that other tests imported."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("torch", "tensorflow", "jax", "flax")

PROBE = """
import contextlib, io, json, sys
from harness import cli
from harness.run import runner
from harness.pytest_plugin import pedantic
from harness.results import pytest_benchmark_format
from harness import pytest_plugin
from harness.run.environment import environment_for
from backends.base import REGISTRY
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    for suite in ("suites/default.toml", "suites/smoke.toml", "suites/gpu.toml",
                  "suites/flash.toml", "suites/gpu-check.toml"):
        cli.main(["run", suite, "--dry-run", "--verbose"])
    cli.main(["env"])
for name in REGISTRY:
    for device in ("cpu", "cuda:0"):
        environment_for(name, device, 2, "/tmp")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
"""


def test_runner_process_imports_no_framework():
    proc = subprocess.run([sys.executable, "-c", PROBE % (FRAMEWORKS,)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert imported == [], f"the core imported {imported}"
