"""rd-infer end to end on ONNX Runtime: records, exit codes, outputs, odd and broken inputs."""

import json
import time

import cv2
import numpy as np
import pytest
from ports import free_ports

from rd_edge.runtime import Detector
from rd_edge.runtime.cli import main


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def read_records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def messy_folder(tmp_path):
    """Good images of several sizes and layouts, plus three broken files."""
    folder = tmp_path / "inputs"
    write_png(folder / "good_small.png", rgb(12, 16, 0))
    write_png(folder / "good_large.png", rgb(90, 120, 1))
    write_png(folder / "nested" / "gray.png", rgb(30, 30, 2)[:, :, 0])
    write_png(folder / "deep16.png", (rgb(20, 40, 3).astype(np.uint16) * 257))
    write_png(folder / "alpha.png", cv2.cvtColor(rgb(25, 25, 4), cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "photo.jpg"), rgb(40, 30, 5))
    good = 6
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("I am a text file with an image name\n")
    return folder, good, 3


def test_folder_with_broken_and_odd_files_gives_one_record_each_and_exit_2(
    tiny_onnx, messy_folder, tmp_path, capsys
):
    folder, n_good, n_bad = messy_folder
    out, records_path = tmp_path / "out", tmp_path / "records.jsonl"
    rc = main([str(tiny_onnx), str(folder), "--json", str(records_path), "--out", str(out), "--quiet"])
    assert rc == 2
    records = read_records(records_path)
    assert len(records) == n_good + n_bad
    assert all(
        set(r)
        == {
            "source",
            "stream",
            "frame",
            "time",
            "score",
            "normalized_score",
            "is_anomalous",
            "latency_ms",
            "error",
        }
        for r in records
    )
    by_name = {r["source"].split("inputs/")[1]: r for r in records}
    for name in ("corrupt.png", "empty.png", "text.png"):
        assert by_name[name]["error"] and by_name[name]["score"] is None
    assert "empty (0 bytes)" in by_name["empty.png"]["error"]
    assert "corrupt or not in a format" in by_name["text.png"]["error"]
    good = [r for r in records if r["error"] is None]
    assert len(good) == n_good
    assert all(
        isinstance(r["score"], float) and 0 <= r["normalized_score"] <= 1 and r["latency_ms"] > 0
        for r in good
    )
    # Overlays (the frame enlarged to >= 256 px wide, under a 32 px legend band) and masks at each
    # input's own size, none for the broken files.
    assert cv2.imread(str(out / "overlays" / "good_large.png")).shape == (32 + 90 * 3, 120 * 3, 3)
    assert cv2.imread(str(out / "masks" / "nested" / "gray.png"), cv2.IMREAD_UNCHANGED).shape == (30, 30)
    assert not (out / "overlays" / "empty.png").exists()
    assert len(list((out / "masks").rglob("*.png"))) == n_good
    lines = capsys.readouterr().out.splitlines()  # --quiet silences progress, never the results
    assert [line.split(" score=")[0] for line in lines] == [r["source"] for r in good]


def test_records_match_the_detector_and_batching_does_not_change_them(tiny_onnx, messy_folder, tmp_path):
    folder, _, _ = messy_folder
    single, batched = tmp_path / "b1.jsonl", tmp_path / "b4.jsonl"
    assert main([str(tiny_onnx), str(folder), "--json", str(single), "--quiet"]) == 2
    assert main([str(tiny_onnx), str(folder), "--json", str(batched), "--batch-size", "4", "--quiet"]) == 2
    a, b = read_records(single), read_records(batched)
    assert [r["source"] for r in a] == [r["source"] for r in b]  # input order kept
    assert [r["score"] for r in a] == [r["score"] for r in b]
    with Detector(tiny_onnx) as det:
        photo = next(r for r in a if r["source"].endswith("photo.jpg"))
        assert photo["score"] == pytest.approx(det.predict(cv2.imread(photo["source"])).score)


