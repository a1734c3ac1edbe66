"""Where a run's wall time went: each phase's seconds summed over the run's rows
(the phase_* columns, harness/run/cell.py), the correctness gate's, less what
side-by-side workers overlapped, and what is left (the runner, rows, reports,
idle cores), each as a share of the wall time env.json records. Timed work is
the first calls plus the samples."""
from __future__ import annotations

import pandas as pd

PHASES = (
    ("worker start and framework import", "phase_worker_s"),
    ("setup: weights, inputs, prepare", "phase_setup_s"),
    ("first calls (timed)", "phase_first_call_s"),
    ("warm-up", "phase_warmup_s"),
    ("calibration (calls per sample)", "phase_calibrate_s"),
    ("samples (timed)", "phase_samples_s"),
    ("profiled steps", "phase_profile_s"),
    ("memory probe", "phase_memory_s"),
    ("outputs for the check", "phase_outputs_s"),
    ("references (float64 and own dtype)", "phase_reference_s"),
    ("judging", "phase_judge_s"),
)
TIMED = ("phase_first_call_s", "phase_samples_s")


def phase_seconds(frame: pd.DataFrame, env: dict) -> dict[str, float] | None:
    """Seconds per phase for the run `env` describes (gate and the rest included),
    or None where its rows or env.json predate the phase columns."""
    rows = frame[frame["run_id"] == env.get("run_id")] if "run_id" in frame else frame
    wall = env.get("wall_s")
    columns = [c for _, c in PHASES if c in rows]
    if not wall or not columns or rows[columns].isna().all().all():
        return None
    reused = env.get("gate_reused")
    gate = f"correctness gate ({reused} check cases reused)" if reused else "correctness gate"
    spent = {gate: float(env.get("gate_s") or 0.0)}
    spent.update({label: float(rows[column].fillna(0).sum())
                  for label, column in PHASES if column in rows})
    # Side by side (harness/run/executors/quiet.py), a worker's phases hold the
    # seconds it was stopped while another timed, and two workers' untimed phases
    # run at once: both come off, so that the column still adds up to the wall.
    if env.get("stopped_s"):
        spent["less: stopped while another worker timed"] = -float(env["stopped_s"])
    if env.get("overlap_s"):
        spent["less: untimed work done side by side"] = -float(env["overlap_s"])
    spent["elsewhere: runner, rows, reports, between cells"] = wall - sum(spent.values())
    spent["timed work"] = float(sum(rows[c].fillna(0).sum() for c in TIMED if c in rows))
    spent["wall"] = float(wall)
    return spent


def markdown(frame: pd.DataFrame, env: dict) -> list[str]:
    """The run's "where the time went" section, or nothing."""
    spent = phase_seconds(frame, env)
    if spent is None:
        return []
    wall, timed = spent.pop("wall"), spent.pop("timed work")
    table = pd.DataFrame({"phase": list(spent),
                          "seconds": [f"{v:,.1f}" for v in spent.values()],
                          "share of wall": [f"{100 * v / wall:.0f} %" for v in spent.values()]})
    note = ([] if not env.get("stopped_s") else
            ["Side by side, a worker's phases include the seconds it was stopped while "
             "another timed a cell; the two rows after them take those seconds, and the "
             "untimed work done at once, off again.", ""])
    return [f"## Where the time went: {env.get('run_id', '')}", "",
            f"Timed work (first calls and samples): {timed:,.0f} s, {100 * timed / wall:.0f} % "
            f"of {wall:,.0f} s wall.", "", table.to_markdown(index=False, disable_numparse=True),
            "", *note]
