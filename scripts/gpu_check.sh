#!/usr/bin/env bash
# Every GPU check this machine allows, in one command, in under 8 minutes on an NVIDIA GPU:
#   1. pytest on the tests marked gpu / tensorrt (TensorRT engines vs ONNX Runtime CPU, CUDA
#      preprocessing vs the CPU path, the runtime's TensorRT runner and Detector);
#   2. scripts/gpu_check_models.py: one resnet18 at 256 px as fp32/fp16/int8 graphs and
#      TensorRT engines, run through the Detector on every backend present (ORT CPU/CUDA/TensorRT
#      EP, TensorRT engines with CUDA preprocessing) and the torch model on CUDA, against ONNX
#      Runtime on the CPU;
#   3. the latency table of benchmarks/latency.py when that script exists.
# Whatever cannot run is listed as skipped with the reason. Without a GPU: says so, exits 0.
# A Jetson is recognised by /etc/nv_tegra_release (it has no nvidia-smi); on a runtime-only
# install (no torch, no ONNX Runtime: docs/jetson.md) the steps that need them are skipped with
# the reason, and pytest skips the test files that import them.
#
# Usage: scripts/gpu_check.sh            (PY=python3 to use another interpreter;
#        RD_EDGE_TEGRA_RELEASE=FILE stands in for /etc/nv_tegra_release, for testing)
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rd_gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
FAILED=()
SKIPPED=()

