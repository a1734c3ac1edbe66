"""The spec's parameters, declared once: one row each, in draw order.

A row gives the canonical name inside a block, the sub-layer that holds it (the
module tree every backend's modules and the reference follow: a block holds ln1,
mha with q, k, v and o, ln2, w1 and w2; a stack holds blocks/<i> and lnf), its
role, and its shape in the spec's sizes, (in, out) for projections
(docs/design.md, "the math"). Weights, the reference and the backends all read
this table; a backend adds only its framework's attribute names and layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.spec.case import MLP_RATIO, Case

WEIGHT, BIAS, GAIN, SHIFT = "weight", "bias", "gain", "shift"   # LayerNorm: gain, shift
INPUT = "input"                 # what make_inputs draws: q, k, v, x and g
STACK, ATTENTION, FINAL_NORM = "blocks", "mha", "lnf"    # sub-layer names the table uses


@dataclass(frozen=True)
class Param:
    name: str                   # inside one block: "wq", "ln1_g"
    module: str                 # the sub-layer holding it: "mha/q", "ln1", "w1"
    role: str                   # WEIGHT, BIAS, GAIN or SHIFT
    shape: tuple[str, ...]      # "d" = d_model, "mlp" = MLP_RATIO * d_model,
                                # "kv" = kv_heads * head_dim


# The block's parameters; its mha's are the first eight, a stack's final LayerNorm follows.
BLOCK = (
    Param("wq", "mha/q", WEIGHT, ("d", "d")),
    Param("bq", "mha/q", BIAS, ("d",)),
    Param("wk", "mha/k", WEIGHT, ("d", "kv")),
    Param("bk", "mha/k", BIAS, ("kv",)),
    Param("wv", "mha/v", WEIGHT, ("d", "kv")),
    Param("bv", "mha/v", BIAS, ("kv",)),
    Param("wo", "mha/o", WEIGHT, ("d", "d")),
    Param("bo", "mha/o", BIAS, ("d",)),
    Param("ln1_g", "ln1", GAIN, ("d",)),
    Param("ln1_b", "ln1", SHIFT, ("d",)),
    Param("ln2_g", "ln2", GAIN, ("d",)),
    Param("ln2_b", "ln2", SHIFT, ("d",)),
    Param("w1", "w1", WEIGHT, ("d", "mlp")),
    Param("b1", "w1", BIAS, ("mlp",)),
    Param("w2", "w2", WEIGHT, ("mlp", "d")),
    Param("b2", "w2", BIAS, ("d",)),
)
MHA = tuple(p for p in BLOCK if p.module.startswith(ATTENTION + "/"))
FINAL = (Param("lnf_g", FINAL_NORM, GAIN, ("d",)), Param("lnf_b", FINAL_NORM, SHIFT, ("d",)))


@dataclass(frozen=True)
class Placed:
    """One parameter of a Case's workload."""

    name: str                   # as make_weights names it: "wq", "layer0.wq", "lnf_g"
    module: str                 # sub-layer path in the workload's module: "blocks/0/mha/q"
    role: str
    shape: tuple[int, ...]


def layer_module(i: int) -> str:
    return f"{STACK}/{i}"


def layer_params(case: Case) -> tuple[Placed, ...]:
    """Every parameter of the workload, in draw order (none for the attention core).
    The mha workload's module is the attention layer itself, so its paths start at q."""
    sizes = {"d": case.d_model, "mlp": MLP_RATIO * case.d_model,
             "kv": case.kv_heads * case.head_dim}

    def place(p: Param, name: str, module: str) -> Placed:
        return Placed(name, module, p.role, tuple(sizes[s] for s in p.shape))

    if case.workload == "attention":
        return ()
    if case.workload == "mha":
        return tuple(place(p, p.name, p.module.removeprefix(ATTENTION + "/")) for p in MHA)
    if case.workload == "block":
        return tuple(place(p, p.name, p.module) for p in BLOCK)
    stack = tuple(place(p, f"layer{i}.{p.name}", f"{layer_module(i)}/{p.module}")
                  for i in range(case.n_layers) for p in BLOCK)
    return stack + tuple(place(p, p.name, p.module) for p in FINAL)


def initial(role: str, z: np.ndarray) -> np.ndarray:
    """A standard normal float32 draw, scaled for its role."""
    if role == WEIGHT:                  # keeps activations O(1) through layers
        return z / np.float32(np.sqrt(z.shape[0]))
    if role == GAIN:                    # LayerNorm scale near 1
        return 1 + np.float32(0.1) * z
    if role in (BIAS, SHIFT):           # non-zero, so their gradients matter
        return np.float32(0.1) * z
    return z


# -- the same parameters by sub-layer and role, for code that walks the module tree --

Tree = dict[str, dict[str, np.ndarray]]     # sub-layer path -> role -> array


def by_module(case: Case, arrays: dict) -> Tree:
    """Canonical arrays grouped by sub-layer path, then role: tree["mha/q"][WEIGHT],
    tree["ln1"][GAIN]. Read by role, never by position, so that the order of the
    table's rows can never swap a gain for a shift."""
    tree: Tree = {}
    for p in layer_params(case):
        tree.setdefault(p.module, {})[p.role] = arrays[p.name]
    return tree


def by_name(case: Case, tree: Tree) -> dict:
    """The inverse of by_module: canonical name -> array."""
    return {p.name: tree[p.module][p.role] for p in layer_params(case)}


def within(tree: Tree, module: str) -> Tree:
    """The sub-layers under `module`, their paths relative to it."""
    prefix = module + "/"
    return {k.removeprefix(prefix): v for k, v in tree.items() if k.startswith(prefix)}


def under(module: str, tree: Tree) -> Tree:
    """The inverse of within: paths relative to `module` made whole again."""
    return {f"{module}/{k}": v for k, v in tree.items()}
