"""Batches side by side where they share nothing: one thread per GPU lane (a
lane's batches run one after another, so no two workers share a GPU), then the
CPU lanes one by one, alone, since a timed CPU cell must not share its cores.
Used by the local runner (a lane per GPU) and the Ray executor (a lane per task)."""
from __future__ import annotations

import threading
from typing import Callable


def run_lanes(gpu_lanes: list, cpu_lanes: list, run_lane: Callable[[object], None],
              stop: threading.Event, serial: bool = False) -> None:
    """With `serial`, or fewer than two GPU lanes, everything in this thread.
    Ctrl-C sets `stop` (which ends each lane's work), waits for the lanes, and
    re-raises."""
    if serial or len(gpu_lanes) < 2:
        for lane in [*gpu_lanes, *cpu_lanes]:
            run_lane(lane)
        return
    threads = [threading.Thread(target=run_lane, args=(lane,), daemon=True)
               for lane in gpu_lanes]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)     # wakes for Ctrl-C
    except KeyboardInterrupt:
        stop.set()
        for thread in threads:
            thread.join()
        raise
    for lane in cpu_lanes:
        run_lane(lane)
