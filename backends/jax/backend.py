"""JAX/Flax backend: variants jit, jit-graph (CUDA), dpa and dpa-cudnn (CUDA).

Imported only inside a worker process, after settings.environment() is applied.
What a step is (one jitted pure function; in decode mode with its caches donated)
is said in steps.py; this module puts a cell's weights, inputs and caches on the
device, refuses what a variant cannot run, and probes the step's memory.
"""
from __future__ import annotations

import tempfile
import weakref
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np

from backends.common import BackendCommon, input_names, swap_heads
from backends.jax.attention import BHND, core_for
from backends.jax.layers import Built
from backends.jax.steps import (
    CACHES_ARGUMENT, COMPILER_OPTIONS, DTYPES, PRECISION, Prepared, pure_step,
)
from harness.measure import device_time
from harness.measure.memory import CPU_METHOD, cpu_step_peak
from harness.measure.timing import FLUSH_BYTES, cpu_cache_flusher
from harness.spec import Case, padding
from harness.spec.catalog import BackendInfo, device_kind, static_unsupported

XLA_METHOD = "xla_memory_analysis temp+output"


def jax_device(device: str) -> jax.Device:
    """The jax device of "cpu", "cpu:N" or "cuda:N" (raises RuntimeError if absent)."""
    kind, _, index = device.partition(":")
    return jax.devices("gpu" if kind == "cuda" else kind)[int(index or 0)]


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300]


