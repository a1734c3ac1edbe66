"""Run worker batches as local processes, one cell at a time, losing nothing.

A cell that runs past its timeout has its worker killed and is recorded as
`timeout`; a worker that dies (segfault, SIGKILL, the OOM killer) has its cell
recorded as `error` with the signal and the tail of its stderr. Either way a
fresh worker takes the remaining cells.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.run.environment import environment_for
from harness.run.executors.quiet import Member, QuietWindows
from harness.run.rows import base_row
from harness.spec import Case

PROJECT_ROOT = Path(__file__).resolve().parents[3]   # harness/run/executors/ -> the root
# Importing a framework can take a while on a cold disk; the cell clock starts
# only when the worker says the cell has started.
STARTUP_TIMEOUT_S = 600
POLL_S = 0.5             # how often a waiting batch looks at its stop event


@dataclass
class Batch:
    backend: str
    device: str
    cases: list[Case]
    measure: dict
    threads: int
    run_id: str
    gpus: list[dict]
    log_path: Path
    check_only: bool = False        # `attnbench check`: correctness, no timing
    outputs_dir: Path | None = None  # check only: where each case's tensors are saved
    reference_dir: Path | None = None  # where workers share references (judging.py)
    reference_salt: str = ""        # the reference code's digest, in their file names
    repeat: int | None = None       # which of `run --repeat K`'s K processes (0-based)

    def job(self, cases: list[Case]) -> dict:
        measure = {k: v for k, v in self.measure.items() if k != "timeout_s"}
        return {"backend": self.backend, "device": self.device, "threads": self.threads,
                "run_id": self.run_id, "gpus": self.gpus, "measure": measure,
                "check_only": self.check_only, "cases": [c.to_dict() for c in cases],
                "outputs_dir": str(self.outputs_dir) if self.outputs_dir else None,
                "reference_dir": str(self.reference_dir) if self.reference_dir else None,
                "reference_salt": self.reference_salt,
                "repeat": self.repeat}


def failure_row(case: Case, batch: Batch, status: str, reason: str, version: str) -> dict:
    row = base_row(case, batch.job([]), version=version)
    return {**row, "status": status, "reason": reason}


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _tail(path: Path, offset: int, lines: int = 3) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])[-400:]


class LocalExecutor:
    """Runs batches; `stop` (set from another thread, e.g. on Ctrl-C) ends every
    batch at once, killing its worker, so that batches can run in threads."""
    name = "local"

    def __init__(self, stop: threading.Event | None = None,
                 windows: QuietWindows | None = None):
        self.stop = stop or threading.Event()
        self.windows = windows           # CPU workers side by side, timing in turn

    def run_batch(self, batch: Batch, on_start: Callable[[Case], None],
                  on_row: Callable[[dict], None]) -> None:
        pending = list(batch.cases)
        while pending and not self.stop.is_set():
            pending = self._run_worker(batch, pending, on_start, on_row)

    def _run_worker(self, batch: Batch, cases: list[Case], on_start, on_row) -> list[Case]:
        """Run cases in one worker; return those left when it stopped early."""
        scratch = tempfile.mkdtemp(prefix=f"attnbench-{batch.backend}-")
        batch.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(batch.log_path, "ab")
        offset = log.tell()              # before the worker shares (and moves) it
        state = _WorkerState(deadline=0.0, offset=offset)
        with self.quietly(batch.device):
            state.spawned = time.monotonic()
            proc = _start_worker(batch, scratch, log)
            if self.windows is not None and batch.device == "cpu":
                state.windows = self.windows
                state.member = self.windows.join(proc.pid, lambda: _answer(proc))
        state.set_deadline(STARTUP_TIMEOUT_S)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        try:
            # One line; stdin stays open for the "go" before each timed cell.
            proc.stdin.write(json.dumps({**batch.job(cases), "handshake": True}).encode()
                             + b"\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass                         # it died at once; reported below with its stderr
        try:
            return self._follow(proc, lines, log, state, batch, cases, on_start, on_row)
        finally:
            state.leave()                # before it is reaped: its pid may be reused after
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
            with self.quietly(batch.device):
                shutil.rmtree(scratch, ignore_errors=True)

    def side_by_side_figures(self) -> dict:
        """For the time table (harness/report/time_spent.py): how long the CPU
        workers were stopped inside their phases, and what overlapped."""
        if self.windows is None:
            return {}
        return {"stopped_s": round(self.windows.stopped_s, 3),
                "overlap_s": round(self.windows.overlap_s, 3)}

    def quietly(self, device: str):
        """Around the runner's own work beside CPU workers (rows no message carries,
        starting or cleaning up after a worker): never inside a timed window."""
        if self.windows is None or device != "cpu":
            return contextlib.nullcontext()
        return self.windows.outside()

    def _follow(self, proc: subprocess.Popen, lines: queue.Queue, log, state: _WorkerState,
                batch: Batch, cases: list[Case], on_start, on_row) -> list[Case]:
        """The worker's messages, each cell under its deadline, until the worker
        ends; a row for the cell it failed in, and the cases after that one."""
        while not self.stop.is_set():    # when set, the caller's finally kills the worker
            try:
                wait = min(POLL_S, max(0.0, state.left()))
                message = lines.get(timeout=wait)
            except queue.Empty:
                if state.left() > 0:
                    continue
                state.leave()
                proc.kill()
                proc.wait()
                status, reason = state.stalled(batch)
            else:
                if message is not None:
                    self._take(proc, message, state, log, batch, cases, on_start, on_row)
                    continue
                state.leave()
                code = proc.wait()           # the worker's stdout closed: it ended
                if state.current is None and state.done == len(cases) - 1:
                    return []
                # It died inside a cell, or between cells, or before any cell.
                status, reason = "error", f"worker {_exit_text(code)}"
                tail = _tail(batch.log_path, state.offset)
                reason = f"{reason}: {tail}" if tail else reason
            failed = state.failed_index()
            with self.quietly(batch.device):
                on_row(failure_row(cases[failed], batch, status, reason, state.version))
            return cases[failed + 1:]
        return []

    def _take(self, proc, message: dict, state: _WorkerState, log, batch: Batch,
              cases: list[Case], on_start, on_row) -> None:
        """One message; with quiet windows, never while another worker times."""
        member = state.member
        if member is None:
            state.take(message, log, batch, cases, on_start, on_row)
            if message["event"] == "quiet":
                _answer(proc)
            return
        with self.windows.handling(member):
            state.take(message, log, batch, cases, on_start, on_row)
            if message["event"] == "quiet":
                self.windows.ask(member)
            elif message["event"] in ("untimed", "row"):
                self.windows.release(member)


@dataclass
class _WorkerState:
    """Where a worker is in its cases, as its messages say."""
    deadline: float              # time.monotonic() by which it must say more
    offset: int                  # where the running cell's stderr starts in the log
    current: int | None = None   # the cell it runs, None between cells
    done: int = -1               # the last cell it gave a row for
    version: str = ""            # its backend's version, once a row said it
    spawned: float = 0.0         # time.monotonic() when it was started
    worker_s: float | None = None  # start and import: from spawn to its first cell
    windows: QuietWindows | None = None   # the CPU lane's, when side by side
    member: Member | None = None   # its place in them
    credit: float = 0.0            # its credit there when the deadline was set

    def held(self) -> float:
        """Seconds stopped or waiting for a window so far."""
        return self.windows.credit(self.member) if self.member else 0.0

    def set_deadline(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.credit = self.held()

    def left(self) -> float:
        """Seconds to the deadline, plus those spent stopped or waiting since it was set."""
        return self.deadline + self.held() - self.credit - time.monotonic()

    def leave(self) -> None:
        if self.member is not None:
            self.windows.leave(self.member)


    def take(self, message: dict, log, batch: Batch, cases: list[Case], on_start,
             on_row) -> None:
        if message["event"] == "start":
            if self.worker_s is None:
                self.worker_s = time.monotonic() - self.spawned
            self.current = message["index"]
            log.flush()
            self.offset = os.path.getsize(batch.log_path)
            self.set_deadline(batch.measure["timeout_s"])
            on_start(cases[self.current])
        elif message["event"] == "row":
            first = self.done == -1      # the worker's first row pays its start
            on_row({**message["row"], "phase_worker_s": self.worker_s if first else None})
            self.version = message["row"].get("backend_version") or self.version
            self.done, self.current = message["index"], None
            self.set_deadline(STARTUP_TIMEOUT_S)

    def stalled(self, batch: Batch) -> tuple[str, str]:
        """(status, reason) for a worker past its deadline."""
        if self.current is None:         # hung outside any cell: blame the next one
            return "error", f"worker started no cell in {STARTUP_TIMEOUT_S} s"
        return "timeout", f"ran past timeout_s = {batch.measure['timeout_s']:g} s"

    def failed_index(self) -> int:
        """The cell a failure belongs to: the running one, else the next."""
        return self.current if self.current is not None else self.done + 1


def _answer(proc: subprocess.Popen) -> None:
    """"go" to a worker about to time a cell: every row it sent before is recorded
    by now (messages are handled in order), so this process is idle while it times."""
    try:
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    except (BrokenPipeError, ValueError):
        pass                             # it died; its end is read from its stdout


def _start_worker(batch: Batch, scratch: str, log) -> subprocess.Popen:
    """`python -m harness.run.worker` under the batch's framework environment, its
    stderr into the log."""
    env = {**os.environ,
           **environment_for(batch.backend, batch.device, batch.threads, scratch)}
    env["ATTNBENCH_RUNNER_PID"] = str(os.getpid())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                      env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "harness.run.worker"], env=env,
                            cwd=PROJECT_ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=log,
                            # Its own session: Ctrl-C at the terminal reaches the
                            # runner alone, which then stops the worker itself.
                            start_new_session=True)


def _pump(stream, lines: queue.Queue) -> None:
    """Parse the worker's JSON lines into a queue; None marks the end."""
    for raw in stream:
        try:
            lines.put(json.loads(raw))
        except json.JSONDecodeError:
            continue                      # not ours; the worker keeps stdout for rows
    lines.put(None)
