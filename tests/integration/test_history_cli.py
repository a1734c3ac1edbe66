"""`attnbench history` end to end on run folders written as a run writes them: a
version bump's step is found and named, --fail-on-step fails only on a slowdown
the newest run starts, a folder of runs and a pytest-benchmark export read as runs,
and a published history is linked from the published index. In-process (main)
for speed; the one-line error through a real process."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.results.store import RunWriter
from harness.spec import Case

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
CELLS = [Case("history", "attention", "jax", "jit", "forward", "float32", "cpu", 1, 256, 4,
              32, True, 1),
         Case("history", "mha", "torch", "sdpa", "train", "float32", "cpu", 1, 256, 4,
              32, False, 1)]


def write_run(folder, index: int, medians: list[float], jax: str, seed: int = 0) -> None:
    """A run folder with one row per cell of CELLS, each `medians[i]` ms (samples
    ±2% around it), started `index` hours after the first."""
    rng = np.random.default_rng(seed * 100 + index)
    started = pd.Timestamp("2026-11-01T00:00:00Z") + pd.Timedelta(hours=index)
    with RunWriter(folder) as writer:
        writer.write_env({"run_id": f"run-{index:02d}", "suite": "history",
                          "started_at": started.isoformat(), "host": "vm", "cpu": "Xeon",
                          "versions": {"jax": f"jax {jax}, flax 0.12.8",
                                       "torch": "2.13.0+cpu"},
                          "git_commit": "f" * 40, "python": "3.11.7"})
        for case, median in zip(CELLS, medians):
            samples = median * (1 + rng.uniform(-0.02, 0.02, 30))
            writer.append({**case.to_dict(), "status": "ok", "correct": True,
                           "median_ms": float(np.median(samples)),
                           "samples_ms": samples.tolist(), "device_name": "Xeon",
                           "threads": 2, "run_id": f"run-{index:02d}"})


def runs(tmp_path, jax_medians: list[float], torch_ms: float = 5.0) -> list[str]:
    folders = []
    for i, ms in enumerate(jax_medians):
        folder = tmp_path / "runs" / f"r{i:02d}"
        write_run(folder, i, [ms, torch_ms], "0.9.2" if i < len(jax_medians) // 2 else "0.10.2")
        folders.append(str(folder))
    return folders


def test_a_version_bump_step_is_found_and_named(tmp_path, capsys):
    folders = runs(tmp_path, [10.0] * 4 + [13.0] * 4)
    assert main(["history", *folders, "--out", str(tmp_path / "h")]) == 0
    steps = pd.read_csv(tmp_path / "h" / "steps.csv")
    assert len(steps) == 1
    step = steps.iloc[0]
    assert step["cell"].startswith("attention jax jit forward float32")
    assert step["last run before"] == "run-03" and step["first run after"] == "run-04"
    assert step["what changed"] == "jax: jax 0.9.2, flax 0.12.8 -> jax 0.10.2, flax 0.12.8"
    assert step["change %"] == pytest.approx(30, abs=3)
    page = (tmp_path / "h" / "history.html").read_text()
    assert page.count("<svg") == 2 and "0.9.2" in page      # one figure per workload
    assert len(pd.read_csv(tmp_path / "h" / "series.csv")) == 16
    assert "8 runs, 2 cells, 1 steps" in capsys.readouterr().out


def test_fail_on_step_fails_on_a_slowdown_the_newest_run_starts(tmp_path, capsys):
    slower = runs(tmp_path / "a", [10.0] * 7 + [13.0])
    assert main(["history", *slower, "--out", str(tmp_path / "ha"),
                 "--fail-on-step", "10"]) == 1
    said = capsys.readouterr().out
    assert "attention jax jit forward" in said and "from run-07" in said
    assert "mha torch" not in said
    # Past the threshold asked for: not a failure.
    assert main(["history", *slower, "--out", str(tmp_path / "hb"),
                 "--fail-on-step", "40"]) == 0
    faster = runs(tmp_path / "b", [10.0] * 7 + [7.0])
    assert main(["history", *faster, "--out", str(tmp_path / "hc"),
                 "--fail-on-step", "10"]) == 0
    # A step an older run started is history, not news.
    older = runs(tmp_path / "c", [10.0] * 4 + [13.0] * 4)
    assert main(["history", *older, "--out", str(tmp_path / "hd"),
                 "--fail-on-step", "10"]) == 0


def test_a_folder_of_runs_and_a_pytest_benchmark_export_read_as_runs(tmp_path):
    folders = runs(tmp_path, [10.0] * 6)
    exported = tmp_path / "run-06.json"
    assert main(["export", folders[-1], "--format", "pytest-benchmark",
                 "--out", str(exported)]) == 0
    later = json.loads(exported.read_text())
    later["datetime"] = "2026-11-02T00:00:00+00:00"        # a later run, in its own file
    exported.write_text(json.dumps(later))
    assert main(["history", str(tmp_path / "runs"), str(exported),
                 "--out", str(tmp_path / "h")]) == 0
    series = pd.read_csv(tmp_path / "h" / "series.csv")
    assert series.groupby("workload")["run"].count().to_dict() == {"attention": 7, "mha": 7}
    # In a folder of runs, the file counts too.
    exported.rename(tmp_path / "runs" / exported.name)
    assert main(["history", str(tmp_path / "runs"), "--out", str(tmp_path / "h2")]) == 0
    assert len(pd.read_csv(tmp_path / "h2" / "series.csv")) == 14


def test_a_published_history_is_linked_from_the_index(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    published = tmp_path / "results" / "published"
    for i in range(3):
        write_run(published / f"run-{i}", i, [10.0, 5.0], "0.9.2")
    assert main(["history", "results/published", "--out", "results/published/history"]) == 0
    index = (published / "index.html").read_text()
    assert "href='history/history.html'" in index
    assert all(f"href='run-{i}/report.html'" in index for i in range(3))
    assert "history/history.md" in (published / "README.md").read_text()
    assert not (published / "history" / "runs").exists()     # published already


def test_a_published_history_keeps_its_runs_and_draws_again_from_them(tmp_path, monkeypatch):
    folders = runs(tmp_path, [10.0] * 4 + [13.0] * 4)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results" / "published" / "jax-versions"
    assert main(["history", *folders, "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == [f"r{i:02d}" for i in range(8)]
    assert main(["history", str(out / "runs"), "--out", str(tmp_path / "again")]) == 0
    first, again = (pd.read_csv(p / "steps.csv") for p in (out, tmp_path / "again"))
    assert len(first) == 1
    pd.testing.assert_frame_equal(first, again)
    index = (tmp_path / "results" / "published" / "index.html").read_text()
    assert "href='jax-versions/history.html'" in index and "1 steps" in index


def test_a_path_that_is_not_a_run_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness", "history", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("attnbench: error:") \
        and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_one_point_a_run_a_cell_and_each_run_once(tmp_path):
    """Two rows of one cell in a run (two GPUs of one model, two suites) make one
    point, their median; a NaN median makes none; a run given twice counts once;
    a JSON file that is not pytest-benchmark's is not a run."""
    folders = runs(tmp_path, [10.0] * 3)
    with RunWriter(folders[-1]) as writer:              # the last run: two more rows
        for suite, median in (("other", 20.0), ("third", float("nan"))):
            writer.append({**CELLS[0].replace(suite=suite).to_dict(), "status": "ok",
                           "correct": True, "median_ms": median, "device_name": "Xeon",
                           "threads": 2, "run_id": "run-02"})
    (tmp_path / "runs" / "notes.json").write_text('{"hello": 1}')
    assert main(["history", str(tmp_path / "runs"), folders[0],
                 "--out", str(tmp_path / "h")]) == 0
    series = pd.read_csv(tmp_path / "h" / "series.csv")
    attention = series[series["workload"] == "attention"]
    assert list(attention["run"]) == ["run-00", "run-01", "run-02"]
    last = load_median(folders[-1])
    assert attention["median_ms"].iloc[-1] == pytest.approx(np.median([last, 20.0]))
    assert "2 cells in fewer than" not in (tmp_path / "h" / "history.md").read_text()


def load_median(folder) -> float:
    rows = [json.loads(line) for line in open(f"{folder}/results.jsonl")]
    return next(r["median_ms"] for r in rows if r["workload"] == "attention")


def test_two_runs_judge_no_step_and_say_so(tmp_path, capsys):
    folders = runs(tmp_path, [10.0, 20.0])
    assert main(["history", *folders, "--out", str(tmp_path / "h"),
                 "--fail-on-step", "10"]) == 0
    said = capsys.readouterr().out
    assert "0 steps" in said and "2 cells in fewer than 3 runs" in said
    assert "attnbench compare" in said


def test_a_published_history_drawn_again_into_itself_keeps_one_copy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = runs(tmp_path / "a", [10.0] * 4)
    out = tmp_path / "results" / "published" / "h"
    assert main(["history", *first, "--out", str(out)]) == 0
    later = tmp_path / "b" / "r00"                     # another run of the same name
    write_run(later, 9, [13.0, 5.0], "0.10.2")
    assert main(["history", str(out / "runs"), str(later), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "r00", "r00-2", "r01", "r02", "r03"]
