# Sourced by run.sh and root.sh: how this machine runs arm64 programs, and how a root is entered.
#
# JETSON_SIM_MODE (chosen by arm64_mode unless set):
#   binfmt  the kernel runs aarch64 programs through qemu-aarch64-static, registered with
#           binfmt_misc (F flag: opened once, so it works inside a chroot); the root is entered
#           with chroot, /proc /sys /dev bind-mounted by the caller. Needs CAP_SYS_ADMIN.
#   proot   no binfmt_misc (a container that may not mount or register it): proot runs every
#           program of the root through qemu-aarch64-static itself (ptrace, no privileges) and
#           binds /proc /sys /dev. Slower (every system call is traced), same checks.

binfmt_enabled() { [ "$(head -n 1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null)" = enabled ]; }

# Prints binfmt or proot, or nothing (and why, on stderr) when neither works here.
arm64_mode() {
  if [ -n "${JETSON_SIM_MODE:-}" ]; then
    echo "$JETSON_SIM_MODE"
    return
  fi
  if binfmt_enabled || {
    { [ -e /proc/sys/fs/binfmt_misc/register ] || mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc; } \
      2>/dev/null && update-binfmts --enable qemu-aarch64 2>/dev/null && binfmt_enabled
  }; then
    echo binfmt
  elif command -v proot >/dev/null && proot -0 /bin/true 2>/dev/null; then
    echo proot
  else
    echo "cannot register qemu-aarch64 with binfmt_misc ($([ -e /proc/sys/fs/binfmt_misc/register ] \
      && echo 'mounted, registering refused' || echo 'not mounted, mounting refused')) and" \
      "$(command -v proot >/dev/null && echo 'proot cannot trace (ptrace refused)' || echo 'no proot')" >&2
  fi
}

# enter ROOT COMMAND...: runs COMMAND (a path inside ROOT) as root of ROOT, in JETSON_SIM_MODE.
enter() {
  local root=$1
  shift
  case $JETSON_SIM_MODE in
    binfmt) chroot "$root" "$@" ;;
    proot) proot -0 -q qemu-aarch64-static -r "$root" -b /proc -b /sys -b /dev -w / "$@" ;;
    *) echo "error: JETSON_SIM_MODE=$JETSON_SIM_MODE: expected binfmt or proot" >&2; return 1 ;;
  esac
}
