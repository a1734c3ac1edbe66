#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU and a Python that already has
# PyTorch and/or JAX (nothing is installed, nothing fetched; TensorFlow may be
# missing: its cells are `unsupported`). Every step has its own time limit, so the
# whole check ends within 8 minutes whatever hangs, and a step that fails does not
# stop the next. Writes, under OUT_DIR: gpu-check.log (all output), run/ (the
# short GPU suite: results, report.html), figures.md, check/ (every variant and
# dtype against float64 on the GPU), pytest-gpu.xml.
#
#   bash scripts/gpu_check.sh [OUT_DIR]      # or: make gpu-check OUT=OUT_DIR
#   PYTHON=/path/to/python3 bash scripts/gpu_check.sh OUT_DIR
set -u
cd "$(dirname "$0")/.."
OUT=${1:-results/gpu-check-$(date -u +%Y%m%d-%H%M%S)}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu-check.log") 2>&1

# Before any framework starts (workers get these from the runner as well).
export CUDA_DEVICE_ORDER=PCI_BUS_ID XLA_PYTHON_CLIENT_PREALLOCATE=false \
       TF_FORCE_GPU_ALLOW_GROWTH=true PYTHONDONTWRITEBYTECODE=1
SUMMARY=()
START=$SECONDS

step() {   # step NAME LIMIT_S COMMAND...: SIGINT at the limit, so a run keeps its rows
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    echo; echo "=== $name (limit ${limit} s): $*"
    timeout -s INT -k 20 "$limit" "$@"
    rc=$?
    [ $rc -eq 124 ] && rc="124 (hit its ${limit} s limit)"
    SUMMARY+=("$name: exit $rc in $((SECONDS - t0)) s")
}

echo "attnbench gpu-check into $OUT, $(date -u +%FT%TZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
"$PY" -c "from harness import devices; raise SystemExit(0 if devices.gpus() else 1)" ||
    echo "WARNING: NVML sees no GPU here: the GPU tests skip and every cell is unsupported"
step env 30 "$PY" -m harness env
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
    --format=csv 2>/dev/null || true
step gpu-tests 120 "$PY" -m pytest -q -p no:cacheprovider -rs tests/gpu \
    --junitxml="$OUT/pytest-gpu.xml"
step suite 180 "$PY" -m harness run suites/gpu-check.toml --out "$OUT/run" --device cuda:0
step figures 30 bash -c "'$PY' scripts/gpu_figures.py '$OUT/run' | tee '$OUT/figures.md'"
step check 90 "$PY" -m harness check --device cuda:0 --out "$OUT/check" --quiet \
    --variant eager sdpa sdpa-flash sdpa-efficient sdpa-math sdpa-cudnn jit dpa dpa-cudnn

echo; echo "=== gpu-check summary ($((SECONDS - START)) s in all; output in $OUT/)"
printf '  %s\n' "${SUMMARY[@]}"
