"""The progress bar a run and a check draw on the console (stderr), one cell a step."""
from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(console: Console, quiet: bool) -> Progress:
    """The running cell's name, the bar, done of total, elapsed and eta; nothing
    drawn when `quiet`."""
    return Progress(TextColumn("[progress.description]{task.description}", table_column=None),
                    BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console,
                    transient=False, disable=quiet)
