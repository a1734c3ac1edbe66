"""The report's "where the time went": phases summed per run, the rest named."""
import pandas as pd
import pytest

from harness.report import time_spent


def rows(run_id: str, **phases) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": run_id, **phases}, {"run_id": run_id, **phases}])


def test_phases_are_summed_and_the_rest_is_named():
    frame = pd.concat([rows("a", phase_samples_s=3.0, phase_first_call_s=1.0,
                            phase_memory_s=0.5, phase_worker_s=None),
                       rows("b", phase_samples_s=100.0)])
    spent = time_spent.phase_seconds(frame, {"run_id": "a", "wall_s": 20.0, "gate_s": 4.0})
    assert spent["samples (timed)"] == 6.0 and spent["first calls (timed)"] == 2.0
    assert spent["worker start and framework import"] == 0.0
    assert spent["timed work"] == 8.0 and spent["correctness gate"] == 4.0
    assert spent["elsewhere: runner, rows, reports, between cells"] == pytest.approx(20 - 4 - 9)
    text = "\n".join(time_spent.markdown(frame, {"run_id": "a", "wall_s": 20.0, "gate_s": 4.0}))
    assert "Timed work (first calls and samples): 8 s, 40 % of 20 s wall." in text
    assert "| correctness gate" in text and "20 %" in text


def test_runs_from_before_the_phase_columns_have_no_section():
    frame = pd.DataFrame([{"run_id": "a", "median_ms": 1.0}])
    assert time_spent.markdown(frame, {"run_id": "a", "wall_s": 5.0}) == []
    assert time_spent.markdown(rows("a", phase_samples_s=1.0), {"run_id": "a"}) == []


def test_a_gate_that_reused_cached_verdicts_says_how_many():
    env = {"run_id": "a", "wall_s": 10.0, "gate_s": 0.2, "gate_reused": 140}
    text = "\n".join(time_spent.markdown(rows("a", phase_samples_s=1.0), env))
    assert "| correctness gate (140 check cases reused)" in text
