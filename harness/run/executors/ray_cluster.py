"""Run worker batches as Ray tasks on a cluster, one GPU each, by GPU type.

`attnbench run SUITE --executor ray [--address ADDR]`. Each (backend, device)
batch becomes one Ray task that asks for what its cells need: a GPU cell
`num_gpus=1` and `accelerator_type` from its GPU type (`gpu:H100`; `cuda` and
`auto` mean every type the cluster has), a CPU cell `num_cpus=threads`. Inside
the task (a fresh process: max_calls=1), the same LocalExecutor as on one machine
runs `python -m harness.run.worker` on the GPU Ray assigned, with its per-cell
timeouts and crash handling, and streams each start and row back (a streaming
generator), so rows reach results.jsonl as cells end.

Beside that, the driver watches each task: past timeout_s (plus a grace) with no
word from a started cell it cancels the task and records the cell as `timeout`;
a task whose process dies (WorkerCrashedError, a lost node) has its cell recorded
`error`, as a local crash is; either way a new task takes the remaining cells.
Before anything is submitted, cells for a GPU type the cluster lacks become
`unsupported` with the reason (`unavailable`, the refusal chain's first step),
rather than waiting forever for resources. A cluster that refuses the driver's
token (Ray token authentication) is named as the cause, with what to set.
"""
from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from harness.measure import devices
from harness.run.executors.lanes import run_lanes
from harness.run.executors.local import STARTUP_TIMEOUT_S, Batch, LocalExecutor, failure_row
from harness.spec import Case
from harness.spec.errors import UserError

TYPE_PREFIX = "accelerator_type:"
GRACE_S = 60               # beyond timeout_s before the driver gives up on a task
# A started task silent this long between cells is hung: past the worker's own
# startup limit, so that the task's own verdict comes first.
BETWEEN_CELLS_S = STARTUP_TIMEOUT_S + GRACE_S
INSTALL_HINT = "pip install 'attnbench[ray]'"


class ExecutorError(UserError):
    """One line for the user: Ray missing, or no cluster at the address."""


# A refused token (Ray >= 2.52): the GCS client's last error, chained to the
# ConnectionError, reads "Unauthenticated: RPC error: InvalidAuthToken: ...".
AUTH_SIGNS = ("invalidauthtoken", "unauthenticated", "auth token", "authenticationerror")
AUTH_HINT = ("set RAY_AUTH_MODE=token and the cluster's token: RAY_AUTH_TOKEN, or a file "
             "named by RAY_AUTH_TOKEN_PATH (default ~/.ray/auth_token; `ray get-auth-token` "
             "on the head node prints it)")


def unreachable(address: str | None, exc: BaseException) -> str:
    """The line for a failed ray.init; a refused token says so, and what to set."""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    line = f"cannot reach a Ray cluster at {address or 'auto'}: {type(exc).__name__}: {first}"
    text, seen = [], exc
    while seen is not None and len(text) < 20:       # the exception chain
        text, seen = text + [repr(seen)], seen.__cause__ or seen.__context__
    if any(sign in "\n".join(text).lower() for sign in AUTH_SIGNS):
        return (f"{line} -- the cluster refused this driver's token (Ray token "
                f"authentication): {AUTH_HINT}")
    return line


