"""The attention core in PyTorch: the spec's math op by op, SDPA, and flex_attention.

Layout: (B, H, N, D), what F.scaled_dot_product_attention takes, so no variant
pays for a transpose inside the core. The attention workload's inputs are
converted to it before timing; mha transposes after its projections (timed,
as any real model would).

Masks: every query row and no window keeps the plain causal paths (triu in eager,
is_causal=True in SDPA). Fewer query rows than keys (bottom-right causal), a
sliding window or a padded batch take an explicit boolean mask from `visible_keys`
(per sequence when padded: (B, 1, N, N)), built once per cell in prepare (untimed),
as a server keeps its decode mask for a fixed shape. No row of that mask is empty
(a padding row that would see no key sees them all; visible_keys says why), and
eager fills hidden scores with a finite value besides, so every output and gradient
is finite. (torch 2.13's SDPA, math and the CPU flash kernel, gives an empty row
zeros and zero gradients; eager's -inf softmax gives NaN.) flex takes the mask as a
BlockMask (flex_block_mask), built once per cell too; it gives empty rows zeros.
"""
from __future__ import annotations

import functools
import math
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend
from torch.nn.attention.flex_attention import (
    BlockMask, and_masks, create_block_mask, flex_attention,
)

# The kernel each pinned variant allows; plain `sdpa` lets PyTorch choose.
SDPA_KERNELS = {
    "sdpa-flash": SDPBackend.FLASH_ATTENTION,
    "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
    "sdpa-math": SDPBackend.MATH,
    "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION,
}
# The sdpa step captured once in a CUDA graph and replayed (steps.GraphedPrepared).
GRAPH_VARIANT = "sdpa-graph"


def visible_keys(q_len: int, n_keys: int, causal: bool, window: int | None,
                 device: torch.device, lengths: torch.Tensor | None = None,
                 ) -> torch.Tensor | None:
    """True where a query may attend (SDPA's convention): (q_len, n_keys), or
    (B, 1, q_len, n_keys) with `lengths` ((B,) int64 on the device: a padded batch,
    whose keys j >= L_b are hidden in sequence b); None when the plain paths apply:
    no causal mask, or the square causal one, and no padding. Query i sits at
    position n_keys - q_len + i (bottom-right, FlashAttention >= 2.1); it sees keys
    j <= that position, and only those past it - window. A window as long as the
    keys hides nothing, so the fused kernels' is_causal path stays open."""
    window, lengths = _what_hides(n_keys, window, lengths)
    if lengths is None and (not causal or (q_len == n_keys and window is None)):
        return None
    keys = torch.arange(n_keys, device=device)[None, :]
    positions = torch.arange(n_keys - q_len, n_keys, device=device)[:, None]
    visible = keys <= positions if causal else torch.ones(
        q_len, n_keys, dtype=torch.bool, device=device)
    if causal and window:
        visible = visible & (keys > positions - window)
    if lengths is not None:
        visible = visible & (keys < lengths[:, None, None, None])
        # A padding row that would see no key sees every key instead (as transformers'
        # _unmask_unattended does): its output is unspecified and its g zero, so no
        # gradient changes, and no kernel meets a row with nothing to attend to
        # (SDPA's memory-efficient CUDA kernel has returned NaN for one since 2.1).
        visible = visible | ~visible.any(dim=-1, keepdim=True)
    return visible


def _what_hides(n_keys: int, window: int | None, lengths: torch.Tensor | None):
    """The window and lengths that hide a key: None for a window as long as the
    keys, and for lengths none of which is short."""
    window = None if window is not None and window >= n_keys else window
    if lengths is not None and not bool((lengths < n_keys).any()):
        lengths = None
    return window, lengths


def flex_block_mask(q_len: int, n_keys: int, causal: bool, window: int | None,
                    device: torch.device, lengths: torch.Tensor | None = None,
                    ) -> BlockMask | None:
    """visible_keys' mask as flex_attention's BlockMask (its mask_mod, and which
    128 x 128 blocks it leaves wholly hidden, to skip), or None when nothing is
    hidden. A padded batch hides its padding query rows too: their outputs are
    unspecified (flex gives a row that sees no key zeros), and whole blocks of
    padding are then skipped rather than computed."""
    window, lengths = _what_hides(n_keys, window, lengths)
    offset, mods = n_keys - q_len, []
    if causal:                        # query i at position offset + i (bottom-right)
        mods.append(lambda b, h, q, kv: kv <= q + offset)
    if causal and window:
        mods.append(lambda b, h, q, kv: kv > q + offset - window)
    if lengths is not None:           # padded batches have every query row: q_len == n_keys
        mods.append(lambda b, h, q, kv: (kv < lengths[b]) & (q < lengths[b]))
    if not mods:
        return None
    batch = None if lengths is None else lengths.shape[0]      # None: the same for all
    return create_block_mask(and_masks(*mods), batch, None, q_len, n_keys, device=device)


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    causal: bool, mask: torch.Tensor | None = None) -> torch.Tensor:
    if k.shape[1] != q.shape[1]:      # grouped heads: query head h reads k, v head h // g
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:              # bottom-right, windowed or padded (visible_keys)
        # A finite fill, not -inf: a row that sees no key (an all-padding sequence, a
        # window past a sequence's end) stays finite (uniform) instead of NaN, which
        # would reach the weights' gradients; in every other row the fill's exp is 0,
        # as -inf's is, so their results are the same bits.
        scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
    elif causal:
        n = q.shape[-2]
        hidden = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(hidden, float("-inf"))
    # The spec computes softmax in float32 whatever the storage dtype.
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return torch.matmul(probs, v)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   causal: bool, mask: torch.Tensor | None = None) -> torch.Tensor:
    # is_causal is top-left when q has fewer rows than k: those cases carry `mask`.
    # A materialized mask rather than torch's causal_lower_right bias: that bias
    # calls the flash and efficient ops itself, around the kernels pin_sdpa_kernel allows.
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                          is_causal=causal and mask is None,
                                          enable_gqa=k.shape[1] != q.shape[1])


