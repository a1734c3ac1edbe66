"""results/published/: reports people link to, committed with the code.

A published folder is a run folder (results.jsonl, env.json, and the gate's
check.md) plus its report (report.md, report.html, report.csv, tables/, plots/),
so `attnbench report` and `attnbench compare` read it like any run.
A published history (`attnbench history RUNS... --out results/published/NAME`) is
history.html and its tables, with copies of the runs it was drawn from under runs/;
`attnbench history results/published --out results/published/history` draws every
published run. results/published/README.md and index.html list the histories and
the runs; both are rewritten on each publish.
"""
from __future__ import annotations

import html
import os
import reprlib
import shutil
from pathlib import Path

import pandas as pd

from harness.report import run_report
from harness.report.page import CSS
from harness.report.tables import versions_text
from harness.results import store
from harness.spec.errors import UserError
from harness.spec.names import NAME_RULE, is_safe_name

ROOT = Path("results/published")


def check_name(name: object) -> None:
    """One folder component under root, never '..', a separator or NUL."""
    if not is_safe_name(name):
        raise UserError(f"--name {reprlib.repr(name)}: not a folder name; use {NAME_RULE}")


def publish(run: str | Path, name: str, root: Path = ROOT) -> Path:
    """Copy the run's rows and write its report into root/name (replacing an
    earlier publication of that name), then list it in root/README.md."""
    check_name(name)
    run = Path(run)
    store.read_rows(run)                               # a run folder, or a one-line error
    if not run.is_dir():
        raise UserError(f"{run}: publish takes a run folder, not a file")
    dest = root / name
    if dest.is_symlink() or (dest.exists() and dest.resolve() == run.resolve()):
        raise UserError(f"--name {name!r}: {dest} is a link or the run itself; "
                        f"publish under another name")
    draft = root / f".{name}.draft-{os.getpid()}"    # a dot: never listed
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(draft, ignore_errors=True)
        draft.mkdir()
    except OSError as exc:
        raise UserError(f"cannot write in {root} ({exc.strerror or exc})") from None
    try:            # built beside, then swapped in: a failure keeps the old one
        _fill(run, draft)
        if dest.exists():
            shutil.rmtree(dest)
        draft.rename(dest)
    finally:
        shutil.rmtree(draft, ignore_errors=True)
    write_index(root)
    return dest


def _fill(run: Path, dest: Path) -> None:
    for part in (store.RESULTS, store.ENV):
        shutil.copy2(run / part, dest / part)
    if (run / "check" / "check.md").exists():
        (dest / "check").mkdir()
        shutil.copy2(run / "check" / "check.md", dest / "check" / "check.md")
    run_report.write_report([dest], dest)


def write_index(root: Path = ROOT) -> Path:
    """root/README.md and root/index.html: the published histories (folders with a
    history.html; root/history draws every published run), then one line per
    published run, newest first."""
    entries = sorted((_entry(folder) for folder in root.iterdir()
                      if (folder / store.ENV).is_file()),
                     key=lambda e: e["started"], reverse=True)
    histories = {folder.name: _history_summary(folder) for folder in sorted(root.iterdir())
                 if (folder / "history.html").is_file()}
    lines = ["# Published results", "",
             "Each folder is a run folder and its report, written by `attnbench publish RUN "
             "--name NAME` (`make publish RUN=... NAME=...`), or a history of runs "
             "(`attnbench history RUNS... --out results/published/NAME`). This list is "
             "rewritten on every publish.", ""]
    if histories:
        lines += ["Histories, each cell across runs with its steps:", ""]
        lines += [f"- [{name}]({name}/history.md) ([page]({name}/history.html)): {summary}"
                  for name, summary in histories.items()] + [""]
    if entries:
        table = pd.DataFrame(entries)
        table.insert(0, "published", [f"[{e['name']}]({e['name']}/report.md) "
                                      f"([page]({e['name']}/report.html))" for e in entries])
        lines.append(table.drop(columns="name").to_markdown(index=False))
    (root / "index.html").write_text(_index_html(entries, histories))
    path = root / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _history_summary(folder: Path) -> str:
    """The summary line history.md opens with (harness/history/page.py)."""
    md = folder / "history.md"
    lines = md.read_text().splitlines() if md.is_file() else []
    return lines[2] if len(lines) > 2 else ""


def keep_history_inputs(runs, out: Path) -> None:
    """A published history keeps what it was drawn from, so that `attnbench history
    OUT/runs` draws it again: each run folder's rows and env.json (or the
    pytest-benchmark file) under OUT/runs/. Runs that are themselves published
    folders beside it are not copied."""
    kept = out.resolve() / "runs"
    for run in runs:
        source = Path(run.source).resolve()
        # Published beside it, or already kept (a history drawn again from its runs/).
        if source.parent == out.resolve().parent or source.is_relative_to(kept):
            continue
        dest = kept / source.name
        for number in range(2, 1000):         # two runs of one name: 01-jax, 01-jax-2
            if not dest.exists():
                break
            dest = kept / f"{source.name}-{number}"
        if not source.is_dir():
            kept.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
            continue
        dest.mkdir(parents=True)
        for part in (store.RESULTS, store.ENV):
            if (source / part).is_file():
                shutil.copy2(source / part, dest / part)


def _entry(folder: Path) -> dict:
    env = store.read_env(folder)
    frame = store.load(folder)
    devices = ", ".join(g.get("name", "") for g in env.get("gpus") or []) or env.get("cpu")
    ok = int((frame["status"] == "ok").sum())
    return {"name": folder.name, "run": env.get("run_id", ""), "suite": env.get("suite", ""),
            "devices": devices, "threads": env.get("threads", ""),
            "versions": versions_text(env), "cells ok": f"{ok} of {len(frame)}",
            "started": env.get("started_at", "")}


def _index_html(entries: list[dict], histories: dict[str, str]) -> str:
    columns = ["run", "suite", "devices", "threads", "versions", "cells ok", "started"]
    head = "".join(f"<th>{c}</th>" for c in ["published", *columns])
    rows = "".join(
        f"<tr><td><a href='{html.escape(e['name'])}/report.html'>{html.escape(e['name'])}</a>"
        f"</td>" + "".join(f"<td>{html.escape(str(e[c]))}</td>" for c in columns) + "</tr>"
        for e in entries)
    listed = "".join(f"<li><a href='{html.escape(name)}/history.html'>{html.escape(name)}</a>: "
                     f"{html.escape(summary)}</li>" for name, summary in histories.items())
    intro = (f"<h2>histories</h2><p class='note'>Each cell across runs, with its steps and "
             f"what changed.</p><ul>{listed}</ul>") if histories else ""
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>attnbench: "
            f"published results</title><style>{CSS}</style></head><body><h1>Published "
            f"results</h1>{intro}<h2>runs</h2><table><thead><tr>{head}</tr></thead><tbody>"
            f"{rows}</tbody></table></body></html>\n")
