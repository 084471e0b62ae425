"""Thresholds without re-export: rd-calibrate's choices, thresholds.json, and the runtime's precedence.

The model is the tiny stand-in graph (conftest), run through ONNX Runtime on the demo images:
real files, real runtime, seconds.
"""

import json
import shutil

import numpy as np
import pytest

from rd_edge.cli.calibrate import main as calibrate_main
from rd_edge.core.errors import CalibrationError, MetadataError
from rd_edge.core.thresholds import Thresholds, thresholds_path
from rd_edge.runtime import Detector
from rd_edge.runtime.cli import main as infer_main
from rd_edge.threshold_calibration import Scored, choose_thresholds, cut_below, parse_method


def scored(good, bad, pixel_masks=True):
    """Scored data whose maps are constant per image (= its score); defects' masks cover a corner."""
    scores = np.array(list(good) + list(bad), float)
    labels = np.array([False] * len(good) + [True] * len(bad))
    maps = np.repeat(scores[:, None, None], 16, axis=1).repeat(16, axis=2).astype(np.float32)
    maps[labels, 8:, 8:] += 1.0  # defect pixels hotter than the rest of their image
    masks = np.zeros(maps.shape, bool)
    if pixel_masks:
        masks[labels, 8:, 8:] = True
    return Scored(labels, scores, maps, masks)


def test_f1_threshold_separates_and_sits_between_scores():
    data = scored(good=[0.1, 0.2, 0.3, 0.6], bad=[0.5, 0.7, 0.9])
    chosen = choose_thresholds(data, "f1")
    t = chosen["image_threshold"]
    assert 0.3 < t < 0.5  # F1 best: flag 0.5, 0.6, 0.7, 0.9 (F1 6/7) over flagging 0.7, 0.9 (F1 4/5)
    r = chosen["report"]
    assert (r["false_alarms"], r["escapes"], r["n_good"], r["n_defective"]) == (1, 0, 4, 3)
    assert r["false_alarm_rate"] == pytest.approx(0.25) and r["escape_rate"] == 0.0


def test_default_bounds_false_alarms_and_reports_escapes():
    # 200 good images: 1 % allows 2 false alarms; the threshold sits just above the 3rd highest good score
    good = list(np.linspace(0.0, 1.0, 200))
    data = scored(good=good, bad=[0.5, 0.98, 2.0, 3.0])
    chosen = choose_thresholds(data, "false-alarms", max_false_alarms=0.01)
    r = chosen["report"]
    assert good[-3] < chosen["image_threshold"] < good[-2]
    assert (r["false_alarms"], r["escapes"]) == (2, 2) and r["false_alarm_rate"] <= 0.01
    # the lowest such threshold: one step lower would flag a third good image
    assert (np.array(good) > good[-3] - 1e-9).sum() == 3
    # 2 of 4 defects pass: more than the 10 % a line accepts, said in a warning
    assert any(w.startswith("escapes 2/4 (50.0 %) exceed 10 %") for w in r["warnings"])


def test_f1_on_defect_heavy_data_flags_good_parts_and_warns():
    # the case: many defects, few good images; F1 prefers flagging everything
    data = scored(good=[0.5, 0.6, 0.7, 0.8], bad=[0.45, 0.55, 0.65, 0.75] + [1.0 + i / 10 for i in range(10)])
    f1 = choose_thresholds(data, "f1")
    assert f1["report"]["false_alarms"] >= 3
    assert any("exceed 1 %" in w and "--method false-alarms" in w for w in f1["report"]["warnings"])
    bounded = choose_thresholds(data, "false-alarms")
    assert bounded["report"]["false_alarms"] == 0 and 0.8 < bounded["image_threshold"] < 1.0
    # 4 good images cannot measure 1 %: said, with how many it takes
    assert any(
        "cannot measure a false-alarm rate of 1 %" in w and "100+" in w for w in bounded["report"]["warnings"]
    )


