"""The cell pipeline (harness/run/cell.py) that the worker and the pytest plugin share,
with a stand-in backend and each of the two timing loops it is given."""
import gc
import weakref
from types import SimpleNamespace

import pytest

from harness.correctness.judging import References
from harness.measure import timing
from harness.measure.stats import summarize
from harness.pytest_plugin import pedantic
from harness.run import cell
from harness.run.suite import Measure
from harness.spec import Case, costs, reference
from harness.spec.weights import make_inputs, make_weights

CASE = Case("c", "attention", "torch", "sdpa", "forward", "float32", "cpu", 1, 16, 2, 8, True, 1)


class Prepared:
    kernel = "stand-in kernel"

    def __init__(self, log):
        self.log = log

    def step(self):
        self.log.append("step")

    def sync(self):
        self.log.append("sync")

    def outputs(self):
        return reference.outputs(CASE, make_weights(CASE), make_inputs(CASE))


class Backend:
    def __init__(self):
        self.log = []

    def step_peak(self, case, run_step):
        run_step()
        return 4096, "stand-in peak"

    def cache_flusher(self, case):
        return lambda: self.log.append("flush")


def fake_loop(seen):
    def loop(step, sync, flush, meter=None):
        seen.append(flush)
        step()
        sync()
        return {"median_ms": 2.0, "timer": "fake"}
    return loop


def test_measure_step_records_the_loops_columns_memory_and_kernel():
    backend, seen = Backend(), []
    measured = cell.measure_step(backend, CASE, Prepared(backend.log), fake_loop(seen))
    contention = {"contended", "others_cpu_share", "load_avg", "gpu_others",
                  "gpu_util_before_pct", "throttle"}    # who else used the machine
    phases = {"phase_memory_s", "phase_outputs_s"}      # where the time went
    assert all(measured.columns[p] >= 0 for p in phases)
    assert {k: v for k, v in measured.columns.items() if k not in contention | phases} == {
        "median_ms": 2.0, "timer": "fake", "peak_mem_bytes": 4096,
        "mem_method": "stand-in peak", "kernel": "stand-in kernel"}
    assert contention <= set(measured.columns) and measured.columns["gpu_others"] is None
    assert seen == [None] and backend.log == ["step", "sync", "step", "sync"]  # loop, probe
    assert set(measured.got) == {"out"}
    on_cpu = cell.measure_step(backend, CASE, Prepared([]), fake_loop([]), nvml_device="cpu")
    assert (on_cpu.columns["nvml_mem_bytes"], on_cpu.columns["nvml_mem_method"]) == (None, None)


def test_flush_l2_hands_the_backends_flusher_to_the_loop_or_fails_without_one():
    backend, seen = Backend(), []
    cell.measure_step(backend, CASE, Prepared([]), fake_loop(seen), flush_l2=True)
    seen[0]()
    assert backend.log == ["flush"]
    with pytest.raises(NotImplementedError, match="flush_l2 unsupported"):
        cell.measure_step(object(), CASE, Prepared([]), fake_loop([]), flush_l2=True)


def test_a_prepared_step_passed_inline_is_freed_on_return():
    """So that a sampled check's second prepare does not hold two copies."""
    refs = []

    def prepare():
        prepared = Prepared([])
        refs.append(weakref.ref(prepared))
        return prepared
    cell.measure_step(Backend(), CASE, prepare(), fake_loop([]))
    gc.collect()
    assert refs[0]() is None


def test_throughput_at_the_median_and_share_of_a_known_gpus_peak():
    flops = costs.flops(CASE)
    cpu = cell.throughput(CASE, "Some CPU", 1.0)          # not calibrated: no roof
    assert cpu["tflops"] == pytest.approx(flops / 1e9) and cpu["pct_peak"] is None
    assert cpu["gb_s"] == pytest.approx(costs.bytes_moved(CASE) / 1e6)
    assert "not calibrated" in cpu["roof_source"]
    gpu = CASE.replace(device="cuda:0", dtype="bfloat16")
    got = cell.throughput(gpu, "NVIDIA H100 80GB HBM3", 1.0)
    assert got["pct_peak"] == pytest.approx(100 * got["tflops"] / 989)
    assert got["pct_peak_bw"] == pytest.approx(100 * got["gb_s"] / 3350)
    unmeasured = cell.throughput(gpu, "NVIDIA H100 80GB HBM3", None)
    assert all(unmeasured[k] is None for k in ("tflops", "pct_peak", "gb_s", "pct_peak_bw"))


