"""GenICam cameras through Aravis, against Aravis' own fake GigE Vision camera on 127.0.0.1.

The fake camera (arv-fake-gv-camera-0.8, Debian's aravis-tools) speaks GVCP/GVSP on the loopback
interface like a real GigE camera. Its image is known: pixel (x, y) of frame ``id`` is
``(x + y + id) % 255`` (Mono8) or that index into a jet colour map (RGB8 and Bayer mosaics).
"""

import json
import re
import shutil
import signal
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest
from pipeline_parts import ListSink, make_detector

from rd_edge.runtime import pixel_formats
from rd_edge.runtime.pixel_formats import PixelFormatError, to_bgr

FAKE = "arv-fake-gv-camera-0.8"
ADDRESS = "127.0.0.1"


def _aravis():
    try:
        from rd_edge.runtime import aravis

        aravis.library()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Aravis not installed ({exc}); .ci/run installs libaravis-0.8-0 and aravis-tools")
    if shutil.which(FAKE) is None:
        pytest.skip(f"{FAKE} not installed (Debian package aravis-tools)")
    return aravis


class FakeCamera:
    """arv-fake-gv-camera-0.8 on 127.0.0.1 (GVCP port 3956), started and killed by the test."""

    def __init__(self, packet_loss_per_mille: int = 0) -> None:
        self.aravis = _aravis()
        self.process = None
        self.loss = packet_loss_per_mille
        self.start()

    def start(self, wait: bool = True) -> None:
        self.process = subprocess.Popen(
            [FAKE, "-i", ADDRESS, "-s", "RDEDGE", "-r", str(self.loss)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait:
            return
        deadline = time.monotonic() + 5.0
        while True:  # answering once a camera object can be made
            try:
                self.aravis.AravisCamera(ADDRESS).release()
                return
            except self.aravis.AravisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=5)


@pytest.fixture
def fake_camera():
    camera = FakeCamera()
    yield camera
    camera.kill()


SMALL = {"Width": "512", "Height": "16", "ExposureTime": "10000", "Gain": "0"}  # image scale 1 at these


def grab(aravis, pixel_format, n=1):
    camera = aravis.AravisCamera(ADDRESS, {**SMALL, "PixelFormat": pixel_format}, buffer_timeout=2.0)
    try:
        frames = [(camera.read()[0], camera.frame_id) for _ in range(n)]
    finally:
        camera.release()
    return frames, camera


def test_features_are_set_read_back_and_old_names_found(fake_camera):
    ((frame, frame_id),) = grab(fake_camera.aravis, "Mono8")[0]
    camera = fake_camera.aravis.AravisCamera(
        ADDRESS, {**SMALL, "PixelFormat": "Mono8", "AcquisitionFrameRate": "40"}
    )
    try:
        # ExposureTime and Gain exist on this camera under their older SFNC names only.
        assert camera.applied == {
            "Width": "512",
            "Height": "16",
            "ExposureTimeAbs": "10000",
            "GainRaw": "0",
            "PixelFormat": "Mono8",
            "AcquisitionFrameRate": "40",
        }
        assert camera.fps == 40.0 and camera.feature("PixelFormat") == "Mono8"
        with pytest.raises(fake_camera.aravis.AravisError, match="has no feature 'Shutter'"):
            camera.set_feature("Shutter", "3")
        with pytest.raises(fake_camera.aravis.AravisError, match="cannot set PixelFormat=Mono99"):
            camera.set_feature("PixelFormat", "Mono99")
    finally:
        camera.release()
    # Mono8 -> BGR: exactly the camera's pattern in all three channels.
    y, x = np.mgrid[0:16, 0:512]
    assert np.array_equal(
        frame, np.repeat(((x + y + frame_id) % 255).astype(np.uint8)[:, :, None], 3, axis=2)
    )


def test_bayer_and_mono16_from_the_camera_become_the_right_bgr(fake_camera):
    aravis = fake_camera.aravis
    ((rgb, rgb_id),) = grab(aravis, "RGB8")[0]
    ((mono16, mono16_id),) = grab(aravis, "Mono16")[0]
    y, x = np.mgrid[0:16, 0:512]
    expected16 = ((256 * (x + y + mono16_id)) % 65535 >> 8).astype(np.uint8)
    assert np.array_equal(mono16[:, :, 0], expected16) and np.array_equal(mono16[:, :, 2], expected16)
    # The fake camera mislabels BayerBG8/BayerRG8 (it writes RG for BG and vice versa, arvfakecamera.c
    # 0.8.26); GR and GB are right. Each Bayer frame is the RGB8 image moved along the diagonal by the
    # difference of the frame ids: demosaiced, it must match that image (red and blue swapped: ~100 off).
    for pattern in ("BayerGR8", "BayerGB8"):
        ((bayer, bayer_id),) = grab(aravis, pattern)[0]
        shift = (bayer_id - rgb_id) % 255
        width = 512 - shift - 8
        moved = rgb[:, shift + 4 : shift + 4 + width].astype(int)
        got = bayer[:, 4 : 4 + width].astype(int)
        index = (x[:, 4 : 4 + width] + y[:, 4 : 4 + width] + bayer_id) % 255
        smooth = (index > 3) & (index < 251)  # away from the colour map's wrap-around
        error = np.abs(got - moved)[2:-2][smooth[2:-2]]
        assert error.mean() < 6, (pattern, error.mean())
        swapped = np.abs(got[:, :, ::-1] - moved)[2:-2][smooth[2:-2]]
        assert swapped.mean() > 40


def _mosaic(bgr, pattern):
    """A GenICam Bayer mosaic of a BGR image: BayerRG = R G / G B (the 2x2 block row by row)."""
    channel = {"R": 2, "G": 1, "B": 0}
    block = {"RG": "RGGB", "GB": "GBRG", "GR": "GRBG", "BG": "BGGR"}[pattern]
    out = np.zeros(bgr.shape[:2], np.uint8)
    for i, colour in enumerate(block):
        dy, dx = divmod(i, 2)
        out[dy::2, dx::2] = bgr[dy::2, dx::2, channel[colour]]
    return out


@pytest.mark.parametrize("pattern", ["RG", "GB", "GR", "BG"])
def test_every_bayer_pattern_keeps_red_red_and_blue_blue(pattern):
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, :16] = (0, 0, 200)  # red (BGR)
    image[:, 16:32] = (0, 180, 0)  # green
    image[:, 32:] = (220, 0, 0)  # blue
    code = next(c for c, name in pixel_formats.NAMES.items() if name == f"Bayer{pattern}8")
    got = to_bgr(_mosaic(image, pattern).tobytes(), 48, 32, code)
    for x in (6, 24, 40):  # inside each block the demosaiced colour is exact
        assert tuple(got[8:24, x - 2 : x + 2].reshape(-1, 3).mean(0).round()) == tuple(
            image[0, x].astype(float)
        )
    # 12 bits in 16: the same colours at 16x the value
    code12 = next(c for c, name in pixel_formats.NAMES.items() if name == f"Bayer{pattern}12")
    deep = (_mosaic(image, pattern).astype("<u2") * 16).tobytes()
    assert np.array_equal(to_bgr(deep, 48, 32, code12)[8:24, 4:8], got[8:24, 4:8])


