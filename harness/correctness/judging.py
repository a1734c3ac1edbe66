"""A measured row's correctness columns, judged at the cell's own size.

The worker (and the pytest plugin) hand over what the backend computed; this
compares it with the float64 reference and the reference in the cell's own dtype
(accuracy.py's rule), on every row or, past sampling.FULL_REFERENCE_LIMIT_BYTES,
on sampled rows (sampling.py). A shape's weights, inputs and references are made
once per worker for adjacent cells and, through a folder, once for every worker
and run that shares it: the first worker to make them leaves them there for the
other backends' and the next run's (drawing a GPU-sized cell's inputs takes
seconds on the host; its references, more). The folder is the cache's
(harness/results/cache.py) or, without the cache, the run's own; file names hold
everything that determines the contents, the code's digest (`salt`) among it.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from harness.correctness import sampling
from harness.correctness.accuracy import judge
from harness.spec import Case, reference
from harness.spec.weights import make_inputs, make_weights

# Data or references past this are remade by each backend's worker rather than
# written to disk (docs/measurement.md, "Shared references on disk").
CACHE_LIMIT_BYTES = 2**30


def one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:500]


class References:
    """float64 and own-dtype references, and the weights and inputs they are
    computed on, kept for the cells that share them (the runner orders a batch so
    that they are adjacent), and shared through `folder` with the run's other
    workers when one is given."""

    def __init__(self, folder: str | os.PathLike | None = None, salt: str = ""):
        self.key, self.value = None, None
        self.data_key, self.data_value = None, None
        self.folder = Path(folder) if folder else None
        self.salt = salt                # the reference code's digest, in every file name
        self.spent_s = 0.0              # seconds spent in get(): what a cell's reference cost

    def data(self, case: Case) -> tuple[dict, dict]:
        """The cell's (weights, inputs): equal for every cell of a shape, mode and
        dtype, so drawn once for adjacent ones and, through `folder`, once a run.
        Nothing may write into them."""
        key = (case.shape_key, case.mode, case.dtype)
        if key != self.data_key:
            self.data_value = None
            path = self._path(key, "data")
            self.data_value = _load(path, ("weights", "inputs")) if path else None
            if self.data_value is None:
                self.data_value = (make_weights(case), make_inputs(case))
                if path:
                    _save(path, weights=self.data_value[0], inputs=self.data_value[1])
            self.data_key = key
        return self.data_value

    def get(self, case: Case, weights: dict, inputs: dict, rows=None):
        """The references on `inputs`, for the given output rows (all when None)."""
        key = (case.shape_key, case.mode, case.dtype, _rows_tag(rows))
        if key != self.key:
            started = time.perf_counter()
            self.value = None           # free the last one before computing the next
            path = self._path(key, "references")
            self.value = _load(path, ("exact", "low")) if path else None
            if self.value is None:
                exact = reference.outputs(case, weights, inputs, rows=rows)
                low = reference.outputs(case, weights, inputs, dtype=case.dtype, rows=rows)
                self.value = (exact, low)
                if path:
                    _save(path, exact=exact, low=low)
            self.key = key
            self.spent_s += time.perf_counter() - started
        return self.value

    def _path(self, key: tuple, what: str) -> Path | None:
        name = "-".join((*key, self.salt, what)) if self.salt else "-".join((*key, what))
        return self.folder / f"{name}.npz" if self.folder else None


def _rows_tag(rows) -> str:
    """The judged rows in a file name: all, or a digest of which."""
    if rows is None:
        return "all"
    return "rows" + hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest()[:12]


def _load(path: Path, sides: tuple[str, ...]) -> tuple[dict, ...] | None:
    try:
        with np.load(path) as saved:
            found = {side: {} for side in sides}
            for name in saved.files:
                side, tensor = name.split(":", 1)
                found[side][tensor.replace("|", "/")] = saved[name]
        os.utime(path)                  # used: the cache prunes the least recent first
        return tuple(found[side] for side in sides)
    except (OSError, ValueError, KeyError):
        return None                     # not there (yet), or cut off: compute it


def _save(path: Path, **sides: dict) -> None:
    """Best effort, atomic: a full disk costs the sharing, never the cell."""
    arrays = {f"{side}:{name.replace('/', '|')}": value
              for side, tensors in sides.items() for name, value in tensors.items()}
    if sum(a.nbytes for a in arrays.values()) > CACHE_LIMIT_BYTES:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            np.savez(f, **arrays)
        os.replace(f.name, path)
    except OSError:
        traceback.print_exc(file=sys.stderr)


def rerun_on(backend, case: Case, weights: dict):
    """How a sampled check asks the backend for the gradients of the loss on its rows."""
    return lambda inputs: backend.prepare(case, weights, inputs).outputs()


def judge_outputs(case: Case, got: dict, weights: dict, inputs: dict, refs: References,
                  rerun=None) -> dict:
    """The correctness columns. A cell past sampling.FULL_REFERENCE_LIMIT_BYTES is
    judged on sampled query rows; in train mode `rerun(inputs)` gives the backend's
    results for the loss on those rows (without it, a train cell is not checked)."""
    rows = sampling.check_rows(case)
    judged = {"check_rows": case.q_len if rows is None else len(rows)}
    try:
        checked = sampling.on_rows(inputs, rows)      # g zeroed outside the rows (train)
        if checked is not inputs:
            if rerun is None:
                return {"check_note": "not checked: a sampled train check needs the backend"}
            got = rerun(checked)
        exact, low = refs.get(case, weights, checked, rows)
        exact, low, got = (sampling.without_padding(case, t, rows)
                           for t in (exact, low, sampling.wanted(got, rows)))
        verdict = judge(got, exact, low, case.dtype)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return {"check_note": f"not checked: {one_line(exc)}"}
    return {"max_abs_err": verdict.max_abs_err, "err_ratio": verdict.err_ratio,
            "correct": verdict.correct, "err_tensor": verdict.worst, "judged_by": "cell",
            **judged}