def _ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed: "
                            f"{INSTALL_HINT}") from None
    return ray


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, threads: int = 1,
                 stop: threading.Event | None = None):
        ray = _ray()
        if ray.is_initialized() and address:
            raise ExecutorError(f"Ray is already connected in this process; cannot also "
                                f"connect to {address}")
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": _forwarded_env()})
            except Exception as exc:           # no cluster there, refused token...
                raise ExecutorError(unreachable(address, exc)) from None
        self.ray, self.threads = ray, threads
        self.stop = stop or threading.Event()
        resources = ray.cluster_resources()
        self.gpu_types = sorted(k[len(TYPE_PREFIX):] for k in resources
                                if k.startswith(TYPE_PREFIX))
        self.gpus = int(resources.get("GPU", 0))
        # A task asking for more CPUs than any node has would wait forever.
        self.node_cpus = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes()
                              if n.get("Alive")), default=threads)

    # -- planning: devices as the cluster has them -----------------------------------

    def expand(self, device: str) -> list[str]:
        """A suite's device value on this cluster: every GPU type for auto/cuda
        (auto: the CPU where there is none), the type named for gpu:TYPE (spelled
        as the cluster spells it), cpu and cuda:N as they are."""
        if device in ("auto", "cuda"):
            return [f"gpu:{t}" for t in self.gpu_types] or (
                ["cpu"] if device == "auto" else ["cuda"])
        if device.startswith("gpu:"):
            known = self._type(device[4:])
            return [f"gpu:{known}" if known else device]
        return [device]

    def _type(self, wanted: str) -> str | None:
        return next((t for t in self.gpu_types if t.lower() == wanted.lower()
                     or devices.is_model(t, wanted)), None)

    def unavailable(self, device: str) -> str | None:
        """Why the cluster has no such device, or None: the first step of the
        refusal chain (harness.run.plan.refusal) for cells planned onto it."""
        if device == "cpu":
            return None
        if not self.gpus:
            return "the Ray cluster has no GPU"
        if device.startswith("gpu:") and not self._type(device[4:]):
            have = ", ".join(self.gpu_types) or "none named (no accelerator_type resources)"
            return f"the Ray cluster has no {device[4:]} GPU (types: {have})"
        return None

    def options(self, device: str) -> dict:
        """The resources a task for this device asks Ray for."""
        if device == "cpu":
            return {"num_cpus": max(1, min(self.threads, self.node_cpus)), "num_gpus": 0}
        opts = {"num_cpus": 1, "num_gpus": 1}
        if device.startswith("gpu:"):
            opts["accelerator_type"] = self._type(device[4:])
        return opts

    # -- running ---------------------------------------------------------------------

    def run_batches(self, batches: list[Batch], on_start: Callable[[Case], None],
                    on_row: Callable[[dict], None]) -> None:
        """Every GPU batch at once (Ray queues them by resources), each watched by a
        thread of this process; then the CPU batches one by one, as the local
        runner does, so no timed CPU cell shares its cores with another worker.
        Ctrl-C cancels every task and re-raises."""
        gpu = [b for b in batches if b.cases and b.device != "cpu"]
        cpu = [b for b in batches if b.cases and b.device == "cpu"]
        run_lanes(gpu, cpu, lambda batch: self.run_batch(batch, on_start, on_row), self.stop)

    def run_batch(self, batch: Batch, on_start, on_row) -> None:
        pending = list(batch.cases)
        while pending and not self.stop.is_set():
            pending = self._run_task(batch, pending, on_start, on_row)

    def _run_task(self, batch: Batch, cases: list[Case], on_start, on_row) -> list[Case]:
        """One task for these cells; returns those left when it ended early. A
        Ctrl-C in this thread cancels the task before it propagates."""
        options = self.options(batch.device)
        job = {"batch": replace(batch, cases=cases), "options": options}
        env = _forwarded_env()
        task = _remote(self.ray).options(
            **options, **({"runtime_env": {"env_vars": env}} if env else {})).remote(job)
        try:
            return self._follow(task, batch, cases, on_start, on_row)
        except KeyboardInterrupt:
            self.stop.set()
            self.ray.cancel(task, force=True)
            raise

    def _follow(self, task, batch: Batch, cases: list[Case], on_start,
                on_row) -> list[Case]:
        """Rows of a running task as they come, with the driver's deadlines."""
        current, done = None, -1
        deadline = None                         # none until a cell has started
        while True:
            if self.stop.is_set():
                self.ray.cancel(task, force=True)
                return []
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            ready, _ = self.ray.wait([task], timeout=wait)
            if not ready:
                if deadline is not None and time.monotonic() > deadline:
                    self.ray.cancel(task, force=True)
                    failed = current if current is not None else done + 1
                    if failed >= len(cases):        # silent after its last row
                        return []
                    status = "timeout" if current is not None else "error"
                    reason = (f"ran past timeout_s = {batch.measure['timeout_s']:g} s "
                              f"(the Ray task was cancelled)" if current is not None
                              else "the Ray task went silent between cells (cancelled)")
                    on_row(self._fail(cases[failed], batch, status, reason))
                    return cases[failed + 1:]
                continue
            try:
                message = self.ray.get(next(task))
            except StopIteration:                # ended, every cell reported or not
                failed = current if current is not None else done + 1
                if failed >= len(cases):
                    return []
                on_row(self._fail(cases[failed], batch, "error",
                                  "the Ray task ended before this cell finished"))
                return cases[failed + 1:]
            except Exception as exc:            # the task raised, or its process died
                failed = current if current is not None else done + 1
                if failed >= len(cases):
                    return []
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                on_row(self._fail(cases[failed], batch, "error",
                                  f"Ray task died: {type(exc).__name__}: {first}"))
                return cases[failed + 1:]
            if message["event"] == "start":
                current = message["index"]
                deadline = time.monotonic() + batch.measure["timeout_s"] + GRACE_S
                on_start(cases[current])
            else:
                on_row(message["row"])
                done, current = message["index"], None
                deadline = time.monotonic() + BETWEEN_CELLS_S

    def _fail(self, case: Case, batch: Batch, status: str, reason: str) -> dict:
        return {**failure_row(case, batch, status, reason, ""), "executor": self.name,
                "host": None, "device_name": None}