def test_mono12_unpacked_and_both_packed_layouts_scale_to_8_bits():
    values = np.array([[0, 4095, 16, 2048], [1, 255, 4000, 3]], np.uint16)  # 12-bit pixels, 2x4
    expected = (values >> 4).astype(np.uint8)
    mono12 = to_bgr(values.astype("<u2").tobytes(), 4, 2, 0x01100005)
    flat = values.reshape(-1, 2)
    gige = np.stack([flat[:, 0] >> 4, (flat[:, 0] & 0xF) | ((flat[:, 1] & 0xF) << 4), flat[:, 1] >> 4], 1)
    pfnc = np.stack([flat[:, 0] & 0xFF, (flat[:, 0] >> 8) | ((flat[:, 1] & 0xF) << 4), flat[:, 1] >> 4], 1)
    packed = to_bgr(gige.astype(np.uint8).tobytes(), 4, 2, pixel_formats.MONO12_PACKED)
    p = to_bgr(pfnc.astype(np.uint8).tobytes(), 4, 2, pixel_formats.MONO12P)
    for got in (mono12, packed, p):
        assert np.array_equal(got[:, :, 0], expected) and np.array_equal(got[:, :, 1], expected)
    with pytest.raises(PixelFormatError, match="needs 16 bytes, the camera sent 6"):
        to_bgr(b"\0" * 6, 4, 2, 0x01100005)
    with pytest.raises(PixelFormatError, match="not supported; set the camera's PixelFormat"):
        to_bgr(b"\0" * 8, 4, 2, 0x0123ABCD)


