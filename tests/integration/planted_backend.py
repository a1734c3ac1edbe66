"""A test-only wrapper backend: the real torch `eager` backend with one bug planted
per variant, to show that `attnbench check` catches each kind of mistake a
framework port makes. Nothing in backends/ is changed: each fault is patched in
around torch's `prepare` (where modules are built and the core chosen) and undone
right after, or applied to the outputs.

  none    torch eager as it is: the control, must pass
  scale   softmax scale 1/sqrt(D + 1) instead of 1/sqrt(D)
  scale-bf16  softmax scale 1/sqrt(D) * 1.01, bfloat16 only (as sdpa-flash,
          sdpa-cudnn and dpa-cudnn run): no float32 case shows it, and bfloat16's
          check cannot tell it from rounding (2 % it can; test_check.py)
  mask    causal mask off by one: each query also sees the next key
  topleft the causal mask aligned top-left (query i at position i, as torch's is_causal
          and a plain triu mask align it) where there are fewer queries than keys
  window  a sliding window one key too wide
  padding the key mask of a padded batch's lengths ignored: padding keys attended
          (with the causal mask and right padding, no token row sees one anyway)
  late    the same, for the queries past position 1024 alone (as a kernel whose
          later tiles are wrong): the check's small shapes never reach it, the
          sampled check of a long cell does
  eps     LayerNorm epsilon 1e-3 (Keras' default) instead of the spec's 1e-5
  gelu    exact (erf) GELU instead of the spec's tanh form
  grad    one gradient dropped: grad/w1 (block, transformer), else the first
          weight's (mha) or input's (attention) comes back as zeros, as when a
          tensor is left out of autograd

Selected by ATTNBENCH_BACKENDS=tests.integration.planted_backend; like the faulty
backend, it imports only the catalogue's names at module level (harness.spec.catalog
registers it; see faulty_backend.py), and torch where it builds a step.
"""
from __future__ import annotations

import contextlib
import math

from harness.spec.catalog import BackendInfo, Variant, static_unsupported

FAULTS = ("scale", "mask", "late", "topleft", "window", "padding", "eps", "gelu", "grad")
LATE = 1024
LOW_SCALE = "scale-bf16"          # a 1 % scale error in a bfloat16-only variant
LOW_SCALE_ERROR = 1.01
INFO = BackendInfo(
    name="planted", framework="torch", module=__name__, settings="backends.torch.settings",
    variants=(Variant("none", "torch eager, unchanged", devices=("cpu",)),
              *(Variant(f, f"torch eager with the {f} fault planted", devices=("cpu",))
                for f in FAULTS),
              Variant(LOW_SCALE, f"torch eager, softmax scale x{LOW_SCALE_ERROR}, "
                      f"bfloat16 only", devices=("cpu",), dtypes=("bfloat16",))),
)


def _scale(fault: str, d: int) -> float:
    if fault == LOW_SCALE:
        return LOW_SCALE_ERROR / math.sqrt(d)
    return 1 / math.sqrt(d + (fault == "scale"))


def _faulty_core(fault: str, case):
    """torch eager's core with the fault, its mask built from the Case's definition
    (whatever mask the backend would bind): query row i at position p, bottom-right
    (p = seq_len - q_len + i) but for `topleft` (p = i, as torch's is_causal aligns)."""
    import torch

    def core(q, k, v, causal, mask=None):
        if k.shape[1] != q.shape[1]:        # grouped heads, as torch eager groups them
            group = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        d = q.shape[-1]
        scores = torch.matmul(q, k.transpose(-2, -1)) * _scale(fault, d)
        hidden = _hidden(fault, case)
        if hidden is not None:      # a finite fill, as torch eager's: rows that see no key
            scores = scores.masked_fill(hidden, torch.finfo(scores.dtype).min)
        return torch.matmul(torch.softmax(scores.float(), dim=-1).to(q.dtype), v)
    return core


def _hidden(fault: str, case):
    """(q_len, seq_len), or (B, 1, q_len, seq_len) for a padded batch, True where the
    faulty core hides a key; None where it hides none."""
    import torch

    from harness.spec import padding
    lengths = None if fault == "padding" else padding.key_lengths(case)
    rows, keys = torch.arange(case.q_len)[:, None], torch.arange(case.seq_len)[None, :]
    if lengths is not None:
        lengths = torch.from_numpy(lengths)[:, None, None, None]
        if not case.causal:
            return keys >= lengths
    elif not case.causal:
        return None
    p = rows if fault == "topleft" else rows + case.q_offset
    ahead = 1 if fault == "mask" else 0              # `mask`: the next key seen too
    if fault == "late":
        ahead = (p >= LATE).to(torch.int64)
    hidden = keys > p + ahead
    if case.window:
        hidden |= keys <= p - case.window - int(fault == "window")
    return hidden if lengths is None else hidden | (keys >= lengths)


@contextlib.contextmanager
def planted(fault: str, case):
    """The fault in place while torch's backend builds the case's step."""
    import torch

    from backends.torch import backend as torch_backend
    from backends.torch import layers
    saved = (torch_backend.core_for, layers.LAYERNORM_EPS, torch.nn.GELU)
    if fault in ("scale", "mask", "late", "topleft", "window", "padding", LOW_SCALE):
        torch_backend.core_for = lambda variant: _faulty_core(fault, case)
    if fault == "eps":
        layers.LAYERNORM_EPS = 1e-3
    if fault == "gelu":
        exact = saved[2]
        torch.nn.GELU = lambda approximate="none": exact(approximate="none")
    try:
        yield
    finally:
        torch_backend.core_for, layers.LAYERNORM_EPS, torch.nn.GELU = saved


class Dropped:
    """A prepared step whose outputs lose one gradient."""

    def __init__(self, inner):
        self.inner = inner
        self.step, self.sync = inner.step, inner.sync

    def outputs(self):
        got = dict(self.inner.outputs())
        grads = ([n for n in got if n.startswith("grad/w")]
                 or [n for n in got if n.startswith("grad/")])
        if grads:
            name = "grad/w1" if "grad/w1" in got else grads[0]
            got[name] = got[name] * 0
        return got


class PlantedBackend:
    def __init__(self, info: BackendInfo):
        from backends.base import load_backend
        self.info = info
        self.torch = load_backend("torch")

    def version(self) -> str:
        return self.torch.version()

    def unsupported(self, case) -> str | None:
        return static_unsupported(case) or self.torch.unsupported(self._eager(case))

    def _eager(self, case):
        return case.replace(backend="torch", variant="eager")

    def prepare(self, case, weights: dict, inputs: dict):
        with planted(case.variant, case):
            prepared = self.torch.prepare(self._eager(case), weights, inputs)
        return Dropped(prepared) if case.variant == "grad" else prepared

    def forward(self, case, weights: dict, inputs: dict):
        step = case if case.mode == "decode" else case.replace(mode="forward")
        return self.prepare(step, weights, inputs).outputs()["out"]

    def step_peak(self, case, run_step):
        return self.torch.step_peak(self._eager(case), run_step)


def make_backend(info: BackendInfo) -> PlantedBackend:
    return PlantedBackend(info)