def _forwarded_env() -> dict[str, str]:
    """What the driver's environment says that workers on other nodes need too:
    plugin backends and the project's import path."""
    keep = ("ATTNBENCH_BACKENDS", "PYTHONPATH")
    return {k: os.environ[k] for k in keep if os.environ.get(k)}


_REMOTE = None


def _remote(ray):
    global _REMOTE
    if _REMOTE is None:
        # max_calls=1: a fresh Ray worker process per task, so nothing a framework
        # left in one task's process is there in the next; max_retries=0: a crash
        # is recorded, as locally, not silently rerun.
        _REMOTE = ray.remote(max_calls=1, max_retries=0,
                             num_returns="streaming")(run_task)
    return _REMOTE


def run_task(job: dict):
    """Inside the Ray task, on some node: the batch on the GPU Ray assigned (or the
    CPU), through LocalExecutor, yielding each start and row as it happens. Each
    row says which node, GPU and resources ran it."""
    import ray
    batch: Batch = job["batch"]
    planned = batch.device
    gpu_ids = ray.get_gpu_ids()
    local = f"cuda:{int(float(gpu_ids[0]))}" if gpu_ids else "cpu"
    gpus, _ = devices.discover()                # this node's GPUs, for its rows
    here = {case.replace(device=local): i for i, case in enumerate(batch.cases)}
    context = ray.get_runtime_context()
    node = {"executor": "ray", "ray_node_id": context.get_node_id(),
            "ray_resources": job["options"],                  # what the task asked for
            "ray_assigned": context.get_assigned_resources(),  # what Ray granted it
            "node_device": local}
    messages: queue.Queue = queue.Queue()

    def on_start(case: Case) -> None:
        messages.put({"event": "start", "index": here[case]})

    def on_row(row: dict) -> None:
        i = here[Case.from_dict(row)]
        messages.put({"event": "row", "index": i,
                      "row": {**row, **node, "device": planned}})

    log = batch.log_path
    try:                # the driver's run folder, where this node can write it
        log.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        log = Path(tempfile.gettempdir()) / "attnbench-logs" / log.name
    work = replace(batch, device=local, gpus=gpus, log_path=log,
                   cases=[c.replace(device=local) for c in batch.cases])

    def run() -> None:
        try:
            LocalExecutor().run_batch(work, on_start, on_row)
            messages.put(None)
        except BaseException as exc:       # raised from the generator, to the driver
            messages.put(exc)

    threading.Thread(target=run, daemon=True).start()
    while (message := messages.get()) is not None:
        if isinstance(message, BaseException):
            raise message
        yield message
