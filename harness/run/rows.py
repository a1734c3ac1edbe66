"""The row a cell starts from: its Case, where and under what it ran, its FLOPs and
byte counts, and every other declared column empty (harness/spec/schema.py). The
worker fills in what it measured; the executors fill in why a cell did not run."""
from __future__ import annotations

from datetime import datetime, timezone

from harness.measure import devices
from harness.spec import Case, costs
from harness.spec.catalog import REGISTRY
from harness.spec.schema import empty_row


def base_row(case: Case, job: dict, version: str) -> dict:
    return {
        **empty_row(),              # every declared column (harness/spec/schema.py)
        **case_columns(case, job.get("gpus", [])),
        "run_id": job.get("run_id", ""),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend_version": version,
        "threads": job.get("threads"),
        "repeat": job.get("repeat"),        # which of `run --repeat K`'s processes
        "settings": job.get("settings", ""),
        "tuned": _tuned(case),
        **{f"mem_{k}": v for k, v in costs.memory(case).items()},
    }


def case_columns(case: Case, gpus: list[dict]) -> dict:
    """What a cell is, where it runs and its FLOPs: the columns a worker's row and
    a pytest-benchmark benchmark's extra_info (harness/pytest_plugin) share."""
    return {**case.to_dict(), "host": devices.host(),
            **devices.describe(case.device, gpus), "flops": costs.flops(case),
            "bytes_moved": costs.bytes_moved(case)}


def _tuned(case: Case) -> bool | None:
    info = REGISTRY.get(case.backend)
    variant = info.variant(case.variant) if info else None
    return variant.tuned if variant else None
