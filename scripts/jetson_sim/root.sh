#!/usr/bin/env bash
# An arm64 Debian root with the distribution's python3, numpy and OpenCV (what JetPack ships as
# system packages), built once with debootstrap and cached outside the repository; entered through
# qemu-user-static (binfmt_misc). Usage: root.sh RELEASE ROOT   (RELEASE: bullseye or bookworm).
# JETSON_SIM_CPP=1 adds the C++ toolchain (g++, cmake, libopencv-dev: 125 more packages under qemu).
set -euo pipefail
release=$1
root=$2
mirror=${JETSON_SIM_MIRROR:-http://deb.debian.org/debian}
# dbus-x11: debootstrap ignores alternatives, and dconf-service (via GTK, via OpenCV) needs a
# dbus-session-bus; this is the smallest package that provides one.
python_pkgs=python3,python3-venv,python3-pip,python3-numpy,python3-opencv,ca-certificates,dbus-x11
cpp_pkgs=(g++ make cmake libopencv-dev)

# qemu's aarch64 interpreter registered with the F flag (run.sh checks; here when called alone).
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable qemu-aarch64
fi

if [ ! -e "$root/.rd-base" ]; then
  echo "jetson-sim: debootstrap --arch=arm64 $release into $root (once; several minutes under qemu)" >&2
  rm -rf "$root.tmp"
  mkdir -p "$(dirname "$root")"
  debootstrap --arch=arm64 --variant=minbase --include="$python_pkgs" "$release" "$root.tmp" "$mirror" \
    > "$root.debootstrap.log" 2>&1 || { tail -20 "$root.debootstrap.log" >&2; exit 1; }
  touch "$root.tmp/.rd-base"
  rm -rf "$root"
  mv "$root.tmp" "$root"
fi

if [ "${JETSON_SIM_CPP:-0}" != 0 ] && [ ! -e "$root/.rd-cpp" ]; then
  echo "jetson-sim: apt-get install ${cpp_pkgs[*]} in the $release root (once)" >&2
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  trap 'umount "$root/proc"' EXIT
  chroot "$root" /usr/bin/apt-get update -qq > "$root.apt.log" 2>&1
  DEBIAN_FRONTEND=noninteractive chroot "$root" /usr/bin/apt-get install -y -qq --no-install-recommends \
    "${cpp_pkgs[@]}" >> "$root.apt.log" 2>&1 || { tail -20 "$root.apt.log" >&2; exit 1; }
  chroot "$root" /usr/bin/apt-get clean
  touch "$root/.rd-cpp"
fi
