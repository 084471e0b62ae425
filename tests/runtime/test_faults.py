"""Issue 16's runtime cases: bad arguments, tampered metadata and broken models are clear errors,
never a silent verdict; non-finite outputs become error records."""

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from rd_edge.core.errors import ConfigError, MetadataError, NonFiniteOutputError
from rd_edge.core.metadata import METADATA_KEY
from rd_edge.runtime import Detector
from rd_edge.runtime.cli import main

sys.path.insert(0, str(Path(__file__).parent))  # huge_png


def strict_records(path):
    """JSON Lines parsed the way a strict consumer does: NaN/Infinity are not JSON."""

    def refuse(token):
        raise ValueError(f"{token} in JSONL")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def log_model(path, metadata, weight=1.0):
    """anomaly_map = -w * log(x) summed over channels: a black pixel gives +inf, a NaN weight NaN."""
    h, w = 24, 32
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, h, w])
    amap = helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 1, h, w])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])
    inits = [
        numpy_helper.from_array(np.full((1, 3, 1, 1), -weight, np.float32), "weights"),
        numpy_helper.from_array(np.array([-1], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Log", ["image"], ["logs"]),
        helper.make_node("Conv", ["logs", "weights"], ["anomaly_map"]),
        helper.make_node("GlobalMaxPool", ["anomaly_map"], ["pooled"]),
        helper.make_node("Reshape", ["pooled", "flat"], ["score"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "log", [image], [amap, score], initializer=inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    import onnx

    onnx.save(model, str(path))
    return path


def bright(seed):
    return np.random.default_rng(seed).integers(60, 256, (24, 32, 3), dtype=np.uint8)


# --- Detector arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": "abc"}, "threshold must be a finite number, found 'abc'"),
        ({"threshold": float("nan")}, "threshold must be a finite number, found nan"),
        ({"threshold": float("inf")}, "threshold must be a finite number, found inf"),
        ({"threshold": True}, "threshold must be a finite number, found True"),
        ({"batch_size": 10**9}, r"batch_size must be >= 1 and <= 4096, got 1000000000"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer, found 2.5"),
    ],
)
def test_bad_detector_arguments_are_config_errors(tiny_onnx, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Detector(tiny_onnx, **kwargs)


@pytest.mark.parametrize("model", [None, 42])
def test_detector_without_a_model_path_is_a_config_error(model):
    with pytest.raises(ConfigError, match=r"expected an \.onnx/\.engine path or a loaded Runner, found"):
        Detector(model)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_rd_infer_refuses_a_non_finite_threshold(tiny_onnx, tmp_path, capsys, value):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), bright(0))
    assert main([str(tiny_onnx), str(image), f"--threshold={value}", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: threshold must be a finite number") and "\n" not in err


# --- tampered metadata -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": True}, "metadata format version True"),
        ({"format_version": -7}, "metadata format version -7"),
        ({"threshold": "abc"}, "threshold must be a finite number or null, found 'abc'"),
        ({"threshold": float("nan")}, "threshold must be a finite number or null, found nan"),
        ({"threshold": float("inf")}, "threshold must be a finite number or null, found inf"),
        (
            {"score_stats": {"min": "low", "max": 1.0}},
            r"score_stats must be an object of finite numbers.*'low'",
        ),
        ({"score_stats": "abc"}, "score_stats must be an object of finite numbers"),
        (
            {"score_stats": {"min": 0.0, "max": float("nan")}},
            "score_stats must be an object of finite numbers",
        ),
    ],
)
def test_tampered_metadata_is_refused_on_load(
    make_model, metadata_factory, tmp_path, capsys, change, message
):
    data = json.loads(metadata_factory().to_json())
    data.update(change)
    model = make_model(metadata=json.dumps(data))  # json writes NaN/Infinity tokens, as a tamperer would
    with pytest.raises(MetadataError, match=message):
        Detector(model)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), bright(0))
    assert main([str(model), str(image), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


# --- non-finite model outputs ----------------------------------------------------------------------


def test_non_finite_outputs_raise_and_keep_the_finite_frames(tmp_path, metadata_factory):
    model = log_model(tmp_path / "log.onnx", metadata_factory())
    frames = [bright(0), np.zeros((24, 32, 3), np.uint8), bright(1)]  # black: log(0) = -inf
    with Detector(model) as det:
        with pytest.raises(
            NonFiniteOutputError, match=r"non-finite scores for 1 of 3 frame\(s\) \(positions \[1\]\)"
        ) as info:
            det.predict(frames)
        with pytest.raises(NonFiniteOutputError):
            det.predict(frames[1])
        good = [det.predict(frames[0]), det.predict(frames[2])]
    kept = info.value.predictions
    assert kept[1] is None
    assert [kept[0].score, kept[2].score] == [p.score for p in good]


@pytest.mark.parametrize("batch", ["1", "3"])
def test_rd_infer_records_non_finite_frames_as_errors(tmp_path, metadata_factory, batch):
    model = log_model(tmp_path / "log.onnx", metadata_factory())
    folder = tmp_path / "in"
    folder.mkdir()
    for name, img in [
        ("a.png", bright(0)),
        ("b_black.png", np.zeros((24, 32, 3), np.uint8)),
        ("c.png", bright(1)),
    ]:
        cv2.imwrite(str(folder / name), img)
    records_path = tmp_path / "r.jsonl"
    rc = main([str(model), str(folder), "--json", str(records_path), "--batch-size", batch, "--quiet"])
    assert rc == 2
    records = {r["source"].rsplit("/", 1)[1]: r for r in strict_records(records_path)}
    assert records["b_black.png"]["error"] == "model produced non-finite scores"
    assert records["b_black.png"]["score"] is None and records["b_black.png"]["is_anomalous"] is None
    assert all(records[n]["error"] is None and np.isfinite(records[n]["score"]) for n in ("a.png", "c.png"))


def test_nan_weights_flag_nothing_as_ok(tmp_path, metadata_factory):
    model = log_model(tmp_path / "nan.onnx", metadata_factory(), weight=float("nan"))
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), bright(0))
    records_path = tmp_path / "r.jsonl"
    assert main([str(model), str(image), "--json", str(records_path), "--quiet"]) == 2
    (record,) = strict_records(records_path)
    assert record["error"] == "model produced non-finite scores" and record["is_anomalous"] is None


# --- odd frames and files --------------------------------------------------------------------------


def test_an_empty_frame_is_an_image_error_not_a_cv2_error(tiny_onnx):
    from rd_edge.core.errors import ImageReadError

    with Detector(tiny_onnx) as det:
        for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 5, 3), np.uint8)):
            with pytest.raises(ImageReadError, match=r"unsupported image array: shape \(0, "):
                det.predict(empty)


