"""The attention core in PyTorch: the spec's math op by op, and SDPA.

Layout: (B, H, N, D), what F.scaled_dot_product_attention takes, so no variant
pays for a transpose inside the core. The attention workload's inputs are
converted to it before timing; mha transposes after its projections (timed,
as any real model would).
"""
from __future__ import annotations

import math
import warnings

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
    if k.shape[1] != q.shape[1]:      # grouped heads: query head h reads k, v head h // g
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
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
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                          enable_gqa=k.shape[1] != q.shape[1])


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


REFUSALS = ("No available kernel", "No viable backend", "Invalid backend")


def sdpa_choice(shape: tuple[int, int, int, int], device: torch.device, dtype: torch.dtype,
                causal: bool, train: bool, kv_heads: int | None = None) -> tuple[str | None, str]:
    """The SDPA kernel torch dispatches to for q, k, v of this (B, H, N, D) shape,
    under the kernels enabled now (pin_sdpa_kernel), or None and torch's own words
    when none of them can run it (head_dim, dtype, GPU generation...). Asks the
    check F.scaled_dot_product_attention makes, which raises "No available kernel"
    after warning why each enabled kernel declined; the private entry point may
    move between versions, so failing to ask says so rather than failing the cell."""
    said: list = []
    try:
        q = torch.empty(shape, device=device, dtype=dtype, requires_grad=train)
        kv = q if kv_heads in (None, shape[1]) else torch.empty(
            (shape[0], kv_heads, *shape[2:]), device=device, dtype=dtype, requires_grad=train)
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            choice = SDPBackend(torch._fused_sdp_choice(q, kv, kv, is_causal=causal,
                                                        enable_gqa=kv is not q))
    except RuntimeError as exc:
        text = str(exc)
        # torch 2.11 says "Invalid backend" where earlier versions said the others.
        if not any(words in text for words in REFUSALS):
            return "unknown", f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        return None, _declined(said) or text.splitlines()[0]
    except Exception as exc:
        return "unknown", f"{type(exc).__name__}: {exc}"
    if choice == SDPBackend.ERROR:
        return None, _declined(said) or "no SDPA kernel enabled for this case"
    return choice.name.lower(), ""


def _declined(said: list) -> str:
    """torch's reasons, without its headers ("... not used because:"), the notes on
    kernels pin_sdpa_kernel switched off, and the C++ source location."""
    reasons = [str(w.message).split(" (Triggered internally")[0].strip() for w in said]
    return "; ".join(r for r in reasons
                     if r and not r.endswith("because:") and "runtime disabled" not in r)


def kernel_name(variant: str, choice: str | None) -> str:
    """What runs the attention core, for the row's `kernel` column."""
    if variant == "eager":
        return "matmul + softmax (torch ops)"
    name = f"sdpa {choice}"
    return f"inductor around {name}" if variant == "compile" else name
