"""`attnbench run SUITE --versions SPEC,SPEC...`: the same suite under several
installed framework versions, each in a virtual environment made on demand from
the package index, so that a user sees what an upgrade did (docs/history.md,
"History on one machine").

A SPEC is one environment: pip requirements joined by '+' (`jax==0.9.2`, or
`jax==0.9.2+flax==0.12.0` where the pinned companion does not fit). Each
environment gets the project (editable: every version runs this checkout's code)
and the SPEC's pins; the other lines of the project's requirements file for the
same framework (its companions: flax for jax) come too unless the SPEC pins them.
Environments live in ATTNBENCH_VENVS (default ~/.cache/attnbench-venvs), one per
SPEC, and are reused."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from harness.spec.catalog import REGISTRY
from harness.spec.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements" / "cpu.txt"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
# '+' between pins, not inside a local version: "jax==0.9.2+flax==0.12.0" is two
# pins, "torch==2.4.0+cpu" one.
_PIN_JOIN = re.compile(r"\+(?=\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*(?:\[[^\]]*\])?\s*"
                       r"(?:==|>=|<=|~=|!=|<|>))")
_SPEC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[A-Za-z0-9,._-]+\])?\s*"
                   r"(==|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+$")


def parse(text: str) -> list[list[str]]:
    """'jax==0.9.2,jax==0.10.2+flax==0.12.8' -> [['jax==0.9.2'], ['jax==0.10.2',
    'flax==0.12.8']]; a one-line UserError for anything else."""
    specs = [[pin.strip() for pin in _PIN_JOIN.split(item)] for item in text.split(",")]
    for spec in specs:
        for pin in spec:
            if not _SPEC.match(pin):
                raise UserError(f"--versions: {pin!r} is not a pinned requirement "
                                f"(write PACKAGE==VERSION; several pins of one "
                                f"environment joined by '+', environments by ',')")
    if len(specs) < 2:
        raise UserError("--versions: give at least two environments, separated by ','")
    return specs


def slug(spec: list[str]) -> str:
    """A folder name for the SPEC; where characters had to be replaced (jax>=0.9 and
    jax<=0.9 would both read jax_=0.9), a digest of the SPEC keeps it apart."""
    text = "+".join(pin.replace(" ", "") for pin in spec)
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "_", text)
    return safe if safe == text else f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _name(requirement: str) -> str:
    return _NAME.match(requirement).group(1).lower().replace("_", "-")


def companions(spec: list[str]) -> list[str]:
    """The requirements file's lines for the frameworks the SPEC pins, less those the
    SPEC pins itself: flax==0.12.8 beside jax==0.9.2."""
    pinned = {_name(pin) for pin in spec}
    families = [set(info.distributions) for info in REGISTRY.values()
                if pinned & set(info.distributions)]
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    return [line for line in lines if line and _name(line) not in pinned
            and not any(_builds_of_one(_name(line), name) for name in pinned)
            and any(_name(line) in family for family in families)]


def _builds_of_one(a: str, b: str) -> bool:
    """tensorflow and tensorflow-cpu: two builds of one module, never companions."""
    return a.startswith(f"{b}-") or b.startswith(f"{a}-")


def venvs_root() -> Path:
    """ATTNBENCH_VENVS, else attnbench-venvs beside (never inside) the cache: the
    cache prunes its oldest files past its size limit, and an environment is
    hundreds of MB (harness/results/cache.py)."""
    chosen = os.environ.get("ATTNBENCH_VENVS")
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(chosen) if chosen else Path(base) / "attnbench-venvs"


def environment(spec: list[str], log) -> Path:
    """The Python of the SPEC's environment, made and installed if missing."""
    folder = venvs_root() / slug(spec)
    python = folder / "bin" / "python"
    marker = folder / ".installed"
    if marker.is_file() and python.exists() and marker.read_text().split() == spec:
        return python
    log(f"making {folder} ({' '.join(spec)}): a few minutes the first time")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True,
                       capture_output=True, text=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *spec,
                        *companions(spec), "-e", str(ROOT)], check=True,
                       capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"--versions: cannot make the environment for {' '.join(spec)}: "
                        f"{last[0][:300]}") from None
    (folder / ".installed").write_text(" ".join(spec) + "\n")
    return python


CHILD = "ATTNBENCH_VERSIONS_CHILD"      # set in each run: it never starts --versions again


def run_each(specs: list[list[str]], argv: list[str], out: Path, log) -> list[Path]:
    """`attnbench run` with `argv` (the suite and its flags, without --versions and
    --out; paths in it absolute) under each SPEC in turn, into out/NN-SLUG; the run
    folders made. A run that fails stops the rest: its output says why."""
    folders = []
    for number, spec in enumerate(specs, 1):
        python = environment(spec, log)
        folder = out.resolve() / f"{number:02d}-{slug(spec)}"
        log(f"running under {' '.join(spec)} into {folder}")
        done = subprocess.run([str(python), "-m", "harness", "run", *argv,
                               "--out", str(folder)], env={**os.environ, CHILD: "1"})
        if done.returncode != 0:
            raise UserError(f"--versions: the run under {' '.join(spec)} failed (exit "
                            f"{done.returncode}); its folder: {folder}")
        folders.append(folder)
    return folders


def without_flags(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """argv less each flag in `flags` and its value (`--out DIR` or `--out=DIR`)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in flags:
            skip = True
        elif not arg.startswith(tuple(f"{f}=" for f in flags)):
            kept.append(arg)
    return kept
