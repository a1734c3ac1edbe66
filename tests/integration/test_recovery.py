"""Nothing lost: Ctrl-C, a SIGKILLed run, a torn last line, `--resume`, hopeless
cells, and bad run folders, each done for real to a `python -m harness run`.

The cells are the faulty backend's (tests/integration/faulty_backend.py): `slow`
takes a couple of seconds per cell, long enough to be interrupted in the middle.
Each signal waits for an event (a row in results.jsonl, a worker asleep in its
step), never for a fixed sleep, and each wait's limit is sized for a loaded machine.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results import store

from .runs_helpers import PLUGIN, ROOT, jsonl_rows, write_suite

SEQ_LENS = (8, 12, 16, 20)
SWEEP = f"""\
    [[sweep]]
    workload = ["attention"]
    backend  = ["faulty"]
    mode     = ["forward"]
    dtype    = ["float32"]
    device   = ["cpu"]
    batch    = [1]
    seq_len  = {list(SEQ_LENS)}
    heads    = [2]
    head_dim = [4]

    [sweep.variants]
    faulty = ["exact", "slow"]
    """
N_CELLS = 2 * len(SEQ_LENS)


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    e["ATTNBENCH_BACKENDS"] = PLUGIN
    return e


def interruptible() -> None:
    """In the child, before exec: SIGINT neither ignored nor blocked, whatever this
    pytest process inherited or a library loaded earlier in the session set (an
    ignored SIGINT is inherited across exec, and Python then leaves Ctrl-C ignored)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_state() -> str:
    """This process's ignored and blocked signal masks, for a failure's message."""
    return " ".join(line.strip() for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith(("SigIgn", "SigBlk")))


def start(suite: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "run", str(suite), "--quiet",
                             "--threads", "1", *args], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)


