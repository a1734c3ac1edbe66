"""What `attnbench check` shows: the pass/fail matrix, the agreement between
backends, check.csv, pairs.csv and check.md."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.correctness import gate, pairwise
from harness.correctness.accuracy import MULTIPLE, allowances
from harness.correctness.grid import CheckResult
from harness.report.run_report import print_whole
from harness.results import store
from harness.spec import DTYPES, MODES, WORKLOADS, Case, reference
from harness.spec.catalog import REGISTRY
from harness.spec.weights import make_inputs, make_weights

RESOLVES = ("resolves", "")       # the matrix's last column (see resolution)


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


def resolution(frame: pd.DataFrame) -> pd.Series:
    """Per backend and variant, the output error its check is sure to fail, as a
    share of the output's largest value: in the most precise dtype it ran, the
    largest over its forward cases of MULTIPLE times the output's allowance. A
    fault below it may pass as rounding: ~2 % in bfloat16, so a variant that runs
    bfloat16 alone hides a 1 % softmax-scale error (tests/integration/test_check.py)."""
    ran = gate.verdicts(frame)
    ran = ran[(ran["verdict"] != "unsupported") & (ran["mode"] == "forward")]
    seen: dict[tuple, float] = {}
    shares = {}
    for key, group in ran.groupby(["backend", "variant"], sort=False):
        worst: dict[str, float] = {}
        for case in map(Case.from_dict, group.to_dict("records")):
            at = (case.shape_key, case.dtype)
            if at not in seen:
                seen[at] = _threshold(case)
            worst[case.dtype] = max(worst.get(case.dtype, 0.0), seen[at])
        shares[key] = min(worst.values())
    return pd.Series(shares, dtype=float)


def _threshold(case: Case) -> float:
    """The smallest output error that fails `case`, over the output's largest value."""
    weights, inputs = make_weights(case), make_inputs(case)
    exact = {"out": reference.forward(case, weights, inputs)}
    low = {"out": reference.forward(case, weights, inputs, dtype=case.dtype)}
    scale = float(np.abs(exact["out"]).max())
    allowed = allowances(exact, low, case.dtype)["out"]
    return MULTIPLE * allowed / scale if scale > 0 else float("inf")


def _with_resolution(table: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    shares = resolution(frame)
    text = [f"{100 * shares[k]:.2g} %" if k in shares.index else "-" for k in table.index]
    table = table.copy()
    table[RESOLVES] = text
    return table


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
    header = [*first, *(f"{d} {m}".strip() for d, m in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, values in table.iterrows():
        keys = index if isinstance(index, tuple) else (index,)
        lines.append("| " + " | ".join([*keys, *values]) + " |")
    return lines


def _reused(cases: pd.DataFrame) -> str:
    """How many verdicts came from the gate's cache (verdict_from names their run)."""
    if "verdict_from" not in cases or not cases["verdict_from"].notna().any():
        return ""
    return (f", {int(cases['verdict_from'].notna().sum())} of them reused from earlier "
            f"runs' checks (verdict_from in check.csv)")


def write(result: CheckResult, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """check.csv (every case), check.md (both matrices and every failure); returns
    the two matrices."""
    store.write_csv(_in_order(result.cases), folder / "check.csv")
    table = _with_resolution(matrix(result.cases), result.cases)
    pairs = pairwise.matrix(result.pairs, DTYPES, MODES)
    lines = ["# attnbench check", "",
             f"Worst error ratio against float64 per backend and variant: the error over "
             f"the error of the reference computed in the dtype itself (plus a floor); "
             f"pass: at most {MULTIPLE:g} for the output and every gradient. `-`: not run "
             f"on this device. resolves: an output error above this share of its "
             f"largest value fails every forward case of the row's most precise dtype; "
             f"a fault below it may pass as rounding. {len(result.cases)} cases"
             f"{_reused(result.cases)}.", "",
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
        rich_table.add_column(f"{dtype}\n{mode}".strip())
    for index, values in table.iterrows():
        keys = index if isinstance(index, tuple) else (index,)
        styled = [f"[red]{v}[/]" if v.startswith(("FAIL", "DIFFER")) else v for v in values]
        rich_table.add_row(*keys, *styled)
    print_whole(rich_table, console)
