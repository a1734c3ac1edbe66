"""Suite files (docs/design.md, "Suite files"): TOML grids of cases, parsed, never executed.

A suite is user input, so every mistake in it becomes one SuiteError whose
one-line message names the file, the key and what is allowed. Nothing else
(KeyError, TypeError, ...) may escape, whatever the shape of the document.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from harness.run import suite_messages as msg
from harness.run.suite_messages import SuiteError  # noqa: F401  (imported from here)
from harness.spec import DTYPES, MODES, WORKLOADS, Case
from harness.spec.catalog import REGISTRY

# A typo such as seq_len = [1, 2, ..., 4096] must fail at once, not plan
# (or allocate) millions of cells.
MAX_CASES = 100_000


@dataclass(frozen=True)
class Measure:
    min_run_ms: float = 500
    min_samples: int = 10
    warmup_ms: float = 100
    timeout_s: float = 300
    min_block_ms: float = 1.0   # autorange grows calls per sample until a block takes this long
    # Evict the device's caches before every timed call (256 MB written, as
    # triton's do_bench does), each call then timed on its own: cold-cache figures.
    flush_l2: bool = False
    # After the timed part, a few steps under the framework's profiler, untimed, for
    # device_ms and launch_overhead_ms (harness/measure/device_time.py).
    device_time: bool = True


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: str
    measure: Measure
    cases: tuple[Case, ...]
    # Of the parsed [[sweep]] tables and the measure settings: what --resume compares.
    hash: str = ""


TOP_KEYS = ("name", "description", "measure", "sweep")
MEASURE_KEYS = tuple(f.name for f in fields(Measure))
SWEEP_KEYS = ("workload", "backend", "mode", "dtype", "device", "batch", "tokens", "seq_len",
              "heads", "d_model", "head_dim", "causal", "layers", "kv_heads", "q_len", "window",
              "lengths", "variants")
REQUIRED = ("workload", "backend", "seq_len", "head_dim")
# Either key of each pair, not both: `tokens` fixes batch * seq_len (batch =
# tokens / seq_len) and `d_model` fixes heads * head_dim, as the FlashAttention
# benchmarks sweep them (suites/flash.toml).
ALTERNATIVES = (("batch", "tokens"), ("heads", "d_model"))
DEFAULTS = {"mode": ["forward"], "dtype": ["float32"], "device": ["cpu"],
            "causal": [False], "layers": [1]}
DEVICE_RE = re.compile(r"cpu|cuda(:[0-9]+)?|auto|gpu:[A-Za-z0-9 _-]+")

_POSITIVE = (msg.positive_int, "positive integers", ())
# Grid key -> (test of one value, what is allowed, names to suggest a close match from).
CHECKS = {
    "workload": msg.among(WORKLOADS), "backend": msg.among(tuple(REGISTRY)),
    "mode": msg.among(MODES), "dtype": msg.among(DTYPES),
    "device": (lambda v: isinstance(v, str) and DEVICE_RE.fullmatch(v) is not None,
               "cpu, cuda, cuda:N, auto or gpu:<type name>", ()),
    "batch": _POSITIVE, "tokens": _POSITIVE, "seq_len": _POSITIVE, "heads": _POSITIVE,
    "d_model": _POSITIVE, "head_dim": _POSITIVE,
    "causal": (lambda v: isinstance(v, bool), "true or false", ()),
    "layers": _POSITIVE, "kv_heads": _POSITIVE, "q_len": _POSITIVE,
    "window": (lambda v: msg.positive_int(v) or v == 0 and not isinstance(v, bool),
               "positive integers, or 0 for no window", ()),
    "lengths": (lambda v: isinstance(v, str), 'strings: "none", "uniform:LO" (0 <= LO <= 1) '
                'or one length per sequence ("17,0,33")', ()),
}
# Axes that give a cell a field of its own only where the sweep names them.
OPTIONAL_AXES = ("kv_heads", "q_len", "window", "lengths")


def _grid(path: str, where: str, raw: object, check) -> tuple:
    """A grid axis: a list, or a scalar taken as a one-element list; deduplicated."""
    test, allowed, names = check
    if isinstance(raw, dict):
        raise msg.error(path, where, f"expected a list of {allowed}, got a table")
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise msg.error(path, where, "empty grid (give at least one value)")
    for value in values:
        if not test(value):
            raise msg.error(path, where, f"expected {allowed}, got {msg.show(value)}"
                            + msg.hint(value, names))
    return tuple(dict.fromkeys(values))


def _measure(path: str, raw: object) -> Measure:
    if raw is None:
        return Measure()
    if not isinstance(raw, dict):
        raise msg.error(path, "measure", f"expected a table ([measure]), got {msg.kind(raw)}")
    values: dict[str, float | int] = {}
    for key, value in raw.items():
        if key not in MEASURE_KEYS:
            raise msg.unknown(path, "measure", key, MEASURE_KEYS)
        if key in ("flush_l2", "device_time"):
            if not isinstance(value, bool):
                raise msg.error(path, f"measure.{key}",
                                f"expected true or false, got {msg.show(value)}")
            values[key] = value
            continue
        if key == "min_samples":
            if not msg.positive_int(value):
                raise msg.error(path, f"measure.{key}",
                                f"expected an integer >= 1, got {msg.show(value)}")
            values[key] = value
            continue
        number = msg.finite(value)
        zero_ok = key == "warmup_ms"   # no warm-up is a choice; no run time or timeout is not
        if number is None or number < 0 or (number == 0 and not zero_ok):
            allowed = ">= 0" if zero_ok else "> 0"
            raise msg.error(path, f"measure.{key}",
                            f"expected a number {allowed}, got {msg.show(value)}")
        values[key] = number
    return Measure(**values)


def _variants(path: str, where: str, raw: object, backends: tuple) -> list[tuple[str, str]]:
    """(backend, variant) pairs in grid order; by default every variant a backend has."""
    chosen = {b: REGISTRY[b].variant_names for b in backends}
    if raw is not None:
        if not isinstance(raw, dict):
            raise msg.error(path, f"{where}.variants",
                            f"expected a table ([sweep.variants]), got {msg.kind(raw)}")
        for backend, names in raw.items():
            if backend not in chosen:
                raise msg.error(path, f"{where}.variants",
                                f"backend {msg.show(backend)} is not in this sweep's backend "
                                f"list ({', '.join(backends)})" + msg.hint(backend, backends))
            chosen[backend] = _grid(path, f"{where}.variants.{backend}", names,
                                    msg.among(REGISTRY[backend].variant_names))
    return [(b, v) for b in backends for v in chosen[b]]


def _sweep(path: str, index: int, raw: object, suite: str, budget: int) -> list[Case]:
    where = f"sweep[{index}]"
    if not isinstance(raw, dict):
        raise msg.error(path, where, f"expected a table ([[sweep]]), got {msg.kind(raw)}")
    for key in raw:
        if key not in SWEEP_KEYS:
            raise msg.unknown(path, where, key, SWEEP_KEYS)
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise msg.error(path, where, f"missing required key {missing[0]!r} "
                                     f"(required: {', '.join(REQUIRED)})")
    for given, other in ALTERNATIVES:
        if given in raw and other in raw:
            raise msg.error(path, where, f"give {given!r} or {other!r}, not both")
        if given not in raw and other not in raw:
            raise msg.error(path, where, f"missing required key {given!r} (or {other!r})")
    sizes = tuple(next(k for k in pair if k in raw) for pair in ALTERNATIVES)
    grid = {key: _grid(path, f"{where}.{key}", raw.get(key, DEFAULTS.get(key)), check)
            for key, check in CHECKS.items() if key in raw or key in DEFAULTS}
    pairs = _variants(path, where, raw.get("variants"), grid["backend"])
    _check_divisible(path, where, grid, sizes)

    # `layers` shapes the transformer alone: other workloads get one cell with
    # layers=1, not one identical cell per value.
    axes = ("mode", "dtype", "device", sizes[0], "seq_len", sizes[1], "head_dim", "causal",
            *(a for a in OPTIONAL_AXES if a in grid))
    per_workload = [(w, grid["layers"] if w == "transformer" else (1,)) for w in grid["workload"]]
    count = sum(len(pairs) * math.prod(len(grid[a]) for a in axes) * len(layers)
                for _, layers in per_workload)
    if count > budget:
        raise msg.error(path, where, f"expands to {count} cases, which takes the suite past "
                                     f"its limit of {MAX_CASES}")
    cases = []
    for workload, layers in per_workload:
        for (backend, variant), *values, n_layers in itertools.product(
                pairs, *(grid[a] for a in axes), layers):
            shape = _concrete(dict(zip(axes, values)), workload)
            try:
                cases.append(Case(suite=suite, workload=workload, backend=backend,
                                  variant=variant, layers=n_layers, **shape))
            except ValueError as exc:              # q_len past seq_len, window without causal
                raise msg.error(path, where, str(exc)) from None
    if not cases:
        raise msg.error(path, where, "yields no cases")
    return cases                   # parse_suite keeps each once (q_len dropped: _concrete)


def _check_divisible(path: str, where: str, grid: dict, sizes: tuple[str, str]) -> None:
    """tokens must be a multiple of every seq_len, d_model of every head_dim, and
    every kv_heads must divide every number of heads."""
    for total, part in (("tokens", "seq_len"), ("d_model", "head_dim")):
        if total not in sizes:
            continue
        for whole in grid[total]:
            for piece in grid[part]:
                if whole % piece:
                    raise msg.error(path, f"{where}.{total}",
                                    f"{total} = {whole} is not a multiple of {part} = {piece}")
    heads = grid["heads"] if "heads" in grid else [
        d // h for d in grid["d_model"] for h in grid["head_dim"]]
    for kv in grid.get("kv_heads", ()):
        for h in heads:
            if h % kv:
                raise msg.error(path, f"{where}.kv_heads",
                                f"kv_heads = {kv} does not divide heads = {h}")


def _concrete(shape: dict, workload: str) -> dict:
    """batch and heads from tokens and d_model, where the sweep gave those. q_len is
    the query rows of a decode step, and of the attention core in any mode: the
    layers' forward and train steps run every row, so it is dropped there; decode
    cells drop lengths (padding is a forward's and a train step's)."""
    if "q_len" in shape and workload != "attention" and shape["mode"] != "decode":
        del shape["q_len"]
    if "lengths" in shape and shape["mode"] == "decode":
        del shape["lengths"]                 # a decode step's caches are not padded
    if "tokens" in shape:
        shape["batch"] = shape.pop("tokens") // shape["seq_len"]
    if "d_model" in shape:
        shape["heads"] = shape.pop("d_model") // shape["head_dim"]
    return shape


def parse_suite(doc: dict, path: str = "<suite>") -> Suite:
    """Validate a parsed suite document and expand its sweeps into Cases."""
    path = str(path)
    if not isinstance(doc, dict):
        raise msg.error(path, "", f"expected a table at the top level, got {msg.kind(doc)}")
    for key in doc:
        if key not in TOP_KEYS:
            raise msg.unknown(path, "", key, TOP_KEYS)

    name = doc.get("name", msg.safe_stem(Path(path).stem))
    if not msg.is_safe_name(name):
        length = f" ({len(name)} characters)" if isinstance(name, str) else ""
        raise msg.error(path, "name", f"expected a folder name ({msg.NAME_RULE}), "
                                      f"got {msg.kind(name)}{length}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise msg.error(path, "description", f"expected a string, got {msg.kind(description)}")
    measure = _measure(path, doc.get("measure"))

    sweeps = doc.get("sweep")
    if sweeps is None:
        raise msg.error(path, "", "no [[sweep]] table (a suite needs at least one)")
    if not isinstance(sweeps, list):
        raise msg.error(path, "sweep",
                        f"expected an array of tables ([[sweep]]), got {msg.kind(sweeps)}")
    if not sweeps:
        raise msg.error(path, "sweep", "empty (a suite needs at least one [[sweep]])")

    # A dict keeps the first occurrence of each case in product order, across sweeps.
    cases: dict[Case, None] = {}
    for index, raw in enumerate(sweeps):
        cases.update(dict.fromkeys(_sweep(path, index, raw, name, MAX_CASES - len(cases))))
    return Suite(name, description, path, measure, tuple(cases), suite_hash(sweeps, measure))


def suite_hash(sweeps: list, measure: Measure) -> str:
    """The grid and measure settings, key order and TOML spelling aside."""
    text = json.dumps({"sweep": sweeps, "measure": asdict(measure)},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_suite(path: str | os.PathLike) -> Suite:
    """Read and parse a suite file; every way reading it can fail is a SuiteError."""
    shown = os.fsdecode(path)
    try:
        # utf-8-sig: a BOM left by a Windows editor is not worth an error.
        doc = tomllib.loads(Path(shown).read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise msg.error(shown, "", "no such file") from None
    except IsADirectoryError:
        raise msg.error(shown, "", "is a directory, not a suite file") from None
    except UnicodeDecodeError as err:
        raise msg.error(shown, "", f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        first = (str(err).splitlines() or ["?"])[0]
        raise msg.error(shown, "", f"not valid TOML: {first}") from None
    except OSError as err:
        raise msg.error(shown, "", f"cannot read: {err.strerror or err}") from None
    return parse_suite(doc, shown)
