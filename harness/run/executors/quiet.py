"""One timed cell at a time on the CPUs, and nothing of ours running beside it.

The workers of a CPU lane run side by side, so that one's untimed work (start and
import, weights, references, judging) overlaps another's. A worker about to time
a cell says "quiet" and waits for "go"; QuietWindows grants one window at a time:
it stops (SIGSTOP, to the worker's whole process group: torch.compile's compiler
processes too) every other member, and continues them (SIGCONT) when the holder
says "untimed", sends its row or ends. So untimed work overlaps untimed work only,
and the time a member spends stopped or waiting for its window is credited to its
deadline (`credit`), so that no cell times out for waiting. docs/design.md, "Where
the time goes", has the figures.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable


@dataclass(eq=False)
class Member:
    """A worker process in the windows, and the time it was held up."""
    pid: int
    answer: Callable[[], None]          # sends "go"
    stopped: bool = False               # by SIGSTOP
    waiting: bool = False               # for its window, after saying "quiet"
    since: float = field(default_factory=time.monotonic)   # the last change
    held_s: float = 0.0                 # stopped or waiting: its deadline's credit
    # stopped while not waiting: inside the worker's own phase clocks
    stopped_working_s: float = 0.0

    def set(self, stopped: bool | None = None, waiting: bool | None = None) -> None:
        now = time.monotonic()
        if self.stopped or self.waiting:
            self.held_s += now - self.since
        if self.stopped and not self.waiting:
            self.stopped_working_s += now - self.since
        self.since = now
        self.stopped = self.stopped if stopped is None else stopped
        self.waiting = self.waiting if waiting is None else waiting

    def credit(self) -> float:
        """Seconds held up so far, an open stop or wait included."""
        held = self.stopped or self.waiting
        return self.held_s + (time.monotonic() - self.since if held else 0.0)


class QuietWindows:
    """Grants the timing window to one member at a time (see the module's text).
    The runner's own work on members' messages (writing rows) is kept out of a
    window too: `handling` waits while another member's window is open, and a
    window opens ("go") only once no message is being handled."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.members: list[Member] = []
        self.holder: Member | None = None     # the open (or opening) window's
        self.opened = False                   # "go" sent to the holder
        self.waiting: deque[Member] = deque()
        self.busy = 0                         # messages being handled
        # For the run's time table: members' seconds stopped inside their phases,
        # and the seconds of untimed work done side by side (a second busy member's).
        self.stopped_s = self.overlap_s = 0.0
        self.ticked = time.monotonic()

    def join(self, pid: int, answer: Callable[[], None]) -> Member:
        member = Member(pid, answer)
        with self.cond:
            self._tick()
            self.members.append(member)
            if self.opened:                   # a cell is being timed: wait
                self._signal(member, stop=True)
        return member

    def leave(self, member: Member) -> None:
        """The member ended, or is about to be killed: call before reaping it, so
        that no signal can reach its process group once its pid is free again.
        Leaving twice is leaving once."""
        with self.cond:
            if member not in self.members:
                return
            self._tick()
            self._signal(member, stop=False)  # its held time ends here
            member.set(waiting=False)
            self.stopped_s += member.stopped_working_s
            if member in self.waiting:
                self.waiting.remove(member)
            self.members.remove(member)
            if self.holder is member:
                self._close()

    def ask(self, member: Member) -> None:
        """The member is about to time a cell: "go" now, or when its turn comes."""
        with self.cond:
            self._tick()
            member.set(waiting=True)
            if self.holder is None:
                self.holder = member
                self._open_when_idle()
            else:
                self.waiting.append(member)

    def release(self, member: Member) -> None:
        """The member's timed work is over: every other member goes on."""
        with self.cond:
            self._tick()
            if self.holder is member:
                self._close()

    def credit(self, member: Member) -> float:
        """member.credit(), read under the lock (a stop may end mid-read)."""
        with self.cond:
            return member.credit()

    def outside(self):
        """Around the runner's own work that no member's message carries (refusal
        and failure rows, starting a worker, removing its scratch folder): it waits
        for the open window to close, and none opens meanwhile."""
        return self._busy(None)

    def handling(self, member: Member):
        """Around the runner's work on one of the member's messages."""
        return self._busy(member)

    @contextmanager
    def _busy(self, member: Member | None):
        """Once no window but `member`'s is open; no window opens until it ends."""
        with self.cond:
            self.cond.wait_for(lambda: self.holder in (None, member))
            self.busy += 1
        try:
            yield
        finally:
            with self.cond:
                self._tick()
                self.busy -= 1
                self._open_when_idle()

    def _tick(self) -> None:
        now = time.monotonic()
        busy = sum(not (m.stopped or m.waiting) for m in self.members)
        self.overlap_s += max(0, busy - 1) * (now - self.ticked)
        self.ticked = now

    def _close(self) -> None:
        self.holder, self.opened = None, False
        if self.waiting:
            self.holder = self.waiting.popleft()
            self._open_when_idle()
        else:
            for other in self.members:
                self._signal(other, stop=False)
        self.cond.notify_all()

    def _open_when_idle(self) -> None:
        holder = self.holder
        if holder is None or self.opened or self.busy:
            return
        self.opened = True
        holder.set(waiting=False)
        for other in self.members:
            self._signal(other, stop=other is not holder)
        holder.answer()

    def _signal(self, member: Member, stop: bool) -> None:
        if member.stopped == stop:
            return
        try:
            os.killpg(member.pid, signal.SIGSTOP if stop else signal.SIGCONT)
        except (ProcessLookupError, PermissionError):
            return                         # it ended; its executor will say leave
        if stop:
            _until_stopped(member.pid)
        member.set(stopped=stop)


def _until_stopped(pid: int, limit_s: float = 0.1) -> None:
    """SIGSTOP is delivered when its target is next scheduled: wait (at most
    limit_s) until /proc shows it stopped, so that "go" follows a quiet machine."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "Tt":
                    return
        except (OSError, IndexError):
            return                         # gone, or no /proc here
        time.sleep(0.0002)
