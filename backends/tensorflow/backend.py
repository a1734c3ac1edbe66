"""TensorFlow backend: variants eager, function (tf.function) and xla
(tf.function(jit_compile=True)).

Imported only inside a worker process, after settings.environment() is applied.

Layout: the attention core runs on (B, H, N, D); attention.py says why.

Decode mode (mha, block, transformer): each layer's KV caches are tf.Variables
made in prepare (untimed, layers.attach_caches); the timed step takes the new
tokens alone, writes their keys and values into the caches' last slots in place
and attends over all of them (layers.KVCache), in every variant.

What the timed step relies on to be complete when it returns: TF's synchronous
execution (its default, pinned in make_backend), under which an op or a
tf.function call returns only once its outputs exist on the CPU; so sync() does
nothing there (docs/measurement.md, "TensorFlow's sync on the CPU"). On a GPU,
kernels are queued on streams and sync() is tf.test.experimental.sync_devices()
(eager only: it raises inside a tf.function; it is only called between steps).
"""
from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from backends.common import BackendCommon, input_names, swap_heads
from backends.tensorflow import layers
from backends.tensorflow.attention import attention, padded_visible
from backends.tensorflow.settings import INTEROP_THREADS
from backends.tensorflow.steps import DTYPES, Prepared
from harness.measure.memory import cpu_step_peak
from harness.measure.timing import FLUSH_BYTES, cpu_cache_flusher
from harness.spec import Case
from harness.spec.catalog import BackendInfo, static_unsupported
from harness.spec.weights import make_inputs, make_weights

GPU_METHOD = "tf get_memory_info peak"
CPU_METHOD = "tf get_memory_info peak (cpu pool)"
# The smallest cell that runs every op of every workload (the transformer adds
# only a final LayerNorm), run once per (variant, dtype, device) to ask TF whether
# it takes that combination.
PROBE = dict(suite="probe", workload="block", backend="tensorflow", mode="train",
             batch=1, seq_len=5, heads=2, head_dim=4, causal=True)


def tf_device(device: str) -> str:
    """"cpu" -> "/CPU:0", "cuda:N" -> "/GPU:N" (N counts the visible GPUs)."""
    if device.startswith("cuda"):
        return f"/GPU:{device.split(':', 1)[1] if ':' in device else 0}"
    return "/CPU:0"


def pin_precision(dtype: str) -> None:
    """float32 means full float32 and tf32 means TF32, in every framework; TF
    enables TF32 by default on GPUs that have it. Set before tracing, per cell."""
    tf.config.experimental.enable_tensor_float_32_execution(dtype == "tf32")


def _model(case: Case, weights: dict, inputs: dict, dtype: tf.DType):
    """The callable the step runs and its variables by canonical name; in decode
    mode the layers also hold their KV caches. Call it inside the device's scope."""
    if case.workload == "attention":
        padded = padded_visible(case)           # built here once, untimed
        return (lambda q, k, v: attention(q, k, v, case.mask_hides_keys, case.window,
                                          padded)), {}
    model, params = layers.build(case, weights, dtype)
    if case.mode == "decode":
        layers.attach_caches(model, inputs, dtype, share_reads=case.variant != "xla")
    return model, params


def _fed(case: Case) -> list[str]:
    """The inputs the step takes as arguments: in decode the new tokens alone (the
    caches live in the layers' variables), else what a train step differentiates."""
    if case.mode == "decode" and case.workload != "attention":
        return ["x"]
    return input_names(case)


