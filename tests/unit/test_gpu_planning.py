"""GPU runs planned and recorded without a GPU: device expansion and filtering,
devices that do not exist, one worker per GPU (its environment, lanes side by side),
and what a GPU worker writes in a row (device name, driver, peak, kernel, timer,
the NVML column), driven through the worker's own run_case with a stand-in backend."""
from __future__ import annotations

import threading
import time

import pytest

from harness.correctness import judging
from harness.measure import devices
from harness.measure.timing import TIMER, TIMER_FLUSHED
from harness.run import environment, plan, worker
from harness.run.executors.lanes import run_lanes
from harness.run.suite import parse_suite
from harness.spec import Case

H100, A100, H200 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA H200"
VISIBLE = [{"index": 0, "name": H100, "memory_total": 80 * 2**30, "memory_free": 79 * 2**30,
            "driver": "580.1", "cuda_driver": "13.0"},
           {"index": 1, "name": A100, "memory_total": 80 * 2**30, "memory_free": 79 * 2**30,
            "driver": "580.1", "cuda_driver": "13.0"},
           {"index": 2, "name": H100, "memory_total": 80 * 2**30, "memory_free": 2**20,
            "driver": "580.1", "cuda_driver": "13.0"}]


def suite(devices_toml: str, backends: str = '["torch", "jax"]'):
    return parse_suite({"name": "g", "sweep": [{
        "workload": "attention", "backend": eval(backends), "device": eval(devices_toml),
        "batch": 1, "seq_len": 64, "heads": 2, "head_dim": 16, "dtype": "bfloat16",
        "variants": {"torch": ["sdpa"], "jax": ["dpa"]}}]}, "g.toml")


def test_auto_is_every_gpu_and_gpu_type_picks_by_name():
    planned = plan.planned_cases(suite('["auto"]'), gpus=VISIBLE)
    assert sorted({c.device for c in planned}) == ["cuda:0", "cuda:1", "cuda:2"]
    assert {c.device for c in plan.planned_cases(suite('["auto"]'), gpus=[])} == {"cpu"}
    typed = plan.planned_cases(suite('["gpu:H100", "gpu:A100"]'), gpus=VISIBLE)
    assert sorted({c.device for c in typed}) == ["cuda:0", "cuda:1", "cuda:2"]
    assert len(typed) == 2 * 3                      # two backends on three GPUs, no repeats


@pytest.mark.parametrize("only, expected", [
    (["gpu:H100"], {"cuda:0", "cuda:2"}),
    (["gpu:a100"], {"cuda:1"}),
    (["cuda:2"], {"cuda:2"}),
    (["cuda"], {"cuda:0", "cuda:1", "cuda:2"}),
    (["cpu"], {"cpu"}),
    (["cpu", "gpu:A100"], {"cpu", "cuda:1"}),
    (["gpu:V100"], set()),
])
def test_device_filter_keeps_the_cells_on_those_devices(only, expected):
    planned = plan.planned_cases(suite('["auto", "cpu"]'), gpus=VISIBLE, only=only)
    assert {c.device for c in planned} == expected


def test_a_device_that_is_not_there_is_unsupported_with_its_reason():
    assert devices.unavailable("cuda:1", VISIBLE) is None
    assert devices.unavailable("cpu", []) is None
    missing = devices.unavailable("cuda:7", VISIBLE)
    assert "cuda:7" in missing and A100 in missing            # says what there is
    assert "V100" in devices.unavailable("gpu:V100", VISIBLE)
    assert "no NVIDIA GPU" in devices.unavailable("cuda:0", [])
    # When NVML itself could not be asked, a cuda:N cell is left to the framework
    # (it may see a GPU NVML could not), but a GPU type still needs NVML's names.
    assert devices.unavailable("cuda:0", [], nvml_error="nvidia-ml-py is not installed") is None
    assert devices.unavailable("gpu:H100", [], nvml_error="x") is not None


def test_refused_cells_never_reach_a_worker():
    planned = plan.planned_cases(suite('["cuda", "gpu:V100"]'), gpus=VISIBLE[:1])
    verdicts = {c.device: plan.refusal(c, VISIBLE[:1], None) for c in planned}
    assert verdicts["cuda:0"] is None
    assert verdicts["gpu:V100"][0] == "unsupported"
    big = planned[0].replace(batch=64, seq_len=65536, heads=32, head_dim=128)
    status, reason = plan.refusal(big.replace(device="cuda:2"), VISIBLE, None)
    assert status == "oom" and "GiB" in reason       # data alone above the free memory


def test_the_refusal_chain_asks_where_then_what_then_size():
    """A cell refused for several reasons gets the first: its device, then the
    catalogue, then its size."""
    flash32 = Case("g", "attention", "torch", "sdpa-flash", "forward", "float32", "cuda:7",
                   64, 65536, 32, 128, False)
    assert "no GPU cuda:7" in plan.refusal(flash32, VISIBLE, None)[1]
    on_small_gpu = flash32.replace(device="cuda:2")
    assert plan.refusal(on_small_gpu, VISIBLE, None) == (
        "unsupported", "torch sdpa-flash does not run float32")
    status, reason = plan.refusal(on_small_gpu.replace(dtype="bfloat16"), VISIBLE, None)
    assert status == "oom" and "refused before running" in reason
    small = on_small_gpu.replace(dtype="bfloat16", batch=1, seq_len=64, heads=2, head_dim=16)
    assert plan.refusal(small, VISIBLE, None) is None