def flex_core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
              block_mask: BlockMask | None = None, copies: tuple[int, ...] = ()
              ) -> torch.Tensor:
    """flex_attention, its mask in `block_mask` (flex_block_mask; `causal` is not
    read). Meant to run compiled, as backend.py compiles the whole step: eager,
    flex materializes the scores. `copies`: which of q, k, v (0, 1, 2) to copy
    first (flex_copies)."""
    q, k, v = (t.clone(memory_format=torch.contiguous_format) if i in copies else t
               for i, t in enumerate((q, k, v)))
    return flex_attention(q, k, v, block_mask=block_mask,
                          enable_gqa=k.shape[1] != q.shape[1])


def flex_copies(device: torch.device, layers: bool, decode: bool) -> tuple[int, ...]:
    """Which of q, k, v flex_core copies: torch 2.13's CPU flex template reads a
    view's storage as if it were (B, H, N, D), so it cannot lower the layers' views
    of a projection's (B*N, d) output ("LoweringException: not enough values to
    unpack"); a copy is a buffer of its own. A decode step's k and v are its caches."""
    if device.type != "cpu" or not layers:
        return ()
    return (0,) if decode else (0, 1, 2)


@functools.cache
def flex_refusal(device: str, dtype: torch.dtype, head_dim: int, grouped: bool,
                 train: bool) -> str | None:
    """torch's own refusal of flex_attention on this device, dtype, head size,
    grouping and mode, from a call on a tiny input (None: it runs). Compiled on a
    GPU, where inductor's Triton kernels refuse cases of their own (head_dim < 16);
    eager on the CPU, whose refusal in torch 2.13 (no backward) is the check every
    call makes first, and where a compile costs seconds a probe."""
    dev = torch.device(device)
    call = flex_attention
    if dev.type != "cpu":
        torch._dynamo.reset()         # a fresh compile, not one past the recompile limit
        call = torch.compile(flex_attention, dynamic=False, fullgraph=True)
    q = torch.zeros(1, 2, 16, head_dim, device=dev, dtype=dtype, requires_grad=train)
    kv = torch.zeros(1, 1 if grouped else 2, 16, head_dim, device=dev, dtype=dtype,
                     requires_grad=train)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # eager flex warns that it is unfused
            out = call(q, kv, kv, enable_gqa=grouped)
            if train:
                out.sum().backward()
    except Exception as exc:
        text = str(exc).strip()
        return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    return None


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
                causal: bool, train: bool, kv_heads: int | None = None, *,
                q_len: int | None = None, mask: torch.Tensor | None = None,
                ) -> tuple[str | None, str]:
    """The SDPA kernel torch dispatches to for k, v of this (B, H, N, D) shape (KV
    heads when grouped) and q of q_len rows (N when None), with the boolean `mask`
    the real call passes (visible_keys), under the kernels enabled now
    (pin_sdpa_kernel); or None and torch's own words when none of them can run it
    (head_dim, dtype, GPU generation, a mask flash cannot take...). Asks the
    check F.scaled_dot_product_attention makes, which raises "No available kernel"
    after warning why each enabled kernel declined; the private entry point may
    move between versions, so failing to ask says so rather than failing the cell."""
    said: list = []
    b, heads, n, d = shape
    q_shape, kv_shape = (b, heads, q_len or n, d), (b, kv_heads or heads, n, d)
    try:
        q = torch.empty(q_shape, device=device, dtype=dtype, requires_grad=train)
        kv = q if kv_shape == q_shape else torch.empty(
            kv_shape, device=device, dtype=dtype, requires_grad=train)
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            choice = SDPBackend(torch._fused_sdp_choice(
                q, kv, kv, attn_mask=mask, is_causal=causal and mask is None,
                enable_gqa=kv_shape[1] != heads))
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


def kernel_name(variant: str, choice: str | None, masked: bool = False) -> str:
    """What runs the attention core, for the row's `kernel` column; `masked` when
    it takes visible_keys' boolean mask (flex: a block mask) rather than the plain
    causal path."""
    if variant == "flex":
        return f"flex_attention (inductor{', block mask' if masked else ''})"
    name = "matmul + softmax (torch ops)" if variant == "eager" else f"sdpa {choice}"
    name += " with a boolean mask" if masked else ""
    if variant == GRAPH_VARIANT:
        return f"{name} in a CUDA graph"
    return f"inductor around {name}" if variant == "compile" else name
