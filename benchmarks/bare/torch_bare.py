"""A bare timing loop of one PyTorch call, sharing no code with the harness.

Prints one JSON line: the median per-call time from a plain perf_counter loop,
and from torch.utils.benchmark's blocked_autorange as a second opinion.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
import torch.utils.benchmark as tb


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workload", choices=["attention", "mha"], default="attention")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=2.0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    b, n, h, d = a.batch, a.seq_len, a.heads, a.head_dim
    if a.workload == "attention":
        q, k, v = (torch.randn(b, h, n, d) for _ in range(3))
        call = lambda: F.scaled_dot_product_attention(q, k, v)
    else:
        x = torch.randn(b, n, h * d)
        proj = [torch.nn.Linear(h * d, h * d) for _ in range(4)]

        def call():
            split = lambda t: t.view(b, n, h, d).transpose(1, 2)
            o = F.scaled_dot_product_attention(*(split(m(x)) for m in proj[:3]), is_causal=True)
            return proj[3](o.transpose(1, 2).reshape(b, n, h * d))

    with torch.no_grad():
        for _ in range(3):
            call()
        samples, deadline = [], time.perf_counter() + a.seconds
        while time.perf_counter() < deadline or len(samples) < 10:
            start = time.perf_counter()
            call()
            samples.append((time.perf_counter() - start) * 1e3)
        timer = tb.Timer(stmt="call()", globals={"call": call}, num_threads=a.threads)
        autorange = timer.blocked_autorange(min_run_time=a.seconds)
    print(json.dumps({"loop_median_ms": statistics.median(samples),
                      "second_opinion_median_ms": autorange.median * 1e3,   # torch.utils.benchmark
                      "samples": len(samples)}))


if __name__ == "__main__":
    main()