def test_pixel_threshold_never_leaves_an_ng_image_without_a_region():
    # a real model's score is its map's maximum; masks that ask for a pixel threshold above it
    scores = np.array([0.1, 0.2, 0.5, 0.6])
    labels = np.array([False, False, True, True])
    maps = np.repeat(scores[:, None, None], 8, axis=1).repeat(8, axis=2).astype(np.float32)
    masks = np.zeros(maps.shape, bool)
    masks[2:, :1, :1] = True  # one corner pixel each: pixel F1 wants a threshold above 0.6
    maps[2:, 0, 0] += 0.001
    chosen = choose_thresholds(Scored(labels, scores, maps, masks), "f1")
    flagged = scores > chosen["image_threshold"]
    assert flagged[2:].all()
    assert all((m > chosen["pixel_threshold"]).any() for m in maps[flagged])
    assert "pixel_capped_from" in chosen["report"]


def test_zero_escape_flags_every_defect_at_the_highest_threshold():
    data = scored(good=[0.1, 0.2, 0.45, 0.8], bad=[0.5, 0.7, 0.9])
    chosen = choose_thresholds(data, "zero-escape")
    assert chosen["image_threshold"] == pytest.approx((0.45 + 0.5) / 2)
    assert chosen["report"]["escapes"] == 0 and chosen["report"]["false_alarms"] == 1


def test_pixel_threshold_from_masks_separates_defect_pixels():
    data = scored(good=[0.1, 0.2], bad=[0.3, 0.4])
    chosen = choose_thresholds(data, "f1")
    assert chosen["report"]["pixel_method"] == "f1"
    assert chosen["report"]["defect_pixels_missed_rate"] == 0.0
    assert chosen["report"]["normal_pixels_flagged_rate"] == 0.0


def test_normal_only_data_names_the_method_that_applies():
    data = scored(good=[0.1, 0.2, 0.3], bad=[])
    for method in ("f1", "zero-escape"):
        with pytest.raises(CalibrationError, match="false-alarms"):
            choose_thresholds(data, method)
    chosen = choose_thresholds(data, "normal-quantile", q=1.0)
    assert chosen["image_threshold"] == pytest.approx(0.3)
    assert chosen["report"]["false_alarms"] == 0 and chosen["report"]["escape_rate"] is None


def test_no_masks_falls_back_to_a_good_pixel_quantile_and_says_so():
    chosen = choose_thresholds(scored([0.1, 0.2], [0.6], pixel_masks=False), "f1")
    assert chosen["report"]["pixel_method"].startswith("normal-quantile") and "pixel_note" in chosen["report"]


def test_cut_below_keeps_the_flagged_side_strictly_above():
    values = np.array([1.0, 2.0, 3.0])
    assert cut_below(values, 2.0) == 1.5
    t = cut_below(values, 1.0)
    assert t < 1.0 and (values > t).all()


def test_method_parsing():
    assert parse_method("normal-quantile:0.95") == ("normal-quantile", 0.95)
    assert parse_method("normal-quantile") == ("normal-quantile", 0.99)
    assert parse_method("false-alarms") == ("false-alarms", 0.99)
    for bad in ("f2", "f1:0.5", "normal-quantile:2", "normal-quantile:x", "false-alarms:0.1"):
        with pytest.raises(ValueError):
            parse_method(bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.5", True])
def test_thresholds_file_accepts_finite_numbers_only(tmp_path, bad):
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"format": "rd_edge.thresholds", "format_version": 1, "image_threshold": bad}))
    with pytest.raises(MetadataError, match="finite number"):
        Thresholds.read(path)


def test_thresholds_file_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text('{"threshold": 0.5}')
    with pytest.raises(MetadataError, match="not an rd-edge thresholds file"):
        Thresholds.read(path)


