"""The rules between the parts of the house (docs/design.md, "The house"), checked
over the import graph read from the source: every `import` and `from ... import`,
at module level or inside a function, and importlib.import_module("backends...")
with a literal or f-string name.

A part imports only parts of a lower rank (parts of one rank never import each
other), and there are no cycles between modules. Besides the ranks: report and
results never import backends; only the workers (a cell's, a calibration's) and
the pytest plugin load a backend; a backend imports only harness.spec, harness.measure, backends.base,
backends.common and its own folder; the old public names (harness.weights,
harness.reference, harness.store) import only the module they stand for.
"""
from __future__ import annotations

import ast
from pathlib import Path

RANKS = {
    "harness.spec": 0,
    "harness.measure": 1,
    "harness.correctness": 2, "harness.results": 2, "backends": 2,
    "harness.report": 3,
    "harness.run": 4, "harness.history": 4,
    "harness.cli": 5, "harness.pytest_plugin": 5,
}
# The old module names users import; each is the module it names (sys.modules).
COMPAT = {"harness.weights": "harness.spec.weights",
          "harness.reference": "harness.spec.reference",
          "harness.store": "harness.results.store"}
ENTRY = {"harness": (), "harness.__main__": ("harness.cli",)}
LOADS_BACKENDS = ("harness.run.worker", "harness.run.calibrate", "harness.pytest_plugin")
BACKEND_MAY_IMPORT = ("harness.spec", "harness.measure", "backends.base", "backends.common")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imported(node: ast.AST, module: str, package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            here = module.split(".") if package else module.split(".")[:-1]
            here = here[:len(here) - (node.level - 1)]
            base = ".".join(here + ([base] if base else []))
        # `from harness.report import tables` imports harness.report.tables
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    called = getattr(node.func, "attr", None) or getattr(node.func, "id", None) \
        if isinstance(node, ast.Call) else None
    if called in ("import_module", "__import__") and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [arg.value]
        first = arg.values[0] if isinstance(arg, ast.JoinedStr) and arg.values else None
        if isinstance(first, ast.Constant):                # f"backends.{name}.interop"
            return [str(first.value).rstrip(".")]
    return []


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports, for harness/ and backends/ under root."""
    files = {module_name(root, p): p for top in ("harness", "backends")
             for p in sorted((root / top).rglob("*.py"))}
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        names = {n for node in ast.walk(tree) for n in _imported(node, module, _is_package(path))}
        graph[module] = {_known(n, files) for n in names if _known(n, files)} - {module}
    return graph


def _known(name: str, files: dict) -> str | None:
    """The project module a dotted name lands in (its longest known prefix)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in files:
        parts.pop()
    return ".".join(parts) or None


def part_of(module: str) -> str | None:
    return next((p for p in sorted(RANKS, key=len, reverse=True)
                 if module == p or module.startswith(p + ".")), None)


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = [v for module, deps in sorted(graph.items()) for dep in sorted(deps)
             if (v := _edge_violation(module, dep))]
    return found + [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]


def _edge_violation(module: str, dep: str) -> str | None:
    edge = f"{module} imports {dep}"
    if module in COMPAT:
        return None if dep in (COMPAT[module], COMPAT[module].rsplit(".", 1)[0]) else \
            f"{edge}: an old name imports only the module it stands for"
    if module in ENTRY:
        return None if dep in ENTRY[module] else f"{edge}: not an entry point's import"
    src, dst = part_of(module), part_of(dep)
    if src is None or dst is None:
        return f"{edge}: outside every part"
    if dst == "backends" and dep != "backends.base" and src != "backends":
        if not any(module == m or module.startswith(m + ".") for m in LOADS_BACKENDS):
            return f"{edge}: only the workers and the pytest plugin load a backend"
    if src == "backends":
        own = ".".join(module.split(".")[:2])
        if not (dep.startswith(BACKEND_MAY_IMPORT) or dep == own or dep.startswith(own + ".")):
            return f"{edge}: a backend imports only spec, measure, its base and its own folder"
    if dst == "backends" and src in ("harness.report", "harness.results"):
        return f"{edge}: report and results never import backends"
    if src != dst and RANKS[dst] >= RANKS[src]:
        return f"{edge}: {src} (rank {RANKS[src]}) may not import {dst} (rank {RANKS[dst]})"
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of two or more modules, as one cycle through it."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:             # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group) + [sorted(group)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups
