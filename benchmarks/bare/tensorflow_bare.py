"""A bare timing loop of one TensorFlow call, sharing no code with the harness.

Prints one JSON line: the median per-call time from a plain perf_counter loop,
and from timeit (autorange, then repeats) as a second opinion. The call is the
spec's attention in TF ops on (B, H, N, D) tensors (the workload `attention`,
full), or a multi-head attention layer with causal core (`mha`), float32 with
TF32 off, run eagerly, under tf.function, or under tf.function(jit_compile=True).
On the CPU an eager op or a function call returns once its result exists; on a
GPU each timed call ends with a device sync.
"""
import argparse
import json
import math
import statistics
import time
import timeit


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--workload", choices=["attention", "mha"], default="attention")
    p.add_argument("--variant", choices=["eager", "function", "xla"], default="eager")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=2.0)
    return p.parse_args()


def import_tensorflow(threads: int):
    """After parsing (--help needs no TensorFlow), with the harness's settings."""
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return tf


def main() -> None:
    a = parse_args()
    tf = import_tensorflow(a.threads)
    b, n, h, d = a.batch, a.seq_len, a.heads, a.head_dim
    dm = h * d

    def core(q, k, v, causal):
        s = tf.cast(tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(d)), tf.float32)
        if causal:
            s = tf.where(tf.range(n)[:, None] >= tf.range(n)[None, :], s, float("-inf"))
        return tf.matmul(tf.cast(tf.nn.softmax(s, axis=-1), q.dtype), v)

    if a.workload == "attention":
        args = [tf.random.normal((b, h, n, d)) for _ in range(3)]

        def fn(q, k, v):
            return core(q, k, v, causal=False)
    else:
        args = [tf.random.normal((b, n, dm))]
        ws = [tf.Variable(tf.random.normal((dm, dm)) / math.sqrt(dm)) for _ in range(4)]
        bs = [tf.Variable(tf.zeros((dm,))) for _ in range(4)]

        def fn(x):
            def proj(t, i):
                return tf.reshape(tf.matmul(tf.reshape(t, (-1, t.shape[-1])), ws[i]) + bs[i],
                                  (b, n, dm))

            def split(t):
                return tf.transpose(tf.reshape(t, (b, n, h, d)), (0, 2, 1, 3))

            o = core(*(split(proj(x, i)) for i in range(3)), causal=True)
            return proj(tf.reshape(tf.transpose(o, (0, 2, 1, 3)), (b, n, dm)), 3)

    if a.variant != "eager":
        fn = tf.function(fn, jit_compile=a.variant == "xla", autograph=False)
    gpu = bool(tf.config.list_logical_devices("GPU"))

    def call():
        fn(*args)
        if gpu:
            tf.test.experimental.sync_devices()

    for _ in range(3):
        call()
    samples, deadline = [], time.perf_counter() + a.seconds
    while time.perf_counter() < deadline or len(samples) < 10:
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    timer = timeit.Timer(call)
    number, took = timer.autorange()              # calls per repeat: >= 0.2 s each
    repeats = max(5, int(a.seconds / max(took, 1e-9)))
    per_call = [t / number * 1e3 for t in timer.repeat(repeat=repeats, number=number)]
    print(json.dumps({"loop_median_ms": statistics.median(samples),
                      "second_opinion_median_ms": statistics.median(per_call),
                      "samples": len(samples),
                      "tensorflow": tf.__version__, "variant": a.variant}))


if __name__ == "__main__":
    main()
