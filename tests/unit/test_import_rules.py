"""The parts of the house keep their rules (tests/unit/import_rules.py, written out
in docs/design.md): checked on the project itself, and shown to catch a planted
violation of each kind on a copy of it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from import_rules import cycles, import_graph, part_of, violations

ROOT = Path(__file__).resolve().parents[2]


def test_the_project_keeps_every_rule():
    graph = import_graph(ROOT)
    assert "harness.run.worker" in graph and "backends.torch.backend" in graph
    assert violations(graph) == []


def test_every_module_belongs_to_a_part():
    loose = [m for m in import_graph(ROOT) if part_of(m) is None]
    assert sorted(loose) == ["harness", "harness.__main__", "harness.reference",
                             "harness.store", "harness.weights"]


def test_every_backend_folder_has_the_same_file_names():
    """A reader who knows one backend finds the same part in the others' files."""
    folders = [p for p in (ROOT / "backends").iterdir() if (p / "backend.py").exists()]
    names = {p.name: sorted(f.name for f in p.glob("*.py")) for p in folders}
    assert len(folders) == 3 and len({tuple(n) for n in names.values()}) == 1, names


@pytest.fixture
def copy(tmp_path):
    for top in ("harness", "backends"):
        shutil.copytree(ROOT / top, tmp_path / top,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _plant(root: Path, module: str, line: str, inside_function: bool = False) -> None:
    path = root / (module.replace(".", "/") + ".py")
    if not path.exists():                                 # a package
        path = root / module.replace(".", "/") / "__init__.py"
    if inside_function:
        line = f"\n\ndef _planted():\n    {line}\n"
    path.write_text(path.read_text() + "\n" + line + "\n")


@pytest.mark.parametrize("module, line, words", [
    ("harness.spec.weights", "from harness.run import runner", "rank 0) may not import"),
    ("harness.results.store", "from harness.report import tables", "may not import"),
    ("harness.correctness.gate", "from harness.results import store", "rank 2) may not"),
    ("harness.report.tables", "from backends.base import load_backend",
     "report and results never import backends"),
    ("harness.run.runner", "from backends import load_backend", "only the worker"),
    ("harness.cli", "import backends.torch.backend", "only the worker"),
    ("backends.jax.layers", "from backends.torch import layers", "a backend imports only"),
    ("backends.torch.backend", "from harness.run import worker", "a backend imports only"),
    ("harness.store", "from harness.report import tables", "an old name imports only"),
])
def test_a_planted_violation_is_named(copy, module, line, words):
    assert violations(import_graph(copy)) == []
    _plant(copy, module, line, inside_function=True)     # lazy imports count too
    found = violations(import_graph(copy))
    assert len(found) >= 1 and all(module in f for f in found), found
    assert any(words in f for f in found), found


def test_a_planted_cycle_is_named(copy):
    _plant(copy, "harness.measure.timing", "from harness.measure import stats",
           inside_function=True)
    _plant(copy, "harness.measure.stats", "from harness.measure import timing",
           inside_function=True)
    found = violations(import_graph(copy))
    assert any(f.startswith("import cycle:") and "harness.measure.stats" in f
               and "harness.measure.timing" in f for f in found), found


@pytest.mark.parametrize("call", ['importlib.import_module(f"backends.{name}.interop")',
                                  'import_module("backends.torch.backend")',
                                  '__import__("backends.jax.backend", fromlist=["x"])'])
def test_a_dynamic_backend_import_counts(copy, call):
    _plant(copy, "harness.report.plots", call, inside_function=True)
    assert any("harness.report.plots imports backends" in f
               for f in violations(import_graph(copy)))


def test_cycles_on_a_small_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
