"""The spec's layers as torch.nn modules, loaded from harness.spec.weights.

The modules nest as harness.spec.params's sub-layers do, so each parameter is
found by its table path and torch's attribute for its role. Canonical weights are
(in, out); nn.Linear keeps (out, in), so projection weights load transposed and
their gradients are transposed back (backends.common). LayerNorm epsilon and the
tanh GELU are set from the spec (torch's default GELU is the exact one).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import backends.common as common
from harness.spec import LAYERNORM_EPS, MLP_RATIO, Case
from harness.spec.params import BIAS, GAIN, SHIFT, WEIGHT

# torch's attribute for each role, and the roles it stores transposed (out, in).
ATTRIBUTES = {WEIGHT: "weight", BIAS: "bias", GAIN: "weight", SHIFT: "bias"}
TRANSPOSED = frozenset({WEIGHT})


class LayerNorm(nn.LayerNorm):
    """The spec's LayerNorm: float32 math whatever the storage dtype, as autocast
    runs it. torch's own bfloat16 kernel on the CPU sums the scale and shift
    gradients in bfloat16: 24 ulps off at 4096 rows, against 0.6 for one rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(),
                            self.bias.float(), self.eps).to(x.dtype)


class MultiHeadAttention(nn.Module):
    """The spec's attention layer. `window` is the case's; the mask that carries it
    (and the bottom-right causal one) comes bound to `core` by the backend, built
    once per cell. In decode mode the layer holds its KV caches (use_caches)."""

    def __init__(self, d_model: int, heads: int, causal: bool, core, kv_heads: int,
                 window: int | None = None):
        super().__init__()
        self.heads, self.causal, self.core, self.window = heads, causal, core, window
        kv_width = kv_heads * (d_model // heads)      # grouped heads: narrower k and v
        self.q, self.o = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.k, self.v = nn.Linear(d_model, kv_width), nn.Linear(d_model, kv_width)
        # Buffers, not plain attributes, so torch.compile sees their in-place writes.
        self.register_buffer("k_cache", None, persistent=False)
        self.register_buffer("v_cache", None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t):       # (B, N, d) -> (B, H, N, D): head h owns features h*D:(h+1)*D
            return t.view(b, n, -1, d // self.heads).transpose(1, 2)

        k, v = split(self.k(x)), split(self.v(x))
        if self.k_cache is not None:
            k, v = self.write_caches(k, v)
        o = self.core(split(self.q(x)), k, v, self.causal)
        return self.o(o.transpose(1, 2).reshape(b, n, d))

    @torch.no_grad()
    def write_caches(self, k: torch.Tensor, v: torch.Tensor):
        """A decode step: the new tokens' keys and values into the caches' last
        slots, in place (the same slots every step, so steps repeat), then all of it
        to attend over. No gradients: decode is forward-only."""
        slots = self.k_cache.shape[2] - k.shape[2]
        self.k_cache[:, :, slots:] = k
        self.v_cache[:, :, slots:] = v
        return self.k_cache, self.v_cache
class Block(nn.Module):
    """Pre-LN: h = x + mha(LN1(x)); out = h + W2 gelu(W1 LN2(h) + b1) + b2."""

    def __init__(self, d_model: int, heads: int, causal: bool, core, kv_heads: int,
                 window: int | None = None):
        super().__init__()
        self.ln1 = LayerNorm(d_model, eps=LAYERNORM_EPS)
        self.mha = MultiHeadAttention(d_model, heads, causal, core, kv_heads, window)
        self.ln2 = LayerNorm(d_model, eps=LAYERNORM_EPS)
        self.w1 = nn.Linear(d_model, MLP_RATIO * d_model)
        self.gelu = nn.GELU(approximate="tanh")
        self.w2 = nn.Linear(MLP_RATIO * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.mha(self.ln1(x))
        return h + self.w2(self.gelu(self.w1(self.ln2(h))))


class Transformer(nn.Module):
    def __init__(self, d_model: int, heads: int, causal: bool, core, layers: int,
                 kv_heads: int, window: int | None = None):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d_model, heads, causal, core, kv_heads, window)
                                    for _ in range(layers))
        self.lnf = LayerNorm(d_model, eps=LAYERNORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.lnf(x)


def build(case: Case, core) -> tuple[nn.Module, dict[str, nn.Parameter]]:
    """The workload's module (mha, block or transformer) and its parameters by
    canonical name, in the table's order."""
    module = common.workload_module(case, (MultiHeadAttention, Block, Transformer), core)
    return module, common.module_params(case, module, ATTRIBUTES)


def use_caches(module: nn.Module, k_caches: list[torch.Tensor],
               v_caches: list[torch.Tensor]) -> None:
    """Decode mode: each attention layer's own KV caches, (B, KV, N, D) tensors on
    the device, in the module's layer order."""
    attention_layers = [m for m in module.modules() if isinstance(m, MultiHeadAttention)]
    if len(attention_layers) != len(k_caches):
        raise ValueError(f"{len(k_caches)} caches for {len(attention_layers)} layers")
    for layer, k_cache, v_cache in zip(attention_layers, k_caches, v_caches):
        layer.k_cache, layer.v_cache = k_cache, v_cache


@torch.no_grad()
def load(case: Case, params: dict[str, nn.Parameter], weights: dict) -> None:
    """Every parameter of the module from `weights`, walked from the module's side:
    a missing weight raises KeyError instead of leaving torch's random init."""
    ours = common.in_layout(case, {name: weights[name] for name in params}, TRANSPOSED)
    for name, param in params.items():
        if tuple(param.shape) != ours[name].shape:      # copy_ would broadcast
            raise ValueError(f"{name}: shape {ours[name].shape}, module wants "
                             f"{tuple(param.shape)} (in torch's layout)")
        param.copy_(torch.from_numpy(ours[name]))
