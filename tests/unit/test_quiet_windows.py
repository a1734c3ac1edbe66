"""The CPU lane's timing windows (harness/run/executors/quiet.py): one worker
times at a time, every other one stopped meanwhile, and no one's deadline pays for
the wait. Real processes (`sleep`, each in its own session as the workers are),
whose state /proc reads."""
from __future__ import annotations

import subprocess
import threading
import time

import pytest

from harness.run.executors.quiet import QuietWindows


def stopped(procs) -> list[bool]:
    """Whether each process is stopped (state T in /proc)."""
    def letter(pid: int) -> str:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    return [letter(p.pid) == "T" for p in procs]


@pytest.fixture
def workers():
    procs = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(3)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def join_all(windows: QuietWindows, procs) -> tuple[list, list]:
    said = []
    members = [windows.join(p.pid, lambda n=n: said.append(n)) for n, p in enumerate(procs)]
    return members, said


def test_the_window_stops_every_other_worker_and_release_continues_them(workers):
    windows = QuietWindows()
    (a, b, c), said = join_all(windows, workers)
    windows.ask(a)
    assert said == [0]
    assert stopped(workers) == [False, True, True]
    windows.release(a)
    assert stopped(workers) == [False, False, False]
    assert not any(m.stopped for m in (a, b, c))


def test_a_second_asker_waits_for_the_window_and_the_holder_is_stopped_in_turn(workers):
    windows = QuietWindows()
    (a, b, _), said = join_all(windows, workers)
    windows.ask(a)
    windows.ask(b)
    assert said == [0]                           # b waits, stopped
    time.sleep(0.05)
    windows.release(a)
    assert said == [0, 1]
    assert stopped(workers) == [True, False, True]
    assert b.held_s >= 0.05 and not b.waiting    # its wait is its deadline's credit
    windows.leave(b)                             # the holder ends: everyone goes on
    assert stopped(workers[::2]) == [False, False]


def test_a_stopped_workers_credit_grows_and_its_stopped_time_is_counted(workers):
    windows = QuietWindows()
    (a, b, c), _ = join_all(windows, workers)
    windows.ask(a)
    before = b.credit()
    time.sleep(0.1)
    assert b.credit() - before >= 0.1
    windows.release(a)
    for member in (a, b, c):
        windows.leave(member)
    assert windows.stopped_s == pytest.approx(b.stopped_working_s + c.stopped_working_s)
    assert b.stopped_working_s >= 0.1 and a.stopped_working_s == 0


def test_the_runners_work_on_messages_waits_out_another_workers_window(workers):
    windows = QuietWindows()
    (a, b, _), said = join_all(windows, workers)
    handled = threading.Event()

    def handle_b():
        with windows.handling(b):
            handled.set()

    windows.ask(a)
    thread = threading.Thread(target=handle_b)
    thread.start()
    assert not handled.wait(0.2)                 # a's window is open
    windows.release(a)
    assert handled.wait(5)
    thread.join()


def test_a_window_opens_only_once_no_message_is_being_handled(workers):
    windows = QuietWindows()
    (a, b, _), said = join_all(windows, workers)
    with windows.handling(b):                    # the runner writes b's row
        windows.ask(a)
        assert said == []
    assert said == [0]


def test_untimed_work_side_by_side_is_counted_as_overlap(workers):
    windows = QuietWindows()
    (a, b, c), _ = join_all(windows, workers)
    time.sleep(0.1)                              # three busy members: two extra
    windows.ask(a)
    overlap = windows.overlap_s
    assert overlap >= 0.2
    time.sleep(0.05)
    windows.release(a)                           # a alone was busy meanwhile
    assert windows.overlap_s - overlap < 0.02


def test_a_cells_deadline_moves_by_the_time_its_worker_was_held(workers):
    from harness.run.executors.local import _WorkerState
    windows = QuietWindows()
    (a, b, _), _ = join_all(windows, workers)
    cell = _WorkerState(deadline=0.0, offset=0, windows=windows, member=b)
    cell.set_deadline(0.1)
    windows.ask(a)
    time.sleep(0.2)
    assert cell.left() > 0.05                    # stopped all along: not timed out
    windows.release(a)
    time.sleep(0.2)
    assert cell.left() < 0                       # running again: its clock runs


def test_the_runners_own_work_waits_out_a_window_and_holds_the_next_one(workers):
    windows = QuietWindows()
    (a, b, _), said = join_all(windows, workers)
    done = threading.Event()

    def refusal_rows():
        with windows.outside():
            done.set()

    windows.ask(a)
    thread = threading.Thread(target=refusal_rows)
    thread.start()
    assert not done.wait(0.2)                    # a times: the runner waits
    windows.release(a)
    assert done.wait(5)
    thread.join()
    with windows.outside():                      # and no window opens meanwhile
        windows.ask(b)
        assert said == [0]
    assert said == [0, 1]


def test_leaving_continues_a_stopped_worker_and_twice_is_once(workers):
    windows = QuietWindows()
    (a, b, _), _ = join_all(windows, workers)
    windows.ask(a)
    windows.leave(b)                             # b ends while stopped: continued first
    assert stopped(workers[1:2]) == [False]
    windows.leave(b)
    windows.release(a)
    assert windows.credit(b) == b.credit()


def test_a_failing_batch_ends_the_side_by_side_lane():
    from harness.run.executors.lanes import side_by_side
    stop, ran = threading.Event(), []

    def run_one(n):
        if n == 0:
            raise OSError("disk full")
        time.sleep(0.05)
        ran.append(n)

    with pytest.raises(OSError):
        side_by_side([(n,) for n in range(6)], run_one, stop)
    assert stop.is_set() and len(ran) <= 2       # the queued batches never started
