"""The catalogue of backends and their variants, as plain data: what exists, where
each variant runs, and why a case cannot run from this table alone. Naming a backend
(to plan a suite, order a table, print --help) never imports its framework; only
backends.load_backend does, inside a worker.

Backends from outside this package register here through ATTNBENCH_BACKENDS.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from harness.spec.case import Case


@dataclass(frozen=True)
class Variant:
    """A named way of running the workloads, and where it can run."""

    name: str
    description: str
    devices: tuple[str, ...] = ("cpu", "cuda")   # device kinds, "cuda:1" -> "cuda"
    dtypes: tuple[str, ...] = ("float32", "tf32", "bfloat16", "float16")
    tuned: bool = False                          # False: out of the box


@dataclass(frozen=True)
class BackendInfo:
    name: str
    framework: str        # the distribution to report, e.g. "torch"
    module: str           # import string of the implementation
    settings: str         # import string of its framework-free settings module
    variants: tuple[Variant, ...]
    # Installed distributions whose versions decide what it computes (the gate's
    # cache key, harness/run/gating.py); empty: `framework` alone.
    distributions: tuple[str, ...] = ()

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)


_GPU_ONLY = ("cuda",)

REGISTRY: dict[str, BackendInfo] = {
    "torch": BackendInfo(
        name="torch", framework="torch",
        module="backends.torch.backend", settings="backends.torch.settings",
        variants=(
            Variant("eager", "the spec's math in torch ops, op by op"),
            Variant("sdpa", "F.scaled_dot_product_attention for the core, eager"),
            Variant("sdpa-flash", "SDPA pinned to the FlashAttention kernel",
                    devices=_GPU_ONLY, dtypes=("bfloat16", "float16"), tuned=True),
            Variant("sdpa-efficient", "SDPA pinned to the memory-efficient kernel",
                    devices=_GPU_ONLY, tuned=True),
            Variant("sdpa-math", "SDPA pinned to the math kernel",
                    devices=_GPU_ONLY, tuned=True),
            Variant("sdpa-cudnn", "SDPA pinned to the cuDNN kernel",
                    devices=_GPU_ONLY, dtypes=("bfloat16", "float16"), tuned=True),
            Variant("sdpa-graph", "the sdpa step captured once in a CUDA graph, replayed",
                    devices=_GPU_ONLY, tuned=True),
            Variant("compile", "torch.compile of the sdpa path", tuned=True),
            Variant("flex", "flex_attention with a block mask, the step torch.compiled",
                    tuned=True),
        ),
        distributions=("torch", "triton"),
    ),
    "tensorflow": BackendInfo(
        name="tensorflow", framework="tensorflow",
        module="backends.tensorflow.backend", settings="backends.tensorflow.settings",
        variants=(
            Variant("eager", "the spec's math in TF ops, op by op"),
            Variant("function", "the same under tf.function (graph)", tuned=True),
            Variant("xla", "the same under tf.function(jit_compile=True)", tuned=True),
        ),
        distributions=("tensorflow", "tensorflow-cpu", "keras", "tf-keras"),
    ),
    "jax": BackendInfo(
        name="jax", framework="jax",
        module="backends.jax.backend", settings="backends.jax.settings",
        variants=(
            Variant("jit", "the spec's math as Flax NNX modules under jax.jit"),
            Variant("jit-graph", "jit with every region XLA can capture in a command "
                    "buffer (a CUDA graph), not only runs of 5+ kernels",
                    devices=_GPU_ONLY, tuned=True),
            Variant("dpa", "jax.nn.dot_product_attention (implementation xla), jitted"),
            Variant("dpa-cudnn", "jax.nn.dot_product_attention (implementation cudnn)",
                    devices=_GPU_ONLY, dtypes=("bfloat16", "float16"), tuned=True),
        ),
        distributions=("jax", "jaxlib", "flax", "jax-cuda12-plugin", "jax-cuda12-pjrt",
                       "jax-cuda13-plugin", "jax-cuda13-pjrt"),
    ),
}

# One line per plugin that failed to load; the command line reports them.
PLUGIN_ERRORS: list[str] = []


def _register_plugins() -> None:
    """Backends from outside this package: ATTNBENCH_BACKENDS="pkg.mod,other.mod",
    each module holding INFO (a BackendInfo) and make_backend(info). Read at import
    in the runner and in every worker alike, since workers inherit the variable."""
    for module in filter(None, os.environ.get("ATTNBENCH_BACKENDS", "").split(",")):
        try:
            info = importlib.import_module(module.strip()).INFO
        except Exception as exc:      # reported as one line, not a traceback
            PLUGIN_ERRORS.append(f"ATTNBENCH_BACKENDS: cannot load {module.strip()!r}: "
                                 f"{type(exc).__name__}: {exc}")
            continue
        REGISTRY[info.name] = info



def device_kind(device: str) -> str:
    return device.split(":", 1)[0]


def static_unsupported(case: Case) -> str | None:
    """Why a case cannot run, from the registry alone (no framework needed)."""
    info = REGISTRY.get(case.backend)
    if info is None:
        return f"unknown backend {case.backend!r}"
    variant = info.variant(case.variant)
    if variant is None:
        return f"{case.backend} has no variant {case.variant!r}"
    kind = device_kind(case.device)
    if kind not in variant.devices:
        return f"{case.backend} {case.variant} runs on {'/'.join(variant.devices)} only"
    if case.dtype not in variant.dtypes:
        return f"{case.backend} {case.variant} does not run {case.dtype}"
    if case.dtype == "tf32" and kind != "cuda":
        return "tf32 is a GPU matmul mode; this device has no TF32 units"
    return None


# Last, so that a plugin module may import this one's names while it registers.
_register_plugins()
BACKENDS = tuple(REGISTRY)
