"""What the three backends share, framework-free: where each parameter of the table
(harness.spec.params) sits in a framework's module tree, the layouts the canonical
arrays arrive in and go back to (docs/design.md, the math), and the outputs named
as the reference names them.

A backend's modules nest as the table's sub-layer paths do ("blocks/0/mha/q"), so
a backend states only its framework's attribute name for each role (its own
ATTRIBUTES: nn.Linear's `weight`, nnx.Linear's `kernel`) and which roles it stores
transposed.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from harness.spec import params
from harness.spec.case import Case
from harness.spec.weights import input_shapes

if TYPE_CHECKING:
    from harness.spec.catalog import BackendInfo


class BackendCommon:
    """What every backend class shares: its catalogue entry, and the forward output
    in-process (docs/design.md, the Python surface) from its own prepare()."""

    def __init__(self, info: BackendInfo):
        self.info = info

    def forward(self, case: Case, weights: dict, inputs: dict) -> np.ndarray:
        step = case if case.mode == "decode" else case.replace(mode="forward")  # no grads
        return self.prepare(step, weights, inputs).outputs()["out"]


def input_names(case: Case) -> list[str]:
    """The inputs a train step differentiates, in gradient order: q, k, v or x."""
    return [name for name in input_shapes(case) if name != "g"]


def swap_heads(a: np.ndarray) -> np.ndarray:
    """(B, N, H, D) <-> (B, H, N, D), contiguous: the same swap both ways."""
    return np.ascontiguousarray(a.transpose(0, 2, 1, 3))


def workload_module(case: Case, classes: tuple[Callable, Callable, Callable], *args, **kwargs):
    """The workload's module from a backend's (MultiHeadAttention, Block, Transformer)
    classes, each called as cls(d_model, heads, causal, *args, [layers=], kv_heads=,
    window=, **kwargs)."""
    mha, block, transformer = classes
    shape = (case.d_model, case.heads, case.mask_hides_keys, *args)
    kwargs = {**kwargs, "kv_heads": case.kv_heads, "window": case.window}
    if case.workload == "mha":
        return mha(*shape, **kwargs)
    if case.workload == "block":
        return block(*shape, **kwargs)
    return transformer(*shape, layers=case.n_layers, **kwargs)


def attribute_paths(case: Case, attributes: Mapping[str, str]) -> dict[str, str]:
    """Canonical name -> "/"-separated path of its parameter in the workload's
    module: the table's sub-layer, then the framework's attribute for the role."""
    return {p.name: f"{p.module}/{attributes[p.role]}" for p in params.layer_params(case)}


def find(module, path: str):
    """The object at `path` in a module tree: attributes by name, list items by index."""
    found = module
    for step in path.split("/"):
        found = found[int(step)] if step.isdigit() else getattr(found, step)
    return found


def module_params(case: Case, module, attributes: Mapping[str, str]) -> dict:
    """Canonical name -> the framework's parameter object, in the table's order."""
    return {name: find(module, path) for name, path in attribute_paths(case, attributes).items()}


def _transpose_roles(case: Case, arrays: dict, transposed: frozenset[str]) -> dict:
    roles = {p.name: p.role for p in params.layer_params(case)}
    return {name: (a.T if roles.get(name) in transposed else a) for name, a in arrays.items()}


def in_layout(case: Case, weights: dict, transposed: frozenset[str] = frozenset()) -> dict:
    """The canonical (in, out) weights in the framework's layout, where the roles
    in `transposed` are stored (out, in)."""
    return _transpose_roles(case, weights, transposed)


def canonical_layout(case: Case, arrays: dict, transposed: frozenset[str] = frozenset()) -> dict:
    """The way back from in_layout: weights (or their gradients) in the framework's
    layout as canonical (in, out) arrays. The same transpose, which undoes itself."""
    return _transpose_roles(case, arrays, transposed)


def canonical_outputs(case: Case, out: np.ndarray, grads: Iterable[tuple[str, np.ndarray]],
                      bhnd: bool = False,
                      transposed: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """{"out", "grad/<name>"} back in the canonical layouts: the attention core's
    tensors from (B, H, N, D) when the backend kept them so (`bhnd`), weights'
    gradients from the framework's layout (`transposed`, as canonical_layout)."""
    grads = dict(grads)
    if bhnd:                          # the core has no weights: every tensor swaps
        return {"out": swap_heads(out), **{f"grad/{k}": swap_heads(a) for k, a in grads.items()}}
    grads = canonical_layout(case, grads, transposed)
    return {"out": out, **{f"grad/{k}": a for k, a in grads.items()}}