def test_a_software_trigger_yields_exactly_one_frame(fake_camera):
    from rd_edge.runtime.sources import LiveOptions, open_source

    aravis = fake_camera.aravis
    camera = aravis.AravisCamera(ADDRESS, {"Width": "64", "Height": "48"}, triggered=True, buffer_timeout=0.4)
    try:
        assert camera.feature("TriggerMode") == "On" and camera.feature("TriggerSource") == "Software"
        with pytest.raises(aravis.AravisError, match="no buffer"):
            camera.read()  # no trigger, no frame
        ids = []
        for _ in range(3):
            camera.trigger()
            camera.read()
            ids.append(camera.frame_id)
            with pytest.raises(aravis.AravisError, match="no buffer"):
                camera.read()  # one trigger, one frame: nothing more
        assert ids == [ids[0], ids[0] + 1, ids[0] + 2] and camera.lost == 0
    finally:
        camera.release()
    # Through the source: a request is answered by the frame its trigger made.
    with open_source(
        f"aravis://{ADDRESS}?Width=64&Height=48", live=LiveOptions(read_timeout=1.0, triggered=True)
    ) as src:
        items = iter(src)
        src.request_trigger(7)
        item = next(items)
        assert item.triggers == (7,) and item.frame.shape == (48, 64, 3) and item.camera_time > 1e9


def test_a_killed_camera_is_an_outage_and_reconnect_brings_it_back(fake_camera, tiny_onnx):
    from rd_edge.runtime.live import Backoff
    from rd_edge.runtime.pipeline import Pipeline
    from rd_edge.runtime.sources import LiveOptions, open_source

    options = LiveOptions(read_timeout=0.5, reconnect=Backoff(initial=0.2, maximum=0.4))
    sink = ListSink()
    spec = f"aravis://{ADDRESS}?Width=64&Height=48&AcquisitionFrameRate=30"
    with open_source(spec, label="gige", live=options) as source, make_detector(tiny_onnx) as det:
        pipeline = Pipeline(det, [source], [sink])

        def script():
            try:
                time.sleep(1.0)
                fake_camera.kill()
                time.sleep(1.0)
                fake_camera.start(wait=False)  # no probe: the source's reconnection finds it
                time.sleep(1.5)
            finally:
                pipeline.stop()

        threading.Thread(target=script, daemon=True).start()
        summary = pipeline.run()
    errors = [r for r in sink.results if r.error is not None]
    # no frame within the read timeout (the loop's or the camera's own, whichever notices first)
    assert len(errors) == 1 and errors[0].error.startswith("stream lost: ") and "0.5 s" in errors[0].error
    back = sink.results[sink.results.index(errors[0]) + 1]
    outage = back.item.outage
    assert back.prediction is not None and outage is not None and outage.end is not None
    assert outage.rate == pytest.approx(30.0, rel=0.35)  # as measured: a loaded host delays the camera too
    assert outage.frames_lost == round(outage.seconds * outage.rate) - 1 and outage.seconds > 1.0
    assert [o.end for o in summary.outages["gige"]] == [outage.end]


