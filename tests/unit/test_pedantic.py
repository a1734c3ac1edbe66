"""How a cell's pytest-benchmark rounds are sized (harness/pytest_plugin/pedantic.py), and a
pytest-benchmark file from someone else's suite read as rows."""
import json

import pandas as pd
import pytest

from harness.pytest_plugin.pedantic import MAX_ITERATIONS, plan_rounds
from harness.results import store
from harness.run.suite import Measure


@pytest.mark.parametrize("per_call_ms", [0.001, 0.05, 0.4, 3.0, 250.0])
def test_rounds_fill_the_budget_and_iterations_the_block(per_call_ms):
    m = Measure(min_run_ms=500, min_samples=10, warmup_ms=100, min_block_ms=1.0)
    plan = plan_rounds(per_call_ms, m)
    round_ms = per_call_ms * plan["iterations"]
    assert round_ms >= m.min_block_ms or plan["iterations"] == MAX_ITERATIONS
    assert plan["iterations"] == 1 or per_call_ms * (plan["iterations"] - 1) < m.min_block_ms
    assert plan["rounds"] >= m.min_samples
    assert plan["rounds"] * round_ms >= m.min_run_ms
    assert plan["warmup_rounds"] >= 1 and plan["warmup_rounds"] * round_ms >= m.warmup_ms


def test_flushed_caches_mean_one_call_per_round():
    plan = plan_rounds(0.01, Measure(flush_l2=True, min_block_ms=1.0))
    assert plan["iterations"] == 1 and plan["rounds"] >= Measure().min_run_ms / 0.01


def test_someone_elses_benchmarks_load_with_placeholders_not_guesses(tmp_path):
    data = [0.002, 0.0021, 0.0019, 0.0025]
    doc = {"machine_info": {"node": "box", "cpu": {"brand_raw": "Some CPU"}},
           "commit_info": {"id": "abc"}, "datetime": "2026-11-29T00:00:00", "version": "5.1.0",
           "benchmarks": [{"group": "parsing", "name": "test_parse[big]",
                           "fullname": "tests/test_p.py::test_parse[big]", "params": {"n": 3},
                           "extra_info": {}, "options": {},
                           "stats": {"median": 0.00205, "iqr": 0.0003, "min": 0.0019,
                                     "mean": 0.002125, "rounds": 4, "iterations": 10,
                                     "data": data}}]}
    path = tmp_path / "theirs.json"
    path.write_text(json.dumps(doc))
    frame = store.load(path)
    row = frame.iloc[0]
    assert (row["workload"], row["backend"], row["variant"]) == (
        "custom", "pytest-benchmark", "test_parse[big]")
    assert row["dtype"] == "unknown" and row["suite"] == "parsing"
    assert row["median_ms"] == pytest.approx(2.05) and row["iqr_ms"] == pytest.approx(0.3)
    assert row["samples_ms"] == pytest.approx([d * 1e3 for d in data])
    assert row["device_name"] == "Some CPU" and row["host"] == "box"
    assert pd.isna(row["mem_scores_bytes"]) and pd.isna(row["tflops"])   # no Case: unknown
    assert store.read_env(path)["git_commit"] == "abc"


@pytest.mark.parametrize("text, words", [("[1, 2]", "no 'benchmarks' list"),
                                         ("{not json", "not a readable JSON")])
def test_a_json_file_that_is_not_pytest_benchmarks_is_a_one_line_error(tmp_path, text, words):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(store.StoreError, match=words):
        store.load(path)


def test_same_named_tests_of_two_modules_stay_two_cells(tmp_path):
    bench = lambda module: {"group": None, "name": "test_fast", "fullname":
                            f"tests/{module}.py::test_fast", "extra_info": {},
                            "stats": {"median": 0.001, "rounds": 1, "data": [0.001]}}
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"machine_info": {"cpu": "a plain string"},
                                "benchmarks": [bench("test_a"), bench("test_b")]}))
    frame = store.load(path)
    assert sorted(frame["suite"]) == ["tests/test_a.py", "tests/test_b.py"]
    assert list(frame["device_name"]) == ["a plain string"] * 2
