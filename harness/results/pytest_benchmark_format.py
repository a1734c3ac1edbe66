"""Results both ways with pytest-benchmark: a run folder as a pytest-benchmark
JSON file (`attnbench export RUN --format pytest-benchmark`, read by
`pytest-benchmark compare`), and a pytest-benchmark JSON file as rows
(`harness.results.store.load` takes one wherever it takes a run folder).

A benchmark written by attnbench's own plugin carries its Case and figures in
extra_info and comes back whole. One from anyone else's suite keeps its timing
(median, IQR, min, mean and every round, in milliseconds per call) and its name
as the variant; what it does not say (workload, dtype, shape) is filled with
FOREIGN's placeholders, never guessed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from harness.measure.stats import summarize
from harness.spec import CASE_FIELDS, ROW_SCHEMA, Case
from harness.spec.case import OPTIONAL_FIELDS
from harness.spec.errors import UserError

FORMAT = "pytest-benchmark"
# Case fields of a benchmark that does not carry its own (someone else's code).
FOREIGN = {"workload": "custom", "backend": "pytest-benchmark", "mode": "forward",
           "dtype": "unknown", "device": "cpu", "batch": 0, "seq_len": 0, "heads": 0,
           "head_dim": 0, "causal": False, "layers": 1}
FIGURES = ("device_name", "host", "threads", "backend_version", "flops", "tflops", "gb_s",
           "bytes_moved",
           "pct_peak", "first_call_ms", "peak_mem_bytes", "mem_method", "kernel", "timer",
           "max_abs_err", "err_ratio", "correct", "err_tensor", "check_note", "tuned",
           "nvml_mem_bytes", "driver")


MEMORY_KEYS = ("resident_bytes", "output_bytes", "scores_bytes")   # costs.memory's


class FormatError(UserError):
    """Not a pytest-benchmark file, or nothing in a run to export."""


def is_benchmark_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix == ".json" and Path(path).is_file()


def group_name(case: Case) -> str:
    """pytest-benchmark compares within a group: the same work on the same device."""
    return (f"{case.workload} {case.mode} {case.dtype} B{case.batch} N{case.seq_len} "
            f"H{case.heads} D{case.head_dim}{' causal' if case.causal else ''} {case.device}")


# -- a run folder out ------------------------------------------------------------

def export(rows: list[dict], env: dict, path: str | os.PathLike) -> int:
    """Write the run's measured cells as pytest-benchmark JSON; returns how many."""
    try:
        import pytest_benchmark
        from pytest_benchmark.stats import Stats
    except ImportError:
        raise FormatError("--format pytest-benchmark needs pytest-benchmark "
                          "(pip install pytest-benchmark)") from None
    benchmarks = []
    for row in rows:
        if row.get("status") != "ok" or not row.get("samples_ms"):
            continue
        stats = Stats()
        for sample in row["samples_ms"]:
            stats.update(sample / 1e3)
        case = Case.from_dict(row)
        benchmarks.append({
            "group": group_name(case), "name": case.name,
            "fullname": f"{row.get('suite')}::{case.name}", "params": None, "param": None,
            "extra_info": {**case.to_dict(), **{k: row.get(k) for k in FIGURES},
                           "median_ms": row.get("median_ms"), "run_id": row.get("run_id")},
            "options": {"disable_gc": False, "timer": "perf_counter",
                        "min_rounds": len(row["samples_ms"]), "max_time": None,
                        "min_time": None, "warmup": True},
            "stats": {**stats.as_dict(), "data": stats.data,
                      "iterations": row.get("calls_per_sample") or 1},
        })
    if not benchmarks:
        raise FormatError("no measured cell (status ok, with samples) to export")
    doc = {"machine_info": _machine_info(env), "commit_info": _commit_info(env),
           "benchmarks": benchmarks,
           "datetime": env.get("finished_at") or env.get("started_at") or "",
           "version": pytest_benchmark.__version__}
    try:
        Path(path).write_text(json.dumps(doc, indent=2, default=str))
    except OSError as exc:                      # no such folder, a folder, read-only
        raise FormatError(f"cannot write {os.fsdecode(path)!r} "
                          f"({exc.strerror or exc})") from None
    return len(benchmarks)