def test_plan_summary_says_what_this_machine_can_run():
    planned = plan.planned_cases(suite('["cuda"]'), gpus=[])
    rows = plan.plan_summary(planned, plan.Target([]))
    assert [r["backend"] for r in rows] == ["jax", "torch"]
    assert all(r["cells"] == 1 and r["to_run"] == 0 and "no NVIDIA GPU" in r["why_not"]
               for r in rows)
    rows = plan.plan_summary(plan.planned_cases(suite('["cuda"]'), gpus=VISIBLE),
                             plan.Target(VISIBLE))
    assert {r["device_name"] for r in rows} == {H100, A100}
    assert all(r["to_run"] == r["cells"] for r in rows)


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_each_gpu_worker_sees_its_own_gpu_alone(backend, tmp_path):
    env = environment.environment_for(backend, "cuda:2", threads=4, scratch=str(tmp_path))
    assert env["CUDA_VISIBLE_DEVICES"] == "2" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert environment.local_device("cuda:2") == "cuda:0"          # inside it, its only GPU
    if backend == "jax":        # no 75% preallocation, no silent fall-back to the CPU
        assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        assert env["JAX_PLATFORMS"] == "cuda"
    if backend == "tensorflow":
        assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_lanes_one_per_gpu_then_the_cpu():
    cases = plan.planned_cases(suite('["cpu", "cuda:1", "cuda:0"]'), gpus=VISIBLE)
    gpu_lanes, cpu_lanes = plan.lanes(cases)
    assert gpu_lanes == [[("torch", "cuda:1"), ("jax", "cuda:1")],
                         [("torch", "cuda:0"), ("jax", "cuda:0")]]
    assert cpu_lanes == [[("torch", "cpu"), ("jax", "cpu")]]


def test_gpu_lanes_run_side_by_side_and_the_cpu_lane_alone_after_them():
    gpu_lanes, cpu_lanes = [[("torch", "cuda:0")], [("torch", "cuda:1")]], [[("torch", "cpu")]]
    both_gpus_at_once = threading.Barrier(2, timeout=10)
    log, lock = [], threading.Lock()

    def run_lane(lane):
        device = lane[0][1]
        with lock:
            log.append(("start", device))
        if device != "cpu":
            both_gpus_at_once.wait()     # raises BrokenBarrierError if they were serial
            time.sleep(0.05)
        with lock:
            log.append(("end", device))

    run_lanes(gpu_lanes, cpu_lanes, run_lane, threading.Event(), serial=False)
    cpu_start = log.index(("start", "cpu"))
    assert {e for e in log[:cpu_start]} == {("start", "cuda:0"), ("start", "cuda:1"),
                                            ("end", "cuda:0"), ("end", "cuda:1")}
    order = []
    run_lanes(gpu_lanes, cpu_lanes, lambda lane: order.append(lane[0][1]), threading.Event(),
              serial=True)
    assert order == ["cuda:0", "cuda:1", "cpu"]


# --------------------------------------------------- a GPU row, without a GPU


class StandIn:
    """A backend that computes the float64 reference and says it ran on a GPU."""

    def __init__(self):
        self.flushes = 0

    def version(self):
        return "stand-in 1.0"

    def unsupported(self, case):
        assert case.device == "cuda:0"      # the worker's own view of its one GPU
        return None

    def prepare(self, case, weights, inputs):
        from harness.spec import reference
        outer = self

        class Prepared:
            kernel = "stand-in fused kernel"

            def step(self):
                outer.steps = getattr(outer, "steps", 0) + 1

            def sync(self):
                pass

            def outputs(self):
                return reference.outputs(case, weights, inputs)
        return Prepared()

    def step_peak(self, case, run_step):
        run_step()
        return 12345, "stand-in allocator peak"

    def cache_flusher(self, case):
        def flush():
            self.flushes += 1
        return flush


@pytest.mark.parametrize("flush_l2", [False, True])
def test_a_gpu_row_carries_device_driver_peak_kernel_timer_and_nvml(flush_l2):
    case = Case("g", "attention", "torch", "sdpa", "forward", "bfloat16", "cuda:2",
                1, 16, 2, 8, True, 1)
    backend = StandIn()
    measure = {"min_run_ms": 1, "min_samples": 3, "warmup_ms": 0, "flush_l2": flush_l2}
    job = {"measure": measure, "gpus": VISIBLE, "threads": 1, "run_id": "r"}
    row = worker.run_case(backend, case, job, judging.References())
    assert row["status"] == "ok", row["reason"]
    assert row["device"] == "cuda:2" and row["device_name"] == H100
    assert row["driver"] == "580.1" and row["cuda_driver"] == "13.0"
    assert row["pct_peak"] == pytest.approx(100 * row["tflops"] / 989)
    assert row["kernel"] == "stand-in fused kernel"
    assert row["peak_mem_bytes"] == 12345 and row["mem_method"] == "stand-in allocator peak"
    assert row["timer"] == (TIMER_FLUSHED if flush_l2 else TIMER)
    assert (backend.flushes > row["n_samples"]) == flush_l2     # one per call, warm-up too
    assert row["correct"] is True
    # NVML's own figure for the process, or why there is none (no NVML here).
    assert row["nvml_mem_bytes"] is not None or row["nvml_mem_method"].startswith("unavailable")


def test_cpu_rows_have_no_peak_and_no_nvml_column():
    case = Case("g", "attention", "torch", "sdpa", "forward", "float32", "cpu",
                1, 16, 2, 8, False, 1)

    class OnCpu(StandIn):
        def unsupported(self, case):
            return None
    row = worker.run_case(OnCpu(), case, {"measure": {"min_run_ms": 1, "min_samples": 2,
                                                       "warmup_ms": 0}, "threads": 1},
                          judging.References())
    assert row["status"] == "ok" and row["pct_peak"] is None
    assert row["nvml_mem_bytes"] is None and row["nvml_mem_method"] is None
