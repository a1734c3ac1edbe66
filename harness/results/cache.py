"""The cache across runs: what an unchanged second run need not do again.

One size-bounded folder (ATTNBENCH_CACHE, by default ~/.cache/attnbench; at most
ATTNBENCH_CACHE_MB megabytes, 2048 by default), two kinds of entries:
- references/: a shape's weights, inputs and references (harness/correctness/judging.py),
  named by what determines them: shape, mode, dtype, the rows judged, and a digest of
  the code that computes them and of NumPy's version;
- gate/: the correctness gate's verdict on each check case (harness/run/gating.py),
  keyed by the case, the backend's code, its framework's versions, the harness code
  that checks it (the tolerance policy among it), the device and the worker's settings.
An entry is touched when used; the least recently used go first when the folder
outgrows its bound. docs/design.md, "The cache", says what each key holds and why.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
from pathlib import Path
from typing import Iterable

PROJECT_ROOT = Path(__file__).resolve().parents[2]      # harness/results/ -> the root
DEFAULT_LIMIT_MB = 2048
# The harness code a check case's verdict rests on: the spec and its reference, the
# judging and tolerance policy, and how a worker runs a case.
CHECK_CODE = ("harness/spec", "harness/correctness", "harness/run/worker.py",
              "harness/run/cell.py", "harness/run/environment.py")
REFERENCE_CODE = ("harness/spec",)
BACKEND_SHARED = ("backends/__init__.py", "backends/base.py", "backends/common.py")


def root() -> Path:
    """Where the cache lives; set ATTNBENCH_CACHE to move it."""
    chosen = os.environ.get("ATTNBENCH_CACHE")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnbench"


def limit_bytes() -> int:
    try:
        return int(float(os.environ.get("ATTNBENCH_CACHE_MB", DEFAULT_LIMIT_MB)) * 2**20)
    except ValueError:
        return DEFAULT_LIMIT_MB * 2**20


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def code_digest(paths: Iterable[str | Path], base: Path = PROJECT_ROOT) -> str:
    """A digest of every .py file under `paths` (files or folders, relative to
    `base`), by name and content: any edit, added or removed file changes it."""
    files = []
    for path in paths:
        path = base / path
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    h = hashlib.sha256()
    for file in files:
        if file.exists() and "__pycache__" not in file.parts:
            h.update(str(file.relative_to(base) if file.is_relative_to(base) else file)
                     .encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def reference_digest(base: Path = PROJECT_ROOT) -> str:
    """What the references depend on beyond their case: the spec's code and NumPy."""
    import numpy
    return digest(f"{code_digest(REFERENCE_CODE, base)} numpy {numpy.__version__}")


def backend_folder(settings_module: str) -> Path | None:
    """A backend's folder, found through its framework-free settings module (finding
    the implementation itself would import its package, not its framework, but the
    settings module is the one the harness may load)."""
    try:
        spec = importlib.util.find_spec(settings_module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin).parent if spec and spec.origin else None


def backend_digest(settings_module: str, base: Path = PROJECT_ROOT) -> str:
    """The backend's own folder and the code every backend shares; a folder inside
    the project is read under `base` (a copy of the project, in the tests)."""
    folder = backend_folder(settings_module)
    if folder is not None and folder.is_relative_to(PROJECT_ROOT):
        folder = folder.relative_to(PROJECT_ROOT)
    own = code_digest([folder], base) if folder is not None else "unknown"
    return digest(f"{own} {code_digest(BACKEND_SHARED, base)}")


def versions(distributions: Iterable[str]) -> dict[str, str]:
    """The installed version of each distribution; missing ones are left out, so
    installing one (a CUDA plugin, say) changes the answer too."""
    found = {}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def interpreter() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def touch(path: Path) -> None:
    """Mark an entry used (its age decides what pruning removes first)."""
    try:
        os.utime(path)
    except OSError:
        pass


def prune(folder: Path | None = None, limit: int | None = None) -> int:
    """Remove the least recently used entries until the folder fits its bound;
    the bytes removed."""
    folder = folder or root()
    limit = limit_bytes() if limit is None else limit
    entries = []
    for path in folder.rglob("*") if folder.exists() else []:
        try:
            stat = path.stat()
        except OSError:
            continue
        if path.is_file():
            entries.append((stat.st_mtime, stat.st_size, path))
    total, removed = sum(size for _, size, _ in entries), 0
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total - removed <= limit:
            break
        try:
            path.unlink()
            removed += size
        except OSError:
            continue
    return removed


def size_bytes(folder: Path | None = None) -> int:
    folder = folder or root()
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) \
        if folder.exists() else 0
