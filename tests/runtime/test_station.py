"""The operator's station in a real browser (headless Chromium via Selenium) against a real
rd-infer run on two videos: the live image updates, counters match the JSON Lines, a review
click saves the original frame and its record, and the drift badge lights for the drifting
stream only. Plus the token on other addresses and review-folder rules, without a browser."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from ports import free_ports
from station_scene import make_scene

from rd_edge.core import review
from rdbench.browser import chromium, missing

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    """rd-infer on a stable and a drifting video, paced at 20 fps (10 s), station on a free port,
    kept up after the run for review; SIGTERM at the end."""
    folder = tmp_path_factory.mktemp("station")
    scene = make_scene(folder)
    (port,) = free_ports(1)
    log = open(folder / "stderr.txt", "w")  # noqa: SIM115  open for the process's whole life
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rd_edge.runtime.cli",
            str(scene["model"]),
            f"stable={scene['stable']}",
            f"drift={scene['drift']}",
            "--realtime",
            "--json",
            str(folder / "r.jsonl"),
            "--evidence",
            str(folder / "ev"),
            "--station",
            str(port),
            "--station-linger",
            "60",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd=folder,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(
            lambda: "station: " in (folder / "stderr.txt").read_text() or proc.poll() is not None,
            30,
            "station",
        )
        assert proc.poll() is None, (folder / "stderr.txt").read_text()
        yield {"url": url, "folder": folder, "proc": proc}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        finally:
            proc.kill()
            log.close()
    assert code == 0, (folder / "stderr.txt").read_text()


def js(driver, script):
    return driver.execute_script(script)


@pytest.mark.slow
@pytest.mark.skipif(missing() is not None, reason=str(missing()))
def test_station_page_live_review_counters_and_drift(line):
    folder = line["folder"]
    with chromium(1280, 800) as driver:  # the touch panel's size
        driver.get(line["url"])
        # live image: two streams, each image replaced several times while the videos play
        updates = (
            "return [...document.querySelectorAll('.live-img')].map(i => Number(i.dataset.updates || 0))"
        )
        wait_for(lambda: len(js(driver, updates)) == 2 and min(js(driver, updates)) >= 3, 15, "live images")
        frames = js(driver, "return [...document.querySelectorAll('.live-img')].map(i => i.naturalWidth)")
        assert all(w > 0 for w in frames)  # decoded JPEGs, not broken images

        # review: "False alarm" on the stable stream's first NG frame saves the original and record
        button = "#stream-stable .ng-gallery .item button.false_alarm"
        wait_for(lambda: js(driver, f"return document.querySelector('{button}') !== null"), 15, "an NG entry")
        shown = "return document.querySelector('#stream-stable .ng-gallery .item img').naturalWidth"
        wait_for(lambda: js(driver, shown) > 0, 10, "the first NG image on screen")  # fetched once seen
        item_id = js(driver, f"return document.querySelector('{button}').closest('.item').dataset.id")
        driver.find_element("css selector", button).click()
        saved = wait_for(
            lambda: list((folder / "review" / "false_alarm").glob("*.json")), 10, "the review mark"
        )
        entry = item_id.split(":")[2]
        mark = json.loads(saved[0].read_text())
        assert mark["review"]["label"] == "false_alarm" and mark["record"]["stream"] == "stable"
        original = cv2.imread(str(folder / "ev" / "stable" / f"{entry}.png"))
        assert np.array_equal(
            cv2.imread(str(saved[0].with_suffix(".png"))), original
        )  # the frame, not the overlay

        # drift: the badge turns on for the drifting stream, never for the stable one
        badge = "return document.querySelector('#stream-{} .badge.drift').classList.contains('on')"
        wait_for(lambda: js(driver, badge.format("drift")), 20, "the drift badge")
        wait_for(
            lambda: js(driver, "return document.getElementById('mode').textContent") == "run finished",
            20,
            "the end of the run",
        )
        time.sleep(1.2)  # one more state poll after the end
        assert not js(driver, badge.format("stable"))

        # counters = the JSON Lines the same run wrote
        records = [json.loads(x) for x in (folder / "r.jsonl").read_text().splitlines()]
        for stream in ("stable", "drift"):
            mine = [r for r in records if r["stream"] == stream]
            shown = {
                k: int(driver.find_element("css selector", f"#stream-{stream} .{k}").text)
                for k in ("frames", "ok", "ng", "errors")
            }
            assert shown == {
                "frames": len(mine),
                "ok": sum(r["is_anomalous"] is False for r in mine),
                "ng": sum(r["is_anomalous"] is True for r in mine),
                "errors": sum(r["error"] is not None for r in mine),
            }
        drifting = {r["stream"] for r in records if (r.get("drift") or {}).get("drifting")}
        assert drifting == {"drift"}
    assert (folder / "stderr.txt").read_text().count("warning: score drift on drift") == 1


def test_station_on_another_address_needs_the_token(tmp_path):
    from rd_edge.runtime.station import Station, StationServer

    (port,) = free_ports(1)
    server = StationServer(Station(tmp_path / "ev", tmp_path / "review"), port, host="127.0.0.2")
    try:
        assert server.token and server.url.endswith(f"?token={server.token}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.2:{port}/api/state", timeout=5)
        assert refused.value.code == 401
        wrong = urllib.request.Request(
            f"http://127.0.0.2:{port}/api/state", headers={"Authorization": "Bearer x"}
        )
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(wrong, timeout=5)
        with urllib.request.urlopen(server.url, timeout=5) as page:
            cookie = page.headers["set-cookie"]
        assert "rd_station_token=" in cookie and "HttpOnly" in cookie
        ok = urllib.request.Request(
            f"http://127.0.0.2:{port}/api/state", headers={"Authorization": f"Bearer {server.token}"}
        )
        with urllib.request.urlopen(ok, timeout=5) as answer:
            assert json.loads(answer.read())["live"] is False
    finally:
        server.close()


def test_review_marks_never_delete_and_the_newest_wins(tmp_path):
    png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    first, new = review.write_mark(tmp_path, review.FALSE_ALARM, "cam", "e1", png, {"score": 0.3})
    assert new and first.is_file() and first.with_suffix(".json").is_file()
    assert review.write_mark(tmp_path, review.FALSE_ALARM, "cam", "e1", png, {"score": 0.3}) == (first, False)
    time.sleep(0.01)
    second, _ = review.write_mark(tmp_path, review.CONFIRMED, "cam", "e1", png, {"score": 0.3})
    assert first.is_file() and second.is_file()  # nothing deleted
    assert review.labels(tmp_path) == {"cam__e1": review.CONFIRMED}
    good, defective = review.reviewed_images(tmp_path)
    assert good == [] and defective == [second]
    with pytest.raises(review.ReviewError, match="label"):
        review.write_mark(tmp_path, "maybe", "cam", "e2", png, {})


def test_a_corrected_mark_through_the_page_ends_with_the_label_chosen_last(tmp_path):
    """POST /api/review false alarm, defect, false alarm: each answer is 200 and new, the gallery
    shows each label as it is made, the review folder reads the frame as good at the end (the two
    earlier marks kept), and the same label again answers new: false (nothing written)."""
    from rd_edge.runtime.station.app import StationServer
    from rd_edge.runtime.station.state import Station

    folder = tmp_path / "ev" / "cam"
    folder.mkdir(parents=True)
    frame = np.full((8, 8, 3), 77, np.uint8)
    stem = "20261203T101010-000Z_00000007"
    cv2.imwrite(str(folder / f"{stem}.jpg"), frame)
    cv2.imwrite(str(folder / f"{stem}.png"), frame)
    (folder / f"{stem}.json").write_text(json.dumps({"stream": "cam", "frame": 7, "score": 0.9}))
    (port,) = free_ports(1)
    server = StationServer(Station(tmp_path / "ev", tmp_path / "review"), port)
    base = f"http://127.0.0.1:{port}"

    def post(label):
        body = json.dumps({"id": f"ev:cam:{stem}", "label": label}).encode()
        request = urllib.request.Request(f"{base}/api/review", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())

    def shown():
        return json.loads(urllib.request.urlopen(f"{base}/api/gallery/cam", timeout=5).read())[0]["review"]

    try:
        saved = []
        for label in (review.FALSE_ALARM, review.CONFIRMED, review.FALSE_ALARM):
            status, answer = post(label)
            assert (status, answer["new"], answer["label"]) == (200, True, label)
            assert shown() == label
            saved.append(answer["saved"])
        status, answer = post(review.FALSE_ALARM)
        assert (status, answer["new"], answer["saved"]) == (200, False, saved[-1])
    finally:
        server.close()
    assert len(set(saved)) == 3 and all(Path(p).is_file() for p in saved)
    assert review.reviewed_images(tmp_path / "review") == ([Path(saved[-1])], [])


def test_rd_edge_station_reviews_an_evidence_folder_without_inference(tmp_path):
    import threading

    from rd_edge.cli.main import main as rd_edge_main

    folder = tmp_path / "ev" / "cam"
    folder.mkdir(parents=True)
    frame = np.full((24, 32, 3), 77, np.uint8)
    stem = "20261203T101010-000Z_00000007"
    cv2.imwrite(str(folder / f"{stem}.jpg"), frame)
    cv2.imwrite(str(folder / f"{stem}.png"), frame)
    (folder / f"{stem}.json").write_text(json.dumps({"stream": "cam", "frame": 7, "score": 0.9}))
    (port,) = free_ports(1)
    codes = []
    runner = threading.Thread(
        target=lambda: codes.append(
            rd_edge_main(["station", str(tmp_path / "ev"), "--port", str(port), "--for", "6"])
        )
    )
    runner.start()
    base = f"http://127.0.0.1:{port}"

    def post(body):
        request = urllib.request.Request(
            f"{base}/api/review", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def up():
        try:
            return json.loads(urllib.request.urlopen(f"{base}/api/state", timeout=2).read())
        except OSError:
            return None

    try:
        state = wait_for(up, 20, "rd-edge station")
        assert state["live"] is False and [s["name"] for s in state["streams"]] == ["cam"]
        (entry,) = json.loads(urllib.request.urlopen(f"{base}/api/gallery/cam", timeout=5).read())
        assert entry["frame"] == 7 and entry["original"] and entry["review"] is None
        assert urllib.request.urlopen(base + entry["image"], timeout=5).read()[:2] == b"\xff\xd8"  # a JPEG
        assert post({"id": entry["id"], "label": "missed_defect"})[0] == 409  # an NG frame cannot be missed
        status, answer = post({"id": entry["id"], "label": "false_alarm"})
        assert status == 200 and answer["new"]
        marked = tmp_path / "review" / "false_alarm" / f"cam__{stem}.png"
        assert np.array_equal(cv2.imread(str(marked)), frame)
        assert (
            json.loads(urllib.request.urlopen(f"{base}/api/gallery/cam", timeout=5).read())[0]["review"]
            == "false_alarm"
        )
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/evidence/cam/..%2F..%2Fsecret.jpg", timeout=5)
    finally:
        runner.join(timeout=30)  # --for 6: it ends by itself
    assert codes == [0]


def test_stream_counters_and_rate_are_values_of_the_frames_written(tmp_path, monkeypatch):
    """Five frames 0.1 s apart (a clock the test sets): 4 intervals in 0.4 s = 10 fps; 3 OK, 1 NG,
    1 error; yield 3/4; latency the median of the four predictions' total_ms."""
    import time as real_time
    from types import SimpleNamespace

    import numpy as np

    from rd_edge.runtime.detector import Prediction
    from rd_edge.runtime.sinks.base import Result
    from rd_edge.runtime.sources import SourceItem
    from rd_edge.runtime.station import state

    ticks = iter([10.0, 10.1, 10.2, 10.3, 10.4])
    monkeypatch.setattr(state, "time", SimpleNamespace(perf_counter=lambda: next(ticks), time=real_time.time))
    station = state.Station(None, tmp_path / "review", streams=["cam"])
    frame = np.zeros((4, 4, 3), np.uint8)
    for i, (score, ng, ms) in enumerate(
        [(0.1, False, 4.0), (0.9, True, 8.0), (0.2, False, 5.0), (0.3, False, 6.0)]
    ):
        station.write(
            Result(
                "cam",
                i,
                SourceItem(f"{i}.png", str(i), frame, None),
                prediction=Prediction(score, 0.5, ng, np.zeros((4, 4), np.float32), timings={"total_ms": ms}),
            )
        )
    station.write(Result("cam", 4, SourceItem("4.png", "4", None, "unreadable"), error="unreadable"))
    view = station.snapshot()["streams"][0]
    assert (view["frames"], view["ok"], view["ng"], view["errors"], view["newest"]) == (5, 3, 1, 1, 3)
    assert view["fps"] == pytest.approx(10.0) and view["yield"] == pytest.approx(0.75)
    assert view["latency_ms"] == pytest.approx(5.5)


