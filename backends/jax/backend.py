"""JAX/Flax backend: variants jit, dpa and dpa-cudnn (CUDA).

Imported only inside a worker process, after settings.environment() is applied.

A step is one call of a jax.jit-compiled pure function of (parameters, inputs):
the Flax NNX module is split into its graphdef and a flat tuple of parameters
when the cell is prepared (layers.Built), so the timed call does no NNX
bookkeeping. In train mode that one function returns (out, grads), the
gradients of sum(out * g) with respect to the inputs and every weight (jax.vjp).
The first call traces and compiles; the harness times it apart (first_call_ms).
"""
from __future__ import annotations

import weakref

import flax
import jax
import jax.numpy as jnp
import numpy as np

from backends.base import Outputs
from backends.common import BackendCommon, canonical_outputs, input_names, swap_heads
from backends.jax.attention import BHND, KERNELS, core_for
from backends.jax.layers import Built
from harness.measure.memory import CPU_METHOD, cpu_step_peak
from harness.measure.timing import FLUSH_BYTES, cpu_cache_flusher
from harness.spec import Case
from harness.spec.catalog import BackendInfo, device_kind, static_unsupported

DTYPES = {"float32": jnp.float32, "tf32": jnp.float32,
          "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# float32 means full float32 and tf32 means TF32, in every framework: JAX's own
# default on GPUs is TF32 for float32 matmuls, so both are pinned. tf32 names the
# dot algorithm itself: Precision.HIGH ("tensorfloat32") is TF32 on some GPUs but
# three bfloat16 passes elsewhere. bfloat16 and float16 operands have no precision
# to choose (the setting acts on float32 operands).
PRECISION = {"float32": jax.lax.Precision.HIGHEST,
             "tf32": jax.lax.DotAlgorithmPreset.TF32_TF32_F32,
             "bfloat16": None, "float16": None}
MATMUL_PRECISION = {"float32": "float32", "tf32": "TF32_TF32_F32"}   # for the context
XLA_METHOD = "xla_memory_analysis temp+output"


def to_numpy(a: jax.Array) -> np.ndarray:
    return np.asarray(a).astype(np.float32)


def jax_device(device: str) -> jax.Device:
    """The jax device of "cpu", "cpu:N" or "cuda:N" (raises RuntimeError if absent)."""
    kind, _, index = device.partition(":")
    return jax.devices("gpu" if kind == "cuda" else kind)[int(index or 0)]


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300]


def _pure(case: Case, built: Built | None, core):
    """The function to jit: (params, *inputs[, g]) -> out, or (out, grads) in train
    mode with grads = (gradients of the inputs, gradients of the params)."""
    if built is None:                       # the attention core: no parameters
        def forward(params, q, k, v):
            return core(q, k, v, case.causal)
    else:
        forward = built.apply
    precision = MATMUL_PRECISION.get(case.dtype)

    def pinned(fn):
        if precision is None:
            return fn

        def run(*args):
            # Traced under the context, so every matmul (dot_product_attention's
            # included, which takes no precision argument) and its transpose in
            # the backward pass carries it; the layers also pass it explicitly.
            with jax.default_matmul_precision(precision):
                return fn(*args)
        return run

    if case.mode == "forward":
        return pinned(forward)

    def train(params, *args):
        *inputs, g = args
        out, vjp = jax.vjp(forward, params, *inputs)
        dparams, *dinputs = vjp(g)                 # gradients of sum(out * g)
        return out, (tuple(dinputs), dparams)
    return pinned(train)


class Prepared:
    """One cell ready to run: the jitted step, its parameters and inputs on the device."""

    def __init__(self, case: Case, fn, params: tuple, args: list, names: list[str],
                 bhnd: bool):
        self.case, self.fn, self.params, self.args = case, fn, params, args
        self.names = names            # inputs, then weights, in gradient order
        self.bhnd = bhnd              # attention workload: tensors kept as (B, H, N, D)
        self.last = None
        self.kernel = KERNELS[case.variant]    # what runs the attention core

    def step(self):
        self.last = self.fn(self.params, *self.args)
        return self.last

    def sync(self) -> None:
        if self.last is not None:
            jax.block_until_ready(self.last)

    def outputs(self) -> Outputs:
        result = self.step()
        self.sync()
        out, grads = (result, ((), ())) if self.case.mode == "forward" else result
        dinputs, dparams = grads
        # Weights are (in, out) in Flax already: only the core's tensors change layout.
        return canonical_outputs(self.case, to_numpy(out),
                                 zip(self.names, map(to_numpy, (*dinputs, *dparams))),
                                 bhnd=self.bhnd)

    def memory_analysis(self) -> int | None:
        """XLA's own figure for the compiled step: temporaries plus outputs."""
        compiled = self.fn.lower(self.params, *self.args).compile()
        stats = compiled.memory_analysis()
        if stats is None:
            return None
        return int(stats.temp_size_in_bytes + stats.output_size_in_bytes)


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
            fwd_bwd = _pure(case.replace(workload="attention", mode="train", causal=True),
                            None, core)
            try:
                jax.block_until_ready(jax.jit(fwd_bwd)((), q, q, q, q))
                self._probes[key] = None
            except Exception as exc:
                self._probes[key] = (f"jax {case.variant} cannot run {case.dtype} on "
                                     f"{device.platform}: {_one_line(exc)}")
        return self._probes[key]

    def _probe_cudnn(self, case: Case, device) -> str | None:
        """cuDNN's fused attention takes a subset of shapes and dtypes, checked when
        jax lowers the call: lower (without compiling) the cell's own core, and in
        train mode its backward, on abstract arrays of the cell's shape."""
        key = (device.platform, case.batch, case.seq_len, case.heads, case.head_dim,
               case.dtype, case.causal, case.mode)
        if key not in self._probes:
            core = core_for(case.variant, PRECISION[case.dtype])
            shape = jax.ShapeDtypeStruct((case.batch, case.seq_len, case.heads, case.head_dim),
                                         DTYPES[case.dtype])

            def step(q, k, v):
                if case.mode == "forward":
                    return core(q, k, v, case.causal)
                out, vjp = jax.vjp(lambda *a: core(*a, case.causal), q, k, v)
                return out, vjp(out)
            try:
                jax.jit(step).lower(shape, shape, shape)
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

        if case.workload == "attention":
            built, params = None, ()
            args = [put(inputs[n], bhnd) for n in input_names(case)]
            names = input_names(case)
        else:
            built = Built(case, core, dtype)
            params = built.params(weights, put)
            args = [put(inputs["x"])]
            names = [*input_names(case), *built.names]
        if case.mode == "train":
            args.append(put(inputs["g"], bhnd))
        fn = jax.jit(_pure(case, built, core))
        prepared = Prepared(case, fn, params, args, names, bhnd)
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
