"""The review folder: marks written once per frame and label, read back as good and defective images."""
import pytest

from rd_edge.core.review import (
    CONFIRMED,
    FALSE_ALARM,
    MISSED,
    ReviewError,
    labels,
    mark_key,
    reviewed_images,
    write_mark,
)


def test_marks_round_trip_into_good_and_defective_images(tmp_path):
    fa, new = write_mark(tmp_path, FALSE_ALARM, "cam 0", "frame/7", b"png-a", {"score": 0.9})
    assert new and fa.name == f"{mark_key('cam 0', 'frame/7')}.png" and fa.read_bytes() == b"png-a"
    assert write_mark(tmp_path, FALSE_ALARM, "cam 0", "frame/7", b"png-b", {})[1] is False  # kept once
    write_mark(tmp_path, CONFIRMED, "cam1", "9", b"c", {})
    write_mark(tmp_path, MISSED, "cam1", "10", b"m", {})
    good, defective = reviewed_images(tmp_path)
    assert good == [fa] and sorted(p.parent.name for p in defective) == [CONFIRMED, MISSED]
    assert labels(tmp_path)[mark_key("cam1", "9")] == CONFIRMED


def test_bad_labels_and_empty_folders_are_errors(tmp_path):
    with pytest.raises(ReviewError, match="review label 'ok' unknown"):
        write_mark(tmp_path, "ok", "s", "e", b"", {})
    with pytest.raises(ReviewError, match="holds no review marks"):
        reviewed_images(tmp_path)
    with pytest.raises(ReviewError, match="expected a review folder"):
        reviewed_images(tmp_path / "missing")
