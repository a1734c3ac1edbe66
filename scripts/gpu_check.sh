#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU and a Python that already has
# PyTorch and/or JAX (nothing is installed, nothing fetched; TensorFlow may be
# missing: its cells are `unsupported`). Every step has its own time limit, so the
# whole check ends within 10 minutes whatever hangs, and a step that fails does not
# stop the next. Writes, under OUT_DIR: gpu-check.log (all output), run/ (the
# short GPU suite: results, report.html), figures.md, check/ (every variant and
# dtype against float64 on the GPU), pytest-gpu.xml.
#
# Ends with one verdict line per step and an overall line; exits 0 when every step
# passed (on a machine without a GPU too, saying so), 1 when any failed or ran past
# its limit. A machine that shows a GPU NVML cannot list fails the `gpu` step.
#
#   bash scripts/gpu_check.sh [OUT_DIR]      # or: make gpu-check OUT=OUT_DIR
#   PYTHON=/path/to/python3 bash scripts/gpu_check.sh OUT_DIR
#   GPU_CHECK_LIMIT_SUITE=60 bash scripts/gpu_check.sh   # a step's limit, in seconds
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
VERDICTS=()
FAILED=()
START=$SECONDS

limit() {  # limit STEP DEFAULT_S: $GPU_CHECK_LIMIT_<STEP> (gpu-tests: _GPU_TESTS) or the default
    local var=GPU_CHECK_LIMIT_${1^^}
    var=${var//-/_}
    echo "${!var:-$2}"
}

record() {  # record NAME EXIT LIMIT_S T0: its verdict line; a failure or timeout is kept
    local name=$1 rc=$2 limit=$3 took=$((SECONDS - $4)) verdict
    case $rc in
        0) verdict="ok" ;;
        124) verdict="TIMED OUT at its $limit s limit" ;;
        137) verdict="TIMED OUT at its $limit s limit, then killed" ;;
        130) verdict="INTERRUPTED (exit 130)" ;;
        *) verdict="FAILED  exit $rc" ;;
    esac
    [ "$rc" = 0 ] || FAILED+=("$name")
    VERDICTS+=("$(printf '%-10s %-8s %4d s' "$name" "$verdict" "$took")")
}

step() {   # step NAME DEFAULT_LIMIT_S COMMAND...: SIGINT at the limit (a run keeps its
           # rows and writes its report), SIGKILL 5 s later if it is still there
    local name=$1 lim t0=$SECONDS
    lim=$(limit "$1" "$2")
    shift 2
    echo; echo "=== $name (limit ${lim} s): $*"
    timeout -s INT -k 5 "$lim" "$@"
    record "$name" $? "$lim" "$t0"
}

echo "attnbench gpu-check into $OUT, $(date -u +%FT%TZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
# Is there a GPU? NVML lists them; where it cannot, a GPU that still shows (driver
# entries, device files) makes this step fail with NVML's message, never "no GPU".
t0=$SECONDS
lim=$(limit gpu 12)
echo; echo "=== gpu (limit ${lim} s): is there a GPU NVML can list?"
PRESENCE=$(timeout -s INT -k 2 "$lim" "$PY" -c "from harness.measure import devices
kind, line = devices.presence()
print(line)
raise SystemExit(kind == 'broken')" 2>&1)
rc=$?
echo "$PRESENCE"
record gpu "$rc" "$lim" "$t0"
PRESENCE=${PRESENCE##*$'\n'}                   # its verdict is the last line
timeout -k 2 6 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
    --format=csv 2>/dev/null || true
# Worst case at the default limits: 12 + 2 and 6 + 2 s for the probes above, then
# 20 + 110 + 280 + 10 + 120 = 540 s of steps plus 5 x 5 s of grace: 587 s, under 10 minutes.
# docs/gpu-check.md: what each step's slowest part is and what it is estimated to take.
step env 20 "$PY" -m harness env
step gpu-tests 110 "$PY" -m pytest -q -p no:cacheprovider -rs tests/gpu \
    --junitxml="$OUT/pytest-gpu.xml"
# No gate here: the check step below judges every configuration on the GPU, and each
# suite row is judged at its own size (sampled rows), so the gate would only repeat.
step suite 280 "$PY" -m harness run suites/gpu-check.toml --out "$OUT/run" --device cuda:0 \
    --no-gate
step figures 10 bash -c "set -o pipefail; '$PY' scripts/gpu_figures.py '$OUT/run' | tee '$OUT/figures.md'"
step check 120 "$PY" -m harness check --device cuda:0 --out "$OUT/check" --quiet \
    --variant eager sdpa sdpa-flash sdpa-efficient sdpa-math sdpa-cudnn jit dpa dpa-cudnn

echo; echo "=== gpu-check summary ($((SECONDS - START)) s in all; output in $OUT/)"
printf '  %s\n' "${VERDICTS[@]}"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "gpu-check FAILED: ${#FAILED[@]} of ${#VERDICTS[@]} steps (${FAILED[*]})"
    status=1
elif [[ $PRESENCE == "no GPU on this machine"* ]]; then
    echo "gpu-check passed (all ${#VERDICTS[@]} steps ok), but no GPU on this machine:" \
         "the GPU tests skipped and every GPU cell is unsupported (${PRESENCE#*: })"
    status=0
else
    echo "gpu-check passed: all ${#VERDICTS[@]} steps ok"
    status=0
fi
exec >&- 2>&-
wait "$TEE" 2>/dev/null          # the log is complete when the script returns
exit $status
