"""Issue 16: output paths are checked before any work; files are replaced atomically."""

import os
import stat
import subprocess
import sys

import pytest
from helpers import unprivileged

from rd_edge.core.errors import OutputError
from rd_edge.core.files import atomic_path, check_writable_file, remove_stale_temps, stale_temps

EVAL = [sys.executable, "-c", "import sys; from rd_edge.cli.evaluate import main; sys.exit(main())"]


def test_atomic_path_keeps_the_old_file_on_failure_and_the_usual_mode_on_success(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("verification failed")
    assert target.read_text() == "old" and stale_temps(target) == []
    with pytest.raises(RuntimeError):
        with atomic_path(target, keep_failed=tmp_path / "a.failed.json") as tmp:
            tmp.write_text("bad")
            raise RuntimeError("verification failed")
    assert target.read_text() == "old" and (tmp_path / "a.failed.json").read_text() == "bad"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_stale_temps_are_found_and_removed(tmp_path):
    target = tmp_path / "model.pt"
    stale = [tmp_path / ".model.pt.abc123.tmp", tmp_path / ".model.pt.xyz.tmp.onnx"]
    for p in stale:
        p.write_bytes(b"x" * 100)
    (tmp_path / ".other.pt.abc.tmp").write_bytes(b"not ours")
    assert stale_temps(target) == sorted(stale)
    assert remove_stale_temps(target) == sorted(stale)
    assert stale_temps(target) == [] and (tmp_path / ".other.pt.abc.tmp").exists()


def test_a_folder_is_not_a_writable_file(tmp_path):
    with pytest.raises(OutputError, match="it is a folder"):
        check_writable_file(tmp_path, "metrics JSON")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot write output .*file/x.json"):
        check_writable_file(tmp_path / "file" / "x.json")


@pytest.mark.parametrize("where", ["read-only folder", "folder"])
def test_rd_eval_json_target_is_checked_before_evaluating(r18_checkpoint, demo_category, tmp_path, where):
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "metrics.json" if where == "read-only folder" else folder
    if where == "read-only folder":
        folder.chmod(0o555)
    proc = subprocess.run(
        unprivileged()
        + EVAL
        + [
            str(r18_checkpoint),
            "--data",
            str(demo_category),
            "--json",
            str(target),
            "--quiet",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    folder.chmod(0o755)
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert err.startswith("error: cannot write metrics JSON") and "\n" not in err
    assert proc.stdout == ""  # no metrics table: nothing was evaluated
    assert list(folder.iterdir()) == []
