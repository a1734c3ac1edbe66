"""`run --repeat K`: a cell's K process rows merged into one, and compare resampling
processes before samples."""
import numpy as np
import pytest

from harness.measure.stats import shift, summarize
from harness.results import store
from harness.results.repeats import merge
from harness.spec import Case
from harness.spec.schema import complete

CASE = Case("t", "attention", "torch", "eager", "forward", "float32", "cpu", 1, 64, 2, 8, False)


def process_row(repeat, samples, **more) -> dict:
    return complete({**CASE.to_dict(), "status": "ok", "repeat": repeat,
                     **summarize(samples), "samples_ms": list(samples),
                     "first_call_ms": 100.0 + repeat, "peak_mem_bytes": 1000 * (repeat + 1),
                     "correct": True, "err_ratio": 0.1 * (repeat + 1), "contended": False,
                     "tflops": 1.0 / summarize(samples)["median_ms"], **more})


def test_merged_row_is_the_median_of_process_medians_and_says_their_spread():
    rng = np.random.default_rng(1)
    levels = (1.0, 1.5, 1.2)              # three processes, each at its own level
    rows = [process_row(r, level + 0.01 * rng.random(7 + r)) for r, level in enumerate(levels)]
    merged = merge(rows)
    medians = [summarize(r["samples_ms"])["median_ms"] for r in rows]
    assert merged["process_medians_ms"] == medians
    assert merged["median_ms"] == pytest.approx(np.median(medians))
    assert merged["between_spread_pct"] == pytest.approx(
        100 * (max(medians) - min(medians)) / np.median(medians))
    assert merged["repeats"] == 3 and merged["repeat"] is None
    assert merged["process_n_samples"] == [7, 8, 9]
    assert len(merged["samples_ms"]) == merged["n_samples"] == 24
    assert merged["ci_low_ms"] == min(medians) and merged["ci_high_ms"] == max(medians)
    assert merged["first_call_ms"] == 101.0 and merged["peak_mem_bytes"] == 3000
    assert merged["tflops"] == pytest.approx(1.0 / merged["median_ms"])
    assert merged["err_ratio"] == pytest.approx(0.3)          # the worst process's check


def test_one_wrong_or_contended_process_marks_the_cell():
    rows = [process_row(0, [1.0] * 5), process_row(1, [1.0] * 5, correct=False, contended=True),
            process_row(2, [1.0] * 5)]
    merged = merge(rows)
    assert merged["correct"] is False and merged["contended"] is True


def test_a_failed_process_makes_the_cell_fail_and_says_which():
    rows = [process_row(0, [1.0] * 5),
            complete({**CASE.to_dict(), "status": "timeout", "reason": "ran past 5 s",
                      "repeat": 1})]
    merged = merge(rows)
    assert merged["status"] == "timeout"
    assert merged["reason"] == "process 2 of 2: ran past 5 s"
    every = merge([complete({**CASE.to_dict(), "status": "unsupported", "reason": "no GPU",
                             "repeat": r}) for r in range(3)])
    assert every["status"] == "unsupported" and every["reason"] == "no GPU"


def test_latest_rows_keeps_the_last_row_of_each_process_and_merges_them():
    first = [process_row(r, [2.0] * 5) for r in range(2)]
    rerun = [process_row(r, [1.0 + r] * 5) for r in range(2)]   # a resume reran them
    (merged,) = store.latest_rows([*first, *rerun])
    assert merged["process_medians_ms"] == [1.0, 2.0]
    plain = complete({**CASE.to_dict(), "status": "ok", "median_ms": 9.0})
    (replaced,) = store.latest_rows([*first, plain])           # a run without --repeat
    assert replaced["median_ms"] == 9.0 and replaced["repeats"] is None


def samples(level: float, n: int, rng) -> np.ndarray:
    return level * (1 + 0.02 * rng.standard_normal(n))


def test_the_interval_spans_how_far_processes_differ():
    rng = np.random.default_rng(2)
    levels = (1.0, 1.3, 1.1)
    base = np.concatenate([samples(level, 20, rng) for level in levels])
    new = np.concatenate([samples(level * 1.1, 20, rng) for level in levels[::-1]])
    pooled = shift(base, new)                 # as if each run were one process
    grouped = shift(base, new, base_groups=[20] * 3, new_groups=[20] * 3)
    assert pooled.ratio_low > 1.05            # within-process noise alone: decisive
    assert grouped.ratio_low < 1.0 < grouped.ratio_high     # the processes say otherwise
    assert grouped.ratio == pytest.approx(1.1, rel=0.03)


