"""What `attnbench check` shows: the pass/fail matrix, the agreement between
backends, check.csv, pairs.csv and check.md."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.correctness import gate, pairwise
from harness.correctness.accuracy import MULTIPLE
from harness.correctness.grid import CheckResult
from harness.results import store
from harness.spec import DTYPES, MODES, WORKLOADS
from harness.spec.catalog import REGISTRY


def matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows backend/variant, columns dtype/mode: 'pass 0.71', 'FAIL 3.2' or '-'."""
    frame = gate.verdicts(frame)

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
    rows = [(b, v) for b, info in REGISTRY.items() for v in info.variant_names
            if (b, v) in table.index]
    return table.loc[rows, order]


def _in_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Cases in registry, workload, mode and dtype order, whichever worker wrote
    them first, so that two check.csv files diff line by line."""
    backends = list(REGISTRY)
    rank = {(b, v): (backends.index(b), i) for b, info in REGISTRY.items()
            for i, v in enumerate(info.variant_names)}
    keys = frame.apply(lambda r: (*rank.get((r["backend"], r["variant"]), (99, 99)),
                                  WORKLOADS.index(r["workload"]), MODES.index(r["mode"]),
                                  DTYPES.index(r["dtype"]), bool(r["causal"]),
                                  r["seq_len"]), axis=1)
    return frame.loc[keys.sort_values(kind="stable").index]


def _markdown(table: pd.DataFrame, first: list[str]) -> list[str]:
    header = [*first, *(f"{d} {m}" for d, m in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, values in table.iterrows():
        keys = index if isinstance(index, tuple) else (index,)
        lines.append("| " + " | ".join([*keys, *values]) + " |")
    return lines


def write(result: CheckResult, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """check.csv (every case), check.md (both matrices and every failure); returns
    the two matrices."""
    store.write_csv(_in_order(result.cases), folder / "check.csv")
    table = matrix(result.cases)
    pairs = pairwise.matrix(result.pairs, DTYPES, MODES)
    lines = ["# attnbench check", "",
             f"Worst error ratio against float64 per backend and variant: the error over "
             f"the error of the reference computed in the dtype itself (plus a floor); "
             f"pass: at most {MULTIPLE:g} for the output and every gradient. `-`: not run "
             f"on this device. {len(result.cases)} cases.", "",
             *_markdown(table, ["backend", "variant"]), ""]
    if not pairs.empty:
        lines += ["## Backends against each other", "",
                  f"Worst difference between two backends (every variant pair, every case "
                  f"both ran) over the sum of what each may differ from float64; agree: at "
                  f"most {MULTIPLE:g}. {len(result.pairs)} pairs, all of them in pairs.csv.",
                  "", *_markdown(pairs, ["backends"]), ""]
    lines += [f"## Failures: {len(result.failures)}", ""]
    lines += [f"- {gate.failure_text(row)}" for row in result.failures.to_dict("records")]
    if len(result.disagreements):
        lines += ["", f"## Disagreements: {len(result.disagreements)}", ""]
        lines += [f"- {_pair_text(row)}" for row in result.disagreements.to_dict("records")]
    (folder / "check.md").write_text("\n".join(lines) + "\n")
    return table, pairs


def _pair_text(row: dict) -> str:
    shape = (f"{row['workload']}/{row['mode']}/{row['dtype']} B{row['batch']} N{row['seq_len']}"
             f" H{row['heads']} D{row['head_dim']}{' causal' if row['causal'] else ''}")
    return (f"{row['a']} vs {row['b']}, {shape}: {row['tensor']} differs by "
            f"{row['max_abs_diff']:.3g}, pair ratio {row['pair_ratio']:.3g}")


def print_tables(table: pd.DataFrame, pairs: pd.DataFrame, console: Console) -> None:
    _print(table, ["backend", "variant"], "attnbench check: worst error ratio vs float64",
           console)
    if not pairs.empty:
        _print(pairs, ["backends"], "backends against each other: worst pair ratio", console)


def _print(table: pd.DataFrame, first: list[str], title: str, console: Console) -> None:
    rich_table = Table(title=title)
    for name in first:
        rich_table.add_column(name)
    for dtype, mode in table.columns:
        rich_table.add_column(f"{dtype}\n{mode}")
    for index, values in table.iterrows():
        keys = index if isinstance(index, tuple) else (index,)
        styled = [f"[red]{v}[/]" if v.startswith(("FAIL", "DIFFER")) else v for v in values]
        rich_table.add_row(*keys, *styled)
    console.print(rich_table)