def test_incomplete_and_missing_buffers_are_counted_as_lost():
    camera = FakeCamera(packet_loss_per_mille=5)  # 0.5 % of GVSP packets dropped by the camera
    aravis = camera.aravis
    try:
        cam = aravis.AravisCamera(
            ADDRESS, {"Width": "512", "Height": "512", "AcquisitionFrameRate": "50"}, buffer_timeout=2.0
        )
        try:
            cam.read()
            first, lost_at_first = cam.frame_id, cam.lost
            for _ in range(20):
                cam.read()
            span = cam.frame_id - first if cam.frame_id > first else aravis.frame_gap(first, cam.frame_id) + 1
        finally:
            cam.release()
    finally:
        camera.kill()
    lost = cam.lost - lost_at_first
    assert lost > 0 and 20 + lost == span  # every frame id since the first: complete, or counted lost once
    assert cam.incomplete > 0  # the camera's lost packets left incomplete buffers
    assert aravis.frame_gap(65534, 2) == 2 and aravis.frame_gap(10, 13) == 2 and aravis.frame_gap(500, 3) == 0


def test_rd_infer_reads_the_camera_with_a_camera_file_and_writes_overlays(
    fake_camera, tiny_onnx, tmp_path, capsys, monkeypatch
):
    """--limit 3 on a camera: 3 frames read. The camera does not wait for the model, so a frame
    the model has not taken yet is dropped for the newest (a slow first preprocessing here makes
    that certain; a burst of buffered frames does it too): every frame read is a record or a counted
    drop, in order, and the last one read is scored."""
    from rd_edge.runtime.cli import main
    from rd_edge.runtime.detector import Detector

    preprocess, calls = Detector.preprocess, []

    def slow_first(self, frames):
        calls.append(len(frames))
        if len(calls) == 1:  # the stage that takes frames is busy: 1 and 2 (20 frames/s) arrive, 1 is stale
            time.sleep(0.5)
        return preprocess(self, frames)

    monkeypatch.setattr(Detector, "preprocess", slow_first)
    camera_file = tmp_path / "camera.yaml"
    camera_file.write_text(
        "PixelFormat: BayerGR8\nWidth: 256\nHeight: 192\nAcquisitionFrameRate: 20\nExposureTime: 10000\n"
    )
    out = tmp_path / "out"
    rc = main(
        [
            str(tiny_onnx),
            f"aravis://{ADDRESS}",
            "--camera-file",
            str(camera_file),
            "--limit",
            "3",
            "--out",
            str(out),
            "--png-frames",
            "--json",
            str(tmp_path / "r.jsonl"),
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "Aravis Fake at 127.0.0.1; PixelFormat=BayerGR8, Width=256, Height=192" in err
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert all(r["error"] is None and r["camera_timestamp"] > 1e9 for r in records)
    frames = [r["frame"] for r in records]
    assert frames == sorted(set(frames)) and frames[-1] == 2 and len(frames) < 3  # in order; the newest kept
    inputs = int(re.search(r"^inputs (\d+), ", err, re.M).group(1))
    dropped = int(re.search(r"dropped (\d+) \(live sources", err).group(1))
    assert inputs == len(records) and dropped >= 3 - len(records)  # (frames the camera lost count too)
    overlays = out / "overlays" / "aravis_127.0.0.1"
    assert sorted(p.name for p in overlays.glob("*.png")) == [f"frame_{i:06d}.png" for i in frames]
    overlay = cv2.imread(str(overlays / f"frame_{frames[0]:06d}.png"))
    assert overlay.shape[1:] == (256, 3) and overlay.shape[0] >= 192  # the frame (and a caption band)


def test_without_aravis_the_error_is_one_line(monkeypatch):
    from rd_edge.runtime import aravis

    monkeypatch.setattr(aravis, "LIBRARY", "libaravis-does-not-exist.so")
    monkeypatch.setattr(aravis, "_lib", None)
    with pytest.raises(
        aravis.AravisError, match=r"need libaravis-does-not-exist.so .*apt-get install libaravis-0.8-0"
    ):
        aravis.library()
