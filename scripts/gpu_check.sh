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
OUT=${1:-results/gpu-check-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)      # as the caller named it, before the cd
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
exec > >(tee -a "$OUT/gpu-check.log") 2>&1
TEE=$!

# Before any framework starts (workers get these from the runner as well).
export CUDA_DEVICE_ORDER=PCI_BUS_ID XLA_PYTHON_CLIENT_PREALLOCATE=false \
       TF_FORCE_GPU_ALLOW_GROWTH=true PYTHONDONTWRITEBYTECODE=1
SUMMARY=()
START=$SECONDS

step() {   # step NAME LIMIT_S COMMAND...: SIGINT at the limit (a run keeps its rows and
           # writes its report), SIGKILL 5 s later if it is still there
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    echo; echo "=== $name (limit ${limit} s): $*"
    timeout -s INT -k 5 "$limit" "$@"
    rc=$?
    case $rc in
        124|130) rc="$rc (stopped at its ${limit} s limit)" ;;
        137) rc="137 (killed 5 s after its ${limit} s limit)" ;;
    esac
    SUMMARY+=("$name: exit $rc in $((SECONDS - t0)) s")
}

echo "attnbench gpu-check into $OUT, $(date -u +%FT%TZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
timeout 30 "$PY" -c "from harness import devices; raise SystemExit(0 if devices.gpus() else 1)" ||
    echo "WARNING: NVML sees no GPU here: the GPU tests skip and every cell is unsupported"
timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
    --format=csv 2>/dev/null || true
# Limits: 20 + 130 + 170 + 20 + 90 = 430 s, plus 5 x 5 s of grace and the two probes
# above: under 8 minutes in the worst case.
step env 20 "$PY" -m harness env
step gpu-tests 130 "$PY" -m pytest -q -p no:cacheprovider -rs tests/gpu \
    --junitxml="$OUT/pytest-gpu.xml"
step suite 170 "$PY" -m harness run suites/gpu-check.toml --out "$OUT/run" --device cuda:0
step figures 20 bash -c "set -o pipefail; '$PY' scripts/gpu_figures.py '$OUT/run' | tee '$OUT/figures.md'"
step check 90 "$PY" -m harness check --device cuda:0 --out "$OUT/check" --quiet \
    --variant eager sdpa sdpa-flash sdpa-efficient sdpa-math sdpa-cudnn jit dpa dpa-cudnn

echo; echo "=== gpu-check summary ($((SECONDS - START)) s in all; output in $OUT/)"
printf '  %s\n' "${SUMMARY[@]}"
exec >&- 2>&-
wait "$TEE" 2>/dev/null          # the log is complete when the script returns
