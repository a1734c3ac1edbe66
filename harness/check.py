"""`attnbench check`: does every backend compute the spec?

Every backend, variant, workload, dtype, mode and causal setting, on small and odd
shapes, against the float64 reference (forward output, and in train mode the
gradient of every input and weight), judged by the same verdict as a benchmark
row (harness.accuracy). The cells run in the same worker processes as a
benchmark (one per backend, crash and timeout isolated), with timing off.

The result is a matrix: one row per backend and variant, one column per dtype and
mode; a cell passes when every (workload, causal, shape) under it does, and shows
the worst error ratio. check.csv holds every case, check.md the matrix and the
failures. Exit status 1 on any failure.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from backends.base import REGISTRY
from harness import devices, store
from harness.executors import Batch, LocalExecutor
from harness.spec import DTYPES, MODES, WORKLOADS, Case

# Small and odd on purpose: seq_len not a power of two, head_dim not a multiple of
# 16, d_model 48 and 24, so no kernel is checked only on its fast path.
SHAPES = (
    dict(batch=2, seq_len=19, heads=2, head_dim=24, layers=2),
    dict(batch=1, seq_len=33, heads=3, head_dim=8, layers=2),
)
CAUSAL = (False, True)
TIMEOUT_S = 600          # torch.compile of a train step can take a minute on 2 cores
FAILED = ("error", "oom", "timeout")


def grid(backends=None, dtypes=None, workloads=None, device: str = "cpu") -> list[Case]:
    cases = []
    for info in REGISTRY.values():
        if backends and info.name not in backends:
            continue
        for variant, workload, mode, dtype, causal, shape in itertools.product(
                info.variant_names, workloads or WORKLOADS, MODES, dtypes or DTYPES,
                CAUSAL, SHAPES):
            cases.append(Case("check", workload, info.name, variant, mode, dtype, device,
                              causal=causal, **shape))
    return cases


def run_check(cases: list[Case], folder: Path, threads: int, console: Console,
              timeout_s: float = TIMEOUT_S) -> pd.DataFrame:
    """Every case through a check-only worker; rows appended to folder/results.jsonl."""
    from harness import runner                      # its batching keeps references shared
    gpus = devices.gpus()
    executor = LocalExecutor()
    with store.RunWriter(folder) as writer:
        done = 0

        def on_row(row: dict) -> None:
            nonlocal done
            writer.append(row)
            done += 1
            if row["status"] in FAILED or row.get("correct") is False:
                console.print(f"[red]FAIL[/] {Case.from_dict(row).name}: "
                              f"{row.get('reason') or _ratio_text(row)}")

        for (backend, device), group in runner.batches(cases).items():
            console.print(f"{backend} on {device}: {len(group)} cases")
            batch = Batch(backend, device, group, {"timeout_s": timeout_s}, threads, "check",
                          gpus, folder / "logs" / f"{backend}-{device.replace(':', '')}.log",
                          check_only=True)
            executor.run_batch(batch, lambda case: None, on_row)
    return store.load(folder)


def _ratio_text(row) -> str:
    return f"{row.get('err_tensor')}: err_ratio {row.get('err_ratio'):.3g}"


def verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case: pass, fail or unsupported."""
    failed = frame["status"].isin(FAILED) | (frame["correct"] == False)  # noqa: E712
    verdict = pd.Series("pass", index=frame.index)
    verdict[frame["status"] == "unsupported"] = "unsupported"
    verdict[failed] = "FAIL"
    return frame.assign(verdict=verdict)


def matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows backend/variant, columns dtype/mode: 'pass 0.71', 'FAIL 3.2' or '-'."""
    frame = verdicts(frame)

    def cell(group: pd.DataFrame) -> str:
        ran = group[group["verdict"] != "unsupported"]
        if ran.empty:
            return "-"
        worst = pd.to_numeric(ran["err_ratio"], errors="coerce").max()
        word = "FAIL" if (ran["verdict"] == "FAIL").any() else "pass"
        return word if pd.isna(worst) else f"{word} {worst:.2f}"

    cells = frame.groupby(["backend", "variant", "dtype", "mode"], sort=False).apply(
        cell, include_groups=False)
    table = cells.unstack(["dtype", "mode"]).fillna("-")
    order = [(d, m) for d in DTYPES for m in MODES if (d, m) in table.columns]
    return table[order]


def write(frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    frame = verdicts(frame)
    store.write_csv(frame, folder / "check.csv")
    table = matrix(frame)
    header = ["backend", "variant", *(f"{d} {m}" for d, m in table.columns)]
    lines = ["# attnbench check", "",
             "Worst error ratio against float64 per backend and variant (pass: at most 2x the "
             "error of the reference computed in the dtype itself; `-`: not run on this "
             "device).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (backend, variant), values in table.iterrows():
        lines.append(f"| {backend} | {variant} | " + " | ".join(values) + " |")
    failures = frame[frame["verdict"] == "FAIL"]
    lines += ["", f"## Failures: {len(failures)}", ""]
    for _, row in failures.iterrows():
        lines.append(f"- {Case.from_dict(row.to_dict()).name}: "
                     f"{row['reason'] or _ratio_text(row)}")
    (folder / "check.md").write_text("\n".join(lines) + "\n")
    return table


def print_matrix(table: pd.DataFrame, console: Console) -> None:
    rich_table = Table(title="attnbench check: worst error ratio vs float64")
    rich_table.add_column("backend")
    rich_table.add_column("variant")
    for dtype, mode in table.columns:
        rich_table.add_column(f"{dtype}\n{mode}")
    for (backend, variant), values in table.iterrows():
        styled = [f"[red]{v}[/]" if v.startswith("FAIL") else v for v in values]
        rich_table.add_row(backend, variant, *styled)
    console.print(rich_table)
