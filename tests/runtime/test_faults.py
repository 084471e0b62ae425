"""Issue 16's runtime cases: bad arguments, tampered metadata and broken models are clear errors,
never a silent verdict; non-finite outputs become error records."""
import json

import cv2
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from rd_edge.core.errors import ConfigError, MetadataError, NonFiniteOutputError
from rd_edge.core.metadata import METADATA_KEY
from rd_edge.runtime import Detector
from rd_edge.runtime.cli import main


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
    inits = [numpy_helper.from_array(np.full((1, 3, 1, 1), -weight, np.float32), "weights"),
             numpy_helper.from_array(np.array([-1], np.int64), "flat")]
    nodes = [helper.make_node("Log", ["image"], ["logs"]),
             helper.make_node("Conv", ["logs", "weights"], ["anomaly_map"]),
             helper.make_node("GlobalMaxPool", ["anomaly_map"], ["pooled"]),
             helper.make_node("Reshape", ["pooled", "flat"], ["score"])]
    model = helper.make_model(helper.make_graph(nodes, "log", [image], [amap, score], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    import onnx
    onnx.save(model, str(path))
    return path


def bright(seed):
    return np.random.default_rng(seed).integers(60, 256, (24, 32, 3), dtype=np.uint8)


# --- Detector arguments --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": "abc"}, "threshold must be a finite number, found 'abc'"),
    ({"threshold": float("nan")}, "threshold must be a finite number, found nan"),
    ({"threshold": float("inf")}, "threshold must be a finite number, found inf"),
    ({"threshold": True}, "threshold must be a finite number, found True"),
    ({"batch_size": 10**9}, r"batch_size must be >= 1 and <= 4096, got 1000000000"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"batch_size": 2.5}, "batch_size must be an integer, found 2.5"),
])
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

@pytest.mark.parametrize("change, message", [
    ({"format_version": True}, "metadata format version True"),
    ({"format_version": -7}, "metadata format version -7"),
    ({"threshold": "abc"}, "threshold must be a finite number or null, found 'abc'"),
    ({"threshold": float("nan")}, "threshold must be a finite number or null, found nan"),
    ({"threshold": float("inf")}, "threshold must be a finite number or null, found inf"),
    ({"score_stats": {"min": "low", "max": 1.0}}, r"score_stats must be an object of finite numbers.*'low'"),
    ({"score_stats": "abc"}, "score_stats must be an object of finite numbers"),
    ({"score_stats": {"min": 0.0, "max": float("nan")}}, "score_stats must be an object of finite numbers"),
])
def test_tampered_metadata_is_refused_on_load(make_model, metadata_factory, tmp_path, capsys, change, message):
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
        with pytest.raises(NonFiniteOutputError, match=r"non-finite scores for 1 of 3 frame\(s\) \(positions \[1\]\)") as info:
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
    for name, img in [("a.png", bright(0)), ("b_black.png", np.zeros((24, 32, 3), np.uint8)), ("c.png", bright(1))]:
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
