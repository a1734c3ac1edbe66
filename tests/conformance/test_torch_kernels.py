"""How the torch backend names the SDPA kernel it runs, and turns a pinned kernel
that cannot take a case into a reason (on the CPU here; tests/gpu does it on CUDA);
and flex: its block mask, its name and torch's refusals, on the CPU."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
from backends.base import load_backend  # noqa: E402
from backends.torch.attention import (  # noqa: E402
    _declined, flex_block_mask, kernel_name, pin_sdpa_kernel, sdpa_choice,
)
from harness.correctness.grid import PADDED_LENGTHS, PADDED_SHAPE  # noqa: E402
from harness.spec import Case  # noqa: E402

from .test_backends import assert_matches_reference  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def every_kernel_enabled_after():
    yield
    pin_sdpa_kernel("sdpa")


@pytest.mark.parametrize("train", [False, True])
def test_the_kernel_torch_dispatches_to_is_named(train):
    choice, why = sdpa_choice((2, 4, 64, 32), CPU, torch.float32, True, train)
    assert choice in ("flash_attention", "math") and why == ""
    assert kernel_name("sdpa", choice) == f"sdpa {choice}"
    assert kernel_name("compile", choice) == f"inductor around sdpa {choice}"
    assert "torch ops" in kernel_name("eager", "")


def test_no_enabled_kernel_is_a_reason_not_an_exception():
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_math_sdp(False)
    choice, why = sdpa_choice((2, 4, 64, 32), CPU, torch.float32, False, False)
    assert choice is None and "No viable backend" in why


def test_declined_keeps_torch_reasons_and_drops_its_headers():
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        for text in ("Memory efficient kernel not used because:",
                     "Memory Efficient attention has been runtime disabled. (Triggered "
                     "internally at sdp_utils.cpp:1)",
                     "Flash attention kernel not used because:",
                     "Flash attention requires head_dim <= 256, got 512 (Triggered "
                     "internally at sdp_utils.cpp:2)"):
            warnings.warn(text)
    assert _declined(said) == "Flash attention requires head_dim <= 256, got 512"


@pytest.mark.parametrize("words", ["No available kernel. Aborting execution.",
                                   "No viable backend for scaled_dot_product_attention",
                                   "Invalid backend"])     # torch 2.11 on the H200
def test_each_torch_version_s_refusal_is_a_reason(monkeypatch, words):
    def refuse(*args, **kwargs):
        warnings.warn("Flash attention requires head_dim <= 256, got 512")
        raise RuntimeError(words)

    monkeypatch.setattr(torch, "_fused_sdp_choice", refuse)
    choice, why = sdpa_choice((1, 2, 64, 512), CPU, torch.bfloat16, True, False)
    assert choice is None and why == "Flash attention requires head_dim <= 256, got 512"


def test_a_failure_to_ask_is_unknown_not_a_refusal(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch, "_fused_sdp_choice", broken)
    choice, why = sdpa_choice((1, 2, 64, 64), CPU, torch.bfloat16, True, False)
    assert choice == "unknown" and "illegal memory access" in why


def flex_case(mode: str, **changes) -> Case:
    """The check's padded batch (17, 0 and 33 of 33 positions), no causal mask: only
    the lengths' key mask keeps padding keys out of the tokens' rows."""
    case = Case("conformance", "attention", "torch", "flex", mode, "float32", "cpu",
                causal=False, kv_heads=1, lengths=PADDED_LENGTHS, **PADDED_SHAPE)
    return case.replace(**changes)


def test_flex_masks_a_padded_batch_and_skips_its_padding_blocks():
    """test_padding.py samples flex in train mode, which the CPU refuses: the key
    mask of the lengths, forward, here (one compile)."""
    assert_matches_reference(flex_case("forward"))
    block = flex_block_mask(33, 33, False, None, CPU, torch.tensor([17, 0, 33]))
    assert block.kv_num_blocks[:, 0].tolist() == [[1], [0], [1]]   # nothing for L_b = 0
    assert flex_block_mask(33, 33, False, None, CPU) is None
    assert flex_block_mask(33, 33, False, None, CPU, torch.tensor([33, 33, 33])) is None
    assert kernel_name("flex", None, masked=True) == "flex_attention (inductor, block mask)"
    assert kernel_name("flex", None) == "flex_attention (inductor)"


def test_flex_says_what_torch_refuses_on_the_cpu_in_its_own_words():
    """A real probe, one line: torch 2.13 runs flex's forward on the CPU, not its
    backward."""
    backend = load_backend("torch")
    assert backend.unsupported(flex_case("forward")) is None
    reason = backend.unsupported(flex_case("train", workload="mha"))
    if reason is not None:          # a later torch may train flex on the CPU
        assert reason.startswith("torch flex refuses this case: NotImplementedError: ")
        assert "\n" not in reason and "backward" in reason
