#!/usr/bin/env bash
# make jetson-sim: the Jetson install of docs/jetson.md, proven on an arm64 Debian root under qemu.
#
# On this (x86) side, with the main venv: a tiny model is trained, exported, calibrated, and scored
# for reference; a video and a tiled model too; mosquitto listens on 127.0.0.1. Then, for each
# release in JETSON_SIM_RELEASES (bullseye: Python 3.9, numpy 1.19, OpenCV 4.5 ~ JetPack 5;
# bookworm: Python 3.11, numpy 1.24, OpenCV 4.6 ~ JetPack 6), the root (root.sh, cached in
# JETSON_SIM_CACHE) gets the working tree and those files, and device.sh runs the documented
# install and the checks inside it. One PASS/SKIP/FAIL line per check; exit 1 on any FAIL.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/scripts/jetson_sim
bin=${BIN:-$repo/.venv/bin}
releases=${JETSON_SIM_RELEASES:-bullseye}
cache=${JETSON_SIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rd-edge/jetson-sim}
t_start=$(date +%s)

[ "$(id -u)" = 0 ] || { echo "error: jetson-sim needs root (debootstrap, chroot, mount); run it as root or in CI" >&2; exit 1; }
for tool in debootstrap qemu-aarch64-static update-binfmts mosquitto; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "error: jetson-sim needs $tool: apt-get install qemu-user-static binfmt-support debootstrap mosquitto" >&2; exit 1; }
done
# qemu's aarch64 interpreter registered with the F flag (opened once, so it works inside a chroot).
# A machine that may not register it (a container without CAP_SYS_ADMIN) cannot run arm64 code
# at all: SKIP with the reason, as the GPU tests do without a GPU; JETSON_SIM_REQUIRED=1 makes
# that a failure (a machine that must run it).
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  { [ -e /proc/sys/fs/binfmt_misc/register ] || mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc; } \
    2>/dev/null && update-binfmts --enable qemu-aarch64 2>/dev/null || {
    echo "SKIP jetson-sim: cannot register qemu-aarch64 with binfmt_misc on this machine" \
      "($([ -e /proc/sys/fs/binfmt_misc/register ] && echo 'binfmt_misc mounted, registering refused' \
        || echo 'binfmt_misc not mounted, mounting refused'))"
    [ "${JETSON_SIM_REQUIRED:-0}" = 0 ] || { echo "error: JETSON_SIM_REQUIRED=1 and jetson-sim cannot run here" >&2; exit 1; }
    exit 0
  }
fi

work=$(mktemp -d /tmp/rd-jetson-sim.XXXXXX)
mounted=()
broker_pid=
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}"; done
  [ -z "$broker_pid" ] || { kill "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT

# --- x86 side: what a workstation hands to the device ------------------------------------------
# JETSON_SIM_PREPARED=DIR reuses what an earlier prepare.py wrote (while working on the checks).
if [ -n "${JETSON_SIM_PREPARED:-}" ]; then
  cp -r "$JETSON_SIM_PREPARED" "$work/files"
else
  echo "jetson-sim: preparing the model, data and reference scores on $(uname -m) ($work)" >&2
  t0=$(date +%s)
  "$bin/python" "$here/prepare.py" "$work/files" --bin "$bin" > "$work/prepare.log" 2>&1 \
    || { cat "$work/prepare.log" >&2; exit 1; }
  echo "jetson-sim: prepared in $(( $(date +%s) - t0 )) s" >&2
fi

# A real broker on the host: the chroot shares the host's network, so 127.0.0.1 reaches it.
port=$("$bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/mosquitto.conf"
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$mosquitto" -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
broker_pid=$!

failed=0
for release in $releases; do
  root=$cache/$release
  t0=$(date +%s)
  "$here/root.sh" "$release" "$root"
  echo "jetson-sim: $release root ready in $(( $(date +%s) - t0 )) s ($root)" >&2
  rm -rf "$root/opt/rd-sim"
  mkdir -p "$root/opt/rd-sim/src"
  # The working tree as git sees it (tracked and untracked, not ignored): what `git clone` gives.
  (cd "$repo" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$root/opt/rd-sim/src"
  cp -r "$work/files" "$root/opt/rd-sim/work"
  cp /etc/resolv.conf "$root/etc/resolv.conf"  # pip reaches PyPI from inside,
  # through the same TLS trust (and index, if one is set) as this machine's pip.
  cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$root/opt/rd-sim/ca.crt"
  # /proc, /sys and /dev as on a device: without /sys ONNX Runtime aborts at import under qemu.
  mount -t proc proc "$root/proc" && mounted+=("$root/proc")
  mount --bind /sys "$root/sys" && mounted+=("$root/sys")
  mount --bind /dev "$root/dev" && mounted+=("$root/dev")
  echo "== jetson-sim: Debian $release arm64 (qemu-user-static) ==" >&2
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 \
    MQTT_PORT="$port" JETSON_SIM_CPP="${JETSON_SIM_CPP:-0}" RELEASE="$release" PIP_CERT=/opt/rd-sim/ca.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 ${PIP_INDEX_URL:+PIP_INDEX_URL="$PIP_INDEX_URL"} \
    /bin/bash /opt/rd-sim/src/scripts/jetson_sim/device.sh || failed=1
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}"; done
  mounted=()
done
echo "jetson-sim: total wall time $(( $(date +%s) - t_start )) s (releases: $releases)"
exit $failed
