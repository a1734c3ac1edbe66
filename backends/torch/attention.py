"""The attention core in PyTorch: the spec's math op by op, and SDPA.

Layout: (B, H, N, D), what F.scaled_dot_product_attention takes, so no variant
pays for a transpose inside the core. The attention workload's inputs are
converted to it before timing; mha transposes after its projections (timed,
as any real model would).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

# The kernel each pinned variant allows; plain `sdpa` lets PyTorch choose.
SDPA_KERNELS = {
    "sdpa-flash": SDPBackend.FLASH_ATTENTION,
    "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
    "sdpa-math": SDPBackend.MATH,
    "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION,
}


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    causal: bool) -> torch.Tensor:
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        n = q.shape[-2]
        hidden = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(hidden, float("-inf"))
    # The spec computes softmax in float32 whatever the storage dtype.
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return torch.matmul(probs, v)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   causal: bool) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def core_for(variant: str):
    return eager_attention if variant == "eager" else sdpa_attention


def pin_sdpa_kernel(variant: str) -> None:
    """Allow only the variant's SDPA kernel (all of them for the others).

    Set once per cell through the global switches rather than per call with the
    sdpa_kernel context manager, so the timed step carries no bookkeeping.
    """
    chosen = SDPA_KERNELS.get(variant)
    enable = {
        SDPBackend.FLASH_ATTENTION: torch.backends.cuda.enable_flash_sdp,
        SDPBackend.EFFICIENT_ATTENTION: torch.backends.cuda.enable_mem_efficient_sdp,
        SDPBackend.MATH: torch.backends.cuda.enable_math_sdp,
        SDPBackend.CUDNN_ATTENTION: torch.backends.cuda.enable_cudnn_sdp,
    }
    for kernel, switch in enable.items():
        switch(chosen is None or kernel == chosen)
