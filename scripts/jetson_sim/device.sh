#!/bin/bash
# Runs inside the arm64 root (scripts/jetson_sim/run.sh enters it): the install of docs/jetson.md,
# step for step, then one PASS/SKIP/FAIL line per check. Lines marked "# docs/jetson.md" are the
# documented commands verbatim (tests/test_jetson_sim.py compares them with the docs).
set -uo pipefail
src=/opt/rd-sim/src
work=/opt/rd-sim/work
logs=/opt/rd-sim/logs
mkdir -p "$logs"
fails=0
t_device=$(date +%s)

# check NAME COMMAND...: runs it, logs its output, prints PASS/FAIL, the time and its last line.
check() {
  local name=$1 t0 status rc
  shift
  t0=$EPOCHREALTIME
  "$@" > "$logs/$name.log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then status=PASS; else status=FAIL; fails=$((fails + 1)); fi
  printf '%-4s %-13s %6.1f s  %s\n' "$status" "$name" "$(python3 -c "print($EPOCHREALTIME - $t0)")" \
    "$(tail -n 1 "$logs/$name.log")"
  if [ $rc != 0 ]; then sed 's/^/     | /' "$logs/$name.log" | tail -n 15; fi
  return 0
}
skip() { printf 'SKIP %-13s %8s  %s\n' "$1" "" "$2"; }

cd "$src"
# --- docs/jetson.md, "Install" ----------------------------------------------------------------
# `sudo apt install nvidia-jetpack ...` and nvcc on PATH are JetPack's: this root has Debian's
# python3-numpy and python3-opencv (the distribution's OpenCV, built against the system numpy).
jetson_install() {
  rm -rf ~/rd-edge-venv
  python3 -m venv --system-site-packages ~/rd-edge-venv  # docs/jetson.md
  source ~/rd-edge-venv/bin/activate  # docs/jetson.md
  # Debian 11's pip 20.3 (as JetPack 5's pip 20.0) lets the system's setuptools 52 into the build
  # environment, which cannot read pyproject.toml's [project] table (a package named UNKNOWN).
  pip install --upgrade pip  # docs/jetson.md
  # docs/jetson.md: pip install ".[jetson]" -- here the jetson extra without pycuda (it compiles
  # against JetPack's CUDA; SKIP below): rd-edge, then the extra's other requirements as the
  # installed package lists them.
  pip install -q . || return 1
  mapfile -t extra < <(python3 - <<'PY'
from importlib.metadata import requires
for req in requires("rd-edge"):
    name, _, marker = req.partition(";")
    if 'extra == "jetson"' in marker and not name.strip().startswith("pycuda"):
        print(name.strip())
PY
  )
  echo "the jetson extra without pycuda: ${extra[*]}"
  pip install -q "${extra[@]}" || return 1
  # ONNX Runtime stands in for TensorRT: PyPI's aarch64 CPU wheel, the newest that takes the
  # system's numpy (so the runtime runs on the numpy floor, 1.19 on Debian 11) and below 1.20:
  # 1.32.0 segfaults at import under Debian 12's qemu 7.2, 1.19.2 imports (measured).
  pip install -q "onnxruntime<1.20" "numpy==$SYSTEM_NUMPY" || return 1
  echo "installed: $(pip list 2>/dev/null | grep -i -E '^(rd-edge|onnxruntime|numpy|paho-mqtt|tqdm|prometheus)' \
    | tr -s ' ' | paste -sd ',')"
}
checks() { python3 "$src/scripts/jetson_sim/checks.py" "$@"; }

SYSTEM_NUMPY=$(/usr/bin/python3 -c "import numpy; print(numpy.__version__)")
export SYSTEM_NUMPY
echo "release: Debian $RELEASE ($(uname -m), $(python3 --version), kernel $(uname -r) via qemu-user-static)"
check install jetson_install
if [ -x ~/rd-edge-venv/bin/python ]; then
  source ~/rd-edge-venv/bin/activate
fi
check env checks env
check numpy-kept checks numpy-kept
check torch-free checks torch-free
check folder checks folder
check video checks video
check detector checks detector
check thresholds checks thresholds
check tiled checks tiled
check mqtt checks mqtt
check evidence checks evidence
skip tensorrt "TensorRT comes with JetPack (python3-libnvinfer), not in Debian; ONNX Runtime's aarch64 wheel stood in"
skip pycuda "pycuda compiles against JetPack's CUDA toolkit (nvcc), absent here; CPU preprocessing ran"
skip csi "nvarguscamerasrc is JetPack's GStreamer plugin and needs a CSI sensor; video and folders ran"

# The failure this job exists for: a numpy 2 in the venv breaks the system OpenCV. rd-infer
# must say so in one line (what to do), not with numpy's page of traceback.
numpy_abi() {
  rm -rf /tmp/venv-numpy2
  python3 -m venv --system-site-packages /tmp/venv-numpy2
  /tmp/venv-numpy2/bin/pip install -q "numpy>=2" || return 1
  local site err rc
  site=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  err=$(PYTHONPATH=$site /tmp/venv-numpy2/bin/python -c "from rd_edge.runtime.cli import main; main()" \
        "$work/plain/model.onnx" "$work/test" 2>&1 >/dev/null)
  rc=$?
  echo "exit $rc, stderr: $err"
  rm -rf /tmp/venv-numpy2
  [ $rc = 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] && [[ $err == error:*numpy* ]]
}
if python3 -c "import sys; sys.exit(sys.version_info < (3, 9))"; then
  check numpy2-cv2 numpy_abi
else
  skip numpy2-cv2 "numpy 2 needs Python >= 3.9"
fi

# --- the C++ example, built with the distribution's OpenCV ------------------------------------
cpp() {
  cmake -S cpp_examples -B /tmp/rd-cpp-build -DCMAKE_BUILD_TYPE=Release || return 1
  cmake --build /tmp/rd-cpp-build -j"$(nproc)" || return 1
  /tmp/rd-cpp-build/rd_infer "$work/plain/model.onnx" "$work/test" > /tmp/rd-cpp.txt || return 1
  python3 - /tmp/rd-cpp.txt <<'EOF'
import json, sys
from pathlib import Path
ref = json.loads(Path("/opt/rd-sim/work/reference.json").read_text())["folder"]
got = {}
for line in Path(sys.argv[1]).read_text().splitlines():
    source, _, rest = line.partition(" score=")
    got[str(Path(source).relative_to("/opt/rd-sim/work/test"))] = float(rest.split()[0])
worst = max(abs(got[k] - ref[k]) / abs(ref[k]) for k in ref)
assert sorted(got) == sorted(ref), (sorted(got), sorted(ref))
assert worst < 1e-3, worst
print(f"rd_infer (C++, OpenCV DNN) {len(got)} images, scores = x86 Python within {worst:.1e} relative")
EOF
}
if [ "${JETSON_SIM_CPP:-0}" = 0 ]; then
  skip cpp "not built by default (JETSON_SIM_CPP=1 builds it: g++, cmake and libopencv-dev, 125 more packages under qemu); it passes on Debian 12; on Debian 11 OpenCV 4.5.1's DNN has no Sqrt layer for the graph's head"
elif ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
  skip cpp "no cmake/g++ in this root (root.sh installs them with JETSON_SIM_CPP=1)"
else
  check cpp cpp
fi
echo "device wall time: $(( $(date +%s) - t_device )) s, $fails failed"
[ $fails = 0 ]
