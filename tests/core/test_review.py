"""The review folder: marks written once per frame and label, read back as good and defective images."""

import json

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


def _mark(folder, label, key, time):
    (folder / label).mkdir(parents=True, exist_ok=True)
    (folder / label / f"{key}.png").write_bytes(b"png")
    (folder / label / f"{key}.json").write_text(
        json.dumps({"record": {}, "review": {"label": label, "time": time}})
    )


def test_the_newest_mark_of_a_frame_wins_whatever_the_label_order(tmp_path):
    # cam__1: a false alarm, later re-marked a missed defect; cam__2: the other way round;
    # cam__3: confirmed, later a false alarm (labels read in the order false_alarm, confirmed, missed).
    _mark(tmp_path, "false_alarm", "cam__1", "2026-01-01T00:00:01.000Z")
    _mark(tmp_path, "missed_defect", "cam__1", "2026-01-01T00:00:02.000Z")
    _mark(tmp_path, "missed_defect", "cam__2", "2026-01-01T00:00:01.000Z")
    _mark(tmp_path, "false_alarm", "cam__2", "2026-01-01T00:00:03.000Z")
    _mark(tmp_path, "confirmed_defect", "cam__3", "2026-01-01T00:00:01.500Z")
    _mark(tmp_path, "false_alarm", "cam__3", "2026-01-01T00:00:04.000Z")
    assert labels(tmp_path) == {"cam__1": "missed_defect", "cam__2": "false_alarm", "cam__3": "false_alarm"}
    good, defective = reviewed_images(tmp_path)
    assert [p.name for p in good] == ["cam__2.png", "cam__3.png"]  # oldest mark first
    assert [p.parent.name for p in defective] == ["missed_defect"]


def test_an_operator_correcting_a_mark_ends_with_the_label_chosen_last(tmp_path, monkeypatch):
    """False alarm, defect, false alarm again: the frame is a false alarm (a new entry, nothing
    deleted or overwritten), rd-calibrate --review and rd-train --good read it as good, and the
    same label once more writes nothing. With a clock that does not move (or steps back), the
    order of the marks is still the order they were made in."""
    import rd_edge.core.review as review

    class Frozen(review.datetime):  # every mark in the same millisecond
        @classmethod
        def now(cls, tz=None):
            return review.datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=tz)

    monkeypatch.setattr(review, "datetime", Frozen)
    key = mark_key("cam", "e1")
    first, new1 = write_mark(tmp_path, FALSE_ALARM, "cam", "e1", b"png", {"score": 0.9})
    second, new2 = write_mark(tmp_path, CONFIRMED, "cam", "e1", b"png", {"score": 0.9})
    assert labels(tmp_path) == {key: CONFIRMED}
    third, new3 = write_mark(tmp_path, FALSE_ALARM, "cam", "e1", b"png", {"score": 0.9})
    assert new1 and new2 and new3 and len({first, second, third}) == 3
    assert third.parent.name == FALSE_ALARM and third.name == f"{key}~2.png"
    assert labels(tmp_path) == {key: FALSE_ALARM}
    assert reviewed_images(tmp_path) == ([third], [])
    assert write_mark(tmp_path, FALSE_ALARM, "cam", "e1", b"other", {}) == (third, False)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.*"))
    assert len(files) == 6 and all(p.read_bytes() == b"png" for p in (first, second, third))
    times = [json.loads(p.with_suffix(".json").read_text())["review"]["time"] for p in (first, second, third)]
    assert times == ["2026-01-01T00:00:01.500Z", "2026-01-01T00:00:01.501Z", "2026-01-01T00:00:01.502Z"]
    # and back to defect: the confirmed_defect folder's second entry of this frame
    fourth, _ = write_mark(tmp_path, CONFIRMED, "cam", "e1", b"png", {})
    assert fourth.name == f"{key}~2.png" and reviewed_images(tmp_path) == ([], [fourth])
