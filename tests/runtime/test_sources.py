"""rd-infer's inputs: images, folders, videos, cameras, pipelines; bad inputs become items."""

import cv2
import numpy as np
import pytest

from rd_edge.runtime.sources import SourceError, csi_pipeline, open_source


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def write_video(path, n_frames, size=(48, 64)):
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    assert writer.isOpened()
    for i in range(n_frames):
        writer.write(np.full((h, w, 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_csi_pipeline_string():
    assert csi_pipeline(1, 1280, 720, 60, 2) == (
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=60/1 ! "
        "nvvidconv flip-method=2 ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1"
    )


def test_folder_is_recursive_sorted_and_bad_files_become_error_items(tmp_path):
    write_png(tmp_path / "b.png", np.zeros((8, 8, 3), np.uint8))
    write_png(tmp_path / "sub" / "a.png", np.zeros((5, 6), np.uint8))
    (tmp_path / "c.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image, not listed")
    with open_source(str(tmp_path)) as source:
        assert source.kind == "folder" and source.total == 3
        items = list(source)
    assert [i.key for i in items] == ["b", "c", "sub/a"]
    assert items[2].frame.shape == (5, 6, 3)  # gray converted to BGR
    assert items[1].frame is None and "empty (0 bytes)" in items[1].error


def test_same_stem_different_extension_get_distinct_keys(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((4, 4, 3), np.uint8))
    write_png(tmp_path / "b.png", np.zeros((4, 4, 3), np.uint8))
    keys = [item.key for item in open_source(str(tmp_path))]
    assert keys == ["a_jpg", "a_png", "b"]


def test_single_image_and_limit(tmp_path):
    path = write_png(tmp_path / "one.png", np.zeros((4, 4, 3), np.uint8))
    items = list(open_source(str(path)))
    assert len(items) == 1 and items[0].name == str(path) and items[0].key == "one"
    for i in range(5):
        write_png(tmp_path / "many" / f"{i}.png", np.zeros((4, 4, 3), np.uint8))
    source = open_source(str(tmp_path / "many"), limit=2)
    assert source.total == 2 and len(list(source)) == 2


def test_video_yields_every_frame_with_a_count(tmp_path):
    path = write_video(tmp_path / "clip.avi", 5)
    with open_source(str(path)) as source:
        assert source.kind == "video" and source.total == 5
        items = list(source)
    assert [i.name for i in items] == [f"{path}#{k}" for k in range(5)]
    assert items[3].key == "clip/frame_000003" and items[3].frame.shape == (48, 64, 3)


def test_a_file_that_is_neither_image_nor_video_is_one_error_item(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x00garbage" * 10)
    items = list(open_source(str(path)))
    assert len(items) == 1 and items[0].frame is None and "cannot open" in items[0].error


def test_sources_that_cannot_be_opened(tmp_path):
    with pytest.raises(SourceError, match=r"not found: expected an image file, a folder, a video file"):
        open_source(str(tmp_path / "missing.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images in folder"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="cannot open pipeline.*GStreamer"):
        open_source("videotestsrc num-buffers=1 ! nosuchelement ! appsink")
