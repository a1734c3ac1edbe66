"""The whole history of some runs: their series, steps and drifts, and the steps
the newest run starts (what `--fail-on-step` fails on)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from harness.history.series import Run, Series, gather, read_runs
from harness.history.steps import MIN_STEP_PCT, Drift, Step, find_drifts, find_steps


@dataclass
class History:
    runs: list[Run]           # oldest first
    series: list[Series]
    steps: list[Step]
    drifts: list[Drift]
    min_step_pct: float


def collect(paths: list[str | os.PathLike], min_step_pct: float = MIN_STEP_PCT) -> History:
    runs = read_runs(paths)
    series = gather(runs)
    steps, drifts = [], []
    for s in series:
        found = find_steps(s, min_step_pct)
        steps += found
        drifts += find_drifts(s, found, min_step_pct)
    return History([run for run, _ in runs], series, steps, drifts, min_step_pct)


MIN_RUNS = 3       # the fewest runs of a cell in which steps.py can judge a step


def too_short(h: History) -> int:
    """Cells with fewer than MIN_RUNS points: no step can be judged in them (two runs
    are `attnbench compare`'s question)."""
    return sum(len(s.medians) < MIN_RUNS for s in h.series)


def newest_slowdowns(h: History, pct: float) -> list[Step]:
    """Steps of at least `pct` percent slower that the newest run starts."""
    newest = h.runs[-1].run_id
    return [s for s in h.steps if s.after.run_id == newest and s.size_pct >= pct]
