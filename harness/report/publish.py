"""results/published/: reports people link to, committed with the code.

A published folder is a run folder (results.jsonl, env.json, and the gate's
check.md) plus its report (report.md, report.html, report.csv, tables/, plots/),
so `attnbench report` and `attnbench compare` read it like any run.
results/published/README.md and index.html list every one, and the history of
them all (history/, written by `attnbench history results/published --out
results/published/history`); both are rewritten on each publish.
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
    """root/README.md and root/index.html: one line per published folder, newest
    first, and a link to the history where one was written."""
    entries = sorted((_entry(folder) for folder in root.iterdir()
                      if (folder / store.ENV).is_file()),
                     key=lambda e: e["started"], reverse=True)
    history = (root / HISTORY / "history.html").is_file()
    lines = ["# Published results", "",
             "Each folder is a run folder and its report, written by `attnbench publish RUN "
             "--name NAME` (`make publish RUN=... NAME=...`). This list is rewritten on every "
             "publish.", ""]
    if history:
        lines += [f"The history of these runs, cell by cell with its steps: "
                  f"[{HISTORY}/history.md]({HISTORY}/history.md) "
                  f"([page]({HISTORY}/history.html)).", ""]
    if entries:
        table = pd.DataFrame(entries)
        table.insert(0, "published", [f"[{e['name']}]({e['name']}/report.md) "
                                      f"([page]({e['name']}/report.html))" for e in entries])
        lines.append(table.drop(columns="name").to_markdown(index=False))
    (root / "index.html").write_text(_index_html(entries, history))
    path = root / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


HISTORY = "history"


def _entry(folder: Path) -> dict:
    env = store.read_env(folder)
    frame = store.load(folder)
    devices = ", ".join(g.get("name", "") for g in env.get("gpus") or []) or env.get("cpu")
    ok = int((frame["status"] == "ok").sum())
    return {"name": folder.name, "run": env.get("run_id", ""), "suite": env.get("suite", ""),
            "devices": devices, "threads": env.get("threads", ""),
            "versions": versions_text(env), "cells ok": f"{ok} of {len(frame)}",
            "started": env.get("started_at", "")}


def _index_html(entries: list[dict], history: bool) -> str:
    columns = ["run", "suite", "devices", "threads", "versions", "cells ok", "started"]
    head = "".join(f"<th>{c}</th>" for c in ["published", *columns])
    rows = "".join(
        f"<tr><td><a href='{html.escape(e['name'])}/report.html'>{html.escape(e['name'])}</a>"
        f"</td>" + "".join(f"<td>{html.escape(str(e[c]))}</td>" for c in columns) + "</tr>"
        for e in entries)
    link = (f"<p><a href='{HISTORY}/history.html'>The history of these runs</a>: each cell "
            f"across them, with its steps and what changed.</p>") if history else ""
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>attnbench: "
            f"published results</title><style>{CSS}</style></head><body><h1>Published "
            f"results</h1>{link}<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
            f"</table></body></html>\n")
