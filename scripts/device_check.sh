#!/usr/bin/env bash
# The first machine with an NVIDIA GPU: every check it can run, in under 5 minutes, one line each
#   PASS|FAIL|SKIP <check>: <what was measured, or why it could not run>
# and a summary. The checks (scripts/device_check.py says what each compares, within what):
#   model            a random-weight resnet18 at 64 px, its fp32 and int8 (Q/DQ) graphs (CPU)
#   engine-fp32/fp16/int8  TensorRT build + parity with ONNX Runtime CPU at batches 1 and 3
#   engine-static    a graph with a fixed batch of 2: built, run at 1 and 2
#   timing-cache     a rebuild reloads the timing cache the first builds wrote
#   cuda-preprocess  CUDA preprocessing and tile kernels (pycuda) vs the CPU path
#   thread-close     a Detector closed from another thread: no warning, no context left current
#   cupy-kernels     without pycuda: the same kernel source through CuPy's RawKernel
#   torch-cuda       the torch model on CUDA vs the CPU, fp16 latency
#   pycuda-sdist     pycuda built from a carried sdist (a device without network)
# Without a GPU, or with --dry-run (`make test` runs that), each check SKIPs with the reason.
# Exit 1 when a check FAILs. scripts/gpu_check.sh is the longer run (every gpu/tensorrt test and
# a 256 px model on every backend).
#
# Usage: scripts/device_check.sh [--dry-run]      (PY=python3 for another interpreter,
#        DEVICE_CHECK_BUDGET_S=280 for the total, DEVICE_CHECK_WORK=DIR to keep the files)
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DRY=()
[ "${1:-}" = "--dry-run" ] && DRY=(--dry-run)
BUDGET_S=${DEVICE_CHECK_BUDGET_S:-280}
WORK=${DEVICE_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/rd_device_check.XXXXXX")}
[ -n "${DEVICE_CHECK_WORK:-}" ] || trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
PASS=0 FAIL=0 SKIP=0

# Each check's share of the budget (s): the engine builds dominate.
declare -A LIMIT=([model]=90 [engine-fp32]=60 [engine-fp16]=60 [engine-int8]=60 [engine-static]=45
                  [timing-cache]=45 [cuda-preprocess]=45 [thread-close]=45 [cupy-kernels]=45
                  [torch-cuda]=45 [pycuda-sdist]=120)

echo "device check: $(uname -m), $(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version \
  --format=csv,noheader 2>/dev/null | head -1 || echo 'no nvidia-smi'), python $("$PY" -c 'import platform; print(platform.python_version())')"
CHECKS=$("$PY" scripts/device_check.py --list) || { echo "FAIL setup: scripts/device_check.py does not run"; exit 1; }
for name in $CHECKS; do
  left=$(( BUDGET_S - ($(date +%s) - START) ))
  limit=${LIMIT[$name]:-45}
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 5 ]; then
    line="SKIP $name: no time left of the ${BUDGET_S} s budget"
  else
    # The check's own status, from inside the substitution: after it, PIPESTATUS is the assignment's.
    line=$(timeout --kill-after=5 "$limit" "$PY" scripts/device_check.py --check "$name" --work "$WORK" \
           "${DRY[@]}" 2>"$WORK/$name.err" | tail -1; exit "${PIPESTATUS[0]}")
    rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      line="FAIL $name: over its ${limit} s limit"
    elif [ -z "$line" ]; then
      line="FAIL $name: exit $rc without a result ($(tail -1 "$WORK/$name.err"))"
    fi
  fi
  echo "$line"
  case $line in
    PASS*) PASS=$((PASS + 1)) ;;
    SKIP*) SKIP=$((SKIP + 1)) ;;
    *) FAIL=$((FAIL + 1)); sed 's/^/    /' "$WORK/$name.err" 2>/dev/null | tail -15 ;;
  esac
done
echo "summary: $PASS PASS, $FAIL FAIL, $SKIP SKIP in $(( $(date +%s) - START )) s"
[ "$FAIL" -eq 0 ]