def _build_step(case: Case, weights: dict, inputs: dict):
    """The cell's step function, its arguments and the names of what it
    differentiates; everything created here lives on the case's device."""
    dtype, device = DTYPES[case.dtype], tf_device(case.device)
    train = case.mode == "train"
    bhnd = case.workload == "attention"

    def tensor(a: np.ndarray) -> tf.Tensor:
        a = swap_heads(a) if bhnd else a            # the core's (B, H, N, D)
        # identity: a float32 cast is a no-op that would leave the tensor on the host.
        return tf.identity(tf.cast(tf.constant(a), dtype))

    with tf.device(device):
        model, params = _model(case, weights, inputs, dtype)
        names, variables = [*_fed(case), *params], list(params.values())
        args = [tensor(inputs[n]) for n in _fed(case)]
        if train:
            args.append(tensor(inputs["g"]))

    def forward(*xs):
        with tf.device(device):
            return model(*xs)

    def forward_backward(*xs_and_g):
        *xs, g = xs_and_g
        with tf.device(device):
            with tf.GradientTape() as tape:
                tape.watch(xs)                      # inputs are tensors; variables are watched
                out = model(*xs)
            # Gradients of sum(out * g) with respect to inputs and every weight.
            grads = tape.gradient(out, [*xs, *variables], output_gradients=g)
        return out, grads

    fn = forward_backward if train else forward
    if case.variant in ("function", "xla"):
        # Built once here; traced (and, for xla, compiled) on its first call, which
        # the harness times apart as first_call_ms. A fixed signature of the cell's
        # shapes and dtype: the step never retraces.
        signature = [tf.TensorSpec(a.shape, a.dtype) for a in args]
        fn = tf.function(fn, input_signature=signature, jit_compile=case.variant == "xla",
                         autograph=False)
    return fn, args, names, train, bhnd


