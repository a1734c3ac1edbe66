"""Planning a sweep: the suite's cells on concrete devices, which of them cannot run
where they are headed and why (the one refusal chain), and their grouping into
worker batches and lanes. Nothing here runs a cell or imports a framework."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from harness.measure import devices
from harness.run.suite import Suite
from harness.spec import Case, costs
from harness.spec.catalog import static_unsupported

if TYPE_CHECKING:                  # annotations only: planning runs no batch
    from harness.run.executors.local import Batch

Refusal = tuple[str, str]          # (status, reason): the row of a cell that cannot run


class Cluster(Protocol):
    """An executor that places cells on other machines (the Ray executor): the
    devices it has, for planning and refusing cells, and the running of batches."""
    gpu_types: list[str]           # as the cluster spells them (gpu:TYPE)
    gpus: int                      # GPUs in the whole cluster

    def unavailable(self, device: str) -> str | None: ...

    def expand(self, device: str) -> list[str]: ...

    def run_batches(self, batches: list[Batch], on_start: Callable[[Case], None],
                    on_row: Callable[[dict], None]) -> None: ...


def refusal(case: Case, gpus: list[dict], nvml_error: str | None,
            cluster: Cluster | None = None) -> Refusal | None:
    """Why a cell cannot run, known before any worker starts, or None. The chain,
    first answer wins:
      1. where: its device is not there: on this machine by NVML's answer
         (devices.unavailable), on a cluster by the cluster's -> unsupported
      2. what: the backend catalogue has no such variant, device kind or dtype
         (catalog.static_unsupported) -> unsupported
      3. size: on this machine, its data alone exceed the device's free memory
         (cannot_fit) -> oom; skipped on a cluster, whose nodes this machine
         cannot see
    The last word, Backend.unsupported, needs the framework, so the worker asks it
    after this chain, as the pytest plugin does once it has loaded the backend."""
    where = (cluster.unavailable(case.device) if cluster is not None
             else devices.unavailable(case.device, gpus, nvml_error))
    if where:
        return "unsupported", where
    # A gpu:TYPE device left by a cluster's planning is a CUDA GPU of that type.
    kind = case.replace(device="cuda") if case.device.startswith("gpu:") else case
    what = static_unsupported(kind)
    if what:
        return "unsupported", what
    size = cannot_fit(case, gpus) if cluster is None else None
    return ("oom", size) if size else None


def cannot_fit(case: Case, gpus: list[dict]) -> str | None:
    """Why a cell cannot fit, judged before any worker starts: its weights, inputs
    and outputs alone (a lower bound, whatever the kernel) above the device's free
    memory. Cells that merely might not fit run, and fail as `oom` if they do."""
    free = devices.free_bytes(case.device, gpus)
    mem = costs.memory(case)
    need = mem["resident_bytes"] + mem["output_bytes"]
    if free is None or need <= free:
        return None
    return (f"refused before running: weights, inputs and outputs alone need "
            f"{need / 2**30:.3g} GiB, {case.device} has {free / 2**30:.3g} GiB free")


@dataclass
class Target:
    """Where a run's cells go: this machine (its GPUs as NVML lists them), or a
    cluster, which expands devices and refuses them by its own resources."""
    gpus: list[dict]
    nvml_error: str | None = None
    cluster: Cluster | None = None

    def refusal(self, case: Case) -> Refusal | None:
        return refusal(case, self.gpus, self.nvml_error, self.cluster)

    def planned_cases(self, suite: Suite, backends: list[str] | None = None,
                      only: list[str] | None = None) -> list[Case]:
        return planned_cases(suite, backends, self.gpus, only,
                             expand=self.cluster.expand if self.cluster else None)

    def gated_cells(self, cases: list[Case]) -> list[Case]:
        """The cells whose configurations the gate checks first (`run` and
        --dry-run alike): those that can run; on a cluster, the CPU cells' alone,
        since the gate runs on this machine."""
        return [c for c in cases if not self.refusal(c)
                and (not self.cluster or c.device == "cpu")]


def target_for(executor: str = "local", address: str | None = None,
               threads: int = 1) -> Target:
    """This machine (NVML asked now), or the Ray cluster at `address`."""
    if executor == "ray":
        from harness.run.executors.ray_cluster import RayExecutor
        return Target([], None, RayExecutor(address, threads))
    return Target(*devices.discover())


def planned_cases(suite: Suite, backends: list[str] | None = None,
                  gpus: list[dict] | None = None, only: list[str] | None = None,
                  expand: Callable[[str], list[str]] | None = None) -> list[Case]:
    """The suite's cases on concrete devices ("auto" -> every GPU, else the CPU;
    "gpu:H100" -> every H100), keeping those on a device `only` names (as
    --device does: cpu, cuda, cuda:N, gpu:TYPE). `expand` replaces this
    machine's expansion (a Ray cluster's GPU types)."""
    gpus = devices.gpus() if gpus is None else gpus
    expand = expand or (lambda device: devices.expand(device, gpus))
    planned, seen = [], set()
    for case in suite.cases:
        if backends and case.backend not in backends:
            continue
        for device in expand(case.device):
            if only and not any(device in expand(wanted) for wanted in only):
                continue
            concrete = case.replace(device=device)
            if concrete not in seen:
                seen.add(concrete)
                planned.append(concrete)
    return planned


def batches(cases: list[Case]) -> dict[tuple[str, str], list[Case]]:
    """One batch per (backend, device); inside it, cells that share a reference
    (same shape, mode and dtype) are adjacent so the worker computes it once."""
    grouped: dict[tuple[str, str], list[Case]] = defaultdict(list)
    for case in cases:
        grouped[(case.backend, case.device)].append(case)
    order = {c: i for i, c in enumerate(cases)}
    for group in grouped.values():
        first = {}
        for c in group:
            first.setdefault((c.shape_key, c.mode, c.dtype), order[c])
        group.sort(key=lambda c: (first[(c.shape_key, c.mode, c.dtype)], order[c]))
    return dict(grouped)


Lane = list[tuple[str, str]]      # (backend, device) batches, one after another


def lanes(cases: list[Case]) -> tuple[list[Lane], list[Lane]]:
    """The (backend, device) batches as (GPU lanes, CPU lanes), for
    harness.run.executors.lanes.run_lanes: one lane per GPU, which may run side by
    side (its batches one after another, so no two workers share a GPU), and the
    CPU's batches in a lane of their own, run once the GPU lanes are done (a timed
    CPU cell shares its cores with nothing)."""
    by_device: dict[str, Lane] = defaultdict(list)
    for backend, device in batches(cases):
        by_device[device].append((backend, device))
    gpu = [keys for device, keys in by_device.items() if device != "cpu"]
    return gpu, ([by_device["cpu"]] if "cpu" in by_device else [])


def plan_summary(cases: list[Case], target: Target) -> list[dict]:
    """Per (backend, device): its cells, how many can run where they are headed,
    and the commonest reasons the rest cannot (what --dry-run prints)."""
    rows = []
    for (backend, device), group in sorted(batches(cases).items()):
        reasons = [why[1] for c in group if (why := target.refusal(c))]
        blocked = Counter(reasons)
        rows.append({"backend": backend, "device": device,
                     "device_name": devices.describe(device, target.gpus)["device_name"],
                     "cells": len(group), "to_run": len(group) - len(reasons),
                     "why_not": "; ".join(f"{n} x {r}" for r, n in blocked.most_common(2))
                     + ("; ..." if len(blocked) > 2 else "")})
    return rows
