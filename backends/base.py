"""The Backend protocol and load_backend; the catalogue of backends (names, variants,
where each runs) is plain data in harness.spec.catalog, re-exported here.

A framework is imported only by `load_backend`, inside the worker process that runs
it, after the worker has set that framework's environment (see each backend's
settings.py).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from harness.spec.case import Case

if TYPE_CHECKING:
    from harness.spec.catalog import BackendInfo

# The catalogue's names, read from it when asked for: a plugin backend may import
# them from here while the catalogue is still registering it.
_CATALOG_NAMES = ("BACKENDS", "PLUGIN_ERRORS", "REGISTRY", "BackendInfo", "Variant",
                  "device_kind", "static_unsupported")


def __getattr__(name: str):
    if name in _CATALOG_NAMES:
        from harness.spec import catalog
        return getattr(catalog, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Outputs = dict[str, np.ndarray]   # "out" and, in train mode, "grad/<name>"


class Prepared(Protocol):
    """A case made ready to run: weights and inputs already on the device."""

    def step(self) -> object:
        """One timed step: forward, or forward and backward. Returns its result."""

    def sync(self) -> None:
        """Block until all work issued so far has finished."""

    def outputs(self) -> Outputs:
        """Run one step and return its results as float32/float64 NumPy arrays."""


class Backend(Protocol):
    info: BackendInfo

    def version(self) -> str: ...

    def unsupported(self, case: Case) -> str | None:
        """Why this case cannot run here (dtype refused, no GPU...), else None."""

    def prepare(self, case: Case, weights: dict, inputs: dict) -> Prepared: ...

    def forward(self, case: Case, weights: dict, inputs: dict) -> np.ndarray: ...

    def step_peak(self, case: Case, run_step: Callable[[], None]) -> tuple[int | None, str]:
        """Bytes one call of run_step adds at its peak, and how that was measured
        (harness.measure.memory.cpu_step_peak on the CPU; the allocator's peak on GPUs).
        A probe that runs the step once more first, to empty an allocator, runs
        `run_step.first` for it where run_step has one: the step taking the outputs."""


def load_backend(name: str) -> Backend:
    """Import a backend's implementation (and so its framework) and build it."""
    from harness.spec.catalog import REGISTRY
    info = REGISTRY[name]
    module = importlib.import_module(info.module)
    return module.make_backend(info)