def test_a_shift_past_the_process_spread_stays_decisive():
    rng = np.random.default_rng(3)
    levels = (1.0, 1.02, 1.01)
    base = np.concatenate([samples(level, 20, rng) for level in levels])
    new = np.concatenate([samples(level * 1.3, 20, rng) for level in levels])
    change = shift(base, new, base_groups=[20] * 3, new_groups=[20] * 3)
    assert change.p_value < 0.01 and change.ratio_low > 1.2 and change.ratio_high < 1.4


@pytest.mark.parametrize("groups", [None, [5], [30, 30], [0, 60], float("nan")])
def test_missing_or_wrong_counts_fall_back_to_one_process(groups):
    rng = np.random.default_rng(4)
    base, new = samples(1.0, 60, rng), samples(1.0, 60, rng)
    one = shift(base, new)
    grouped = shift(base, new, base_groups=groups, new_groups=groups)
    if groups == [30, 30]:
        assert grouped.ratio_high - grouped.ratio_low > 0
    else:
        assert (grouped.ratio_low, grouped.ratio_high) == (one.ratio_low, one.ratio_high)


def cell_rows(levels, scale=1.0, n=20, seed=5) -> dict:
    """A merged row of one process per level, each process's samples tight."""
    rng = np.random.default_rng(seed)
    rows = [process_row(r, samples(level * scale, n, rng)) for r, level in enumerate(levels)]
    return merge(rows)


def verdict(base: dict, new: dict) -> str:
    import pandas as pd

    from harness.report.compare import compare
    return compare(pd.DataFrame([base]), pd.DataFrame([new]))["verdict"].iloc[0]


def test_a_change_within_the_cells_own_process_spread_is_noise():
    # Tight samples and processes 1.0-1.3 apart: 1.2x is decisive by samples alone,
    # yet a rerun of the same code lands anywhere in that 30 % band.
    base = cell_rows((1.0, 1.3, 1.15))
    assert base["between_spread_pct"] == pytest.approx(26, abs=2)
    new = cell_rows((1.0, 1.05, 1.02), scale=1.2, seed=6)
    assert verdict(base, new) == "noise"
    assert verdict(cell_rows((1.0, 1.02, 1.01)), new) == "regression"


def test_the_shift_every_cell_shares_is_stated():
    import pandas as pd

    from harness.report.compare import compare
    from harness.report.compare_text import markdown
    base = [cell_rows((1.0, 1.01, 1.02), seed=s) for s in range(3)]
    new = [{**cell_rows((1.0, 1.01, 1.02), scale=1.1, seed=s + 9), "seq_len": r["seq_len"]}
           for s, r in enumerate(base)]
    for i, (b, n) in enumerate(zip(base, new)):
        b["seq_len"] = n["seq_len"] = 64 * (i + 1)
    text = markdown(compare(pd.DataFrame(base), pd.DataFrame(new)), 5.0, "a", "b")
    assert "Across the 3 cells both runs timed, the median ratio is 1.10x" in text
    assert "one process per cell" not in text


def test_runs_of_one_process_per_cell_are_named_in_the_text():
    import pandas as pd

    from harness.report.compare import compare, single_process
    from harness.report.compare_text import markdown
    one = pd.DataFrame([{**process_row(0, [1.0] * 5), "repeat": None}])
    repeated = pd.DataFrame([cell_rows((1.0, 1.1, 1.2))])
    assert single_process(one) and not single_process(repeated)
    text = markdown(compare(one, repeated), 5.0, "base", "new", one_process=("base",))
    assert "base: one process per cell" in text and "--repeat 3" in text


def test_the_latency_table_shows_the_spread_between_processes():
    import pandas as pd

    from harness.report import tables
    merged = {**cell_rows((1.0, 1.3, 1.15)), "device_name": "cpu", "started_at": "t"}
    single = {**process_row(0, [2.0] * 5), "repeat": None, "variant": "sdpa",
              "device_name": "cpu", "started_at": "t"}
    table = tables.latency(tables.prepare(pd.DataFrame([merged, single])))
    spread = f"[{merged['between_spread_pct']:.0f} %]"
    assert table["torch eager"].iloc[0].endswith(spread)
    assert "[" not in table["torch sdpa"].iloc[0]
