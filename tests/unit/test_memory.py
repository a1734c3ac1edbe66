"""The CPU peak-memory probe: resident high-water mark, reset per measurement."""
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from harness.measure.memory import CPU_METHOD, cpu_step_peak, pin_allocator, settle_resident

MB = 1_000_000

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="VmHWM and clear_refs are Linux /proc files")


def allocate(nbytes):
    def step():
        a = np.ones(nbytes // 8)          # np.ones writes every page: resident, not lazy
        assert a[-1] == 1.0
    return step


def allocate_in_pieces(nbytes, piece):
    def step():
        parts = [np.ones(piece // 8) for _ in range(nbytes // piece)]
        assert len(parts) == nbytes // piece
    return step


def nothing():
    pass


def peak(step):
    value, method = cpu_step_peak(step)
    if method != CPU_METHOD:
        assert value is None and method.startswith("unavailable")
        pytest.skip(method)
    assert isinstance(value, int)
    return value


def test_a_200_mb_step():
    assert 190 * MB <= peak(allocate(200 * MB)) <= 260 * MB


def test_a_step_that_allocates_nothing():
    assert peak(nothing) < 20 * MB


def test_each_measurement_is_reset():
    assert peak(allocate(200 * MB)) >= 190 * MB
    assert peak(nothing) < 20 * MB                          # the 200 MB mark is gone
    assert 90 * MB <= peak(allocate(100 * MB)) <= 150 * MB
    assert 190 * MB <= peak(allocate(200 * MB)) <= 260 * MB     # and measured again


def test_memory_kept_by_malloc_is_measured_again():
    # Freeing a 9 MB array raises glibc's mmap threshold, so later 8 MB pieces come
    # from the heap. A piece kept alive above them (a cache) stops free() returning them
    # to the OS: without malloc_trim before the reset the next step reuses them and
    # reads ~0.
    kept = []
    bump = np.ones(9 * MB // 8)
    del bump

    def step_that_keeps_one():
        parts = [np.ones(MB) for _ in range(20)]          # 20 x 8 MB
        kept.append(np.ones(MB))                          # allocated above them, kept
        assert len(parts) == 20

    assert 150 * MB <= peak(step_that_keeps_one) <= 240 * MB
    for _ in range(2):
        assert 150 * MB <= peak(allocate_in_pieces(160 * MB, 8 * MB)) <= 230 * MB


def test_memory_a_thread_arena_kept_is_measured_again():
    # A worker thread (as XLA's) allocates in its own arena; under the timed policy
    # its 8 MB buffers come from that arena's heap, whose free top stays resident:
    # malloc_trim never trims a thread arena's top, so the probe read ~0 for them.
    pool = ThreadPoolExecutor(max_workers=1)
    in_thread = allocate_in_pieces(40 * MB, 8 * MB)

    def step():
        pool.submit(in_thread).result()

    try:
        pin_allocator()
        for _ in range(3):
            step()
        assert 35 * MB <= peak(step) <= 80 * MB
    finally:
        pool.shutdown()


def test_frees_another_thread_makes_after_the_step_do_not_hide_the_peak():
    # XLA frees a step's buffers on its own threads after the outputs are ready: a
    # baseline taken before they are gone counts them, and the next step's own
    # buffers, allocated after they went, read as nothing.
    held = []

    def step():
        time.sleep(0.05)                                  # computing, meanwhile
        held.append(np.ones(60 * MB // 8))
        if len(held) > 1:
            late = [held.pop(0)]                          # the last reference
            threading.Timer(0.02, late.clear).start()

    step()
    step()
    assert 55 * MB <= peak(step) <= 100 * MB


def test_settle_waits_for_the_resident_size_to_stop_falling():
    data = [np.ones(40 * MB // 8)]
    threading.Timer(0.02, data.clear).start()
    assert settle_resident(quiet_s=0.05, limit_s=2) >= 0.02 + 0.05
