"""Run folders: append-only results.jsonl and env.json in; one DataFrame out.

Each row is one whole JSON line, written, flushed and fsynced as its cell ends,
so a crash loses at most the cell that was running. A line cut off by a crash is
skipped with a warning, and a writer that reopens the file (`--resume`) first ends
that line, so its own rows start on a line of their own. A resumed run appends
the rerun cells' rows after their failed ones: the last row of a cell wins.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import warnings
from pathlib import Path

import pandas as pd

from harness.results import repeats
from harness.spec import CASE_FIELDS, ROW_COLUMNS, ROW_SCHEMA
from harness.spec.errors import UserError
from harness.spec.schema import complete

RESULTS = "results.jsonl"
ENV = "env.json"
ENV_SCHEMA = ROW_SCHEMA


class StoreError(UserError):
    """A path that is not a run folder, or a row that cannot be read."""


class RunWriter:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / RESULTS
        self._lock = _lock(self.folder)
        torn = path.is_file() and path.stat().st_size > 0 and not _ends_with_newline(path)
        self._file = open(path, "a", encoding="utf-8")
        if torn:                          # a crash cut the last row off mid-line
            self._file.write("\n")

    def write_env(self, env: dict) -> None:
        path = self.folder / ENV
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"schema": ENV_SCHEMA, **env}, indent=2, default=str))
        os.replace(tmp, path)             # never a half-written env.json

    def append(self, row: dict) -> None:
        self._file.write(json.dumps(complete(row), default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
        self._lock.close()                # and with it the lock

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _lock(folder: Path):
    """An exclusive lock on the run folder for as long as a writer holds it: two
    runs appending to one folder (a --resume started while the run still goes)
    would interleave their rows. The kernel drops it when the process dies."""
    handle = open(folder / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise StoreError(f"{folder}: another attnbench run is writing it (pid {holder}); "
                         f"wait for it or stop it first") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def git_commit(root: str | os.PathLike) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def read_rows(folder: str | os.PathLike) -> list[dict]:
    """Every whole row of a run folder, in the order written; a StoreError when the
    folder is not a run folder or was written by a newer attnbench. A
    pytest-benchmark JSON file reads as a run (harness/results/pytest_benchmark_format.py)."""
    reader = _foreign_reader(folder)
    if reader:
        return _read_foreign(reader, folder)[0]
    path = Path(folder) / RESULTS
    if not path.is_file():
        raise StoreError(f"{folder}: not a run folder (no {RESULTS}) or pytest-benchmark "
                         f"JSON file")
    _check_schema(read_env(folder).get("schema"), Path(folder) / ENV)
    rows, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad += 1                  # a line cut off by a crash
                continue
            if not isinstance(row, dict):
                bad += 1
                continue
            _check_schema(row.get("schema"), f"{path}:{number}")
            rows.append(row)
    if bad:
        warnings.warn(f"{path}: skipped {bad} unreadable line(s) (cut off by a crash?); "
                      f"kept {len(rows)} whole row(s)", stacklevel=2)
    return rows


def _foreign_reader(path: str | os.PathLike):
    """The reader of another tool's format that claims this path, else None.
    Readers plug in here and never import the store."""
    from harness.results import pytest_benchmark_format
    return next((reader for reader in (pytest_benchmark_format,)
                 if reader.is_benchmark_file(path)), None)


def _read_foreign(reader, path) -> tuple[list[dict], dict]:
    try:
        return reader.read(path)
    except reader.FormatError as exc:
        raise StoreError(str(exc)) from None


def _check_schema(version, where) -> None:
    if isinstance(version, int) and version > ROW_SCHEMA:
        raise StoreError(f"{where}: written by a newer attnbench (schema {version}; this "
                         f"one reads up to {ROW_SCHEMA}): upgrade attnbench to read it")


def read_env(folder: str | os.PathLike) -> dict:
    reader = _foreign_reader(folder)
    if reader:
        return _read_foreign(reader, folder)[1]
    path = Path(folder) / ENV
    if not path.is_file():
        return {}
    try:
        env = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(env, dict):
        raise StoreError(f"{path}: expected a JSON object")
    return env


def field_text(value) -> str:
    """A row's field as text that matches across runs: 2 and 2.0 are one value (a
    column that also holds a NaN turns float), and a NaN (no window) is None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(None if value is None or value != value else value)


def cell_key(case_or_row) -> tuple:
    """What identifies a cell across a run and its resumption: its Case fields
    (a Case or a row), as text."""
    get = case_or_row.get if isinstance(case_or_row, dict) else case_or_row.to_dict().get
    fields = {k: get(k) for k in CASE_FIELDS}
    fields = {k: None if v != v else v for k, v in fields.items()}     # NaN: not given
    return tuple(str(v) for v in _with_defaults(fields).values())


def _with_defaults(row: dict) -> dict:
    """kv_heads and q_len as the Case defaults them, where a row from before them
    has none: every head, every row (a decode row always has its q_len)."""
    if row.get("heads") is not None and row.get("kv_heads") is None:
        row = {**row, "kv_heads": row["heads"]}
    if row.get("seq_len") is not None and row.get("q_len") is None and row.get("mode") != "decode":
        row = {**row, "q_len": row["seq_len"]}
    return row


def latest_rows(rows: list[dict]) -> list[dict]:
    """One row per cell, in the order cells first appeared: the last one written
    (a resumed run reran it), or with `run --repeat K` the last of each of its K
    processes, merged (harness/results/repeats.py)."""
    latest: dict[tuple, dict] = {}
    for row in rows:
        by_process = latest.setdefault(cell_key(row), {})   # keeps the first position
        if row.get("repeat") is None:
            by_process.clear()                  # a run without --repeat replaced them
        else:
            by_process.pop(None, None)
        by_process[row.get("repeat")] = row
    return [repeats.merge(list(by_process.values())) for by_process in latest.values()]


def load(*folders: str | os.PathLike) -> pd.DataFrame:
    """Rows of one or more run folders as one long DataFrame, contract columns first:
    one row per cell and folder (the last written, see latest_rows)."""
    rows = [_upgraded(row) for folder in folders for row in latest_rows(read_rows(folder))]
    frame = pd.DataFrame(rows)
    columns = list(ROW_COLUMNS)
    for column in columns:
        if column not in frame:
            frame[column] = None
    extra = [c for c in frame.columns if c not in columns]
    return frame[columns + extra]


def _upgraded(row: dict) -> dict:
    """A row as today's rows read. One written before kv_heads and q_len has them
    filled as the Case defaults them (every head, every row), so it merges with a
    row of the same cell written since. One written before the gate had its own
    columns carries its verdict in the note's words; read them once, here, so that
    nothing else parses text."""
    row = _with_defaults(row)
    if "judged_by" in row or row.get("correct") is None:
        return row
    note = row.get("check_note") or ""
    failed = note.startswith("configuration fails attnbench check")
    return {**row, "gate": "fail" if failed else ("pass" if note.startswith("judged by") else None),
            "judged_by": "config" if note.startswith("judged by") or failed else "cell"}


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """The table as CSV; raw samples stay in results.jsonl."""
    frame.drop(columns=["samples_ms"], errors="ignore").to_csv(path, index=False)