def test_runtime_precedence_argument_then_file_then_metadata(make_model, tmp_path):
    model = make_model()  # metadata threshold 0.3, no pixel threshold
    with Detector(model) as det:
        assert (det.threshold, det.pixel_threshold) == (0.3, 0.3)
        assert det.thresholds.image_source == "metadata"
    Thresholds(0.25, 0.2, model="model.onnx", checkpoint_sha256="0" * 64).write(thresholds_path(model))
    with Detector(model) as det:
        assert (det.threshold, det.pixel_threshold) == (0.25, 0.2)
        assert det.thresholds.image_source.endswith("thresholds.json")
    with Detector(model, threshold=0.4) as det:  # the argument wins; the file still gives the pixels
        assert (det.threshold, det.pixel_threshold) == (0.4, 0.2)
    with Detector(model, pixel_threshold=0.1) as det:
        assert (det.threshold, det.pixel_threshold) == (0.25, 0.1)


def test_thresholds_of_other_weights_warn(make_model):
    model = make_model()
    Thresholds(0.25, None, model="other.onnx", checkpoint_sha256="f" * 64).write(thresholds_path(model))
    with pytest.warns(UserWarning, match="rerun rd-calibrate"):
        Detector(model).close()


@pytest.fixture
def tiny_and_data(make_model, demo_category, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_category, data)
    return make_model(), data