def test_the_evidence_route_serves_overlays_only(tmp_path):
    """/evidence/<stream>/<name> serves the entry's overlay .jpg; its original .png, its .json and
    anything else in the folder are 404 (the page shows overlays; originals go to the review)."""
    from rd_edge.runtime.station.app import StationServer
    from rd_edge.runtime.station.state import Station

    folder = tmp_path / "ev" / "cam"
    folder.mkdir(parents=True)
    stem = "20261203T101010-000Z_00000007"
    cv2.imwrite(str(folder / f"{stem}.jpg"), np.full((8, 8, 3), 77, np.uint8))
    cv2.imwrite(str(folder / f"{stem}.png"), np.full((8, 8, 3), 78, np.uint8))
    (folder / f"{stem}.json").write_text(json.dumps({"stream": "cam", "frame": 7}))
    (port,) = free_ports(1)
    server = StationServer(Station(tmp_path / "ev", tmp_path / "review"), port)
    try:

        def status(name):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/evidence/cam/{name}", timeout=5
                ) as answer:
                    return answer.status, answer.read()[:3]
            except urllib.error.HTTPError as exc:
                return exc.code, b""

        assert status(f"{stem}.jpg") == (200, b"\xff\xd8\xff")
        assert [status(f"{stem}{s}")[0] for s in (".png", ".json")] == [404, 404]
    finally:
        server.close()


