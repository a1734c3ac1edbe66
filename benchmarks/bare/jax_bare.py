"""A bare timing loop of one jitted JAX call, sharing no code with the harness.

The call is what the harness's `jax jit` variant runs on the CPU: the attention
core as einsums on (B, H, N, D) with a float32 softmax, or a causal mha (Q/K/V/O
projections around that core), float32 matmuls at precision HIGHEST. Prints one
JSON line: the median per-call time from a plain perf_counter loop (each call
ended by jax.block_until_ready), and from timeit's autorange as a second opinion.
"""
import argparse
import json
import math
import os
import statistics
import time
import timeit


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--workload", choices=["attention", "mha"], default="attention")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=2.0)
    return p.parse_args()


def main() -> None:
    a = parse_args()
    # Before jax is imported: XLA sizes its CPU pool from the affinity mask.
    cpus = sorted(os.sched_getaffinity(0))
    if a.threads < len(cpus):
        os.sched_setaffinity(0, cpus[:a.threads])
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax
    import jax.numpy as jnp

    hi = jax.lax.Precision.HIGHEST
    b, n, h, d = a.batch, a.seq_len, a.heads, a.head_dim
    key = iter(jax.random.split(jax.random.key(0), 16))

    def core(q, k, v, causal):
        s = jnp.einsum("bhqd,bhkd->bhqk", q, k, precision=hi) * (1.0 / math.sqrt(d))
        if causal:
            s = jnp.where(jnp.triu(jnp.ones((n, n), bool), 1), -jnp.inf, s)
        return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(s.astype(jnp.float32), -1),
                          v, precision=hi)

    if a.workload == "attention":
        args = [jax.random.normal(next(key), (b, h, n, d)) for _ in range(3)]
        fn = jax.jit(lambda q, k, v: core(q, k, v, False))
    else:
        dm = h * d
        x = jax.random.normal(next(key), (b, n, dm))
        ws = [jax.random.normal(next(key), (dm, dm)) / math.sqrt(dm) for _ in range(4)]
        bs = [0.1 * jax.random.normal(next(key), (dm,)) for _ in range(4)]
        args = [x, ws, bs]

        def mha(x, ws, bs):
            q, k, v = (jnp.dot(x, w, precision=hi) + c for w, c in zip(ws[:3], bs[:3]))
            split = lambda t: t.reshape(b, n, h, d).transpose(0, 2, 1, 3)
            o = core(split(q), split(k), split(v), True).transpose(0, 2, 1, 3)
            return jnp.dot(o.reshape(b, n, dm), ws[3], precision=hi) + bs[3]
        fn = jax.jit(mha)

    def call():
        return jax.block_until_ready(fn(*args))

    for _ in range(3):
        call()
    samples, deadline = [], time.perf_counter() + a.seconds
    while time.perf_counter() < deadline or len(samples) < 10:
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    timer = timeit.Timer(call)
    number, taken = timer.autorange()           # calls per repeat: at least 0.2 s
    repeat = max(5, int(a.seconds / taken))
    second = [t / number * 1e3 for t in timer.repeat(repeat=repeat, number=number)]
    print(json.dumps({"loop_median_ms": statistics.median(samples),
                      "second_opinion_median_ms": statistics.median(second),
                      "second_opinion": "timeit autorange", "samples": len(samples)}))


if __name__ == "__main__":
    main()
