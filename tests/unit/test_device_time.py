"""Device time from profiler traces (harness/measure/device_time.py), on made-up traces
in the two shapes the frameworks write: Kineto's (torch) categories and XLA's
(JAX) process names; gzip as JAX writes it; and the row's columns."""
from __future__ import annotations

import gzip
import json

import pytest

from harness.measure import device_time


def x(name, ts, dur, cat=None, pid=1, tid=1) -> dict:
    event = {"ph": "X", "name": name, "ts": ts, "dur": dur, "pid": pid, "tid": tid}
    return {**event, "cat": cat} if cat else event


def process(pid, name) -> dict:
    return {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}}


KINETO = [x("aten::matmul", 0, 400, "cpu_op"), x("aten::mm", 10, 380, "cpu_op"),
          x("cudaLaunchKernel", 20, 5, "cuda_runtime"),
          x("sm90_xmma_gemm", 100, 250, "kernel", pid=0, tid=7),
          x("flash_fwd_kernel", 360, 150, "kernel", pid=0, tid=7),
          x("Memcpy DtoD", 520, 30, "gpu_memcpy", pid=0, tid=8)]


def test_a_trace_with_two_kernels_sums_them_and_the_copy_per_step():
    ms, how = device_time.step_ms(KINETO, steps=2, gpu=True)
    assert ms == pytest.approx((250 + 150 + 30) / 2 / 1e3) and "2 profiled steps" in how


def test_xla_names_its_gpu_by_process_and_its_cpu_ops_likewise():
    events = [process(3, "/device:GPU:0"), process(4, "/host:CPU"),
              x("fusion.1", 0, 40, pid=3), x("custom-call", 50, 60, pid=3),
              x("dot.2", 0, 70, pid=4), x("PjRt execute", 0, 500, pid=5)]
    assert device_time.step_ms(events, 1, gpu=True)[0] == pytest.approx(0.1)
    assert device_time.step_ms(events, 1, gpu=False)[0] == pytest.approx(0.07)


def test_host_op_time_counts_nested_and_overlapping_ops_once():
    events = [x("aten::linear", 0, 100, "cpu_op"), x("aten::addmm", 10, 80, "cpu_op"),
              x("aten::softmax", 90, 30, "cpu_op", tid=2), x("aten::bmm", 200, 50, "cpu_op")]
    ms, how = device_time.step_ms(events, 1, gpu=False)
    assert ms == pytest.approx((120 + 50) / 1e3) and "union" in how


def test_a_trace_without_the_work_says_so():
    assert device_time.step_ms([x("aten::mm", 0, 10, "cpu_op")], 1, gpu=True) == (
        None, "the trace holds no GPU kernel")
    assert device_time.step_ms(KINETO, 0, gpu=True)[0] is None


def test_traces_load_from_json_and_gzip(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"traceEvents": KINETO}))
    with gzip.open(tmp_path / "t.json.gz", "wt") as f:
        json.dump(KINETO, f)
    assert device_time.load(tmp_path / "t.json") == KINETO
    assert device_time.load(tmp_path / "t.json.gz") == KINETO


def test_launch_overhead_is_the_wall_median_beyond_the_device_time():
    row = device_time.columns(0.4, "summed GPU kernels", 0.5, "torch.profiler")
    assert row["launch_overhead_ms"] == pytest.approx(0.1)
    assert row["device_time_method"].startswith("torch.profiler") and row["device_time_note"] is None
    none = device_time.columns(None, "the trace holds no GPU kernel", 0.5, "torch.profiler")
    assert none["device_ms"] is None and none["device_time_note"] == "the trace holds no GPU kernel"