def test_summary_and_warnings(tiny_onnx, messy_folder, capsys):
    folder, n_good, n_bad = messy_folder
    assert main([str(tiny_onnx), str(folder)]) == 2
    captured = capsys.readouterr()
    assert f"inputs {n_good + n_bad}, anomalous" in captured.err and f"errors {n_bad};" in captured.err
    assert "latency mean" in captured.err and "p99" in captured.err and "frames/s end to end" in captured.err
    assert "ms of wall time per frame: " in captured.err  # why frames/s is not 1 / latency
    assert "threshold 0.3 (metadata)" in captured.err  # not rd-train's mean + 3 std: no basis claimed
    assert "warning:" in captured.err and "empty.png" in captured.err
    assert len(captured.out.splitlines()) == n_good and "warning:" not in captured.out


def test_short_video_gives_one_record_per_frame(tiny_onnx, tmp_path):
    video = tmp_path / "clip.avi"
    write_clip(video, 7, size=(30, 40), fps=10)
    records_path = tmp_path / "video.jsonl"
    assert (
        main([str(tiny_onnx), str(video), "--json", str(records_path), "--quiet", "--batch-size", "3"]) == 0
    )
    records = read_records(records_path)
    assert [r["source"] for r in records] == [f"{video}#{i}" for i in range(7)]
    assert all(r["error"] is None for r in records)
    assert main([str(tiny_onnx), str(video), "--json", str(records_path), "--quiet", "--limit", "2"]) == 0
    assert len(read_records(records_path)) == 2


def test_threshold_option_changes_the_verdict(tiny_onnx, tmp_path, capsys):
    image = write_png(tmp_path / "x.png", rgb(24, 32, 9))
    records_path = tmp_path / "r.jsonl"
    assert main([str(tiny_onnx), str(image), "--json", str(records_path), "--threshold", "0"]) == 0
    assert read_records(records_path)[0]["is_anomalous"] is True
    assert capsys.readouterr().out.endswith(
        " verdict=NG latency_ms=" + f"{read_records(records_path)[0]['latency_ms']:.3f}\n"
    )
    assert (
        main([str(tiny_onnx), str(image), "--json", str(records_path), "--threshold", "10", "--quiet"]) == 0
    )
    record = read_records(records_path)[0]
    assert record["is_anomalous"] is False and record["normalized_score"] < 1e-6


def test_the_header_names_how_the_threshold_was_chosen(make_model, metadata_factory, tmp_path, capsys):
    """rd-train's threshold (mean + 3 std of its held-out images) says how many images it rests
    on; one chosen by rd-calibrate (thresholds.json beside the model, or the metadata of a model
    exported from a calibrated checkpoint) names rd-calibrate's method and images instead."""
    from dataclasses import replace

    from rd_edge.core.thresholds import CALIBRATION_KEY, Thresholds, thresholds_path

    image = write_png(tmp_path / "x.png", rgb(24, 32, 0))
    stats = {"min": 0.1, "max": 0.3, "mean": 0.15, "std": 0.05, "count": 20}
    trained = metadata_factory(threshold=0.15 + 3 * 0.05, score_stats=stats)
    calibrated = replace(
        trained,
        threshold=0.31,
        extra={CALIBRATION_KEY: {"method": "zero-escape", "n_good": 12, "n_defective": 30}},
    )

    def header(model, *args):
        assert main([str(model), str(image), *args]) == 0
        return next(line for line in capsys.readouterr().err.splitlines() if line.startswith("rd-infer: "))

    assert "threshold 0.3 (metadata, from 20 held-out good images)" in header(
        make_model("trained.onnx", metadata=trained)
    )
    line = header(make_model("calibrated.onnx", metadata=calibrated))
    assert "threshold 0.31 (metadata, rd-calibrate zero-escape on 12 good and 30 defective images)" in line, (
        line
    )
    assert "held-out" not in line
    assert "threshold 0.5 (argument)" in header(
        make_model("arg.onnx", metadata=calibrated), "--threshold", "0.5"
    )

    beside = make_model("beside.onnx", metadata=trained)
    Thresholds(0.42, 0.4, method="f1", report={"n_good": 5, "n_defective": 7}).write(thresholds_path(beside))
    line = header(beside)
    assert (
        f"threshold 0.42 ({thresholds_path(beside)}, rd-calibrate f1 on 5 good and 7 defective images)"
        in line
    )
    assert "held-out" not in line
    Thresholds(0.43).write(thresholds_path(beside))  # written by hand (method "manual")
    assert f"threshold 0.43 ({thresholds_path(beside)}, manual)" in header(beside)


