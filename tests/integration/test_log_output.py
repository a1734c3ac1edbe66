"""Output into a log (a pipe, a file, CI): tables keep every name whole however
wide they are, and progress is one plain line per finished batch, not a bar that
is drawn once at the end and cut to 80 columns."""
from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys

from rich.console import Console
from rich.table import Table

from harness.correctness.grid import grid
from harness.report.run_report import on_screen, print_whole

from .runs_helpers import PLUGIN, ROOT, RUN_LIMIT_S, write_suite

TORCH_VARIANTS = ("eager", "sdpa", "sdpa-flash", "sdpa-efficient", "sdpa-math", "sdpa-cudnn")
BATCH_LINE = re.compile(r"; (\d+)/(\d+) (cells|cases), \d+:\d\d:\d\d elapsed"
                        r"(, about \d+:\d\d:\d\d left)?$")


def piped(*args: str, plugins: str = "") -> subprocess.CompletedProcess:
    """`python -m harness ARGS` with stdout and stderr both pipes, as in CI."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "ATTNBENCH_BACKENDS", "FORCE_COLOR", "TTY_COMPATIBLE")}
    env["COLUMNS"] = "80"                  # what a CI runner's log says it is, if anything
    if plugins:
        env["ATTNBENCH_BACKENDS"] = plugins
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=RUN_LIMIT_S)


def test_check_into_a_pipe_keeps_every_name_whole(tmp_path):
    # Every dtype: ten columns, far wider than 80. compile is left out for time.
    proc = piped("check", "--backend", "torch", "--workload", "attention", "--variant",
                 *TORCH_VARIANTS, "--out", str(tmp_path / "check"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    both = proc.stdout + proc.stderr
    assert "…" not in both and " eta " not in both, both    # nothing cut, no bar
    rows = [line for line in proc.stdout.splitlines() if line.startswith("│ torch ")]
    assert [line.split("│")[2].strip() for line in rows] == list(TORCH_VARIANTS), proc.stdout
    header = next(line for line in proc.stdout.splitlines() if "float32" in line)
    assert all(d in header for d in ("tf32", "bfloat16", "float16")), header
    # One line per finished batch (a backend and mode), each whole:
    # "torch train on cpu: 60 cases, 0 failed (30 s); 60/120 cases, ...".
    lines = [line for line in proc.stderr.splitlines() if BATCH_LINE.search(line)]
    assert {line.split(" on cpu")[0] for line in lines} == {"torch forward", "torch train",
                                                           "torch decode"}
    done = [int(BATCH_LINE.search(line).group(1)) for line in lines]
    total = str(len(grid(["torch"], workloads=["attention"], variants=TORCH_VARIANTS)))
    assert done == sorted(done) and BATCH_LINE.search(lines[-1]).group(1, 2) == (total, total)


def test_run_into_a_pipe_prints_batch_lines_and_a_whole_summary(tmp_path):
    suite = write_suite(tmp_path, "logged", """\
        [[sweep]]
        workload = ["attention"]
        backend  = ["faulty"]
        mode     = ["forward"]
        dtype    = ["float32"]
        device   = ["cpu"]
        batch    = [1]
        seq_len  = [8, 12]
        heads    = [2]
        head_dim = [4]

        [sweep.variants]
        faulty = ["exact", "slow"]
        """)
    proc = piped("run", str(suite), "--out", str(tmp_path / "run"), "--threads", "1",
                 plugins=PLUGIN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "…" not in proc.stderr and " eta " not in proc.stderr, proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.startswith("faulty on cpu done")]
    assert len(line) == 1 and BATCH_LINE.search(line[0]).group(1, 2) == ("4", "4"), line
    summary = [x for x in proc.stderr.splitlines() if x.lstrip().startswith("attention ")]
    assert len(summary) == 4 and all("faulty exact" in x or "faulty slow" in x
                                     for x in summary), proc.stderr
    assert all(x.rstrip().endswith(" ok") for x in summary), summary


def wide_table() -> Table:
    table = Table(title="wide")
    for i in range(12):
        table.add_column(f"column-{i:02d}")
    table.add_row(*(f"tensorflow-xla-{i}" for i in range(12)))
    return table


def test_a_table_into_a_file_is_as_wide_as_its_rows():
    out = io.StringIO()
    console = Console(file=out, width=80)
    assert not on_screen(console)
    print_whole(wide_table(), console)
    assert "…" not in out.getvalue() and "tensorflow-xla-11" in out.getvalue()
    assert console.width == 80                          # the console is left as it was


def test_forced_color_into_a_file_is_still_a_log():
    # FORCE_COLOR (common in CI) makes rich call a pipe a terminal; it is still a log.
    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    assert console.is_terminal and not on_screen(console)


def test_a_terminal_is_on_screen_and_fits_its_width():
    main, side = pty.openpty()
    with open(side, "w", closefd=True) as tty:
        console = Console(file=tty, width=80)
        assert on_screen(console)
        with console.capture() as captured:
            print_whole(wide_table(), console)
    os.close(main)
    assert "…" in captured.get()                      # a screen's width is the user's