def _result(index, frame, score, ng):
    from rd_edge.runtime.detector import Prediction
    from rd_edge.runtime.sinks.base import Result
    from rd_edge.runtime.sources import SourceItem

    h, w = frame.shape[:2]
    return Result(
        "cam",
        index,
        SourceItem(f"{index}.png", str(index), frame, None),
        prediction=Prediction(score, 0.5, ng, np.zeros((h, w), np.float32), timings={"total_ms": 1.0}),
    )


def test_the_chart_sends_new_points_only_and_keeps_every_ng_point(tmp_path, monkeypatch):
    """A page's poll gets the points after its previous answer's (not the whole 5 minutes again,
    and none lost to a clock that did not move between two); points older than 5 minutes are dropped as they age; thinning many points keeps the NG
    ones."""
    from types import SimpleNamespace

    from rd_edge.runtime.station import state

    clock = [1000.0]
    monkeypatch.setattr(state, "time", SimpleNamespace(time=lambda: clock[0], perf_counter=lambda: clock[0]))
    station = state.Station(None, tmp_path / "review", streams=["cam"])
    frame = np.zeros((4, 4, 3), np.uint8)
    for i in range(3000):  # 0.1 s apart: 300 s
        clock[0] += 0.1
        station.write(_result(i, frame, 0.9 if i % 100 == 7 else 0.1, i % 100 == 7))
    first = station.snapshot()  # the clock stands still from here to the next write
    points = first["streams"][0]["history"]
    assert len(points) < 700 and sum(p[2] for p in points) == 30  # thinned, every NG point kept
    station.write(_result(3000, frame, 0.3, False))
    clock[0] += 0.1
    station.write(_result(3001, frame, 0.95, True))
    again = station.snapshot(since=first["points"])
    assert [p[1:] for p in again["streams"][0]["history"]] == [[0.3, False], [0.95, True]]
    assert station.snapshot(since=again["points"])["streams"][0]["history"] == []
    clock[0] += 200.0
    station.write(_result(3002, frame, 0.2, False))
    assert len(station.streams["cam"].history) < 1100  # the first 200 s dropped