def test_two_rd_edge_metadata_entries_are_refused_by_every_reader(make_model, metadata_factory, tmp_path):
    import onnx

    from rd_edge.core.onnx_props import read_onnx_metadata

    model = onnx.load(str(make_model()))
    model.metadata_props.add(key=METADATA_KEY, value=metadata_factory(threshold=99.0).to_json())
    path = tmp_path / "twice.onnx"
    onnx.save(model, str(path))
    for read in (read_onnx_metadata, Detector):
        with pytest.raises(MetadataError, match="2 'rd_edge' metadata entries, expected one"):
            read(path)


def test_a_truncated_video_says_how_many_frames_were_read(tiny_onnx, tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(30):
        writer.write(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])  # the header still announces 30 frames
    capture = cv2.VideoCapture(str(video))
    announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    assert announced == 30
    records_path = tmp_path / "r.jsonl"
    assert main([str(tiny_onnx), str(video), "--json", str(records_path)]) == 2
    records = strict_records(records_path)
    scored = [r for r in records if r["error"] is None]
    assert 0 < len(scored) < 30 and len(records) == len(scored) + 1
    expected = f"read {len(scored)} of 30 frames the header announced; the file is truncated or corrupt"
    assert expected in records[-1]["error"]
    err = capsys.readouterr().err
    assert f"warning: {video}: {expected}" in err  # in the summary, after the per-input warning
    assert "errors 1" in err


# --- huge images ------------------------------------------------------------------------------------


