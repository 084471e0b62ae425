#!/usr/bin/env bash
# An arm64 Debian root with the distribution's python3, numpy and OpenCV (what JetPack ships as
# system packages), built once with debootstrap and cached outside the repository; entered through
# qemu-user-static (binfmt_misc or proot: arm64.sh). Usage: root.sh RELEASE ROOT   (RELEASE: bullseye or bookworm).
# JETSON_SIM_CPP=1 adds the C++ toolchain (g++, cmake, libopencv-dev: 125 more packages under qemu).
set -euo pipefail
release=$1
root=$2
mirror=${JETSON_SIM_MIRROR:-http://deb.debian.org/debian}
# dbus-x11: debootstrap ignores alternatives, and dconf-service (via GTK, via OpenCV) needs a
# dbus-session-bus; this is the smallest package that provides one.
python_pkgs=python3,python3-venv,python3-pip,python3-numpy,python3-opencv,ca-certificates,dbus-x11
cpp_pkgs=(g++ make cmake libopencv-dev)

# How arm64 programs run here: binfmt_misc or proot (arm64.sh; run.sh chooses, here when called alone).
# shellcheck source=scripts/jetson_sim/arm64.sh
source "$(dirname "$0")/arm64.sh"
JETSON_SIM_MODE=${JETSON_SIM_MODE:-$(arm64_mode)}
[ -n "$JETSON_SIM_MODE" ] || exit 1

if [ ! -e "$root/.rd-base" ]; then
  echo "jetson-sim: debootstrap --arch=arm64 $release into $root (once; several minutes under qemu)" >&2
  rm -rf "$root.tmp"
  mkdir -p "$(dirname "$root")"
  # binfmt: debootstrap runs the arm64 second stage itself, through the kernel. proot: the first
  # stage (download, unpack) here, the second (dpkg configuring, under qemu) entered with proot.
  foreign=()
  [ "$JETSON_SIM_MODE" = binfmt ] || foreign=(--foreign)
  debootstrap "${foreign[@]}" --arch=arm64 --variant=minbase --include="$python_pkgs" "$release" "$root.tmp" \
    "$mirror" > "$root.debootstrap.log" 2>&1 || { tail -20 "$root.debootstrap.log" >&2; exit 1; }
  if [ "$JETSON_SIM_MODE" != binfmt ]; then
    enter "$root.tmp" /debootstrap/debootstrap --second-stage >> "$root.debootstrap.log" 2>&1 \
      || { tail -20 "$root.debootstrap.log" >&2; exit 1; }
  fi
  touch "$root.tmp/.rd-base"
  rm -rf "$root"
  mv "$root.tmp" "$root"
fi

if [ "${JETSON_SIM_CPP:-0}" != 0 ] && [ ! -e "$root/.rd-cpp" ]; then
  echo "jetson-sim: apt-get install ${cpp_pkgs[*]} in the $release root (once)" >&2
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  if [ "$JETSON_SIM_MODE" = binfmt ]; then
    mount -t proc proc "$root/proc"
    trap 'umount "$root/proc"' EXIT
  fi
  enter "$root" /usr/bin/apt-get update -qq > "$root.apt.log" 2>&1
  DEBIAN_FRONTEND=noninteractive enter "$root" /usr/bin/apt-get install -y -qq --no-install-recommends \
    "${cpp_pkgs[@]}" >> "$root.apt.log" 2>&1 || { tail -20 "$root.apt.log" >&2; exit 1; }
  enter "$root" /usr/bin/apt-get clean
  touch "$root/.rd-cpp"
fi