class _Renders:
    threshold = 0.5

    def __init__(self):
        self.shapes = []

    def render(self, frame, prediction):
        self.shapes.append(frame.shape)
        return frame


def test_live_overlay_and_ok_thumbnails_are_sized_for_the_page(tmp_path):
    """A 12 MP camera: the live overlay is rendered on the frame scaled to LIVE_PIXELS, once per
    new frame whatever the number of requests, and a recent OK frame goes out as a thumbnail."""
    from rd_edge.runtime.station import state

    detector = _Renders()
    station = state.Station(None, tmp_path / "review", detector=detector, streams=["cam"], live_fps=1000)
    big = np.zeros((3000, 4000, 3), np.uint8)
    station.write(_result(0, big, 0.1, False))
    for _ in range(3):
        assert station.live_jpeg("cam")[0] == 0
    (shape,) = detector.shapes
    assert shape[0] * shape[1] <= state.LIVE_PIXELS and shape[0] >= 800  # 2x a 300 px view
    thumb = cv2.imdecode(np.frombuffer(station.ok_jpeg("cam", 0), np.uint8), cv2.IMREAD_COLOR)
    assert max(thumb.shape[:2]) <= state.THUMB_SIDE and abs(thumb.shape[1] / thumb.shape[0] - 4 / 3) < 0.02


