"""rd-calibrate --review: the station's marks join the calibration; false alarms stop being flagged
while every defect still is (zero-escape), and the report says so."""

import json

import cv2
import numpy as np
from station_scene import frame

from rd_edge.cli.calibrate import main as calibrate_main
from rd_edge.core import review
from rd_edge.core.thresholds import Thresholds, thresholds_path


def write(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i:03d}.png"), image)


def test_review_marks_lower_false_alarms_at_the_same_escape_rate(tiny_onnx, tmp_path, capsys):
    rng = np.random.default_rng(0)
    write(tmp_path / "good", [frame(rng, 1.0, False) for _ in range(12)])  # score ~0.05
    write(tmp_path / "defect", [frame(rng, 1.0, True) for _ in range(6)])  # ~0.48
    marks = tmp_path / "review"
    for i in range(5):  # brighter good parts the line flagged (~0.35): marked false alarm
        png = cv2.imencode(".png", frame(rng, 1.6, False))[1].tobytes()
        review.write_mark(marks, review.FALSE_ALARM, "cam", f"e{i}", png, {"frame": i})
    png = cv2.imencode(".png", frame(rng, 1.0, True))[1].tobytes()
    review.write_mark(marks, review.MISSED, "cam", "m0", png, {"frame": 9})
    data = [
        "--good",
        str(tmp_path / "good"),
        "--defect",
        str(tmp_path / "defect"),
        "--method",
        "zero-escape",
        "--quiet",
    ]

    assert calibrate_main([str(tiny_onnx), *data]) == 0
    before = Thresholds.read(thresholds_path(tiny_onnx)).image_threshold
    capsys.readouterr()
    assert calibrate_main([str(tiny_onnx), *data, "--review", str(marks)]) == 0
    out = capsys.readouterr().out
    saved = Thresholds.read(thresholds_path(tiny_onnx))
    r = saved.report["review"]
    assert r["false_alarms_marked"] == 5 and r["defects_marked"] == 1
    assert r["threshold_before"] == before < saved.image_threshold
    assert r["before"]["false_alarms"] == 5 and r["after"]["false_alarms"] == 0  # of 3 held-out good + 5
    assert r["before"]["escapes"] == r["after"]["escapes"] == 0  # of 7 defective
    assert "5 false alarms (as good) and 1 defects marked" in out
    assert "false alarms 5/8 (62.5 %), escapes 0/7" in out and "false alarms 0/8 (0.0 %), escapes 0/7" in out
    assert saved.normal_scores["count"] == 3  # the drift reference: the held-out good images only
    json.loads(thresholds_path(tiny_onnx).read_text())  # valid JSON


def test_an_empty_review_folder_is_a_clear_error(tiny_onnx, tmp_path, capsys):
    rng = np.random.default_rng(1)
    write(tmp_path / "good", [frame(rng, 1.0, False) for _ in range(4)])
    (tmp_path / "review").mkdir()
    assert (
        calibrate_main(
            [
                str(tiny_onnx),
                "--good",
                str(tmp_path / "good"),
                "--method",
                "normal-quantile",
                "--review",
                str(tmp_path / "review"),
                "--quiet",
            ]
        )
        == 1
    )
    assert "holds no review marks" in capsys.readouterr().err