def _machine_info(env: dict) -> dict:
    platform = env.get("platform", "")
    return {"node": env.get("host", ""), "processor": env.get("cpu", ""),
            "machine": "", "python_implementation": "CPython",
            "python_version": env.get("python", ""), "release": platform,
            "system": platform.split("-")[0] if platform else "",
            "cpu": {"brand_raw": env.get("cpu", ""), "count": env.get("cpu_threads")},
            "gpus": [g.get("name") for g in env.get("gpus") or []]}


def _commit_info(env: dict) -> dict:
    return {"id": env.get("git_commit") or "", "time": env.get("started_at", ""),
            "dirty": None, "project": "attnbench", "branch": None}


# -- a pytest-benchmark file in --------------------------------------------------

def read(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """(rows, env) of a pytest-benchmark JSON file, in the run folder's columns."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise FormatError(f"{path}: not a pytest-benchmark file (no 'benchmarks' list)")
    machine = doc.get("machine_info") or {}
    if not isinstance(machine, dict):
        machine = {}
    if not isinstance(machine.get("cpu", {}), dict):
        machine = {**machine, "cpu": {"brand_raw": str(machine["cpu"])}}
    run_id = f"{Path(path).stem}"
    try:
        rows = [_row(b, machine, run_id) for b in doc["benchmarks"] if isinstance(b, dict)]
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise FormatError(f"{path}: a benchmark this reader cannot map "
                         f"({type(exc).__name__}: {exc})") from None
    env = {"run_id": run_id, "suite": FORMAT, "host": machine.get("node", ""),
           "cpu": (machine.get("cpu") or {}).get("brand_raw", machine.get("processor", "")),
           "python": machine.get("python_version", ""), "started_at": doc.get("datetime"),
           "git_commit": (doc.get("commit_info") or {}).get("id"),
           "versions": {"pytest-benchmark": doc.get("version")}, "source": str(path)}
    return rows, env


def _row(bench: dict, machine: dict, run_id: str) -> dict:
    extra = bench.get("extra_info") or {}
    stats = bench.get("stats") or {}
    # Fields later than the first contract may be missing from older files.
    ours = all(field in extra for field in CASE_FIELDS if field not in OPTIONAL_FIELDS)
    # Someone else's: the group, or else the test's module, tells same-named tests
    # of different modules apart (suite is part of a cell's key).
    module = str(bench.get("fullname") or "").split("::")[0]
    case = {f: extra.get(f) for f in CASE_FIELDS} if ours else {
        **FOREIGN, "suite": bench.get("group") or module or FORMAT,
        "variant": bench.get("name") or bench.get("fullname") or "?"}
    data = [float(s) * 1e3 for s in stats.get("data") or []]
    ms = (lambda key: float(stats[key]) * 1e3 if stats.get(key) is not None else None)
    # Median and p10/p90 of the rounds as a run's (harness.measure.stats); IQR, min
    # and mean as the file states them (pytest-benchmark's own quartiles).
    summary = summarize(data) if data else {}
    median = summary["median_ms"] if data else ms("median")
    row = {**case, "run_id": run_id, "status": "ok", "reason": "",
           "host": machine.get("node", ""),
           "device_name": (machine.get("cpu") or {}).get("brand_raw", ""),
           **({k: extra.get(k) for k in FIGURES if k in extra} if ours else {}),
           "n_samples": stats.get("rounds"), "median_ms": median, "iqr_ms": ms("iqr"),
           "min_ms": ms("min"), "mean_ms": ms("mean"), "samples_ms": data or None,
           "calls_per_sample": stats.get("iterations"), "schema": ROW_SCHEMA,
           "source": FORMAT}
    if data:
        row["p10_ms"], row["p90_ms"] = summary["p10_ms"], summary["p90_ms"]
    if ours and row.get("flops") and median:           # TFLOP/s of this file's median
        row["tflops"] = row["flops"] / (median * 1e-3) / 1e12
    if ours and row.get("bytes_moved") and median:
        row["gb_s"] = row["bytes_moved"] / (median * 1e-3) / 1e9
    # The analytic sizes follow from the Case (as a worker writes them); none without one.
    from harness.spec import costs
    sizes = costs.memory(Case.from_dict(case)) if ours else dict.fromkeys(MEMORY_KEYS)
    row.update({f"mem_{k}": v for k, v in sizes.items()})
    return row
