"""The examples each command's --help ends with."""
from __future__ import annotations

EXAMPLES = {
    "run": """\
examples:
  attnbench run suites/smoke.toml                  # a one-minute sweep on this machine
  attnbench run suites/default.toml --backend torch --out results/mine
  attnbench run suites/default.toml --resume results/mine  # after Ctrl-C or a crash
  attnbench run suites/default.toml --repeat 3      # 3 processes per cell: their spread
  attnbench run suites/gpu.toml --dry-run          # what would run, and where
  attnbench run suites/default.toml --backend jax --versions jax==0.9.2,jax==0.10.2
  attnbench run suites/gpu.toml --executor ray --address 10.0.0.5:6379   # on a cluster""",
    "check": """\
examples:
  attnbench check                                  # every backend this machine has
  attnbench check --backend jax --dtype float32 --workload mha
  attnbench check --all-shapes --jobs 4            # every case at every shape""",
    "env": """\
example:
  attnbench env          # host, CPU, GPUs (NVML), framework versions, dense peaks
  attnbench env --calibrate --threads 2   # measure this CPU's roof per dtype""",
    "report": """\
examples:
  attnbench report results/20261128-101500-default   # into the run folder itself
  attnbench report results/cpu-run results/h100-run --out results/cpu-vs-h100
  attnbench report results/RUN --baseline "torch eager" """,
    "compare": """\
example:
  attnbench compare results/before results/after --threshold 5   # exit 1 on a regression""",
    "history": """\
examples:
  attnbench history results/published               # every published run
  attnbench history results/run-a results/run-b results/run-c --out results/hist
  attnbench history results/nightly-* --fail-on-step 10   # CI: exit 1 on a new slowdown""",
    "publish": """\
example:
  attnbench publish results/20261129-062220-default --name cpu-xeon-2core""",
    "export": """\
examples:
  attnbench export results/RUN --format pytest-benchmark --out run.json
  pytest-benchmark compare run.json other.json     # pytest-benchmark's own tools
  attnbench report other.json                      # and back: any pytest-benchmark file""",
}
