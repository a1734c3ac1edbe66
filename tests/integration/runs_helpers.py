"""What the integration tests share: writing a small suite, running
`python -m harness run` on it in a subprocess, reading the rows back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "tests.integration.faulty_backend"
# Only a hung run ever comes near this; it keeps a broken harness from hanging CI.
RUN_LIMIT_S = 600

MEASURE = """\
[measure]
min_run_ms = 5
min_samples = {min_samples}
warmup_ms = 1
timeout_s = {timeout_s}
device_time = {device_time}
"""


def write_suite(folder: Path, name: str, sweep: str, timeout_s: float = 120,
                min_samples: int = 3, device_time: bool = False) -> Path:
    """A suite of `sweep`; without the profiled pass unless asked (its profiler's start,
    a second or so a worker, is paid by the runs that look at device_ms)."""
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\n\n'
                    + MEASURE.format(timeout_s=timeout_s, min_samples=min_samples,
                                     device_time=str(device_time).lower()) + "\n"
                    + textwrap.dedent(sweep))
    return path


def harness_run(suite: Path, out: Path | None, *extra: str, plugins: str = "",
                pythonpath: str = "", cache: Path | None = None) -> subprocess.CompletedProcess:
    """`attnbench run`, with a fresh cache unless `cache` names one to share."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATTNBENCH_BACKENDS", "PYTHONPATH")}
    env["ATTNBENCH_CACHE"] = str(cache or tempfile.mkdtemp(dir=os.environ["ATTNBENCH_CACHE"]))
    if plugins:
        env["ATTNBENCH_BACKENDS"] = plugins
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    where = ["--out", str(out)] if out else []      # None: --resume in extra says where
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(suite), *where,
                           "--quiet", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_LIMIT_S)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def jsonl_rows(folder: Path) -> list[dict]:
    lines = (folder / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]