BUDGET_S=${GPU_CHECK_BUDGET_S:-470}   # under 8 minutes in all, summary included
section() { echo; echo "== $1 ($(( $(date +%s) - START )) s)"; }
# limit CAP: seconds a step may take, at most CAP and at most what the budget has left.
limit() { local left=$(( BUDGET_S - ($(date +%s) - START) )); echo $(( left < $1 ? left : $1 )); }
skip() { SKIPPED+=("$1: $2"); echo "SKIPPED $1: $2"; }
# step NAME LIMIT_S LOG CMD...: run CMD under a time limit, output shown and kept in LOG; a
# non-zero exit is a failure of that step (pytest's 5, "no tests collected", is not).
step() {
  local name=$1 limit=$2 log=$3; shift 3
  if [ "$limit" -le 0 ]; then skip "$name" "no time left of the ${BUDGET_S} s budget"; return 0; fi
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then FAILED+=("$name: over its ${limit} s limit")
  elif [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then FAILED+=("$name: exit $rc (see above)"); fi
  return 0
}

section "GPU"
TEGRA_RELEASE=${RD_EDGE_TEGRA_RELEASE:-/etc/nv_tegra_release}
export RD_EDGE_TEGRA_RELEASE=$TEGRA_RELEASE  # the runtime's Jetson detection reads the same file
if [ -f "$TEGRA_RELEASE" ]; then
  # JetPack: no nvidia-smi; the L4T release and the board name say what this is.
  echo "Jetson: $(head -1 "$TEGRA_RELEASE")"
  MODEL_FILE=${RD_EDGE_DEVICE_TREE_MODEL:-/proc/device-tree/model}
  [ -r "$MODEL_FILE" ] && echo "board: $(tr -d '\0' < "$MODEL_FILE")"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "no NVIDIA GPU here: nvidia-smi is not installed and $TEGRA_RELEASE does not exist; nothing to check (exit 0)"
  exit 0
elif ! nvidia-smi -L >/dev/null 2>&1 || [ -z "$(nvidia-smi -L 2>/dev/null)" ]; then
  echo "no NVIDIA GPU here: nvidia-smi finds no device ($(nvidia-smi -L 2>&1 | head -1)); nothing to check (exit 0)"
  exit 0
else
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null \
    || nvidia-smi -L
fi
has() { "$PY" -c "import $1" >/dev/null 2>&1; }
"$PY" - <<'EOF'
import importlib, importlib.util
def version(name):
    if importlib.util.find_spec(name) is None:
        return "not installed"
    try:
        return getattr(importlib.import_module(name), "__version__", "installed")
    except Exception as exc:  # a broken install is worth seeing here
        return f"import fails: {exc}"
for name in ("tensorrt", "pycuda", "onnxruntime", "torch", "cv2", "onnx", "pytest"):
    print(f"{name:12} {version(name)}")
try:
    import onnxruntime as ort
    print(f"{'ORT providers':12} {', '.join(ort.get_available_providers())}")
except ImportError:
    pass
try:
    import torch
    print(f"{'torch CUDA':12} {torch.cuda.is_available()} ({torch.version.cuda})")
except ImportError:
    pass
EOF

section "pytest: tests marked gpu or tensorrt"
if ! has pytest; then
  skip "pytest gpu/tensorrt" "pytest is not installed (pip install pytest)"
else
  # -s shows the PARITY lines the engine tests print; -rs lists every skip with its reason.
  # RD_EDGE_RUNTIME_ONLY: a test file importing torch/onnx/onnxruntime that is not installed is
  # skipped with that reason (tests/conftest.py) instead of failing collection.
  RD_EDGE_RUNTIME_ONLY=1 step "pytest gpu/tensorrt" "$(limit 240)" "$WORK/pytest.log" \
    "$PY" -m pytest -m "gpu or tensorrt" -rs -s -q -p no:cacheprovider tests
fi
if grep -q '^PARITY' "$WORK/pytest.log"; then
  echo "-- engine parity (engine vs ONNX Runtime CPU, same graph):"
  grep '^PARITY' "$WORK/pytest.log"
fi
while IFS= read -r line; do SKIPPED+=("pytest: ${line#SKIPPED }"); done < <(grep '^SKIPPED' "$WORK/pytest.log")

section "every backend on one model (resnet18, 256 px)"
# Without torch/onnxruntime (a runtime-only install) the script skips itself with the reason.
step "gpu_check_models" "$(limit 200)" "$WORK/models.log" "$PY" scripts/gpu_check_models.py --work "$WORK/models"
while IFS= read -r line; do SKIPPED+=("${line#SKIPPED }"); done < <(grep '^SKIPPED' "$WORK/models.log")

section "latency (benchmarks/latency.py)"
LEFT=$(limit 240)
if [ ! -f benchmarks/latency.py ]; then
  skip "latency table" "benchmarks/latency.py does not exist yet"
elif ! has torch; then
  skip "latency table" "torch is not installed (the benchmark starts from the checkpoint)"
elif [ ! -f "$WORK/models/model.pt" ]; then
  skip "latency table" "no model was built in the previous step"
elif [ "$LEFT" -lt 30 ]; then
  skip "latency table" "only ${LEFT} s left of the 8-minute budget"
else
  ENGINE=()
  for p in fp16 fp32 int8; do
    [ -f "$WORK/models/model_$p.engine" ] && { ENGINE=(--engine "$WORK/models/model_$p.engine"); break; }
  done
  step "latency" "$LEFT" "$WORK/latency.log" "$PY" benchmarks/latency.py --model "$WORK/models/model.pt" \
    --onnx "$WORK/models/model.onnx" "${ENGINE[@]}" \
    --backends reference,torch,ort,ort-int8,ort-cuda,trt --batch-sizes 1,8 \
    --iters 30 --warmup 5 --no-peak --quiet --markdown "$WORK/latency.md" --json "$WORK/latency.json"
  [ -f "$WORK/latency.md" ] && cat "$WORK/latency.md"
fi

section "summary"
echo "skipped (${#SKIPPED[@]}):"
for s in "${SKIPPED[@]}"; do echo "  $s"; done
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "FAILED (${#FAILED[@]}):"
  for f in "${FAILED[@]}"; do echo "  $f"; done
  exit 1
fi
echo "all GPU checks that could run passed in $(( $(date +%s) - START )) s"
