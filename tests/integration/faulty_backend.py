"""A test-only backend, framework-free, whose variants fail on purpose.

Selected by ATTNBENCH_BACKENDS=tests.integration.faulty_backend (see
harness.spec.catalog._register_plugins). Each variant plants one way a cell can end:

  exact    computes harness.spec.reference.outputs in float64: ok and correct
  raises   step raises RuntimeError("planted failure"): error
  memory   step raises MemoryError: oom
  sleeps   step sleeps 60 s: timeout (the suite's timeout_s is far shorter)
  slow     step sleeps 0.2 s, then computes as exact: ok, a cell that takes seconds
           (something to interrupt)
  crashes  step SIGKILLs its own worker: error, and a fresh worker goes on
  wrong    the exact results with the output scaled by 1.01: ok but not correct
  spins    prepare keeps a CPU busy for 0.5 s (untimed work), then computes as exact

This module is imported while harness.spec.catalog registers its plugins, the last
thing that module does: the catalogue's names (BackendInfo, Variant,
static_unsupported) are all defined by then and imported at module level. The
rest (the reference, memory probes) is imported where it is used.
"""
from __future__ import annotations

import os
import signal
import time

import numpy as np

from harness.spec.catalog import BackendInfo, Variant, static_unsupported

# Variants whose every case waits out the check's timeout: one case a mode (the
# unmasked one; the rest unsupported), so the test stays short.
TIMED_OUT = ("sleeps",)
PLANTED = "planted failure"
PLANTED_OOM = "planted allocation failure"
WRONG_SCALE = 1.01
SLEEP_S = 60
SLOW_S = 0.2
SPIN_S = 0.5

_CPU = ("cpu",)
INFO = BackendInfo(
    name="faulty", framework="numpy", module=__name__, settings=__name__,
    variants=(
        Variant("exact", "the float64 reference itself", devices=_CPU),
        Variant("raises", f"step raises RuntimeError({PLANTED!r})", devices=_CPU),
        Variant("memory", "step raises MemoryError", devices=_CPU),
        Variant("sleeps", f"step sleeps {SLEEP_S} s", devices=_CPU),
        Variant("slow", f"step sleeps {SLOW_S} s, then computes as exact", devices=_CPU),
        Variant("crashes", "step SIGKILLs its own process", devices=_CPU),
        Variant("wrong", f"the exact output scaled by {WRONG_SCALE}", devices=_CPU),
        Variant("spins", f"prepare busy for {SPIN_S} s, then as exact", devices=_CPU),
    ),
)


def environment(device: str, threads: int, scratch: str) -> dict[str, str]:
    """The settings hook (INFO.settings is this module): nothing to set."""
    return {}


class Prepared:
    def __init__(self, case, weights: dict, inputs: dict):
        self.case, self.weights, self.inputs = case, weights, inputs

    def _compute(self) -> dict:
        from harness.spec import reference
        return reference.outputs(self.case, self.weights, self.inputs)

    def step(self):
        variant = self.case.variant
        if variant == "raises":
            raise RuntimeError(PLANTED)
        if variant == "memory":
            raise MemoryError(PLANTED_OOM)
        if variant == "sleeps":
            time.sleep(SLEEP_S)
        elif variant == "slow":
            time.sleep(SLOW_S)
        elif variant == "crashes":
            os.kill(os.getpid(), signal.SIGKILL)
        return self._compute()

    def sync(self) -> None:
        pass

    def outputs(self) -> dict[str, np.ndarray]:
        result = dict(self.step())
        if self.case.variant == "wrong":
            result["out"] = result["out"] * WRONG_SCALE
        return result


class FaultyBackend:
    def __init__(self, info: BackendInfo):
        self.info = info

    def version(self) -> str:
        return f"faulty-{np.__version__}"

    def unsupported(self, case) -> str | None:
        if case.variant in TIMED_OUT and (case.causal or case.kv_heads != case.heads):
            return "one case a mode only (full mask, all heads): each waits out its timeout"
        return static_unsupported(case)

    def prepare(self, case, weights: dict, inputs: dict) -> Prepared:
        if case.variant == "spins":
            end = time.perf_counter() + SPIN_S
            while time.perf_counter() < end:
                pass
        return Prepared(case, weights, inputs)

    def forward(self, case, weights: dict, inputs: dict) -> np.ndarray:
        return self.prepare(case.replace(mode="forward"), weights, inputs).outputs()["out"]

    def step_peak(self, case, run_step) -> tuple[int | None, str]:
        from harness.measure.memory import cpu_step_peak
        return cpu_step_peak(run_step)


def make_backend(info: BackendInfo) -> FaultyBackend:
    return FaultyBackend(info)
