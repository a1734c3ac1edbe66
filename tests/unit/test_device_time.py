"""Device time from profiler traces (harness/measure/device_time.py), on made-up traces
in the two shapes the frameworks write: Kineto's (torch) categories and XLA's
(JAX) process names; on excerpts of real CPU traces of JAX, TensorFlow and
torch.compile (one attention step each, recorded with the backends' profile());
gzip as JAX writes it; and the row's columns."""
from __future__ import annotations

import gzip
import json

import pytest

from harness.measure import device_time


def x(name, ts, dur, cat=None, pid=1, tid=1, **args) -> dict:
    event = {"ph": "X", "name": name, "ts": ts, "dur": dur, "pid": pid, "tid": tid,
             **({"args": args} if args else {})}
    return {**event, "cat": cat} if cat else event


def process(pid, name) -> dict:
    return {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}}


def thread(pid, tid, name) -> dict:
    return {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}


KINETO = [x("aten::matmul", 0, 400, "cpu_op"), x("aten::mm", 10, 380, "cpu_op"),
          x("cudaLaunchKernel", 20, 5, "cuda_runtime"),
          x("sm90_xmma_gemm", 100, 250, "kernel", pid=0, tid=7),
          x("flash_fwd_kernel", 360, 150, "kernel", pid=0, tid=7),
          x("Memcpy DtoD", 520, 30, "gpu_memcpy", pid=0, tid=8)]


def test_a_trace_with_two_kernels_sums_them_and_the_copy_per_step():
    ms, how = device_time.step_ms(KINETO, steps=2, gpu=True)
    assert ms == pytest.approx((250 + 150 + 30) / 2 / 1e3) and "2 profiled steps" in how


def test_xla_names_its_gpu_by_process_and_its_cpu_ops_by_their_hlo_op():
    events = [process(3, "/device:GPU:0"), process(4, "/host:CPU"),
              x("fusion.1", 0, 40, pid=3), x("custom-call", 50, 60, pid=3),
              x("dot.2", 0, 70, pid=4, hlo_op="dot.2"), x("PjitFunction(f)", 0, 90, pid=4),
              x("PjRt execute", 0, 500, pid=5)]
    assert device_time.step_ms(events, 1, gpu=True)[0] == pytest.approx(0.1)
    assert device_time.step_ms(events, 1, gpu=False)[0] == pytest.approx(0.07)


# One step of `jax jit` attention forward (B1 N64 H2 D16, float32) on the CPU,
# jax 0.10.2, Python tracer off (backends/jax/backend.py): XLA's ops on a client
# thread with their hlo_op, each followed by its "end:" marker; the dispatch on the
# Python thread. The ops alone count: 45.7 + 13.768 us.
JAX_CPU = [
    process(701, "/host:CPU"),
    thread(701, 2411551408, "tf_XLAPjRtCpuClient/-5027202622772389200"),
    thread(701, 2657182722, "python"),
    x("ynn_fusion.3", 120.101, 45.7, pid=701, tid=2411551408, device_ordinal="0",
      hlo_module="jit_run", hlo_op="ynn_fusion.3", run_id="1306262111"),
    x("end: ynn_fusion.3", 165.296, 0.396, pid=701, tid=2411551408),
    x("broadcast_select_fusion", 166.508, 13.768, pid=701, tid=2411551408,
      device_ordinal="0", hlo_module="jit_run", hlo_op="broadcast_select_fusion",
      run_id="1306262111"),
    x("end: broadcast_select_fusion", 179.964, 0.221, pid=701, tid=2411551408),
    x("ThunkExecutor::Execute (wait for completion)", 206.104, 0.034, pid=701,
      tid=2411551408, device_ordinal="0", run_id="1306262111"),
    x("PjitFunction(run)", 16.164, 59.004, pid=701, tid=2657182722),
    x("CommonPjRtLoadedExecutable::ExecuteHelperOnSingleDevice", 51.127, 17.424,
      pid=701, tid=2657182722),
    x("CommonPjRtBuffer::Await", 91.565, 0.578, pid=701, tid=2657182722)]
# `tensorflow function`, the same step, TF 2.21 (its trace_viewer tool's Trace proto,
# as backends/tensorflow/backend.py lays it out): the op kernels on a compute
# thread (is_eager "0"), inside the executor's Process; the function call's own
# EagerKernelExecute on the Python thread spans them and the executor's overhead.
TF_FUNCTION = [
    process(701, "/host:CPU"), thread(701, 3158099278, "tf_Compute/-6619118124140804786"),
    thread(701, 4209297707, "python"),
    x("ExecutorState::Process", 4619.092, 413.359, pid=701, tid=3158099278, iter_num="0",
      group_id="0"),
    x("_MklBatchMatMulV2", 4621.179, 195.978, pid=701, tid=3158099278, is_eager="0",
      long_name="MatMul:_MklBatchMatMulV2", group_id="0"),
    x("Mul", 4818.409, 3.973, pid=701, tid=3158099278, is_eager="0",
      long_name="mul:Mul", group_id="0"),
    x("EagerExecute", 468.844, 4734.347, pid=701, tid=4209297707,
      eager_op="__inference_forward_36", is_func="1"),
    x("EagerKernelExecute", 504.255, 4695.174, pid=701, tid=4209297707)]
