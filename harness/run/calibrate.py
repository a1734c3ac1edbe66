"""`attnbench env --calibrate`: this machine's own roof, where no datasheet row exists.

For each installed framework a worker process (the threads pinned as a cell's
worker pins them: harness.run.environment) times a square matmul in float32,
bfloat16 and float16 and a stream copy (backends/<name>/roof.py) with the harness's
own timing loop; this process times NumPy's copy too. The roof of a dtype is the
best framework's matmul, the bandwidth the best copy; both are kept by
harness.measure.roofs for the CPU model and the thread count, and every later CPU
cell's pct_peak and pct_peak_bw is taken against its own dtype's roof.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import numpy as np

from harness.measure import devices, roofs
from harness.measure.timing import measure
from harness.run.environment import environment_for, limit_cpus
from harness.spec.catalog import REGISTRY

DTYPES = ("float32", "bfloat16", "float16")
COPY_BYTES = 256 * 2**20          # past any CPU's last-level cache
# A dtype a framework runs far below the others (emulated half precision) is timed
# at a smaller size, so that no call takes longer than this.
CALL_LIMIT_S = 3.0
TIMEOUT_S = 900


def timed(step, sync) -> float:
    """Seconds a call: the median of the timing loop's samples."""
    timing = measure(step, sync, min_run_ms=1000, min_samples=3, warmup_ms=0,
                     min_block_ms=10)
    return float(np.median(timing.samples_ms)) / 1e3


def matmul_tflops(roof, n: int, dtype: str, device: str) -> tuple[float, int]:
    """TFLOP/s of the framework's matmul in `dtype`, at n or at the largest power of
    two that keeps a call under CALL_LIMIT_S (from a second call at 1024: the first
    one compiles, in JAX and TensorFlow)."""
    step, sync = roof.matmul_step(1024, dtype, device)
    step(), sync()
    started = time.perf_counter()
    step(), sync()
    small_s = time.perf_counter() - started
    while n > 1024 and small_s * (n / 1024) ** 3 > CALL_LIMIT_S:
        n //= 2
    step, sync = roof.matmul_step(n, dtype, device)
    return 2 * n**3 / timed(step, sync) / 1e12, n


def stream_gb_s(step, sync, nbytes: int) -> float:
    return 2 * nbytes / timed(step, sync) / 1e9


def worker(backend: str, threads: int, size: int, device: str = "cpu") -> dict:
    """In a calibration worker: the framework's roofs, or why not, as one JSON line."""
    limit_cpus(threads)
    from backends import load_backend
    loaded = load_backend(backend)
    roof = __import__(f"backends.{backend}.roof", fromlist=["matmul_step"])
    found = {"backend": backend, "version": loaded.version(), "tflops": {}, "sizes": {},
             "errors": {}}
    for dtype in DTYPES:
        try:
            found["tflops"][dtype], found["sizes"][dtype] = matmul_tflops(roof, size, dtype,
                                                                          device)
        except Exception as exc:          # a dtype this framework cannot run here
            found["errors"][dtype] = f"{type(exc).__name__}: {exc}"[:200]
    found["gb_s"] = stream_gb_s(*roof.copy_step(COPY_BYTES, device), COPY_BYTES)
    return found


def installed(backend: str) -> bool:
    return importlib.util.find_spec(REGISTRY[backend].framework) is not None


def run_worker(backend: str, threads: int, size: int) -> dict:
    """One framework's roofs from its own process; its error in words if it failed."""
    with tempfile.TemporaryDirectory(prefix="attnbench-calibrate-") as scratch:
        env = {**os.environ, **environment_for(backend, "cpu", threads, scratch)}
        done = subprocess.run([sys.executable, "-m", "harness.run.calibrate", "--worker",
                               backend, "--threads", str(threads), "--size", str(size)],
                              env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"backend": backend, "failed": f"exit {done.returncode}: {tail}"[:300]}
    return json.loads(lines[-1])


def numpy_copy() -> float:
    """NumPy's copy (one thread): a floor under the frameworks' own."""
    src = np.ones(COPY_BYTES // 4, np.float32)
    dst = np.empty_like(src)
    return stream_gb_s(lambda: np.copyto(dst, src), lambda: None, COPY_BYTES)


def calibrate(threads: int | None = None, size: int = 4096, backends=None) -> dict:
    """Measure, keep and return this CPU's roof entry (harness.measure.roofs)."""
    threads = threads or devices.cpu_threads()
    found = [run_worker(b, threads, size) for b in (backends or REGISTRY) if installed(b)]
    copies = {"numpy": numpy_copy()}
    copies.update({f["backend"]: f["gb_s"] for f in found if "gb_s" in f})
    tflops = {}
    for dtype in DTYPES:
        by = {f["backend"]: f["tflops"][dtype] for f in found if dtype in f.get("tflops", {})}
        if by:
            best = max(by, key=by.get)
            tflops[dtype] = by[best]
            tflops[f"{dtype}_by"] = best
    entry = {"tflops": {d: v for d, v in tflops.items() if not d.endswith("_by")},
             "best_by": {d: tflops[f"{d}_by"] for d in DTYPES if f"{d}_by" in tflops},
             "gb_s": max(copies.values()), "copies_gb_s": copies, "frameworks": found,
             "threads": threads, "size": size,
             "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "how": f"best matmul of {size} and best stream copy, {threads} threads"}
    entry["path"] = str(roofs.save(entry, devices.cpu_name(), threads))
    return entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="A calibration worker (attnbench env "
                                                 "--calibrate runs it)")
    parser.add_argument("--worker", required=True, choices=sorted(REGISTRY))
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args(argv)
    print(json.dumps(worker(args.worker, args.threads, args.size)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
