"""What each pinned torch SDPA kernel does at a few head_dims on this GPU: the
kernel probe's answer (backends/torch/attention.py, sdpa_choice) beside what
running F.scaled_dot_product_attention does. They must agree; when a torch
version words its refusal anew, the probe says "unknown" here while the run
raises. Needs a CUDA GPU. Wrote results/published/h200-gpu-check/gpu-check/
sdpa-refusals.txt.

    python3 scripts/sdpa_refusals.py
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backends.torch.attention import pin_sdpa_kernel, sdpa_choice  # noqa: E402

HEAD_DIMS = (64, 256, 288, 512)


def main() -> None:
    print("torch", torch.__version__, torch.version.cuda, torch.backends.cudnn.version())
    device = torch.device("cuda:0")
    for variant in ("sdpa-flash", "sdpa-cudnn", "sdpa-efficient"):
        pin_sdpa_kernel(variant)
        for head_dim in HEAD_DIMS:
            for train in (False, True):
                probe = sdpa_choice((1, 2, 256, head_dim), device, torch.bfloat16, True, train)
                q = torch.randn(1, 2, 256, head_dim, device=device, dtype=torch.bfloat16,
                                requires_grad=train)
                try:
                    out = F.scaled_dot_product_attention(q, q, q, is_causal=True)
                    if train:
                        out.sum().backward()
                    torch.cuda.synchronize()
                    ran = "ran"
                except RuntimeError as exc:
                    ran = "RAISED " + str(exc).splitlines()[0][:120]
                print(variant, head_dim, "train" if train else "fwd", probe, ran, flush=True)
    pin_sdpa_kernel("sdpa")


if __name__ == "__main__":
    main()
