"""Settings every framework reads at import, for the tests that import one in-process
(conformance, tests/gpu). Workers get the same from the runner (harness.run.worker).
The session's cache (harness/results/cache.py) is its own, never the user's; each
run through tests/integration/runs_helpers.py gets a fresh one inside it unless its
test shares one on purpose."""
import atexit
import os
import shutil
import tempfile

# GPU numbering as NVML's (harness.measure.devices), JAX without its 75% preallocation and
# TF with memory growth, so torch, JAX and TF can share one GPU in one pytest process.
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


os.environ["ATTNBENCH_CACHE"] = tempfile.mkdtemp(prefix="attnbench-test-cache-")
atexit.register(shutil.rmtree, os.environ["ATTNBENCH_CACHE"], True)
# Nor the machine's CPU roof (attnbench env --calibrate): tests see none unless they write one.
os.environ["ATTNBENCH_ROOFS"] = os.path.join(os.environ["ATTNBENCH_CACHE"], "roofs.json")