def test_missing_model_is_one_line_and_exit_1(tmp_path, capsys):
    image = write_png(tmp_path / "x.png", rgb(8, 8, 0))
    assert main([str(tmp_path / "missing.onnx"), str(image)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load model") and err.count("\n") == 1


def test_model_without_metadata_is_one_line_and_exit_1(make_model, tmp_path, capsys):
    image = write_png(tmp_path / "x.png", rgb(8, 8, 0))
    assert main([str(make_model(metadata=None)), str(image)]) == 1
    err = capsys.readouterr().err
    assert "no 'rd_edge' metadata" in err and err.count("\n") == 1


def test_missing_source_is_exit_1(tiny_onnx, tmp_path, capsys):
    assert main([str(tiny_onnx), str(tmp_path / "nowhere")]) == 1
    assert "not found: expected an image file" in capsys.readouterr().err


def test_source_is_required_unless_csi(tiny_onnx, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tiny_onnx)])
    assert exit_info.value.code == 2 and "SOURCE is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tiny_onnx), "front", "--csi"])
    assert "sensor id" in capsys.readouterr().err


def test_show_without_a_display_warns_and_continues(tiny_onnx, tmp_path, capsys, monkeypatch):
    def no_gui(*args):
        raise cv2.error("The function is not implemented (no GUI backend)")

    monkeypatch.setattr(cv2, "imshow", no_gui)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    image = write_png(tmp_path / "x.png", rgb(24, 32, 1))
    assert main([str(tiny_onnx), str(image), "--show"]) == 0
    assert "--show needs an OpenCV with GUI support" in capsys.readouterr().err


def write_clip(path, n, size=(30, 40), seed=0, fps=10):
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for i in range(n):
        writer.write(rgb(h, w, seed + i))
    writer.release()
    return path


def test_several_sources_in_one_run_name_their_stream_and_frame(tiny_onnx, tmp_path, capsys):
    left, right = write_clip(tmp_path / "left.avi", 5), write_clip(tmp_path / "right.avi", 3, seed=50)
    image = write_png(tmp_path / "still.png", rgb(24, 32, 7))
    records_path, out = tmp_path / "r.jsonl", tmp_path / "out"
    rc = main(
        [
            str(tiny_onnx),
            f"west={left}",
            str(right),
            "--source",
            str(image),
            "--json",
            str(records_path),
            "--batch-size",
            "4",
            "--out",
            str(out),
            "--png-frames",
        ]
    )
    assert rc == 0
    records = read_records(records_path)
    streams = {s: [r for r in records if r["stream"] == s] for s in ("west", "right", "still")}
    assert [len(v) for v in streams.values()] == [5, 3, 1]
    assert [r["frame"] for r in streams["west"]] == list(range(5))
    assert [r["source"] for r in streams["right"]] == [f"{right}#{i}" for i in range(3)]
    with Detector(tiny_onnx) as det:  # shared batches do not change a score
        cap = cv2.VideoCapture(str(right))
        frames = [cap.read()[1] for _ in range(3)]
        assert [r["score"] for r in streams["right"]] == pytest.approx([p.score for p in det.predict(frames)])
    assert (out / "overlays" / "west" / "left" / "frame_000004.png").is_file()  # no clash between sources
    captured = capsys.readouterr()
    assert (
        "west: video" in captured.err
        and "west: frames 5" in captured.err
        and "stages (pipelined)" in captured.err
    )
    assert f"annotated video: {out / 'west.mp4'} (5 frames)" in captured.err  # one clip per video source