class JaxBackend(BackendCommon):
    def __init__(self, info: BackendInfo):
        super().__init__(info)
        self._probes: dict[tuple, str | None] = {}
        self._prepared = None          # weakref to the last Prepared (step_peak's fallback)

    def version(self) -> str:
        return f"jax {jax.__version__}, flax {flax.__version__}"

    def unsupported(self, case: Case) -> str | None:
        reason = static_unsupported(case)
        if reason is not None:
            return reason
        try:
            device = jax_device(case.device)
        except Exception as exc:
            # The first failure names the cause ("Unable to initialize backend
            # 'cuda'..."); JAX answers every later call with a bare AssertionError.
            self._no_device = getattr(self, "_no_device", None) or _one_line(exc)
            kind = device_kind(case.device)
            return f"jax sees no {case.device} device ({self._no_device})" if kind == "cuda" \
                else f"jax cannot use {case.device}: {self._no_device}"
        if case.variant == "dpa-cudnn":
            return self._probe_cudnn(case, device)
        if case.dtype != "float32":
            return self._probe_dtype(case, device)
        return None

    def _probe_dtype(self, case: Case, device) -> str | None:
        """Whether the variant's core runs this dtype here, forward and backward:
        a tiny jitted call, once per (device, variant, dtype). On this CPU XLA
        refuses dot_product_attention's float16 logits (its F16_F16_F32 dot
        algorithm), while plain float16 einsums run; a GPU without TF32 units
        refuses the TF32_TF32_F32 algorithm."""
        key = (device.platform, case.variant, case.dtype)
        if key not in self._probes:
            core = core_for(case.variant, PRECISION[case.dtype])
            q = jax.device_put(jnp.ones((1, 4, 2, 8), DTYPES[case.dtype]), device)
            fwd_bwd = pure_step(case.replace(workload="attention", mode="train", causal=True,
                                             q_len=None, window=None, lengths=None),
                                None, core)
            try:
                jax.block_until_ready(jax.jit(fwd_bwd)((), q, q, q, q))
                self._probes[key] = None
            except Exception as exc:
                self._probes[key] = (f"jax {case.variant} cannot run {case.dtype} on "
                                     f"{device.platform}: {_one_line(exc)}")
        return self._probes[key]

    def _probe_cudnn(self, case: Case, device) -> str | None:
        """cuDNN's fused attention takes a subset of shapes, dtypes and masks, checked
        when jax lowers the call (jax/_src/cudnn/fused_attention_stablehlo.py:
        check_layout, float16 and bfloat16 alone; check_is_flash_attention, head_dim
        a multiple of 8 up to 128, 256 from Hopper on, and in train mode even query
        and key lengths, its rule for a bias, which the backward always sees as its
        placeholder is never None). The q_len < seq_len mask goes in as a bias
        (combine_bias_and_mask), the window with it: cuDNN takes a sliding window
        only beside its own causal mask and no bias (cudnn-frontend's SDPA
        checks). A padded batch passes its lengths too (cuDNN's PADDING or
        PADDING_CAUSAL mask type, a window beside it). So lower (without compiling) the cell's own core, and in train
        mode its backward, on abstract arrays of the cell's shapes."""
        key = (device.platform, case.batch, case.seq_len, case.q_len, case.heads,
               case.kv_heads, case.head_dim, case.dtype, case.causal, case.window,
               case.mode == "train", case.padded)
        if key not in self._probes:
            core = core_for(case.variant, PRECISION[case.dtype])
            dtype = DTYPES[case.dtype]
            q = jax.ShapeDtypeStruct((case.batch, case.q_len, case.heads, case.head_dim), dtype)
            kv = jax.ShapeDtypeStruct((case.batch, case.seq_len, case.kv_heads, case.head_dim),
                                      dtype)
            lengths = jax.ShapeDtypeStruct((case.batch,), jnp.int32) if case.padded else None

            def step(q, k, v, lengths):
                def attend(q, k, v):
                    return core(q, k, v, case.causal, case.window, lengths)
                if case.mode != "train":
                    return attend(q, k, v)
                out, vjp = jax.vjp(attend, q, k, v)
                return out, vjp(out)
            try:
                jax.jit(step).lower(q, kv, kv, lengths)
                self._probes[key] = None
            except Exception as exc:
                self._probes[key] = f"cuDNN attention refuses this case: {_one_line(exc)}"
        return self._probes[key]

    def prepare(self, case: Case, weights: dict, inputs: dict) -> Prepared:
        device, dtype = jax_device(case.device), DTYPES[case.dtype]
        core = core_for(case.variant, PRECISION[case.dtype])
        # The attention workload's tensors go to the core's own layout here, before
        # timing ((B, H, N, D) for jit, see attention.py); outputs() turns them back.
        bhnd = case.workload == "attention" and core.layout == BHND

        def put(a: np.ndarray, to_bhnd: bool = False) -> jax.Array:
            # Already rounded to the dtype by harness.spec.weights: the cast is exact.
            return jax.device_put((swap_heads(a) if to_bhnd else a).astype(dtype), device)

        built, params, caches = None, (), None
        if case.workload == "attention":
            args = [put(inputs[n], bhnd) for n in input_names(case)]
            names = input_names(case)
        else:
            built = Built(case, core, dtype)
            params = built.params(weights, put)
            args = [put(inputs["x"])]
            names = [*input_names(case), *built.names]
        if case.mode == "train":
            args.append(put(inputs["g"], bhnd))
        if case.padded:
            # The step's last argument (steps.pure_step), on the device before timing.
            args.append(jax.device_put(padding.key_lengths(case).astype(np.int32), device))
        if built is not None and case.mode == "decode":
            # Each layer's (k, v) as the device holds it between steps, in the
            # core's layout: (B, N, KV, D), or (B, KV, N, D) for jit's BHND.
            to_bhnd = core.layout == BHND
            caches = tuple((put(k, to_bhnd), put(v, to_bhnd))
                           for k, v in zip(inputs["k_cache"], inputs["v_cache"]))
        fn = jax.jit(pure_step(case, built, core),
                     donate_argnums=() if caches is None else (CACHES_ARGUMENT,),
                     compiler_options=COMPILER_OPTIONS.get(case.variant))
        prepared = Prepared(case, fn, params, args, names, bhnd, caches)
        self._prepared = weakref.ref(prepared)
        return prepared

    def cache_flusher(self, case: Case):
        """Evicts the device's caches before a timed call (timing.measure's flush):
        XLA writes a fresh 256 MB buffer on the device (the last one is freed)."""
        if device_kind(case.device) != "cuda":
            return cpu_cache_flusher()
        fill = jax.jit(lambda: jnp.zeros(FLUSH_BYTES // 4, jnp.int32),
                       out_shardings=jax.sharding.SingleDeviceSharding(jax_device(case.device)))
        held = [None]

        def flush() -> None:
            held[0] = None
            held[0] = jax.block_until_ready(fill())
        return flush

    def profile(self, case: Case, step, sync, steps: int) -> tuple[list[dict], str]:
        """`steps` steps under jax.profiler, as the Chrome trace events of the
        perfetto_trace.json.gz it writes (harness/measure/device_time.py reads
        them): on the CPU, XLA's ops on its client threads (each with its hlo_op)
        in the "/host:CPU" process; on a GPU, the kernels on its streams in
        "/device:GPU:N". The Python tracer is off: its events are no ops, and it
        slows the host between them."""
        options = jax.profiler.ProfileOptions()
        options.python_tracer_level = 0
        with tempfile.TemporaryDirectory(prefix="attnbench-jax-trace-") as folder:
            with jax.profiler.trace(folder, create_perfetto_trace=True,
                                    profiler_options=options):
                for _ in range(steps):
                    step()
                    sync()
            written = sorted(Path(folder).glob("plugins/profile/*/perfetto_trace.json.gz"))
            if not written:
                raise RuntimeError("jax.profiler.trace wrote no perfetto_trace.json.gz")
            return device_time.load(written[-1]), f"jax.profiler {jax.__version__}"

    def step_peak(self, case: Case, run_step) -> tuple[int | None, str]:
        """Bytes one step (the whole jitted call: forward, and backward in train
        mode) adds at its peak. CPU: see _cpu_peak. GPU: the allocator's
        peak_bytes_in_use, which JAX never resets (it is the peak since the process
        started): when the step raised it, the new peak minus what was in use
        before the step is the step's own peak; when an earlier cell had set a
        higher one, the step's peak cannot be read from it, and XLA's compiled
        memory analysis stands in, named as such."""
        if device_kind(case.device) != "cuda":
            return self._cpu_peak(run_step)
        device = jax_device(case.device)
        before = device.memory_stats() or {}
        run_step()
        after = device.memory_stats() or {}
        if "peak_bytes_in_use" not in after:
            return None, "unavailable: jax memory_stats() has no peak_bytes_in_use"
        if after["peak_bytes_in_use"] > before.get("peak_bytes_in_use", 0):
            return (after["peak_bytes_in_use"] - before.get("bytes_in_use", 0),
                    "jax peak_bytes_in_use (since process start) - bytes_in_use before")
        size, why = self._planned()
        if size is not None:
            return size, f"{XLA_METHOD} (step under an earlier peak)"
        return None, why or "unavailable: step stayed under an earlier jax peak_bytes_in_use"

    def _cpu_peak(self, run_step) -> tuple[int | None, str]:
        """The resident high-water mark (harness.measure.memory.cpu_step_peak), which
        sees the buffers XLA plans and those its fused kernels (YNNPACK) allocate
        unseen by it; never below XLA's own count of the planned ones, which
        stands in, named, where the mark reads less or cannot be read.
        (memory_stats() is None on the CPU.)"""
        peak, method = cpu_step_peak(run_step)
        planned, _ = self._planned()
        if planned is None or (peak is not None and peak >= planned):
            return peak, method
        if peak is None:
            return planned, f"{XLA_METHOD} ({CPU_METHOD} {method})"
        return planned, f"{XLA_METHOD} (above {CPU_METHOD})"

    def _planned(self) -> tuple[int | None, str | None]:
        """XLA's temporaries plus outputs for the last prepared step, or why not."""
        prepared = self._prepared() if self._prepared else None
        if prepared is None:
            return None, None
        try:
            return prepared.memory_analysis(), None
        except Exception as exc:
            return None, f"unavailable: {_one_line(exc)}"


def make_backend(info: BackendInfo) -> JaxBackend:
    # Threads: XLA's CPU pool follows the CPU affinity the worker set before the
    # import (settings.py); JAX has no thread count to set here.
    return JaxBackend(info)
