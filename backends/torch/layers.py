"""The spec's layers as torch.nn modules, loaded from harness.spec.weights.

Canonical weights are (in, out); nn.Linear keeps (out, in), so loading
transposes and gradients are transposed back. LayerNorm epsilon and the tanh
GELU are set from the spec (torch's default GELU is the exact one).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.spec import LAYERNORM_EPS, MLP_RATIO, Case


class LayerNorm(nn.LayerNorm):
    """The spec's LayerNorm: float32 math whatever the storage dtype, as autocast
    runs it. torch's own bfloat16 kernel on the CPU sums the scale and shift
    gradients in bfloat16: 24 ulps off at 4096 rows, against 0.6 for one rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(),
                            self.bias.float(), self.eps).to(x.dtype)


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, causal: bool, core):
        super().__init__()
        self.heads, self.causal, self.core = heads, causal, core
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t):       # (B, N, d) -> (B, H, N, D): head h owns features h*D:(h+1)*D
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        o = self.core(split(self.q(x)), split(self.k(x)), split(self.v(x)), self.causal)
        return self.o(o.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-LN: h = x + mha(LN1(x)); out = h + W2 gelu(W1 LN2(h) + b1) + b2."""

    def __init__(self, d_model: int, heads: int, causal: bool, core):
        super().__init__()
        self.ln1 = LayerNorm(d_model, eps=LAYERNORM_EPS)
        self.mha = MultiHeadAttention(d_model, heads, causal, core)
        self.ln2 = LayerNorm(d_model, eps=LAYERNORM_EPS)
        self.w1 = nn.Linear(d_model, MLP_RATIO * d_model)
        self.gelu = nn.GELU(approximate="tanh")
        self.w2 = nn.Linear(MLP_RATIO * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.mha(self.ln1(x))
        return h + self.w2(self.gelu(self.w1(self.ln2(h))))


class Transformer(nn.Module):
    def __init__(self, d_model: int, heads: int, causal: bool, core, layers: int):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d_model, heads, causal, core) for _ in range(layers))
        self.lnf = LayerNorm(d_model, eps=LAYERNORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.lnf(x)


Params = dict[str, tuple[nn.Parameter, bool]]    # canonical name -> (param, transposed?)


def _mha_params(m: MultiHeadAttention) -> Params:
    params = {}
    for name, linear in (("q", m.q), ("k", m.k), ("v", m.v), ("o", m.o)):
        params[f"w{name}"] = (linear.weight, True)
        params[f"b{name}"] = (linear.bias, False)
    return params


def _block_params(block: Block) -> Params:
    return {**_mha_params(block.mha),
            "ln1_g": (block.ln1.weight, False), "ln1_b": (block.ln1.bias, False),
            "ln2_g": (block.ln2.weight, False), "ln2_b": (block.ln2.bias, False),
            "w1": (block.w1.weight, True), "b1": (block.w1.bias, False),
            "w2": (block.w2.weight, True), "b2": (block.w2.bias, False)}


def build(case: Case, core) -> tuple[nn.Module, Params]:
    """The workload's module (mha, block or transformer) and its parameters."""
    d, h = case.d_model, case.heads
    if case.workload == "mha":
        module = MultiHeadAttention(d, h, case.causal, core)
        return module, _mha_params(module)
    if case.workload == "block":
        module = Block(d, h, case.causal, core)
        return module, _block_params(module)
    module = Transformer(d, h, case.causal, core, case.n_layers)
    params = {f"layer{i}.{k}": v for i, b in enumerate(module.blocks)
              for k, v in _block_params(b).items()}
    params["lnf_g"] = (module.lnf.weight, False)
    params["lnf_b"] = (module.lnf.bias, False)
    return module, params


@torch.no_grad()
def load(params: Params, weights: dict) -> None:
    for name, (param, transposed) in params.items():
        value = torch.from_numpy(weights[name])
        param.copy_(value.T if transposed else value)
