"""Batches side by side where they share nothing: one thread per GPU lane (a
lane's batches run one after another, so no two workers share a GPU), then the
CPU lanes one by one, alone, since a timed CPU cell must not share its cores: a
CPU lane runs two batches side by side, whose workers time in turn.
Used by the local runner (a lane per GPU) and the Ray executor (a lane per task)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
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


SIDE_BY_SIDE = 2         # CPU batches at once: one timing, one doing untimed work


def side_by_side(work: list[tuple], run_one: Callable[..., None], stop: threading.Event,
                 at_once: int = SIDE_BY_SIDE) -> None:
    """run_one(*item) for each item, `at_once` at a time, in order of starting:
    the CPU lane's batches, whose workers time in turn (harness/run/executors/
    quiet.py). Ctrl-C, or an error in one, sets `stop`, waits for the threads, and
    re-raises."""
    pool = ThreadPoolExecutor(max_workers=at_once)
    try:
        for future in [pool.submit(run_one, *item) for item in work]:
            while not future.done():
                wait([future], timeout=0.5)      # wakes for Ctrl-C
            future.result()
    except BaseException:           # Ctrl-C, or a batch's own failure: end the lane
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
