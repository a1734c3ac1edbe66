"""PyTorch backend: variants eager, sdpa, sdpa-<kernel> and sdpa-graph (CUDA), compile
and flex.

Imported only inside a worker process, after settings.environment() is applied.
"""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from backends.common import BackendCommon, input_names
from backends.torch import layers
from backends.torch.attention import (
    GRAPH_VARIANT, SDPA_KERNELS, core_for, flex_block_mask, flex_copies, flex_core,
    flex_refusal, kernel_name, pin_sdpa_kernel, sdpa_choice, visible_keys,
)
from backends.torch.steps import DTYPES, GraphedPrepared, Prepared, graph_refusal
from harness.measure import device_time
from harness.measure.memory import cpu_step_peak
from harness.measure.timing import FLUSH_BYTES, cpu_cache_flusher
from harness.spec import Case, padding
from harness.spec.catalog import BackendInfo, static_unsupported


def pin_precision(dtype: str) -> None:
    """float32 means full float32 and tf32 means TF32, in every framework; torch's
    settings are global, so they are set again for every cell."""
    torch.set_float32_matmul_precision("high" if dtype == "tf32" else "highest")
    torch.backends.cudnn.allow_tf32 = dtype == "tf32"



class TorchBackend(BackendCommon):
    _graph_peak: int | None = None     # the last sdpa-graph capture's (step_peak)

    def version(self) -> str:
        return torch.__version__

    def unsupported(self, case: Case) -> str | None:
        reason = static_unsupported(case)
        if reason is None and case.device.startswith("cuda") and not torch.cuda.is_available():
            reason = "torch sees no CUDA device (CPU build or no driver)"
        if reason is None and case.variant in SDPA_KERNELS:
            # A pinned kernel that cannot take the case (head_dim, dtype, this GPU)
            # would raise "No available kernel" mid-run: say so up front instead.
            pin_sdpa_kernel(case.variant)
            device = torch.device(case.device)
            choice, why = _sdpa_choice(case, device, _mask(case, device))
            if choice is None:
                reason = f"torch {case.variant} refuses this case: {why}"[:300]
        if reason is None and case.variant == "flex":
            why = flex_refusal(case.device, DTYPES[case.dtype], case.head_dim,
                               case.kv_heads != case.heads, case.mode == "train")
            if why is not None:
                reason = f"torch flex refuses this case: {why}"[:300]
        if reason is None and case.variant == GRAPH_VARIANT:
            reason = _graph_refusal(case)
        return reason

    def prepare(self, case: Case, weights: dict, inputs: dict) -> Prepared:
        device, dtype = torch.device(case.device), DTYPES[case.dtype]
        pin_precision(case.dtype)
        if device.type == "cuda":
            pin_sdpa_kernel(case.variant)
        core, kernel = _core(case, device)
        train = case.mode == "train"

        def tensor(a: np.ndarray, bhnd: bool = False) -> torch.Tensor:
            # Transposed in torch, so .contiguous() copies into torch's own (aligned)
            # memory, as the timed cells have always had it.
            t = torch.from_numpy(a)
            t = t.transpose(1, 2) if bhnd else t       # (B, N, H, D) -> (B, H, N, D)
            return t.to(device=device, dtype=dtype).contiguous().requires_grad_(train)

        if case.workload == "attention":
            args = [tensor(inputs[n], bhnd=True) for n in input_names(case)]
            fn = lambda q, k, v: core(q, k, v, case.mask_hides_keys)
            params = {}
        else:
            module, params = layers.build(case, core)
            layers.load(case, params, weights)
            module.to(device=device, dtype=dtype).requires_grad_(train)
            if case.mode == "decode":     # each layer's caches, on the device before timing
                k_caches, v_caches = ([tensor(c, bhnd=True) for c in inputs[name]]
                                      for name in ("k_cache", "v_cache"))
                layers.use_caches(module, k_caches, v_caches)
            args, fn = [tensor(inputs["x"])], module
        g = None
        if train:
            g = tensor(inputs["g"], bhnd=case.workload == "attention").requires_grad_(False)
        if case.variant in ("compile", "flex"):
            fn = _compiled(case, fn)
        graphed = case.variant == GRAPH_VARIANT
        prepared = (GraphedPrepared if graphed else Prepared)(
            case, fn, args, params, g, bhnd=case.workload == "attention")
        prepared.kernel = kernel
        self._graph_peak = prepared.capture_peak if graphed else None
        return prepared

    def cache_flusher(self, case: Case):
        """Evicts the device's caches before a timed call (timing.measure's flush)."""
        if not case.device.startswith("cuda"):
            return cpu_cache_flusher()
        buffer = torch.empty(FLUSH_BYTES, dtype=torch.uint8, device=case.device)
        return buffer.zero_

    def profile(self, case: Case, step, sync, steps: int) -> tuple[list[dict], str]:
        """`steps` steps under torch.profiler (Kineto), as the Chrome trace events it
        exports (harness/measure/device_time.py reads them): on the CPU its cpu_op
        events, nested as the ops call each other; on CUDA, the GPU's kernel,
        gpu_memcpy and gpu_memset events too."""
        activities = [torch.profiler.ProfilerActivity.CPU]
        if case.device.startswith("cuda"):
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(steps):
                step()
                sync()
        with tempfile.TemporaryDirectory(prefix="attnbench-torch-trace-") as folder:
            path = Path(folder) / "trace.json"
            prof.export_chrome_trace(str(path))
            return device_time.load(path), f"torch.profiler {torch.__version__}"

    def step_peak(self, case: Case, run_step) -> tuple[int | None, str]:
        """Bytes one step adds at its peak: the allocator's own figure on CUDA."""
        if not case.device.startswith("cuda"):
            return cpu_step_peak(run_step, settle=False)   # torch frees on the caller's thread
        device = torch.device(case.device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run_step()
        if case.variant == GRAPH_VARIANT and self._graph_peak is not None:
            # A replay allocates nothing: the step's memory is the graph's pool.
            return (self._graph_peak, "torch.cuda.max_memory_allocated during the CUDA "
                    "graph's capture (its pool, kept for every replay)")
        return (torch.cuda.max_memory_allocated(device) - before,
                "torch.cuda.max_memory_allocated")


def _core(case: Case, device: torch.device):
    """The attention core with the case's mask bound once (not rebuilt per step),
    and what runs it (the row's `kernel`)."""
    if case.variant == "flex":
        block = flex_block_mask(case.q_len, case.seq_len, case.mask_hides_keys, case.window,
                                device, _lengths(case, device))
        copies = flex_copies(device, case.workload != "attention", case.mode == "decode")
        return (functools.partial(flex_core, block_mask=block, copies=copies),
                kernel_name(case.variant, None, masked=block is not None))
    mask = _mask(case, device)
    core = core_for(case.variant)
    if mask is not None:
        core = functools.partial(core, mask=mask)
    choice = "" if case.variant == "eager" else _sdpa_choice(case, device, mask)[0]
    return core, kernel_name(case.variant, choice, masked=mask is not None)


def _compiled(case: Case, fn):
    """The step under torch.compile, compiled afresh for each cell: past 8 cached
    graphs per function torch would silently run the rest eagerly under the
    variant's label. flex in one graph (fullgraph): a break around flex_attention
    would run it eagerly, materializing the scores."""
    torch._dynamo.reset()
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    return torch.compile(fn, dynamic=False, fullgraph=case.variant == "flex")


def _lengths(case: Case, device: torch.device) -> torch.Tensor | None:
    """(B,) int64 on the device: a padded batch's lengths, or None."""
    lengths = padding.key_lengths(case)
    return None if lengths is None else torch.from_numpy(lengths).to(device)


def _mask(case: Case, device: torch.device) -> torch.Tensor | None:
    """The case's boolean mask (bottom-right causal, window, the padded batch's key
    lengths), None on the plain paths."""
    return visible_keys(case.q_len, case.seq_len, case.mask_hides_keys, case.window, device,
                        _lengths(case, device))


def _graph_refusal(case: Case) -> str | None:
    """Why torch cannot capture the case's sdpa step in a CUDA graph (a real capture
    on a tiny input, steps.graph_refusal), or None."""
    device = torch.device(case.device)
    pin_sdpa_kernel(case.variant)                 # every kernel, as plain sdpa
    why = graph_refusal(case.device, DTYPES[case.dtype], case.head_dim,
                        case.kv_heads != case.heads, _mask(case, device) is not None,
                        case.mode == "train")
    return None if why is None else f"torch {case.variant} cannot capture: {why}"[:300]


def _sdpa_choice(case: Case, device: torch.device,
                 mask: torch.Tensor | None) -> tuple[str | None, str]:
    """The kernel SDPA picks for the call the cell makes: its shapes and mask."""
    return sdpa_choice((case.batch, case.heads, case.seq_len, case.head_dim), device,
                       DTYPES[case.dtype], case.mask_hides_keys, case.mode == "train",
                       case.kv_heads, q_len=case.q_len, mask=mask)


def make_backend(info: BackendInfo) -> TorchBackend:
    # The same thread count for every framework, chosen by the runner.
    threads = os.environ.get("ATTNBENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    return TorchBackend(info)