def test_huge_images_are_downscaled_once_on_decode(tmp_path):
    from huge_png import write_huge_png

    from rd_edge.core.images import fit_pixels, read_image

    path = tmp_path / "big.png"
    write_huge_png(path, 1000)
    full = read_image(path)
    small = read_image(path, max_pixels=200_000)
    assert full.shape == (1000, 1000, 3)
    assert small.shape[:2] == fit_pixels((1000, 1000), 200_000) == (447, 447)
    cv2.imwrite(str(tmp_path / "big.jpg"), full)
    assert read_image(tmp_path / "big.jpg", max_pixels=200_000).shape == (447, 447, 3)
    # Same picture, smaller: a bright band in the middle of a gradient.
    np.testing.assert_allclose(small.mean(axis=(0, 1)), full.mean(axis=(0, 1)), atol=2)


def test_maps_and_overlays_of_huge_frames_are_bounded(tiny_onnx):
    from rd_edge.core.images import MAX_DISPLAY_PIXELS

    frame = np.zeros((4000, 3000, 3), np.uint8)  # 12 MP, above the 8.3 MP display budget
    with Detector(tiny_onnx) as det:
        pred = det.predict(frame)
        overlay = det.render(frame, pred)
    h, w = pred.anomaly_map.shape
    assert h * w <= MAX_DISPLAY_PIXELS and abs(h / w - 4 / 3) < 0.01
    assert overlay.shape[1] == w


@pytest.mark.slow
def test_a_20000_pixel_png_with_out_peaks_under_1_5_gb(tiny_onnx, tmp_path):
    """Peak RSS of rd-infer --out on a 20000x20000 PNG (10 MB file, 1.2 GB decoded)."""
    import subprocess
    import sys

    from huge_png import write_huge_png

    image = tmp_path / "huge.png"
    write_huge_png(image, 20000)
    # The peak is read by rd-infer's own process (VmHWM, reset at exec): the child's ru_maxrss would also
    # count the moment between fork and exec, when it shares the whole pytest process's pages.
    peak_file = tmp_path / "vmhwm_kib"
    script = (
        "import re, sys\nfrom rd_edge.runtime.cli import main\nrc = main()\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
        f"open({str(peak_file)!r}, 'w').write(hwm)\nsys.exit(rc)\n"
    )
    cmd = [
        sys.executable,
        "-c",
        script,
        str(tiny_onnx),
        str(image),
        "--out",
        str(tmp_path / "out"),
        "--json",
        str(tmp_path / "r.jsonl"),
        "--quiet",
    ]
    env = dict(os.environ, RD_EDGE_MAX_IMAGE_PIXELS=str(20000 * 20000))  # a real scan this large: allowed
    done = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    peak_mib = int(peak_file.read_text()) / 1024
    assert 100 < peak_mib < 1536, f"peak RSS {peak_mib:.0f} MiB"  # > 100: the reading is real
    (record,) = strict_records(tmp_path / "r.jsonl")
    assert record["error"] is None and record["score"] > 0
    overlay = cv2.imread(str(tmp_path / "out" / "overlays" / "huge.png"))
    assert overlay.shape[1] <= 3840


def test_the_jsonl_sink_never_writes_a_line_that_is_not_json(tmp_path):
    """A record with a NaN score (a result built by a caller's own stage) is refused, not written as
    ``NaN`` (which json.loads of other tools rejects); the lines before it stay valid and flushed."""
    import json

    from rd_edge.runtime.detector import Prediction
    from rd_edge.runtime.sinks.base import Result
    from rd_edge.runtime.sinks.jsonl import JsonlSink
    from rd_edge.runtime.sources import SourceItem

    def result(i, score):
        return Result(
            "cam",
            i,
            SourceItem(f"{i}.png", str(i), None, None),
            prediction=Prediction(score, 0.5, False, np.zeros((2, 2), np.float32), timings={"total_ms": 1.0}),
        )

    sink = JsonlSink(tmp_path / "out.jsonl")
    sink.write(result(0, 0.25))
    with pytest.raises(ValueError):
        sink.write(result(1, float("nan")))
    sink.close()
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["score"] for line in lines] == [0.25]


def test_bad_arguments_are_value_errors_for_callers_that_catch_those(tiny_onnx):
    """ConfigError is also a ValueError: code written against the standard exception (a bad batch
    size, a threshold that is not a number) keeps catching it."""
    from rd_edge.core.thresholds import check_threshold

    with pytest.raises(ValueError, match="batch_size"):
        Detector(tiny_onnx, batch_size=0)
    with pytest.raises(ValueError, match="finite number"):
        check_threshold("0.5")