@pytest.mark.parametrize("method", ["f1", "zero-escape"])
def test_calibrate_then_infer_flags_exactly_the_images_above(tiny_and_data, tmp_path, capsys, method):
    model, data = tiny_and_data
    assert calibrate_main([str(model), "--data", str(data), "--method", method, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "image threshold" in out and "false alarms" in out and "escapes" in out
    saved = Thresholds.read(thresholds_path(model))
    assert saved.method == method and saved.model == model.name
    report = saved.report
    if method == "zero-escape":
        assert report["escapes"] == 0
    records_path = tmp_path / "records.jsonl"
    assert (
        infer_main(
            [
                str(model),
                str(data / "test"),
                "--json",
                str(records_path),
                "--quiet",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    flagged = {r["source"] for r in records if r["is_anomalous"]}
    assert flagged == {r["source"] for r in records if r["score"] > saved.image_threshold}
    good_flagged = sum("/good/" in s for s in flagged)
    defects_missed = sum(not r["is_anomalous"] for r in records if "/good/" not in r["source"])
    assert (good_flagged, defects_missed) == (report["false_alarms"], report["escapes"])


def test_masks_use_the_pixel_threshold(tiny_and_data, tmp_path):
    import cv2

    model, data = tiny_and_data
    image = sorted((data / "test" / "hole").glob("*.png"))[0]
    runs = {}
    for name, pixel in (("low", -1.0), ("high", 1e9)):
        assert (
            infer_main(
                [
                    str(model),
                    str(image),
                    "--threshold",
                    "1e9",
                    "--pixel-threshold",
                    str(pixel),
                    "--out",
                    str(tmp_path / name),
                    "--quiet",
                ]
            )
            == 0
        )
        runs[name] = cv2.imread(str(next((tmp_path / name / "masks").rglob("*.png"))), cv2.IMREAD_GRAYSCALE)
    assert runs["low"].min() == 255 and runs["high"].max() == 0


def test_normal_only_folder_calibrates_by_false_alarms_not_f1(make_model, demo_category, capsys):
    model = make_model()
    good = demo_category / "train" / "good"
    assert calibrate_main([str(model), "--good", str(good), "--method", "f1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "false-alarms" in err and not thresholds_path(model).exists()
    assert (
        calibrate_main([str(model), "--good", str(good), "--quiet"]) == 0
    )  # the default works on good images
    saved = Thresholds.read(thresholds_path(model))
    assert saved.method == "false-alarms" and saved.report["false_alarms"] == 0
    assert (
        calibrate_main([str(model), "--good", str(good), "--method", "normal-quantile:0.9", "--quiet"]) == 0
    )
    assert Thresholds.read(thresholds_path(model)).method == "normal-quantile:0.9"


def test_metadata_from_before_the_new_fields_still_loads(metadata_factory):
    from dataclasses import asdict

    from rd_edge.core.metadata import ModelMetadata

    old = dict(asdict(metadata_factory()), format_version=1)  # written before these fields: version 1
    for key in ("pixel_threshold", "teacher", "resize"):
        old.pop(key)
    meta = ModelMetadata.from_json(json.dumps(old))
    assert (meta.pixel_threshold, meta.teacher, meta.resize) == (None, None, "linear")  # what old models did
    with pytest.raises(MetadataError, match="resize rule 'lanczos'"):
        ModelMetadata.from_json(json.dumps(dict(old, resize="lanczos")))
    with pytest.raises(MetadataError, match="pixel_threshold must be a finite number"):
        ModelMetadata.from_json(json.dumps(dict(old, pixel_threshold="high")))


# --- thresholds belong to one model (issue 21, case 9) ------------------------------------------------


def test_two_models_in_one_folder_keep_their_own_thresholds(tiny_and_data, make_model, capsys):
    """An fp32 and an int8 model exported to one folder shared one thresholds.json: calibrating one
    silently re-thresholded the other."""
    fp32, data = tiny_and_data
    int8 = make_model("model_int8.onnx")  # same checkpoint: the weights' hash cannot tell them apart
    assert calibrate_main([str(int8), "--data", str(data), "--method", "zero-escape", "--quiet"]) == 0
    capsys.readouterr()
    assert thresholds_path(int8).name == "model_int8.onnx.thresholds.json" and thresholds_path(int8).is_file()
    with Detector(int8) as det:
        assert det.thresholds.image_source == str(thresholds_path(int8))
    with Detector(fp32) as det:  # untouched: its own (metadata) thresholds
        assert det.thresholds.image_source == "metadata" and det.threshold == 0.3


def test_a_legacy_thresholds_json_serves_only_the_model_it_names_and_is_migrated(
    tiny_and_data, make_model, capsys
):
    fp32, data = tiny_and_data
    int8 = make_model("model_int8.onnx")
    legacy = fp32.parent / "thresholds.json"
    Thresholds(0.25, 0.2, model=int8.name, checkpoint_sha256="0" * 64).write(legacy)
    with Detector(int8) as det:
        assert det.threshold == 0.25 and det.thresholds.image_source == str(legacy)
    with pytest.warns(UserWarning, match="belongs to model_int8.onnx, not to model.onnx"):
        with Detector(fp32) as det:
            assert det.thresholds.image_source == "metadata"
    assert (
        calibrate_main([str(int8), "--data", str(data), "--quiet"]) == 0
    )  # migration: own file, legacy gone
    assert thresholds_path(int8).is_file() and not legacy.exists()


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '{"format": "rd_edge.thresholds", "format_version": 1, "image_threshold": 0.5, "checkpoint_sha256": 123}',
            "checkpoint_sha256 must be a string or null",
        ),
        (
            '{"format": "rd_edge.thresholds", "format_version": 1, "image_threshold": 1' + "0" * 400 + "}",
            "image_threshold must be a finite number",
        ),
        ("[" * 100_000 + "]" * 100_000, "nested too deep"),
    ],
)
def test_a_damaged_thresholds_file_is_one_error(make_model, text, message, capsys):
    """Were a TypeError, an OverflowError and a RecursionError (issue 21)."""
    model = make_model()
    thresholds_path(model).write_text(text)
    with pytest.raises(MetadataError, match=message):
        Detector(model)
    assert infer_main([str(model), str(model)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


# ---- issue 28: cut points by hand and as properties, the methods on labelled data with masks ----


def _scored(good, defect, size=4):
    """Scored data whose maps peak at the score: good maps flat, defect maps with a 2x2 patch
    (the mask) at the score and 0.1 elsewhere."""
    from rd_edge.threshold_calibration import Scored

    scores = np.array([*good, *defect], np.float64)
    labels = np.array([False] * len(good) + [True] * len(defect))
    maps = np.full((len(scores), size, size), 0.1, np.float32)
    masks = np.zeros(maps.shape, bool)
    for i, s in enumerate(scores):
        if labels[i]:
            maps[i, :2, :2], masks[i, :2, :2] = s, True
        else:
            maps[i] = s
    return Scored(labels, scores, maps, masks)


def test_cut_points_by_hand():
    from rd_edge.threshold_calibration import false_alarm_cut, image_cut

    good = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    labels = np.array([False] * 10 + [True] * 3)
    scores = np.array(good + [0.95, 2.0, 3.0])
    # 10 % of 10 good images: one may be flagged -> between the 2nd highest good (0.9) and the next up (0.95)
    assert false_alarm_cut(labels, scores, 0.1) == pytest.approx((0.9 + 0.95) / 2)
    assert false_alarm_cut(labels, scores, 0.15) == pytest.approx((0.9 + 0.95) / 2)  # floor(1.5) = 1
    assert false_alarm_cut(labels, scores, 0.0) == pytest.approx((1.0 + 2.0) / 2)
    # normal-quantile: numpy's linear quantile of the good scores only: 0.5 -> 0.55, 0.99 -> 0.991
    assert image_cut(labels, scores, "normal-quantile", 0.5, {}) == pytest.approx(0.55)
    assert image_cut(labels, scores, "normal-quantile", 0.99, {}) == pytest.approx(0.991)


def test_false_alarm_cut_flags_exactly_what_lies_above_the_allowed_good_images():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    from rd_edge.threshold_calibration import false_alarm_cut

    @hypothesis.settings(max_examples=100, deadline=None, database=None)
    @hypothesis.given(
        good=st.lists(st.integers(0, 50), min_size=1, max_size=30),
        defect=st.lists(st.integers(0, 60), max_size=10),
        rate=st.floats(0.0, 1.0),
    )
    def check(good, defect, rate):
        labels = np.array([False] * len(good) + [True] * len(defect))
        scores = np.array(good + defect, np.float64) / 10.0
        t = false_alarm_cut(labels, scores, rate)
        allowed = int(np.floor(rate * len(good) + 1e-9))
        if allowed >= len(good):  # every good image may be flagged: everything is
            assert (scores > t).all()
            return
        passed = np.sort(scores[~labels])[::-1][allowed]  # the highest good score that must pass
        assert ((scores > t) == (scores > passed)).all()  # the lowest such cut: all above it flagged

    check()


@pytest.mark.parametrize("method", ["false-alarms", "f1", "zero-escape"])
def test_with_masks_every_labelled_method_takes_the_pixel_threshold_from_the_masks(method):
    from rd_edge.threshold_calibration import choose_thresholds

    data = _scored([0.2, 0.3, 0.25, 0.35, 0.3, 0.2, 0.28, 0.31, 0.22, 0.33], [0.9, 1.2, 0.8])
    chosen = choose_thresholds(data, method, max_false_alarms=0.05)  # 5 % of 10: none flagged, no region cap
    assert chosen["report"]["pixel_method"] == "f1"
    # mask pixels hold 0.8 .. 1.2, every other pixel <= 0.35: F1 = 1 anywhere in between, cut halfway
    assert chosen["pixel_threshold"] == pytest.approx((0.35 + 0.8) / 2)


@pytest.mark.parametrize(
    "text,value",
    [("0.01", 0.01), ("1%", 0.01), ("0.5", 0.5), ("12.5%", 0.125), ("1", 1.0), ("0", 0.0), ("100%", 1.0)],
)
def test_max_false_alarms_reads_fractions_and_percentages(text, value):
    from rd_edge.cli.calibrate import rate

    assert rate(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["1.5", "101%", "-1%", "x", "%"])
def test_max_false_alarms_outside_0_to_1_is_refused(text):
    import argparse

    from rd_edge.cli.calibrate import rate

    with pytest.raises(argparse.ArgumentTypeError, match="rate in"):
        rate(text)
