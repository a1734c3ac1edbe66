"""Run folders: append-only results.jsonl and env.json in; one DataFrame out.

Each row is one whole JSON line, written, flushed and fsynced as its cell ends,
so a crash loses at most the cell that was running.
"""
from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path

import pandas as pd

from harness.spec import CASE_FIELDS, RESULT_COLUMNS

RESULTS = "results.jsonl"
ENV = "env.json"
ENV_SCHEMA = 1


class StoreError(ValueError):
    """A path that is not a run folder, or a row that cannot be read."""


class RunWriter:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = open(self.folder / RESULTS, "a", encoding="utf-8")

    def write_env(self, env: dict) -> None:
        path = self.folder / ENV
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"schema": ENV_SCHEMA, **env}, indent=2, default=str))
        os.replace(tmp, path)             # never a half-written env.json

    def append(self, row: dict) -> None:
        self._file.write(json.dumps(row, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def git_commit(root: str | os.PathLike) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def read_rows(folder: str | os.PathLike) -> list[dict]:
    path = Path(folder) / RESULTS
    if not path.is_file():
        raise StoreError(f"{folder}: not a run folder (no {RESULTS})")
    rows, bad = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1                  # a line cut off by a crash
    if bad:
        warnings.warn(f"{path}: skipped {bad} unreadable line(s)", stacklevel=2)
    return rows


def read_env(folder: str | os.PathLike) -> dict:
    path = Path(folder) / ENV
    return json.loads(path.read_text()) if path.is_file() else {}


def load(*folders: str | os.PathLike) -> pd.DataFrame:
    """Rows of one or more run folders as one long DataFrame, contract columns first."""
    rows = [row for folder in folders for row in read_rows(folder)]
    frame = pd.DataFrame(rows)
    columns = [c for c in (*CASE_FIELDS, *RESULT_COLUMNS)]
    for column in columns:
        if column not in frame:
            frame[column] = None
    extra = [c for c in frame.columns if c not in columns]
    return frame[columns + extra]


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """The table as CSV; raw samples stay in results.jsonl."""
    frame.drop(columns=["samples_ms"], errors="ignore").to_csv(path, index=False)
