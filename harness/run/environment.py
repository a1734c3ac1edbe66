"""A worker's environment, set before its framework is imported: the variables
for one backend on one device, the CPUs it may use, and the record of both."""
from __future__ import annotations

import os

from harness.measure import devices
from harness.spec.catalog import REGISTRY

# What ties a worker to its one device; a process running cells on several devices
# (the pytest plugin) must leave these unset.
DEVICE_PINNING = ("CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS")


def environment_for(backend: str, device: str, threads: int, scratch: str) -> dict[str, str]:
    """The variables a worker for (backend, device) needs before its import;
    `scratch` is a folder of the worker's own (compile caches), removed after it."""
    settings = __import__(REGISTRY[backend].settings, fromlist=["environment"])
    env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "ATTNBENCH_THREADS": str(threads),
           # NumPy's OpenBLAS threads (the references, the checks) otherwise spin after
           # each call and took a core from the next timed cell: 4-8 ms for a 0.06 ms
           # step (docs/measurement.md, "Threads the harness leaves behind").
           "OPENBLAS_THREAD_TIMEOUT": "4"}
    if device.startswith("cuda:"):
        # One GPU per worker; inside it that GPU is cuda:0.
        env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    elif device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""          # a CPU cell never touches a GPU
    env.update(settings.environment(device, threads, scratch))
    return env


def in_process_environment(backend: str, device: str, scratch: str) -> dict[str, str]:
    """The backend's environment (threads, compile caches, memory growth) for its
    framework imported in this process, as the pytest plugin does: environment_for
    without the device pinning, since one pytest process may run cells on several
    devices, and without what this process's environment already sets."""
    env = environment_for(backend, device, devices.cpu_threads(), scratch)
    return {k: v for k, v in env.items()
            if k not in DEVICE_PINNING and k not in os.environ}


def limit_cpus(threads: int | None) -> None:
    """Run on `threads` CPUs, before any framework is imported: XLA sizes its CPU
    pool from the affinity mask, torch and TF are told the count as well, so every
    framework gets the same cores."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if threads and threads < len(cpus):
            os.sched_setaffinity(0, cpus[:threads])
    except (AttributeError, OSError):     # not Linux: the thread counts still hold
        pass


def local_device(device: str) -> str:
    return "cuda:0" if device.startswith("cuda") else device


def recorded_settings(job: dict) -> str:
    """The framework settings this worker runs under, as `KEY=value ...`: what the
    runner set before the import (threads, preallocation, memory growth...)."""
    keys = environment_for(job["backend"], job["device"], job.get("threads") or 1, "")
    return " ".join(f"{k}={os.environ.get(k, '')}" for k in sorted(keys)
                    if not k.endswith("_DIR"))
