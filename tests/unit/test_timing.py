"""The measuring loop, driven by a fake clock: each step advances the clock by a known
cost, and every sync, clock read and step is logged. Costs are powers of two seconds,
so every time below is exact in floating point (2^-12 s = 0.244140625 ms)."""
import math
import re

import pytest

from harness.measure.timing import measure

STEP_S = 2.0 ** -12
STEP_MS = STEP_S * 1e3              # 0.244140625


class Fake:
    """A device whose first call costs `first_s` and every later call `step_s`."""

    def __init__(self, step_s=STEP_S, first_s=2.0 ** -5):   # first call 31.25 ms
        self.t, self.step_s, self.first_s = 0.0, step_s, first_s
        self.calls, self.log = 0, []

    def step(self):
        self.t += self.first_s if self.calls == 0 else self.step_s
        self.calls += 1
        self.log.append("x")

    def sync(self):
        self.log.append("S")

    def clock(self):
        self.log.append("C")
        return self.t

    def blocks(self):
        """Calls per block, after checking every block is sync, clock, steps, sync, clock."""
        text = "".join(self.log)
        assert re.fullmatch(r"(SCx*SC)+", text), text[:200]
        return [len(b) for b in re.findall(r"SC(x*)SC", text)]


def run(fake, **kw):
    kw = {"min_run_ms": 0, "min_samples": 10, "warmup_ms": 10, **kw}
    return measure(fake.step, fake.sync, clock=fake.clock, **kw)


def test_first_call_is_timed_apart():
    fake = Fake()
    t = run(fake)
    assert t.first_call_ms == pytest.approx(31.25)
    assert fake.blocks()[0] == 1                      # a block of its own
    assert max(t.samples_ms) == pytest.approx(STEP_MS)   # never inside a sample


def test_warmup_runs_until_warmup_ms():
    fake = Fake()
    t = run(fake, warmup_ms=10)
    # 40 * 0.244140625 = 9.765625 < 10 <= 41 * 0.244140625 = 10.009765625
    assert t.warmup_calls == 41
    assert fake.blocks()[1:42] == [1] * 41            # one call per warm-up block
    assert run(Fake(), warmup_ms=0).warmup_calls == 1     # at least one, always


@pytest.mark.parametrize("step_s, min_block_ms", [
    (2.0 ** -12, 1.0),      # 0.244 ms per call: a few calls per block
    (2.0 ** -20, 1.0),      # ~0.95 us per call: ~1000 calls per block
    (2.0 ** -20, 5.0),
    (2.0 ** -8, 1.0),       # 3.9 ms per call: one call already fills a block
])
def test_autorange_grows_calls_per_sample_until_min_block_ms(step_s, min_block_ms):
    fake = Fake(step_s=step_s)
    t = run(fake, min_block_ms=min_block_ms)
    block_ms = t.number * step_s * 1e3
    assert block_ms >= min_block_ms
    # It stops growing once there: never more than twice what was needed (or 1 call).
    assert t.number == 1 or block_ms < 2 * min_block_ms
    assert fake.blocks()[-len(t.samples_ms):] == [t.number] * len(t.samples_ms)


def test_autorange_respects_max_number():
    t = run(Fake(step_s=2.0 ** -30), max_number=16, warmup_ms=0)
    assert t.number == 16


def test_samples_are_per_call_times():
    t = run(Fake())
    assert t.number > 1                               # so the division matters
    assert t.samples_ms == pytest.approx([STEP_MS] * len(t.samples_ms))


@pytest.mark.parametrize("min_samples, min_run_ms", [(10, 0), (1, 50), (5, 3), (30, 20)])
def test_samples_stop_when_both_minimums_are_met(min_samples, min_run_ms):
    t = run(Fake(), min_samples=min_samples, min_run_ms=min_run_ms)
    block_ms = t.number * STEP_MS
    needed = max(min_samples, math.ceil(min_run_ms / block_ms))
    assert len(t.samples_ms) == needed
    assert len(t.samples_ms) * block_ms >= min_run_ms


def test_every_block_is_bracketed_by_syncs():
    fake = Fake()
    t = run(fake, min_samples=3)
    blocks = fake.blocks()                            # asserts the S C x* S C pattern
    assert sum(blocks) == fake.calls
    assert len(blocks) >= 1 + t.warmup_calls + len(t.samples_ms)


def test_a_step_that_fills_a_block_alone_takes_no_calibration_block():
    fake = Fake(step_s=2.0 ** -8)                     # 3.9 ms a call, blocks of 1 ms
    t = run(fake, min_block_ms=1.0, min_samples=4, warmup_ms=0)
    assert t.number == 1 and t.warmup_calls == 1 and len(t.samples_ms) == 4
    assert fake.blocks() == [1] * (1 + 1 + 4)         # first call, warm-up, samples


def test_the_block_that_ends_the_growth_is_the_first_sample():
    fake = Fake()                                     # 0.244 ms a call, blocks of 1 ms
    t = run(fake, min_block_ms=1.0, min_samples=4, warmup_ms=0)
    blocks = fake.blocks()
    grown = blocks[2:-len(t.samples_ms)]              # after the first call and warm-up
    assert t.number > 1 and len(t.samples_ms) == 4
    assert blocks[-4:] == [t.number] * 4 and all(n < t.number for n in grown)
    assert t.samples_ms[0] == pytest.approx(STEP_MS)


def test_flush_runs_untimed_before_every_call_and_each_sample_is_one_call():
    """flush_l2: the flush (which costs time on the fake clock) precedes every
    timed call, synced before the clock starts, so no sample contains it."""
    fake = Fake()
    flush_s = 2.0 ** -6                          # 15.6 ms, far above a step

    def flush():
        fake.t += flush_s
        fake.log.append("F")

    timing = measure(fake.step, fake.sync, flush=flush, clock=fake.clock,
                     min_run_ms=10, min_samples=5, warmup_ms=1, min_block_ms=5)
    text = "".join(fake.log)
    assert re.fullmatch(r"(FSCxSC)+", text), text[:200]      # flush, sync, clock, 1 call
    assert timing.number == 1                                  # never grown: one call each
    assert timing.samples_ms == [STEP_MS] * len(timing.samples_ms)   # the flush is not in it
    assert len(timing.samples_ms) >= math.ceil(10 / STEP_MS)   # the run budget still holds
    assert timing.first_call_ms == pytest.approx(2.0 ** -5 * 1e3)


def test_cpu_cache_flusher_writes_more_than_any_last_level_cache():
    from harness.measure.timing import FLUSH_BYTES, cpu_cache_flusher
    flush = cpu_cache_flusher()
    buffer = flush.__closure__[0].cell_contents
    buffer[:] = 7
    flush()
    assert buffer.nbytes == FLUSH_BYTES >= 256 * 2**20 and not buffer.any()
