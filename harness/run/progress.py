"""How a run and a check show progress on the console (stderr): on a terminal, a
live bar, one cell a step; in a log (a file, a pipe, CI), where a bar is drawn
once at the end and cut to 80 columns, one plain line per finished batch."""
from __future__ import annotations

import time
from datetime import timedelta

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
    TimeRemainingColumn,
)

from harness.report.run_report import on_screen


def progress_bar(console: Console, quiet: bool) -> Progress:
    """The running cell's name, the bar, done of total, elapsed and eta; nothing
    drawn when `quiet` or when the console is a log (see batch_line)."""
    return Progress(TextColumn("[progress.description]{task.description}", table_column=None),
                    BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console,
                    transient=False, disable=quiet or not on_screen(console))


def batch_line(what: str, done: int, total: int, started: float, unit: str = "cells") -> str:
    """A finished batch, for a log: '<what>; <done>/<total> cells, <elapsed> elapsed',
    and while some are left, ', about <time> left' at the pace so far (`started`:
    time.monotonic() when the sweep began)."""
    seconds = time.monotonic() - started
    line = f"{what}; {done}/{total} {unit}, {timedelta(seconds=int(seconds))} elapsed"
    if 0 < done < total:
        line += f", about {timedelta(seconds=int(seconds * (total - done) / done))} left"
    return line
