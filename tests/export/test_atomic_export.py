"""Issue 16: exports are atomic. A failed verification, Ctrl-C or kill -9 never leaves a bad graph
at the output nor destroys the model that was there; bad output paths fail before any work."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import make_checkpoint, one_line_error, unprivileged

from rd_edge.checkpoint import read_checkpoint, save_checkpoint
from rd_edge.core.files import sha256_file, stale_temps
from rd_export.cli import main as export_main

EXPORT = [sys.executable, "-c", "import sys; from rd_export.cli import main; sys.exit(main())"]


@pytest.fixture
def existing_model(tmp_path, r18_onnx):
    """A good model already at the output path, and its hash."""
    target = tmp_path / "model.onnx"
    target.write_bytes(r18_onnx.read_bytes())
    return target, sha256_file(target)


def nan_checkpoint(path):
    make_checkpoint(path, "resnet18", 64)
    data = read_checkpoint(path)
    key = next(k for k in data["state_dict"] if k.startswith("student") and k.endswith("weight"))
    data["state_dict"][key] = torch.full_like(data["state_dict"][key], float("nan"))
    save_checkpoint(path, {k: v for k, v in data.items() if k not in ("format", "format_version")})
    return path


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("cause", ["nan weights", "beyond tolerance"])
def test_failed_verification_leaves_the_existing_model_untouched(
    existing_model, r18_checkpoint, tmp_path, monkeypatch, capsys, cause, keep
):
    target, digest = existing_model
    if cause == "nan weights":
        checkpoint, message = nan_checkpoint(tmp_path / "nan.pt"), "produces NaN or infinite outputs"
    else:
        import rd_export.verify as verify

        monkeypatch.setitem(verify.TOLERANCE, "fp32", 1e-12)
        checkpoint, message = r18_checkpoint, "disagrees with the torch model"
    rc = export_main([str(checkpoint), "-o", str(target)] + (["--keep-failed"] if keep else []))
    assert rc == 1
    err = capsys.readouterr().err
    assert message in err and "was not written (an existing file there is untouched)" in err
    assert sha256_file(target) == digest
    assert stale_temps(target) == []
    failed = tmp_path / "model.failed.onnx"
    assert failed.is_file() == keep
    if keep:
        from rd_edge.core.onnx_props import read_onnx_metadata

        assert read_onnx_metadata(failed).backbone == "resnet18"  # the whole graph, for inspection


def test_export_to_a_folder_is_refused_before_any_work(r18_checkpoint, tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    assert export_main([str(r18_checkpoint), "-o", str(folder)]) == 1
    err = capsys.readouterr().err
    assert one_line_error(err) and "it is a folder" in err
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("extra", [[], ["--precision", "int8", "--calib-dir", "CALIB"]])
def test_export_to_a_read_only_folder_is_refused_before_any_work(
    r18_checkpoint, demo_category, tmp_path, extra
):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    extra = [str(demo_category) if e == "CALIB" else e for e in extra]
    t0 = time.monotonic()
    proc = subprocess.run(
        unprivileged() + EXPORT + [str(r18_checkpoint), "-o", str(folder / "m.onnx"), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    folder.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    assert one_line_error(proc.stderr) and "Permission denied" in proc.stderr
    assert list(folder.iterdir()) == []
    assert time.monotonic() - t0 < 30  # refused up front: no export, no calibration


def test_int8_export_of_a_random_onnx_is_one_line(tmp_path, demo_category, capsys):
    bogus = tmp_path / "random.onnx"
    bogus.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    rc = export_main(
        [str(bogus), "--precision", "int8", "--calib-dir", str(demo_category), "-o", str(tmp_path / "q.onnx")]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert one_line_error(err) and str(bogus) in err
    assert not (tmp_path / "q.onnx").exists()


def _sigint_as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python then installs its KeyboardInterrupt handler


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_kill_or_ctrl_c_mid_export_never_destroys_the_existing_model(existing_model, r18_checkpoint, sig):
    target, digest = existing_model
    proc = subprocess.Popen(
        EXPORT + [str(r18_checkpoint), "-o", str(target)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal: a suite started in the background (`make test &`) hands its
        # children SIGINT ignored, and the export would finish instead of being interrupted
        preexec_fn=_sigint_as_at_a_terminal,
    )
    deadline = time.monotonic() + 120
    # Mid-export: once the graph is being written beside the target.
    while not any(p.stat().st_size > 0 for p in stale_temps(target) if p.exists()):
        assert proc.poll() is None, f"export ended before it could be interrupted: {proc.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    rc = proc.wait(timeout=60)
    assert sha256_file(target) == digest
    if sig != signal.SIGKILL:  # Ctrl-C, and SIGTERM (kill, docker stop), clean up after themselves
        assert rc == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig] and stale_temps(target) == []
    else:
        assert rc == -signal.SIGKILL
        assert stale_temps(target)  # the half-written graph, under its temporary name
        assert export_main([str(r18_checkpoint), "-o", str(target), "--no-verify"]) == 0
        assert stale_temps(target) == []  # the next export to that path removes it


@pytest.mark.slow
def test_sigterm_mid_calibration_leaves_no_temporary_files(r18_checkpoint, demo_category, tmp_path):
    """An int8 export copies the graph for calibration into the temp directory (415 MB for
    wide_resnet50_2): stopped by SIGTERM it removes them, where Python's default left them."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    target = tmp_path / "q.onnx"
    args = [str(r18_checkpoint), "-o", str(target), "--precision", "int8", "--calib-dir", str(demo_category)]
    proc = subprocess.Popen(
        EXPORT + args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    deadline = time.monotonic() + 120
    # Mid-calibration: once the copy for calibration is in the temp directory.
    while not any(p.name.startswith("rd_int8") and any(p.iterdir()) for p in scratch.iterdir() if p.is_dir()):
        assert proc.poll() is None, f"export ended before it could be stopped: {proc.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    err = proc.stderr.read()
    assert rc == 143, err
    assert "terminated" in err and "Traceback" not in err
    # ONNX Runtime's native library leaves a 51-byte session marker (.ses) on every run: not ours
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == [] and not target.exists()
