"""How every command ends when the environment gets in the way: a missing OpenCV, a reader that
closes stdout (``| head``), Ctrl-C, Python warnings, a log instead of a terminal. Real processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# Runs a console script with OpenCV made unimportable (what a Jetson venv without
# --system-site-packages sees): sys.modules["cv2"] = None makes `import cv2` fail as if absent.
WITHOUT_CV2 = (
    "import sys, runpy; sys.modules['cv2'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.parametrize("jetson", [False, True])
def test_missing_opencv_is_one_line_naming_the_install(tiny_onnx, demo_category, tmp_path, jetson):
    env = dict(os.environ)
    if jetson:  # is_jetson() reads /etc/nv_tegra_release: point the check at a file that exists
        marker = tmp_path / "nv_tegra_release"
        marker.write_text("# R35 (release)\n")
        env["RD_EDGE_TEGRA_RELEASE"] = str(marker)
    image = next((demo_category / "test" / "good").glob("*.png"))
    proc = run(
        [sys.executable, "-c", WITHOUT_CV2, str(BIN / "rd-infer"), str(tiny_onnx), str(image)], env=env
    )
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert ("sudo apt install python3-opencv" in err) == jetson
    assert ("pip install opencv-python-headless" in err) == (not jetson)


def test_rd_edge_runs_without_opencv_and_demo_data_says_what_to_install(tmp_path):
    # rd-edge's parser lists the demo names without importing OpenCV: --help and station run on a
    # Jetson venv without it; demo-data (which draws with OpenCV) ends in one line naming the install
    rd_edge = [sys.executable, "-c", WITHOUT_CV2, str(BIN / "rd-edge")]
    for args in (["--help"], ["demo-data", "--help"], ["station", "--help"]):
        proc = run(rd_edge + args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "usage: rd-edge" in proc.stdout, args
    assert "weave" in run(rd_edge + ["demo-data", "--help"]).stdout
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    proc = run(rd_edge + ["station", str(evidence), "--port", "0", "--for", "0.1"])
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    proc = run(rd_edge + ["demo-data", str(tmp_path / "demo")])
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert "pip install opencv-python-headless" in err, err


def test_closed_stdout_stops_quietly_with_exit_0(tiny_onnx, demo_category):
    # `rd-infer MODEL DIR | head -2`: two lines, then the reader is gone
    cmd = f"'{BIN / 'rd-infer'}' '{tiny_onnx}' '{demo_category / 'test'}' --sequential | head -2"
    proc = run(["bash", "-o", "pipefail", "-c", cmd])
    assert len(proc.stdout.splitlines()) == 2
    assert "BrokenPipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr


def test_ctrl_c_is_one_line_and_130_warnings_are_lines_no_bars_in_logs(demo_category, tmp_path):
    # rd-train at its first steps: Ctrl-C writes the checkpoint and says so in one line. stderr is
    # a pipe (a log): no tqdm carriage returns; the random-teacher UserWarning as one warning line
    out = tmp_path / "m.pt"
    proc = subprocess.Popen(
        [
            str(BIN / "rd-train"),
            "--data",
            str(demo_category),
            "--backbone",
            "resnet18",
            "--image-size",
            "64",
            "--steps",
            "100000",
            "--batch-size",
            "2",
            "--teacher-weights",
            "none",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        line, warnings_seen = "", ""
        while "s/step" not in line and time.monotonic() < deadline:  # the ETA line: training runs
            line = proc.stderr.readline()
            warnings_seen += line
        assert "steps left, about" in line and "load average" in line, line
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    last = [x for x in err.splitlines() if x.strip()]
    assert len(last) == 1 and last[0].startswith("interrupted at step") and "--resume" in last[0], err
    assert "Traceback" not in err
    log = warnings_seen + err
    assert "\r" not in log and "UserWarning" not in log, log
    assert any(x.startswith("warning: ") and "random teacher" in x for x in warnings_seen.splitlines()), log


def test_commands_that_do_not_read_images_run_without_opencv(tiny_onnx):
    # rd-build-engine needs TensorRT, not OpenCV: without both, the error names TensorRT
    proc = run([sys.executable, "-c", WITHOUT_CV2, str(BIN / "rd-build-engine"), str(tiny_onnx)])
    err = proc.stderr.strip()
    assert proc.returncode == 1 and err.startswith("error: ") and "\n" not in err, err
    assert "tensorrt" in err.lower() and "cv2" not in err


@pytest.mark.parametrize(
    "seconds,fps,frames", [(0.3, 25.0, 8), (2.0, 25.0, 50), (0.01, 25.0, 1), (1.0, 7.5, 8)]
)
def test_video_segments_hold_the_seconds_times_the_rate_rounded(tmp_path, seconds, fps, frames):
    """0.3 s at 25 fps is 7.5 frames -> 8 (rounded, not truncated), never fewer than one; the
    segments written hold exactly that many frames each (OpenCV reads them back)."""
    import cv2
    import numpy as np

    from rd_edge.runtime.sinks.console import AnnotatedVideoWriter

    writer = AnnotatedVideoWriter(tmp_path / "line.avi", fps=fps, segment_seconds=seconds)
    assert writer.segment_frames == frames
    for i in range(frames + 1):
        writer.write(np.full((16, 16, 3), i, np.uint8))
    writer.close()
    counts = [int(cv2.VideoCapture(str(p)).get(cv2.CAP_PROP_FRAME_COUNT)) for p in writer.segments]
    assert counts == [frames, 1]
