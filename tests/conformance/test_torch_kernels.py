"""How the torch backend names the SDPA kernel it runs, and turns a pinned kernel
that cannot take a case into a reason (on the CPU here; tests/gpu does it on CUDA)."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
from backends.torch.attention import (  # noqa: E402
    _declined, kernel_name, pin_sdpa_kernel, sdpa_choice,
)

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