class TensorFlowBackend(BackendCommon):
    def version(self) -> str:
        return tf.__version__

    def unsupported(self, case: Case) -> str | None:
        reason = static_unsupported(case)
        if reason is None and case.device.startswith("cuda") \
                and not tf.config.list_physical_devices("GPU"):
            reason = "tensorflow sees no GPU (CPU-only build, or no driver)"
        if reason is None:
            reason = self._refused(case.variant, case.dtype, case.device)
        return reason

    @functools.cache
    def _refused(self, variant: str, dtype: str, device: str) -> str | None:
        """Whether TF runs this variant in this dtype on this device, asked once by
        running a tiny train-mode block (canonical seeded weights). Only TF's own
        refusals (errors raised by its runtime or XLA) count, and only where float32
        runs: anything else is a fault of this backend and must show as one."""
        error = self._probe(variant, dtype, device)
        if error is None or self._probe(variant, "float32", device) is not None:
            return None
        return f"tensorflow {variant} refuses {dtype} on {device}: {error}"[:500]

    @functools.cache
    def _probe(self, variant: str, dtype: str, device: str) -> str | None:
        case = Case(variant=variant, dtype=dtype, device=device, **PROBE)
        try:
            self.prepare(case, make_weights(case), make_inputs(case)).outputs()
        except tf.errors.ResourceExhaustedError:     # out of memory is no refusal
            return None
        except tf.errors.OpError as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            return f"{type(exc).__name__}: {first}"
        except Exception:       # not TF refusing: the cell itself runs and shows it
            return None
        return None

    def prepare(self, case: Case, weights: dict, inputs: dict) -> Prepared:
        pin_precision(case.dtype)
        return Prepared(case, *_build_step(case, weights, inputs))

    def cache_flusher(self, case: Case):
        """Evicts the device's caches before a timed call (timing.measure's flush)."""
        if not case.device.startswith("cuda"):
            return cpu_cache_flusher()
        with tf.device(tf_device(case.device)):
            buffer = tf.Variable(tf.zeros(FLUSH_BYTES // 4, tf.int32))
        zeros = tf.function(lambda: buffer.assign(tf.zeros_like(buffer)))
        return lambda: zeros()

    def profile(self, case: Case, step, sync, steps: int) -> tuple[list[dict], str]:
        """`steps` steps under TF's profiler, as Chrome trace events
        (harness/measure/device_time.py reads them). The profiler writes only an
        XSpace (.xplane.pb); TF's own copy of xprof's converter turns it into
        the trace viewer's Trace proto (the "trace_viewer" tool), read here with
        TF's trace_events_pb2. Both are private modules of TF's wheel, imported
        here so that a TF without them fails this pass alone, saying so."""
        try:
            from tensorflow.python.profiler.internal import _pywrap_profiler_plugin
            from tensorflow.tsl.profiler.protobuf import trace_events_pb2
        except ImportError as exc:
            raise RuntimeError(f"tensorflow {tf.__version__} has no XSpace-to-trace "
                               f"converter ({exc})") from exc
        with tempfile.TemporaryDirectory(prefix="attnbench-tf-trace-") as folder:
            tf.profiler.experimental.start(folder)
            try:
                for _ in range(steps):
                    step()
                    sync()
            finally:
                tf.profiler.experimental.stop()
            written = sorted(Path(folder).glob("plugins/profile/*/*.xplane.pb"))
            if not written:
                raise RuntimeError("tf.profiler wrote no .xplane.pb")
            data, ok = _pywrap_profiler_plugin.xspace_to_tools_data([str(written[-1])],
                                                                    "trace_viewer")
        if not ok:
            raise RuntimeError("tf.profiler's trace_viewer conversion failed: "
                               + data.decode(errors="replace")[:200])
        return _chrome_events(trace_events_pb2.Trace.FromString(data)), \
            f"tf.profiler {tf.__version__}"

    def step_peak(self, case: Case, run_step) -> tuple[int | None, str]:
        """Bytes one step adds at its peak: TF's allocator's own figure wherever it
        keeps one: with oneDNN the CPU allocator keeps a pool that the resident
        high-water mark cannot see (docs/measurement.md, "TensorFlow's CPU memory");
        without oneDNN it keeps no figure and RSS is right."""
        name = tf_device(case.device).lstrip("/")
        if case.device.startswith("cuda"):
            tf.test.experimental.sync_devices()
        try:
            tf.config.experimental.reset_memory_stats(name)
            before = tf.config.experimental.get_memory_info(name)["current"]
        except ValueError:            # this device's allocator keeps no statistics
            return cpu_step_peak(run_step)
        run_step()
        method = GPU_METHOD if case.device.startswith("cuda") else CPU_METHOD
        return tf.config.experimental.get_memory_info(name)["peak"] - before, method


def _chrome_events(trace) -> list[dict]:
    """A trace viewer Trace proto as Chrome trace events, as xprof's JSON writer
    lays it out: a process a device (plane), a thread a resource (line), and
    times in microseconds from the proto's picoseconds."""
    events: list[dict] = []
    for pid, device in trace.devices.items():
        events.append({"ph": "M", "name": "process_name", "pid": pid,
                       "args": {"name": device.name}})
        events.extend({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                       "args": {"name": resource.name}}
                      for tid, resource in device.resources.items())
    events.extend({"ph": "X", "name": e.name, "pid": e.device_id, "tid": e.resource_id,
                   "ts": e.timestamp_ps / 1e6, "dur": e.duration_ps / 1e6,
                   "args": dict(e.args)} for e in trace.trace_events)
    return events


def _set_threads() -> None:
    """The same thread count for every framework, chosen by the runner; TF takes
    it only before its runtime starts (the first op)."""
    threads = os.environ.get("ATTNBENCH_THREADS")
    if not threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(INTEROP_THREADS)
    except RuntimeError as exc:    # TF already ran an op in this process
        print(f"attnbench: tensorflow threads not set ({exc}); running with "
              f"intra={tf.config.threading.get_intra_op_parallelism_threads()} "
              f"inter={tf.config.threading.get_inter_op_parallelism_threads()}",
              file=sys.stderr)


def _not_retracing_warning(record) -> bool:
    """Every cell builds its own tf.function on purpose, traced once; TF counts the
    traces by the code object, the same for every cell, and would warn of
    "retracing" after the fifth cell. Only that message is dropped."""
    return "triggered tf.function retracing" not in record.getMessage()


def make_backend(info: BackendInfo) -> TensorFlowBackend:
    _set_threads()
    if _not_retracing_warning not in tf.get_logger().filters:
        tf.get_logger().addFilter(_not_retracing_warning)
    # What every timed step relies on (see the module's docstring): TF's default.
    tf.config.experimental.set_synchronous_execution(True)
    return TensorFlowBackend(info)
