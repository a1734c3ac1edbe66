"""results/published/: reports people link to, committed with the code.

A published folder is a run folder (results.jsonl, env.json, and the gate's
check.md) plus its report (report.md, report.html, report.csv, tables/, plots/),
so `attnbench report` and `attnbench compare` read it like any run.
results/published/README.md lists every one; it is rewritten on each publish.
"""
from __future__ import annotations

import os
import reprlib
import shutil
from pathlib import Path

import pandas as pd

from harness.report import run_report
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
    """root/README.md: one line per published folder, newest first."""
    entries = []
    for folder in sorted(p for p in root.iterdir() if (p / store.ENV).is_file()):
        env = store.read_env(folder)
        frame = store.load(folder)
        devices = ", ".join(g.get("name", "") for g in env.get("gpus") or []) or env.get("cpu")
        versions = versions_text(env)
        ok = int((frame["status"] == "ok").sum())
        entries.append({
            "published": f"[{folder.name}]({folder.name}/report.md) "
                         f"([page]({folder.name}/report.html))",
            "run": env.get("run_id", ""), "suite": env.get("suite", ""),
            "devices": devices, "threads": env.get("threads", ""), "versions": versions,
            "cells ok": f"{ok} of {len(frame)}", "started": env.get("started_at", "")})
    entries.sort(key=lambda e: e["started"], reverse=True)
    lines = ["# Published results", "",
             "Each folder is a run folder and its report, written by `attnbench publish RUN "
             "--name NAME` (`make publish RUN=... NAME=...`). This list is rewritten on every "
             "publish.", ""]
    if entries:
        lines.append(pd.DataFrame(entries).to_markdown(index=False))
    path = root / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
