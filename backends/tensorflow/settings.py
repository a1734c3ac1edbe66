"""TensorFlow's environment, set by the runner before the worker imports tensorflow.

Framework-free on purpose: the runner reads it without importing tensorflow.
"""
from __future__ import annotations

import os

# One inter-op thread. TF's inter-op pool runs independent graph ops (Q, K and V
# projections, say) at the same time, each of them also splitting its work over
# the intra-op pool. With `threads` intra-op threads on `threads` cores (the worker
# pins the affinity), a second inter-op thread can only oversubscribe those cores;
# with one, TF runs ops one after another, each parallel over `threads` threads,
# which is what torch (eager and compiled) and XLA's CPU runtime do with the same
# cores. On the 2-core CPU here the two settings showed no systematic difference
# (mha forward and train, block train; B=2, N=512, H=8, D=64; eager and function;
# three interleaved rounds, which varied by 15% among themselves), so the choice is
# about like-for-like parallelism, not speed. TF's own default is one per core.
INTEROP_THREADS = 1


def environment(device: str, threads: int, scratch: str) -> dict[str, str]:
    """`scratch` is an empty folder of this worker's own, removed when it ends."""
    return {
        # Read by TF when its runtime starts; the backend also sets both through
        # tf.config.threading, before any op runs, in case a build ignores them.
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": str(INTEROP_THREADS),
        "TF_CPP_MIN_LOG_LEVEL": "2",              # C++ warnings and info off: quiet workers
        # Without it TF maps nearly the whole GPU at start, and its allocator's
        # figures say nothing about what a cell needs.
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        # oneDNN's CPU kernels (TF's default on x86 Linux, with "slightly different
        # numerical results" as TF says at import): set explicitly so that the row's
        # settings record it; a value the user exported is kept.
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1"),
    }
