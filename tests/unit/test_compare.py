"""Comparing two runs on constructed rows: a real slowdown is a regression, the same
median shift inside wide noise is not, and a cell that fails or turns wrong is one
whatever its time. Samples are drawn from a seeded generator, and the expected
ratios are worked out here from those samples, never copied from the code."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from harness.measure.stats import ALPHA, summarize
from harness.report.compare import compare, is_regression, unmatched
from harness.report.compare_text import markdown
from harness.results import store
from harness.spec import Case

THRESHOLD = 5.0
PUBLISHED = Path(__file__).resolve().parents[2] / "results/published/cpu-xeon-2core-default"


def case(**changes) -> Case:
    base = Case(suite="smoke", workload="mha", backend="torch", variant="sdpa",
                mode="forward", dtype="float32", device="cpu", batch=2, seq_len=128,
                heads=4, head_dim=64, causal=False)
    return base.replace(**changes)


def samples(median: float, spread: float, seed: int, n: int = 30) -> list[float]:
    """n per-call times around `median`, uniform within ± spread·median."""
    rng = np.random.default_rng(seed)
    return list(median * (1 + rng.uniform(-spread, spread, n)))


def row(cell: Case, times: list[float] | None = None, status: str = "ok",
        correct: bool | None = True) -> dict:
    """A result row as a worker writes it: the Case, the status and the statistics
    of its samples (none for a cell that did not run)."""
    out = {**cell.to_dict(), "status": status, "reason": "" if status == "ok" else status,
           "correct": correct if status == "ok" else None}
    if times is not None:
        out.update(summarize(times), samples_ms=times)
    return out


def one(base_rows: list[dict], new_rows: list[dict]) -> dict:
    result = compare(pd.DataFrame(base_rows), pd.DataFrame(new_rows), THRESHOLD)
    assert len(result) == 1
    return result.iloc[0].to_dict()


def test_real_slowdown_with_tight_samples_is_a_regression():
    before, after = samples(10.0, 0.01, seed=1), samples(13.0, 0.01, seed=2)
    got = one([row(case(), before)], [row(case(), after)])
    assert got["verdict"] == "regression" and is_regression(got["verdict"])
    assert got["ratio"] == pytest.approx(np.median(after) / np.median(before))
    assert got["base_ms"] == pytest.approx(np.median(before))
    assert got["new_ms"] == pytest.approx(np.median(after))


def test_same_shift_inside_wide_noise_is_noise_without_samples():
    # +30% on the median, but each run spreads ±60%: the IQRs overlap, and a CSV
    # (no raw samples) has nothing more to decide with.
    before, after = samples(10.0, 0.6, seed=3), samples(13.0, 0.6, seed=4)
    base, new = row(case(), before), row(case(), after)
    del base["samples_ms"], new["samples_ms"]
    got = one([base], [new])
    ratio = np.median(after) / np.median(before)
    assert ratio > 1 + THRESHOLD / 100                       # past the threshold ...
    assert np.percentile(after, 25) <= np.percentile(before, 75)   # ... but inside noise
    assert got["ratio"] == pytest.approx(ratio)
    assert got["verdict"] == "noise" and not is_regression("noise")


def test_a_shift_few_wide_samples_cannot_decide_is_noise():
    before, after = samples(10.0, 0.6, seed=3, n=5), samples(12.0, 0.6, seed=4, n=5)
    got = one([row(case(), before)], [row(case(), after)])
    assert got["ratio"] > 1 + THRESHOLD / 100
    # Undecided by its own numbers: the rank test does not reject, or the interval
    # reaches below the threshold.
    p = scipy_stats.mannwhitneyu(after, before, alternative="two-sided").pvalue
    assert p >= ALPHA or got["ratio_low"] <= 1 + THRESHOLD / 100
    assert got["verdict"] == "noise"


def test_decisive_shift_carries_its_interval_and_p():
    before, after = samples(10.0, 0.6, seed=3), samples(13.0, 0.6, seed=4)
    got = one([row(case(), before)], [row(case(), after)])
    p = scipy_stats.mannwhitneyu(after, before, alternative="two-sided").pvalue
    assert got["p_value"] == pytest.approx(p) and p < ALPHA
    assert 1 + THRESHOLD / 100 < got["ratio_low"] < got["ratio"] < got["ratio_high"]
    assert got["verdict"] == "regression"


def test_a_real_run_against_itself_and_against_one_cell_made_slower():
    rows = store.latest_rows(store.read_rows(PUBLISHED))
    base = pd.DataFrame(rows)
    assert (compare(base, pd.DataFrame(rows), THRESHOLD)["verdict"] == "same").all()
    # A cell with samples enough, whose processes (a run made with --repeat) agree
    # far better than 20 %: a rerun of the same code lands within that spread.
    i = next(i for i, r in enumerate(rows) if len(r["samples_ms"]) >= 20
             and r["status"] == "ok" and (r.get("between_spread_pct") or 0) < 8)
    slow = dict(rows[i])
    slow["samples_ms"] = [s * 1.2 for s in slow["samples_ms"]]
    slow.update({k: v for k, v in summarize(slow["samples_ms"]).items()})
    if slow.get("process_medians_ms"):
        slow["process_medians_ms"] = [m * 1.2 for m in slow["process_medians_ms"]]
        slow["median_ms"] = rows[i]["median_ms"] * 1.2
    result = compare(base, pd.DataFrame(rows[:i] + [slow] + rows[i + 1:]), THRESHOLD)
    called = result[result["verdict"].map(is_regression)]
    assert len(called) == 1 and called.iloc[0]["ratio"] == pytest.approx(1.2)
    assert (called.iloc[0][["workload", "backend", "variant", "seq_len"]].tolist()
            == [slow["workload"], slow["backend"], slow["variant"], slow["seq_len"]])


def test_change_below_threshold_is_same():
    before, after = samples(10.0, 0.005, seed=5), samples(10.2, 0.005, seed=6)
    got = one([row(case(), before)], [row(case(), after)])
    assert got["ratio"] == pytest.approx(np.median(after) / np.median(before))
    assert got["ratio"] < 1 + THRESHOLD / 100
    assert got["verdict"] == "same"


def test_speedup_is_faster():
    before, after = samples(10.0, 0.01, seed=7), samples(7.0, 0.01, seed=8)
    got = one([row(case(), before)], [row(case(), after)])
    assert got["ratio"] == pytest.approx(np.median(after) / np.median(before))
    assert got["verdict"] == "faster" and not is_regression("faster")


def test_without_samples_quartiles_come_from_median_and_iqr():
    # Rows read from results.csv keep no samples: median ± IQR/2 stands in for q1/q3.
    base = {**case().to_dict(), "status": "ok", "correct": True, "median_ms": 10.0,
            "iqr_ms": 0.2}
    tight = {**base, "median_ms": 12.0, "iqr_ms": 0.2}     # 11.9 > 10.1
    wide = {**base, "median_ms": 12.0, "iqr_ms": 4.0}      # 10.0 < 10.1
    assert one([base], [tight])["verdict"] == "regression"
    assert one([base], [wide])["verdict"] == "noise"


def test_correct_to_wrong_is_now_wrong_and_a_regression_even_when_faster():
    before, after = samples(10.0, 0.01, seed=9), samples(5.0, 0.01, seed=10)
    got = one([row(case(), before)], [row(case(), after, correct=False)])
    assert got["verdict"] == "now wrong" and is_regression(got["verdict"])


def test_ok_to_oom_is_now_fails():
    got = one([row(case(), samples(10.0, 0.01, seed=11))], [row(case(), status="oom")])
    assert got["verdict"] == "now fails" and is_regression(got["verdict"])
    assert got["new_status"] == "oom" and np.isnan(got["ratio"])


def test_failed_or_wrong_then_right_is_fixed_and_neither_running_is_not_run():
    times = samples(10.0, 0.01, seed=12)
    assert one([row(case(), status="error")], [row(case(), times)])["verdict"] == "fixed"
    assert one([row(case(), times, correct=False)], [row(case(), times)])["verdict"] == "fixed"
    # Wrong now but never known right: not a regression; unchecked before is.
    still = one([row(case(), status="error")], [row(case(), times, correct=False)])
    assert still["verdict"] == "still wrong" and not is_regression("still wrong")
    unchecked = one([row(case(), times, correct=None)], [row(case(), times, correct=False)])
    assert unchecked["verdict"] == "now wrong"
    got = one([row(case(), status="unsupported")], [row(case(), status="unsupported")])
    assert got["verdict"] == "not run" and not is_regression("not run")


def test_cells_match_across_renamed_suites_and_unmatched_cells_are_reported():
    times = samples(10.0, 0.01, seed=13)
    shared, old_only, new_only = case(), case(seq_len=256), case(dtype="bfloat16")
    base = pd.DataFrame([row(shared, times), row(old_only, times)])
    new = pd.DataFrame([row(shared.replace(suite="renamed"), times), row(new_only, times)])
    result = compare(base, new, THRESHOLD)
    verdicts = dict(zip(result["seq_len"].astype(str) + result["dtype"], result["verdict"]))
    assert verdicts == {"128float32": "same", "256float32": "only in base",
                        "128bfloat16": "only in new"}
    alone = unmatched(base, new)
    assert sorted(alone["verdict"]) == ["only in base", "only in new"]
    assert not result["verdict"].map(is_regression).any()


def test_markdown_has_rule_count_line_and_table_with_regressions_first():
    cells = [case(seq_len=n) for n in (128, 256, 512, 1024)]
    base = [row(c, samples(10.0, 0.01, seed=20 + i)) for i, c in enumerate(cells)]
    new = [row(cells[0], samples(10.1, 0.01, seed=30)),       # same
           row(cells[1], samples(15.0, 0.01, seed=31)),       # regression
           row(cells[2], samples(7.0, 0.01, seed=32)),        # faster
           row(cells[3], samples(12.0, 0.01, seed=33))]       # regression
    result = compare(pd.DataFrame(base), pd.DataFrame(new), THRESHOLD)
    text = markdown(result, THRESHOLD, "results/before", "results/after")
    assert text.startswith("# ") and "results/before" in text and "results/after" in text
    assert "5% slower" in text and "interquartile" in text
    assert "2 regressions, 1 faster, 1 same" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert "B·N·H·D" in table[0] and "verdict" in table[0]
    body = table[2:]                                          # after header and rule
    assert len(body) == 4
    assert [("regression" in line) for line in body] == [True, True, False, False]
    assert "2·256·4·64" in body[0] and "torch sdpa" in body[0]    # the worse one first
    ratio = np.median(new[1]["samples_ms"]) / np.median(base[1]["samples_ms"])
    assert f"{ratio:.2f}x" in body[0]
    assert "faster" in body[3]                                # lowest ratio last


def test_compare_runs_written_to_disk_and_loaded(tmp_path):
    """Through results.jsonl and back: samples_ms survives as a list of floats."""
    slow, noisy, gone = case(), case(seq_len=256), case(seq_len=512)
    base_times = {slow: samples(10.0, 0.01, seed=40), noisy: samples(10.0, 0.6, seed=41),
                  gone: samples(10.0, 0.01, seed=42)}
    new_times = {slow: samples(13.0, 0.01, seed=43), noisy: samples(13.0, 0.6, seed=44),
                 gone: None}
    for name, times in (("base", base_times), ("new", new_times)):
        with store.RunWriter(tmp_path / name) as writer:
            writer.write_env({"run_id": name, "suite": "smoke"})
            for cell, t in times.items():
                writer.append(row(cell, t) if t else row(cell, status="timeout"))
    base, new = store.load(tmp_path / "base"), store.load(tmp_path / "new")
    assert isinstance(new["samples_ms"].iloc[0], list)
    result = compare(base, new, THRESHOLD).set_index("seq_len")
    assert result["verdict"].to_dict() == {128: "regression", 256: "noise", 512: "now fails"}
    expected = np.median(new_times[slow]) / np.median(base_times[slow])
    assert result.loc[128, "ratio"] == pytest.approx(expected)
    text = markdown(result.reset_index(), THRESHOLD, "base", "new")
    assert "1 regression, 1 now fails, 1 noise" in text and "| timeout" in text


@pytest.mark.parametrize("busy_side", ["base", "new"])
def test_a_contended_cell_is_never_a_regression_or_an_improvement(busy_side):
    slow, fast = samples(13.0, 0.01, seed=11), samples(10.0, 0.01, seed=12)
    for before, after in ((fast, slow), (slow, fast)):        # +30 % and -23 %
        base, new = row(case(), before), row(case(), after)
        (base if busy_side == "base" else new)["contended"] = True
        assert one([base], [new])["verdict"] == "contended"
    # A contended cell that now fails or turns wrong is still called so.
    broken = {**row(case(), fast), "contended": True}
    assert one([broken], [row(case(), status="error")])["verdict"] == "now fails"
