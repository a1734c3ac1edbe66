"""A test-only backend that "runs on CUDA" without a GPU, to drive the runner's
GPU path for real (tests/integration/test_gpu_lanes.py): one worker per GPU,
side by side, each told its own GPU through CUDA_VISIBLE_DEVICES.

Its step computes the float64 reference. Where ATTNBENCH_TEST_RENDEZVOUS is set,
the first step in each worker first meets the other GPUs' workers there (a file
per GPU, waiting for ATTNBENCH_TEST_GPUS files): if the runner ran the GPUs one
after another, nobody would come and the cell fails saying so. Variant `flaky`
fails until the file ATTNBENCH_TEST_FIXED names exists (for --resume); variant
`orphans` SIGKILLs its worker's parent, which under Ray is the task's process
(never run it with the local executor, whose parent is the runner).
Registered through ATTNBENCH_BACKENDS=tests.integration.fake_gpu_backend, imported
while harness.spec.catalog registers its plugins (see faulty_backend.py).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from harness.spec.catalog import BackendInfo, Variant, static_unsupported

INFO = BackendInfo(
    name="fakegpu", framework="numpy", module=__name__, settings=__name__,
    variants=(Variant("exact", "the float64 reference, on a pretend GPU",
                      devices=("cuda",)),
              Variant("flaky", "exact once ATTNBENCH_TEST_FIXED exists, an error before",
                      devices=("cuda",)),
              Variant("orphans", "SIGKILLs its parent (a Ray task's process), then itself",
                      devices=("cuda",))),
)


def environment(device: str, threads: int, scratch: str) -> dict[str, str]:
    return {}


def rendezvous() -> None:
    folder = Path(os.environ["ATTNBENCH_TEST_RENDEZVOUS"])
    (folder / os.environ["CUDA_VISIBLE_DEVICES"]).touch()
    deadline = time.monotonic() + float(os.environ.get("ATTNBENCH_TEST_RENDEZVOUS_S", 60))
    while len(list(folder.iterdir())) < int(os.environ["ATTNBENCH_TEST_GPUS"]):
        if time.monotonic() > deadline:
            raise RuntimeError("the other GPUs' workers never came: GPUs ran one by one")
        time.sleep(0.05)


class Prepared:
    met = False

    def __init__(self, case, weights, inputs):
        self.case, self.weights, self.inputs = case, weights, inputs
        self.kernel = f"fake, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}"

    def step(self):
        if not Prepared.met and os.environ.get("ATTNBENCH_TEST_RENDEZVOUS"):
            rendezvous()
            Prepared.met = True
        if self.case.variant == "flaky" and not os.path.exists(
                os.environ.get("ATTNBENCH_TEST_FIXED", "/nonexistent")):
            raise RuntimeError("not fixed yet")
        if self.case.variant == "orphans":
            os.kill(os.getppid(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        from harness.spec import reference
        return reference.outputs(self.case, self.weights, self.inputs)

    def sync(self) -> None:
        pass

    def outputs(self):
        return self.step()


class FakeGpuBackend:
    def __init__(self, info: BackendInfo):
        self.info = info

    def version(self) -> str:
        return "fakegpu-1"

    def unsupported(self, case):
        return static_unsupported(case)

    def prepare(self, case, weights, inputs) -> Prepared:
        assert case.device == "cuda:0", case.device    # the worker's view: its one GPU
        return Prepared(case, weights, inputs)

    def step_peak(self, case, run_step):
        run_step()
        return 0, "fake"


def make_backend(info: BackendInfo) -> FakeGpuBackend:
    return FakeGpuBackend(info)