def test_finish_adds_throughput_and_the_verdict():
    measured = cell.measure_step(Backend(), CASE, Prepared([]), fake_loop([]))
    columns = cell.finish(CASE, measured, "Some CPU", make_weights(CASE), make_inputs(CASE),
                          References())
    assert columns["correct"] is True and columns["check_rows"] == CASE.seq_len
    assert columns["tflops"] > 0 and columns["pct_peak"] is None
    assert columns["kernel"] == "stand-in kernel"


def test_the_workers_loop_gives_the_summary_and_its_own_figures():
    loop = timing.loop(min_run_ms=0, min_samples=3, warmup_ms=0)
    columns = loop(lambda: None, lambda: None, None)
    assert set(summarize([1.0])) <= set(columns)
    assert columns["median_ms"] == summarize(columns["samples_ms"])["median_ms"]
    assert {"first_call_ms", "warmup_calls", "calls_per_sample"} <= set(columns)
    assert columns["timer"] == timing.TIMER
    flushed = loop(lambda: None, lambda: None, lambda: None)
    assert flushed["timer"] == timing.TIMER_FLUSHED and flushed["calls_per_sample"] == 1


class FakeBenchmark:
    """pytest-benchmark's fixture as far as the pedantic loop uses it."""

    def __init__(self, data_s, disabled=False):
        self.data_s, self.disabled, self.stats, self.calls = data_s, disabled, None, []

    def pedantic(self, target, setup=None, rounds=1, warmup_rounds=0, iterations=1):
        self.calls.append((rounds, warmup_rounds, iterations, setup is not None))
        target()
        if not self.disabled:
            self.stats = SimpleNamespace(stats=SimpleNamespace(data=self.data_s))


def test_the_plugins_loop_takes_the_median_of_pedantics_rounds_from_the_summary():
    data_s = [0.004, 0.001, 0.003, 0.002]
    bench = FakeBenchmark(data_s)
    columns = pedantic.loop(bench, Measure())(lambda: None, lambda: None, None)
    assert columns["median_ms"] == summarize([s * 1e3 for s in data_s])["median_ms"] == 2.5
    assert columns["timer"] == pedantic.TIMER and columns["first_call_ms"] >= 0
    assert bench.calls == [(columns["rounds"], columns["warmup_rounds"],
                            columns["iterations"], False)]
    disabled = pedantic.loop(FakeBenchmark([], disabled=True), Measure(flush_l2=True))
    columns = disabled(lambda: None, lambda: None, lambda: None)
    assert columns["median_ms"] is None and columns["iterations"] == 1


class Profiling(Backend):
    """A backend whose profiler hands back a Kineto-shaped trace of its host ops."""

    def profile(self, case, step, sync, steps):
        self.log.append("profile")
        for _ in range(steps):
            step()
            sync()
        ops = [{"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 1000 * i, "dur": 500}
               for i in range(steps)]
        return ops, "stand-in profiler"


def test_device_time_comes_from_a_profiled_pass_after_the_timed_part():
    backend = Profiling()
    measured = cell.measure_step(backend, CASE, Prepared(backend.log), fake_loop([]),
                                 profile=True)
    assert backend.log.index("profile") > backend.log.index("sync")   # after the loop
    assert measured.columns["device_ms"] == pytest.approx(0.5)
    assert measured.columns["launch_overhead_ms"] == pytest.approx(2.0 - 0.5)
    assert measured.columns["device_time_method"].startswith("stand-in profiler")


def test_no_profiler_or_a_failing_one_leaves_the_cell_with_the_reason():
    plain = cell.measure_step(Backend(), CASE, Prepared([]), fake_loop([]), profile=True)
    assert plain.columns["device_ms"] is None
    assert "has no profiler pass" in plain.columns["device_time_note"]

    class Failing(Backend):
        def profile(self, case, step, sync, steps):
            raise RuntimeError("CUPTI_ERROR_NOT_INITIALIZED")
    failed = cell.measure_step(Failing(), CASE, Prepared([]), fake_loop([]), profile=True)
    assert failed.columns["device_ms"] is None and "CUPTI" in failed.columns["device_time_note"]
    off = cell.measure_step(Profiling(), CASE, Prepared([]), fake_loop([]))
    assert "device_ms" not in off.columns                       # profile=False: no pass