# `tensorflow eager`, the same step: TF runs each eager op as a one-op function and
# traces no kernel in it, so each op's EagerKernelExecute (the KernelAndDeviceFunc
# run nested in it counted once) is the op's time: 252.1 + 20.444 us.
TF_EAGER = [
    process(701, "/host:CPU"), thread(701, 1718601421, "python"),
    x("TFE_Py_FastPathExecute_C", 97.097, 361.026, pid=701, tid=1718601421),
    x("EagerExecute", 132.172, 322.268, pid=701, tid=1718601421,
      eager_op="BatchMatMulV2", is_func="0"),
    x("EagerKernelExecute", 198.772, 252.1, pid=701, tid=1718601421),
    x("KernelAndDeviceFunc::Run", 200.806, 248.397, pid=701, tid=1718601421),
    x("EagerKernelExecute", 555.887, 20.444, pid=701, tid=1718601421),
    x("convert_to_tensor", 618.72, 35.029, pid=701, tid=1718601421)]

# `torch compile`, the same step, torch 2.13 (Kineto's export_chrome_trace, some
# nested aten ops left out): Dynamo's guards and frame are cpu_op events too, around
# the compiled graph's call, which holds the ops (and inductor's kernels, untraced):
# the graph call alone counts, 87.694 us, not the 16.967 + 137.7 us of the scopes.
GRAPH = "## Call CompiledFxGraph flbggsl2avoggnn4rhlnck5j2funcsnjl22onrl5aqyudngbw7lf ##"
TORCH_COMPILE = [
    process(5133, "python"), thread(5133, 5133, "thread 5133 (python)"),
    x("TorchDynamo Cache Lookup", 0.0, 16.967, "cpu_op", pid=5133, tid=5133),
    x("Torch-Compiled Region: 0/0", 18.438, 137.7, "cpu_op", pid=5133, tid=5133),
    x("Pregraph bytecode", 31.678, 3.969, "cpu_op", pid=5133, tid=5133),
    x("AOTDispatcher Runtime Wrapper Prologue", 48.18, 3.755, "cpu_op", pid=5133, tid=5133),
    x(GRAPH, 60.96, 87.694, "cpu_op", pid=5133, tid=5133),
    x("aten::_scaled_dot_product_flash_attention_for_cpu", 78.704, 64.817, "cpu_op",
      pid=5133, tid=5133),
    x("aten::empty_like", 83.711, 6.45, "cpu_op", pid=5133, tid=5133),
    x("aten::transpose", 91.359, 4.715, "cpu_op", pid=5133, tid=5133),
    x("aten::transpose", 139.997, 0.749, "cpu_op", pid=5133, tid=5133),
    x("PyTorch Profiler (0)", -258.216, 646.949, "Trace", pid="PyTorch Profiler", tid=0)]


@pytest.mark.parametrize("events, us", [(JAX_CPU, 45.7 + 13.768),
                                        (TF_FUNCTION, 195.978 + 3.973),
                                        (TF_EAGER, 252.1 + 20.444),
                                        (TORCH_COMPILE, 87.694)],
                         ids=["jax-jit", "tensorflow-function", "tensorflow-eager",
                              "torch-compile"])
def test_recorded_cpu_traces_count_the_ops_alone(events, us):
    ms, how = device_time.step_ms(events, 1, gpu=False)
    assert ms == pytest.approx(us / 1e3) and "union" in how
    assert ("EagerKernelExecute" in how) == (events is TF_EAGER)


def test_a_tf_gpu_trace_counts_its_streams_not_the_derived_lines():
    """Made up (no GPU here), with the names xprof gives (xplane_schema.cc, CUPTI's
    collector): the converter TF's trace goes through adds derived lines to the GPU's
    process that repeat its kernels' time."""
    events = [process(1, "/device:GPU:0"), thread(1, 14, "Stream #14(Kernel)"),
              thread(1, 15, "Stream #15(MemcpyH2D)"), thread(1, 100, "XLA Ops"),
              thread(1, 101, "Framework Ops"), thread(1, 102, "Steps"),
              thread(1, 103, "CUPTI overhead"),
              x("sm90_xmma_gemm", 10, 250, pid=1, tid=14),
              x("MemcpyH2D", 0, 8, pid=1, tid=15),
              x("dot.1", 10, 250, pid=1, tid=100), x("MatMul", 10, 250, pid=1, tid=101),
              x("0", 0, 300, pid=1, tid=102), x("overhead", 0, 5, pid=1, tid=103)]
    assert device_time.step_ms(events, 1, gpu=True)[0] == pytest.approx(0.258)


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
