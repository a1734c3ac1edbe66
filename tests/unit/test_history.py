"""Steps in constructed series: a clean 20% step is found exactly where it is, with
the versions that changed; a single outlier run is not a step; a slow drift is
reported as drift, never as a step; the newest run alone starts a provisional step.
Times are drawn from a seeded generator; what the tests expect is worked out from
the construction, never copied from the code."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.history import analysis
from harness.history.series import Run, Series, cell_label, changes, identity
from harness.history.steps import find_drifts, find_steps

CELL = {"workload": "attention", "backend": "jax", "variant": "jit", "mode": "forward",
        "dtype": "float32", "batch": "1", "seq_len": "512", "heads": "8", "head_dim": "64",
        "causal": "True", "layers": "1", "kv_heads": "8", "q_len": "512", "window": "None",
        "lengths": "None", "device_model": "Xeon, 2 threads"}


def run(i: int, jax: str = "0.9.2", commit: str = "abc") -> Run:
    return Run(source=f"r{i}", run_id=f"run-{i:02d}",
               started_at=pd.Timestamp("2026-11-01", tz="UTC") + pd.Timedelta(hours=i),
               versions={"jax": jax, "torch": "2.13.0"}, commit=commit, machine="vm, Xeon",
               drivers="")


def series(levels: list[float], noise: float = 0.01, seed: int = 0,
           versions: list[str] | None = None, spread: float = 0.02) -> Series:
    """One cell over len(levels) runs: run i's samples scatter ±spread around a
    median that is levels[i] moved by up to ±noise (the run-to-run drift)."""
    rng = np.random.default_rng(seed)
    s = Series(key=tuple(CELL.values()), cell=dict(CELL))
    for i, level in enumerate(levels):
        median = level * (1 + rng.uniform(-noise, noise))
        samples = median * (1 + rng.uniform(-spread, spread, 40))
        s.runs.append(run(i, versions[i] if versions else "0.9.2"))
        s.medians.append(float(np.median(samples)))
        s.samples.append(samples)
    return s


def test_a_clean_step_is_found_where_it_is_with_what_changed():
    versions = ["0.9.2"] * 10 + ["0.10.2"] * 10
    s = series([10.0] * 10 + [12.0] * 10, versions=versions)
    steps = find_steps(s)
    assert [step.index for step in steps] == [10]
    assert steps[0].size_pct == pytest.approx(20, abs=2.5)
    assert steps[0].before.run_id == "run-09" and steps[0].after.run_id == "run-10"
    assert steps[0].changed == ["jax: 0.9.2 -> 0.10.2"]
    assert not steps[0].provisional and steps[0].p_value < 1e-6


def test_a_faster_step_is_negative_and_found_too():
    steps = find_steps(series([10.0] * 8 + [7.0] * 8, seed=3))
    assert [s.index for s in steps] == [8]
    assert steps[0].size_pct == pytest.approx(-30, abs=2.5)


@pytest.mark.parametrize("at", [3, 9, 15])
def test_a_single_outlier_run_is_not_a_step(at):
    levels = [10.0] * 20
    levels[at] = 15.0
    assert find_steps(series(levels, seed=at)) == []


def test_a_slow_drift_is_no_step_but_is_reported_as_drift():
    levels = list(10.0 * 1.01 ** np.arange(20))         # 1% a run, 21% in all
    s = series(levels, noise=0.002, seed=5)
    steps = find_steps(s)
    assert steps == []
    drifts = find_drifts(s, steps)
    assert len(drifts) == 1
    logs = np.log(s.medians)              # the first two runs' level to the last two's
    expected = 100 * np.expm1(logs[-2:].mean() - logs[:2].mean())
    assert drifts[0].change_pct == pytest.approx(expected)
    assert drifts[0].change_pct > 15


def test_the_newest_run_alone_starts_a_provisional_step():
    s = series([10.0] * 12 + [13.0], seed=7)
    steps = find_steps(s)
    assert [(st.index, st.provisional) for st in steps] == [(12, True)]
    assert steps[0].size_pct == pytest.approx(30, abs=3)


def test_a_step_within_the_runs_own_spread_is_not_one():
    # Every run's samples scatter ±60%: a 20% move of the median is inside that.
    s = series([10.0] * 10 + [12.0] * 10, noise=0.01, spread=0.6, seed=11)
    assert find_steps(s) == []


def test_a_step_below_the_threshold_is_not_one_above_it_is():
    s = series([10.0] * 10 + [10.8] * 10, noise=0.005, seed=2)
    assert find_steps(s, min_step_pct=10) == []
    assert [st.index for st in find_steps(s, min_step_pct=5)] == [10]


def test_a_step_on_a_noisy_series_is_found():
    s = series([10.0] * 12 + [12.5] * 12, noise=0.05, seed=4)
    assert [st.index for st in find_steps(s)] == [12]


def test_two_steps_are_both_found():
    s = series([10.0] * 8 + [13.0] * 8 + [10.0] * 8, seed=9)
    assert [(st.index, st.size_pct > 0) for st in find_steps(s)] == [(8, True), (16, False)]


def test_without_samples_the_medians_alone_decide():
    s = series([10.0] * 10 + [12.0] * 10, seed=1)
    s.samples = [None] * len(s.samples)
    steps = find_steps(s)
    assert [st.index for st in steps] == [10] and steps[0].p_value is None


def test_changes_names_versions_commit_driver_and_machine():
    a, b = run(0, "0.9.2", "aaaa"), run(1, "0.10.2", "bbbb")
    b.versions["tensorflow"] = "2.21.0"
    b.drivers, b.machine = "580.1", "other host"
    said = changes(a, b)
    assert said == ["jax: 0.9.2 -> 0.10.2", "tensorflow: absent -> 2.21.0",
                    "commit aaaa -> bbbb", "driver unknown -> 580.1",
                    "machine vm, Xeon -> other host"]
    assert changes(a, a) == []


def test_identity_leaves_out_suite_and_device_index_and_keeps_model_and_threads():
    row = {**{k: v for k, v in CELL.items() if k != "device_model"}, "suite": "a",
           "device": "cuda:1", "device_name": "NVIDIA H200", "batch": 1.0}
    other = {**row, "suite": "b", "device": "cuda:0"}
    assert identity(row) == identity(other)
    assert identity(row)["device_model"] == "NVIDIA H200" and identity(row)["batch"] == "1"
    cpu = {**row, "device": "cpu", "device_name": "Xeon", "threads": 2}
    assert identity(cpu)["device_model"] == "Xeon, 2 threads"
    assert identity({**cpu, "threads": 16}) != identity(cpu)
    assert cell_label(identity(cpu)) == ("attention jax jit forward float32 B1·N512·H8·D64 "
                                         "causal on Xeon, 2 threads")


def test_newest_slowdowns_are_the_slower_steps_the_newest_run_starts():
    slower = series([10.0] * 12 + [13.0], seed=7)
    faster = series([10.0] * 12 + [7.0], seed=8)
    old = series([10.0] * 6 + [13.0] * 7, seed=6)
    steps = [st for s in (slower, faster, old) for st in find_steps(s)]
    h = analysis.History(runs=slower.runs, series=[slower, faster, old], steps=steps,
                         drifts=[], min_step_pct=5)
    assert [st.series for st in analysis.newest_slowdowns(h, 10)] == [slower]
    assert analysis.newest_slowdowns(h, 40) == []


def test_a_flat_series_as_noisy_as_the_threshold_has_no_step():
    # ±5% from run to run, the threshold's own size: noise, never a step.
    for seed in range(10):
        assert find_steps(series([10.0] * 20, noise=0.05, seed=seed)) == [], seed
