"""scripts/device_check.sh without a GPU: the dry run `make test` runs, and the real run here.

Every check prints one line and SKIPs with its reason; the summary counts them; exit 0."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device_check.sh"


def run(tmp_path, *args, **env_vars):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RD_EDGE_", "DEVICE_CHECK_"))}
    env.update(PY=sys.executable, PATH="/usr/bin:/bin", RD_EDGE_TEGRA_RELEASE=str(tmp_path / "none"))
    env.update(env_vars)
    proc = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)
    return proc.returncode, proc.stdout


def checks():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "device_check.py"), "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def test_dry_run_skips_every_gpu_check_with_a_reason(tmp_path):
    rc, out = run(tmp_path, "--dry-run")
    names = checks()
    assert {"engine-fp16", "engine-int8", "engine-static", "thread-close", "cupy-kernels"} <= set(names)
    lines = out.strip().splitlines()
    results = [line for line in lines if line.split(" ", 1)[0] in ("PASS", "FAIL", "SKIP")]
    assert [r.split()[1].rstrip(":") for r in results] == names, out
    for line in results:
        assert line.startswith("SKIP ") and "dry run, no GPU used (here: no NVIDIA GPU" in line, line
    assert "tensorrt, pycuda not installed" in out  # what would be missing is named too
    assert lines[-1].startswith(f"summary: 0 PASS, 0 FAIL, {len(names)} SKIP in ") and rc == 0, out


def test_real_run_without_a_gpu_says_so_for_every_check(tmp_path):
    rc, out = run(tmp_path)
    results = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL", "SKIP"))]
    assert rc == 0 and len(results) == len(checks())
    assert all(
        r.startswith("SKIP ") and "no NVIDIA GPU (nvidia-smi not found, not a Jetson)" in r for r in results
    ), out


def _python_whose_model_check(tmp_path, does):
    """A PY for the script: `--check model` does ``does`` (shell), everything else runs as usual."""
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/bash\n"
        f'for a in "$@"; do [ "$a" = model ] && {{ {does}; }}; done\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    fake.chmod(0o755)
    return str(fake)


def test_a_check_past_its_limit_fails_saying_so(tmp_path):
    # The model check hangs (a stuck build): killed at what is left of a 12 s budget (less the
    # start-up), one FAIL line naming the limit (the check's status, not tail's, decides), the
    # rest SKIP for want of time.
    hangs = _python_whose_model_check(tmp_path, "exec sleep 60")
    rc, out = run(tmp_path, PY=hangs, DEVICE_CHECK_BUDGET_S="12")
    assert re.search(r"^FAIL model: over its \d+ s limit$", out, re.M) and rc == 1, out
    assert "SKIP engine-fp32: no time left of the 12 s budget" in out, out


def test_a_check_that_exits_without_a_result_fails_with_its_status(tmp_path):
    crashes = _python_whose_model_check(tmp_path, "echo 'model: segfault' >&2; exit 3")
    rc, out = run(tmp_path, "--dry-run", PY=crashes)
    assert "FAIL model: exit 3 without a result (model: segfault)" in out and rc == 1, out