def wait_for_rows(out: Path, n: int, proc: subprocess.Popen, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    path = out / "results.jsonl"
    while time.monotonic() < deadline:
        if path.is_file() and len(path.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, f"run ended early: {proc.communicate()}"
        time.sleep(0.05)
    raise AssertionError(f"no {n} rows in {limit_s} s")


def workers_of(runner_pid: int) -> list[int]:
    """Live worker processes started by that runner (they carry its pid)."""
    mark = f"ATTNBENCH_RUNNER_PID={runner_pid}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                status = (entry / "status").read_text()
                if "\nState:\tZ" not in status:
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@contextlib.contextmanager
def paused(pids: list[int]):
    """The processes stopped (SIGSTOP) for the block, continued after it."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def asleep_in(pid: int, log_word: str) -> bool:
    """A worker whose stderr log names `log_word`, blocked in a sleep (its step's
    time.sleep): wchan, or the syscall (nanosleep or clock_nanosleep on x86-64)."""
    proc = Path(f"/proc/{pid}")
    try:
        if log_word not in os.readlink(proc / "fd" / "2"):
            return False
        wchan = (proc / "wchan").read_text()
        call = (proc / "syscall").read_text().split()[:1]
    except OSError:
        return False
    return "nanosleep" in wchan or call in (["35"], ["230"])


def wait_no_workers(runner_pid: int, limit_s: float = 10) -> None:
    deadline = time.monotonic() + limit_s
    while workers_of(runner_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workers_of(runner_pid), "a worker outlived its runner"


def resume(suite: Path, out: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(suite), "--quiet",
                           "--threads", "1", "--resume", str(out)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_each_cell_once_and_ok(out: Path) -> None:
    """Every planned cell has exactly one row in results.jsonl, and it is ok."""
    rows = jsonl_rows(out)
    keys = [(r["variant"], r["seq_len"]) for r in rows]
    assert sorted(keys) == sorted((v, n) for v in ("exact", "slow") for n in SEQ_LENS), keys
    assert all(r["status"] == "ok" for r in rows), [r["status"] for r in rows]
    assert len(store.load(out)) == N_CELLS


def test_sigint_keeps_finished_rows_and_resume_completes(tmp_path):
    suite = write_suite(tmp_path, "recover", SWEEP)
    out = tmp_path / "run"
    proc = start(suite, "--out", str(out))
    wait_for_rows(out, 2, proc)
    # A --resume while the run still writes the folder is refused, not interleaved.
    # Its worker is held still meanwhile, so cells are left however long that takes.
    (worker,) = workers_of(proc.pid)
    with paused([worker]):
        rows = len(jsonl_rows(out))
        assert rows <= N_CELLS - 2, rows
        early = subprocess.run([sys.executable, "-m", "harness", "run", str(suite),
                                "--quiet", "--resume", str(out)], cwd=ROOT, env=env(),
                               capture_output=True, text=True, timeout=60)
    assert early.returncode == 2 and "another attnbench run is writing it" in early.stderr
    assert len(early.stderr.strip().splitlines()) == 1, early.stderr
    wait_for_rows(out, rows + 1, proc)        # the worker is in the next cell now
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, f"{signal_state()}\n{stderr}"
    assert f"--resume {out}" in stderr and "Traceback" not in stderr, stderr
    wait_no_workers(proc.pid)
    before = jsonl_rows(out)                       # each line whole JSON, or this raises
    assert 2 <= len(before) < N_CELLS
    assert all(r["status"] == "ok" for r in before)  # the interrupted cell was dropped
    assert "interrupted_at" in json.loads((out / "env.json").read_text())

    done = resume(suite, out)
    assert f"{len(before)} already ok, skipped" in done.stderr, done.stderr
    assert_each_cell_once_and_ok(out)
    assert jsonl_rows(out)[:len(before)] == before           # appended, not rewritten
    env_json = json.loads((out / "env.json").read_text())
    assert "finished_at" in env_json and "interrupted_at" not in env_json
    assert env_json["resumed"][0]["skipped_ok"] == len(before)


def test_sigkill_of_the_run_then_torn_line_then_resume(tmp_path):
    suite = write_suite(tmp_path, "recover", SWEEP)
    out = tmp_path / "run"
    proc = start(suite, "--out", str(out))
    wait_for_rows(out, 3, proc)
    proc.kill()
    proc.communicate(timeout=30)
    wait_no_workers(proc.pid)                      # PR_SET_PDEATHSIG took the worker
    kept = jsonl_rows(out)
    assert 3 <= len(kept) < N_CELLS
    with open(out / "results.jsonl", "a") as f:    # a crash in the middle of a write
        f.write('{"suite": "recover", "workload": "atten')

    with pytest.warns(UserWarning, match="skipped 1 unreadable line"):
        assert len(store.load(out)) == len(kept)
    done = resume(suite, out)
    assert "skipped 1 unreadable line" in done.stderr
    lines = (out / "results.jsonl").read_text().splitlines()
    whole = []
    for line in lines:
        try:
            whole.append(json.loads(line))
        except json.JSONDecodeError:
            assert line.startswith('{"suite": "recover", "workload": "atten'), line
    keys = [(r["variant"], r["seq_len"]) for r in whole]
    assert sorted(keys) == sorted((v, n) for v in ("exact", "slow") for n in SEQ_LENS)
    assert all(r["status"] == "ok" for r in whole)


def test_resume_reruns_failed_cells_and_the_last_row_wins(tmp_path):
    sweep = SWEEP.replace('faulty = ["exact", "slow"]', 'faulty = ["exact", "raises"]')
    suite = write_suite(tmp_path, "rerun", sweep)
    out = tmp_path / "run"
    first = start(suite, "--out", str(out))
    first.communicate(timeout=300)
    assert first.returncode == 0
    resume(suite, out)
    rows = jsonl_rows(out)
    # ok cells once; each failed cell twice (its first row, then its rerun)
    per_cell = {}
    for r in rows:
        per_cell.setdefault((r["variant"], r["seq_len"]), []).append(r["status"])
    assert per_cell == {**{("exact", n): ["ok"] for n in SEQ_LENS},
                        **{("raises", n): ["error", "error"] for n in SEQ_LENS}}
    assert len(store.load(out)) == N_CELLS


def test_hopeless_cell_is_refused_before_it_runs(tmp_path):
    small = SWEEP.replace('faulty = ["exact", "slow"]', 'faulty = ["exact"]').replace(
        "seq_len  = [8, 12, 16, 20]", "seq_len  = [8]")
    # 4096 x 64 heads x 65536 x 128 float32: terabytes of inputs alone.
    huge = small.replace("batch    = [1]", "batch    = [4096]").replace(
        "seq_len  = [8]", "seq_len  = [65536]").replace(
        "heads    = [2]", "heads    = [64]").replace("head_dim = [4]", "head_dim = [128]")
    suite = write_suite(tmp_path, "huge", huge + "\n" + small)
    out = tmp_path / "run"
    proc = start(suite, "--out", str(out))
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    rows = {r["batch"]: r for r in jsonl_rows(out)}
    assert rows[4096]["status"] == "oom"
    assert "refused before running" in rows[4096]["reason"]
    assert rows[4096]["median_ms"] is None and rows[4096]["first_call_ms"] is None
    assert rows[1]["status"] == "ok"               # and the sweep went on


@pytest.mark.parametrize("setup, args, message", [
    ("empty", ["--resume", "{dir}"], "not a run folder"),
    ("newer_rows", ["--resume", "{dir}"], "newer attnbench"),
    ("newer_env", ["--resume", "{dir}"], "newer attnbench"),
    ("ok", ["--resume", "{dir}", "--out", "{dir}"], "--out cannot be given"),
    ("ok", ["--backend", "torhc"], "invalid choice"),
    ("ok", ["--threads", "0"], "positive integer"),
])
def test_bad_input_is_one_line(tmp_path, setup, args, message):
    suite = write_suite(tmp_path, "recover", SWEEP)
    folder = tmp_path / "dir"
    folder.mkdir()
    row = {"suite": "recover", "status": "ok", "schema": 1}
    if setup == "newer_rows":
        (folder / "results.jsonl").write_text(json.dumps({**row, "schema": 99}) + "\n")
    elif setup == "newer_env":
        (folder / "results.jsonl").write_text(json.dumps(row) + "\n")
        (folder / "env.json").write_text(json.dumps({"schema": 99, "suite": "recover"}))
    elif setup == "ok":
        (folder / "results.jsonl").write_text("")
    argv = [a.format(dir=folder) for a in args]
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(suite), *argv],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_report_of_a_newer_run_is_one_line(tmp_path):
    (tmp_path / "results.jsonl").write_text(json.dumps({"schema": 99}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(tmp_path)],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "newer attnbench" in proc.stderr


def test_sigint_stops_every_parallel_check_worker(tmp_path):
    """`attnbench check` runs two workers at once; Ctrl-C while both sit in a 60 s
    step ends the command at once with 130, kills both, and keeps finished rows."""
    out = tmp_path / "check"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "check", "--backend", "faulty",
                             "--variant", "exact", "sleeps", "--dtype", "float32",
                             "--workload", "attention", "--jobs", "2", "--timeout-s", "300",
                             "--out", str(out)], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)
    deadline, seen = time.monotonic() + 120, 0
    while seen < 2:                  # both asleep at two looks 0.1 s apart: in the step
        asleep = [p for p in workers_of(proc.pid) if asleep_in(p, "faulty-")]
        seen = seen + 1 if len(asleep) == 2 else 0
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "two check workers never slept at once"
        time.sleep(0.1)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"check ignored SIGINT for 30 s; {signal_state()}") from None
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 10            # not after the 60 s sleep
    assert "Traceback" not in stderr, stderr
    wait_no_workers(proc.pid)
    jsonl_rows(out)                                    # whole lines, or this raises

