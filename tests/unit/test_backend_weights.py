"""Every backend loads each parameter of its module from the canonical weights, and a
weight that is missing fails loudly: it never leaves the framework's own random
initialization in place (which would only show as a wrong answer, if at all)."""
from __future__ import annotations

import re

import pytest

from backends.base import load_backend
from harness.spec import Case
from harness.spec.weights import make_inputs, make_weights

# What each backend needs installed, and a variant of it that runs on the CPU.
FRAMEWORKS = {"torch": (("torch",), "eager"),
              "tensorflow": (("tensorflow",), "eager"),
              "jax": (("jax", "flax"), "jit")}
# One dropped weight per workload, a different role each: bias, shift, gain.
DROPPED = {"mha": "bo", "block": "ln1_b", "transformer": "layer1.ln2_g"}


def backend_and_case(name: str, workload: str):
    modules, variant = FRAMEWORKS[name]
    for module in modules:
        pytest.importorskip(module)
    case = Case("unit", workload, name, variant, "forward", "float32", "cpu",
                batch=1, seq_len=3, heads=2, head_dim=2, causal=True, layers=2)
    return load_backend(name), case


@pytest.mark.parametrize("workload", sorted(DROPPED))
@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_a_missing_weight_raises(name, workload):
    backend, case = backend_and_case(name, workload)
    weights = make_weights(case)
    del weights[DROPPED[workload]]
    with pytest.raises(KeyError, match=re.escape(DROPPED[workload])):
        backend.prepare(case, weights, make_inputs(case))


@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_every_weight_present_loads(name):
    """The control: the same case with every weight runs."""
    backend, case = backend_and_case(name, "transformer")
    out = backend.prepare(case, make_weights(case), make_inputs(case)).outputs()["out"]
    assert out.shape == (1, 3, 4)