def test_the_review_folder_is_read_again_only_when_it_changed(tmp_path, monkeypatch):
    """Each gallery poll asks for the labels; a shift's review folder holds many marks: read once,
    then again after a mark (the station's own, or another program's)."""
    from rd_edge.runtime.station import state

    reads = []
    real = review.labels
    monkeypatch.setattr(review, "labels", lambda folder: reads.append(1) or real(folder))
    station = state.Station(None, tmp_path / "review", streams=["cam"])
    review.write_mark(tmp_path / "review", review.FALSE_ALARM, "cam", "e1", b"png", {})
    old = time.time_ns() - 10_000_000_000  # as if written long ago (a fresh folder is read each time)
    for label in review.REVIEW_LABELS:
        if (tmp_path / "review" / label).is_dir():
            os.utime(tmp_path / "review" / label, ns=(old, old))
    for _ in range(5):
        assert station.labels() == {"cam__e1": review.FALSE_ALARM}
    assert len(reads) == 1
    review.write_mark(tmp_path / "review", review.CONFIRMED, "cam", "e1", b"png", {})  # another program
    assert station.labels() == {"cam__e1": review.CONFIRMED} and len(reads) == 2


def test_images_the_gallery_shows_are_cached_and_the_state_takes_since(tmp_path):
    """Evidence overlays and OK thumbnails are immutable under their URLs: a re-drawn gallery
    fetches nothing again; /api/state?since=T answers the chart's new points only."""
    from rd_edge.runtime.station.app import StationServer
    from rd_edge.runtime.station.state import Station

    folder = tmp_path / "ev" / "cam"
    folder.mkdir(parents=True)
    stem = "20261203T101010-000Z_00000007"
    cv2.imwrite(str(folder / f"{stem}.jpg"), np.full((8, 8, 3), 77, np.uint8))
    (folder / f"{stem}.json").write_text(json.dumps({"stream": "cam", "frame": 7}))
    station = Station(tmp_path / "ev", tmp_path / "review", detector=_Renders(), streams=["cam"])
    station.write(_result(0, np.zeros((8, 8, 3), np.uint8), 0.1, False))
    (port,) = free_ports(1)
    server = StationServer(station, port)
    base = f"http://127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(f"{base}/evidence/cam/{stem}.jpg", timeout=5) as answer:
            assert "immutable" in answer.headers["Cache-Control"] and answer.read()[:2] == b"\xff\xd8"
        (ok,) = json.loads(urllib.request.urlopen(f"{base}/api/recent/cam", timeout=5).read())
        assert f"?run={station.run_id}" in ok["image"]  # another run's frame 0 is another URL
        with urllib.request.urlopen(base + ok["image"], timeout=5) as answer:
            assert "immutable" in answer.headers["Cache-Control"]
        first = json.loads(urllib.request.urlopen(f"{base}/api/state", timeout=5).read())
        assert len(first["streams"][0]["history"]) == 1
        again = json.loads(
            urllib.request.urlopen(f"{base}/api/state?since={first['points']}", timeout=5).read()
        )
        assert again["streams"][0]["history"] == [] and again["streams"][0]["frames"] == 1
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(f"{base}/api/state?since=yesterday", timeout=5)
        assert bad.value.code == 400
    finally:
        server.close()