@pytest.mark.parametrize("signame, code", [("SIGTERM", 0), ("SIGINT", 130)])
def test_sigterm_and_ctrl_c_stop_cleanly_and_flush(tiny_onnx, tmp_path, signame, code):
    """SIGTERM (a service stopped) exits normally, Ctrl-C with 130; both flush what was captured.
    A real rd-infer process is signalled, as systemd or a terminal would: signalling the test
    process itself crashed it where another test had run OpenVINO on an AMX CPU (SIGSEGV from the
    kernel while delivering the signal), which says nothing about rd-infer."""
    import signal
    import subprocess
    import sys

    clip = write_clip(tmp_path / "long.avi", 600, size=(60, 80))
    records_path = tmp_path / "r.jsonl"
    command = [
        sys.executable,
        "-m",
        "rd_edge.runtime.cli",
        str(tiny_onnx),
        str(clip),
        "--json",
        str(records_path),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if records_path.is_file() and len(records_path.read_text().splitlines()) >= 5:
                process.send_signal(getattr(signal, signame))
                break
            time.sleep(0.005)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    records = read_records(records_path)
    assert process.returncode == code and 5 <= len(records) < 600, err
    assert [r["frame"] for r in records] == list(range(len(records)))  # flushed, nothing lost between
    assert "stopped early" in err


def test_sink_options_run_together_and_budget_needs_a_folder(tiny_onnx, tmp_path, capsys):
    (port,) = free_ports(1)
    clip = write_clip(tmp_path / "c.avi", 4)
    rc = main(
        [
            str(tiny_onnx),
            str(clip),
            "--threshold",
            "0",
            "--evidence",
            str(tmp_path / "ev"),
            "--evidence-max-mb",
            "1",
            "--metrics-port",
            str(port),
            "--json",
            str(tmp_path / "r.jsonl"),
        ]
    )
    assert rc == 0
    assert len(list((tmp_path / "ev" / "c").glob("*.jpg"))) == 4
    assert all(r["evidence"].endswith(".jpg") for r in read_records(tmp_path / "r.jsonl"))
    assert "evidence: 4 anomalous frames saved" in capsys.readouterr().err  # the summary is on stderr
    with pytest.raises(SystemExit):
        main([str(tiny_onnx), str(clip), "--evidence-max-mb", "1"])
    assert "--evidence-max-mb needs --evidence DIR" in capsys.readouterr().err


def test_one_line_per_image_and_fail_on_anomaly_exit_codes(tiny_onnx, tmp_path, capsys):
    folder = tmp_path / "parts"
    for i in range(3):
        write_png(folder / f"part{i}.png", rgb(24, 32, 20 + i))
    # Threshold 10: every part OK -> 0 with or without --fail-on-anomaly.
    assert main([str(tiny_onnx), str(folder), "--threshold", "10", "--fail-on-anomaly"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[0] for line in lines] == [str(folder / f"part{i}.png") for i in range(3)]
    assert all(" verdict=OK " in line and " score=" in line and " latency_ms=" in line for line in lines)
    # Threshold 0: every part NG -> 1 only when asked, 0 otherwise.
    assert main([str(tiny_onnx), str(folder), "--threshold", "0", "--fail-on-anomaly", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count(" verdict=NG ") == 3 and captured.err == ""  # --quiet: stderr silent
    assert main([str(tiny_onnx), str(folder), "--threshold", "0", "--quiet"]) == 0
    # A failed input wins: 2 even with NG parts and --fail-on-anomaly.
    (folder / "broken.png").write_bytes(b"")
    assert main([str(tiny_onnx), str(folder), "--threshold", "0", "--fail-on-anomaly", "--quiet"]) == 2


@pytest.mark.parametrize("out_name", ["clip.mp4", "clip.avi", "folder"])
def test_video_gives_an_annotated_clip_with_every_frame(tiny_onnx, tmp_path, capsys, out_name):
    video = tmp_path / "line.avi"
    write_clip(video, 9, size=(48, 64), fps=12)
    out = tmp_path / out_name
    assert main([str(tiny_onnx), str(video), "--out", str(out), "--batch-size", "4"]) == 0
    clip = out if out_name != "folder" else out / "line.mp4"
    assert f"annotated video: {clip} (9 frames)" in capsys.readouterr().err
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    assert len(frames) == 9  # as many frames as were read
    assert fps == pytest.approx(12.0, rel=0.01)  # the source's rate
    assert frames[0].shape == (32 + 48 * 4, 64 * 4, 3)  # the overlay: band + frame enlarged 4x
    assert not list(tmp_path.rglob("frame_*.png"))  # no PNG per frame unless asked


def test_video_out_rotates_in_segments_and_keeps_the_newest(tiny_onnx, tmp_path, capsys):
    # a camera runs for days: --segment-seconds rotates the clip, --segments bounds the disk
    video = tmp_path / "cam.avi"
    write_clip(video, 25, size=(30, 40), fps=10)
    out = tmp_path / "out"
    assert (
        main([str(tiny_onnx), str(video), "--out", str(out), "--segment-seconds", "1", "--segments", "2"])
        == 0
    )
    kept = sorted(p.name for p in out.glob("*.mp4"))
    assert kept == ["cam-000002.mp4", "cam-000003.mp4"]  # 10 + 10 + 5 frames; the first deleted

    def count(path):
        capture, n = cv2.VideoCapture(str(path)), 0
        while capture.read()[0]:
            n += 1
        capture.release()
        return n

    assert [count(out / name) for name in kept] == [10, 5]
    assert "(25 frames, segment 3, 2 kept)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tiny_onnx), str(video), "--out", str(out), "--segments", "2"])


def test_video_png_frames_only_when_asked(tiny_onnx, tmp_path):
    video = tmp_path / "line.avi"
    write_clip(video, 3, size=(30, 40), fps=12)
    assert main([str(tiny_onnx), str(video), "--out", str(tmp_path / "o"), "--png-frames", "--quiet"]) == 0
    assert len(list((tmp_path / "o" / "overlays").rglob("frame_*.png"))) == 3
    assert (tmp_path / "o" / "line.mp4").is_file()


def test_checkpoint_instead_of_model_names_rd_export(tmp_path, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(b"not an exported model")
    image = write_png(tmp_path / "x.png", rgb(8, 8, 0))
    assert main([str(model), str(image)]) == 1
    assert f"export it first: rd-export {model}" in capsys.readouterr().err


def test_csi_sensors_and_more_sources_with_their_labels():
    from rd_edge.runtime.cli import _source_specs, build_parser

    parser = build_parser()
    args = parser.parse_intermixed_args(
        ["m.engine", "--csi", "0", "1", "--source", "top=rtsp://u:p@10.0.0.3/s1"]
    )
    specs = _source_specs(parser, args)
    assert [label for label, _ in specs] == [None, None, "top"]
    assert "sensor-id=1 " in specs[1][1] and specs[2][1] == "rtsp://u:p@10.0.0.3/s1"
    args = parser.parse_intermixed_args(
        ["m.onnx", "a=b.png", "--source", "nvarguscamerasrc sensor-id=0 ! appsink"]
    )
    assert _source_specs(parser, args) == [("a", "b.png"), (None, "nvarguscamerasrc sensor-id=0 ! appsink")]
