"""Streams that survive: a real MJPEG HTTP camera on 127.0.0.1 goes away, stalls, comes back.

A live source never ends silently: an outage is an error record, a warning, a Prometheus counter
and exit code 2; a stuck read times out; with --reconnect the stream comes back and the outage is
recorded with its start, end and the frames it cost.
"""

import json
import threading
import time

import pytest
from mjpeg_server import MjpegServer
from pipeline_parts import ListSink, make_detector

from rd_edge.runtime.cli import main
from rd_edge.runtime.live import Backoff, Outage
from rd_edge.runtime.pipeline import Pipeline
from rd_edge.runtime.sources import LiveOptions, open_source


@pytest.fixture
def camera():
    server = MjpegServer(fps=20)
    yield server
    server.close()


def later(seconds, *actions):
    """Run the actions one after another, ``seconds[i]`` after the start, in a thread."""

    def run():
        start = time.monotonic()
        for at, action in zip(seconds, actions):
            time.sleep(max(0.0, at - (time.monotonic() - start)))
            action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_stream_whose_server_goes_away_is_an_error_record_a_warning_and_exit_2(
    tiny_onnx, camera, tmp_path, capsys
):
    records_path = tmp_path / "r.jsonl"
    later([1.0], camera.go_away)
    started = time.monotonic()
    rc = main([str(tiny_onnx), f"line={camera.url}", "--json", str(records_path)])
    assert time.monotonic() - started < 6.0  # noticed at once (the server closed the connection)
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    assert rc == 2
    assert len(records) >= 5 and all(r["error"] is None for r in records[:-1])
    last = records[-1]
    assert last["error"] == "stream lost: the stream ended (server or device gone)" and last["score"] is None
    assert last["outage"]["start"] and last["outage"]["end"] is None
    err = capsys.readouterr().err
    assert "warning: " in err and "stream lost" in err
    assert "warning: line: outage " in err and "-> end of run" in err  # the summary lists it


def test_a_stalled_stream_times_out_instead_of_hanging(tiny_onnx, camera):
    later([0.8], camera.stall)
    sink = ListSink()
    started = time.monotonic()
    with open_source(camera.url, live=LiveOptions(read_timeout=0.5)) as source, make_detector(
        tiny_onnx
    ) as det:
        summary = Pipeline(det, [source], [sink]).run()
    assert time.monotonic() - started < 4.0
    assert sink.results[-1].error == "stream lost: no frame for 0.5 s (read timeout)"
    assert summary.errors == 1 and len(summary.outages[source.label]) == 1


def test_reconnect_brings_the_stream_back_and_records_the_outage_and_its_lost_frames(tiny_onnx, camera):
    from rd_edge.runtime.sinks.metrics import MetricsSink

    sink = ListSink()
    metrics = MetricsSink(0, host="127.0.0.1", streams=["cam"])
    options = LiveOptions(read_timeout=1.0, reconnect=Backoff(initial=0.2, maximum=0.4))
    with open_source(camera.url, label="cam", live=options) as source, make_detector(tiny_onnx) as det:
        pipeline = Pipeline(det, [source], [sink, metrics])
        downtime = []
        later(
            [1.0, 2.0, 3.0],
            lambda: (downtime.append(time.time()), camera.go_away()),
            lambda: (camera.come_back(), downtime.append(time.time())),
            pipeline.stop,
        )
        summary = pipeline.run()
    errors = [r for r in sink.results if r.error is not None]
    assert len(errors) == 1 and errors[0].error.endswith("; reconnecting (--reconnect)")
    after = sink.results[sink.results.index(errors[0]) + 1]
    assert after.prediction is not None and after.item.outage is not None
    outage: Outage = after.item.outage
    went, back = downtime
    # From the last frame before to the first frame after: the downtime plus at most one back-off wait.
    assert went - 0.2 < outage.start <= went + 0.1 and back < outage.end < back + 1.5
    assert outage.rate == pytest.approx(20.0, rel=0.35)  # as measured: a loaded host delays the server too
    assert outage.frames_lost == round(outage.seconds * outage.rate) - 1 and outage.frames_lost >= 10
    assert outage.attempts >= 2  # refused while the server was away, then back
    assert summary.outages["cam"][0].end == outage.end and summary.errors == 1
    assert sum(r.prediction is not None for r in sink.results) > 25  # frames before and after
    value = metrics.registry.get_sample_value
    assert value("rd_edge_source_outages_total", {"source": "cam"}) == 1
    assert value("rd_edge_source_frames_lost_total", {"source": "cam"}) == outage.frames_lost
    assert value("rd_edge_source_up", {"source": "cam"}) == 1
    record = after.record()["outage"]
    assert record["end"].endswith("Z") and record["frames_lost"] == outage.frames_lost


@pytest.mark.parametrize(
    "seconds,rate,lost", [(2.0, 10.0, 19), (0.1, 10.0, 0), (0.25, 10.0, 1), (1.0, 25.0, 24), (0.0, 30.0, 0)]
)
def test_frames_lost_are_the_frames_due_strictly_inside_the_outage(seconds, rate, lost):
    """Last frame at t, next at t + 2 s, 10 fps: frames were due at t + 0.1 ... t + 1.9 -> 19 lost
    (the frame that ends the outage arrived; halves round as Python's round, 0.25 s -> 2.5 -> 2 -> 1)."""
    from rd_edge.runtime.live import Outage

    outage = Outage("read timeout", start=0.0, detected=0.5, rate=rate)
    outage.close(seconds)
    assert (outage.frames_lost, outage.seconds) == (lost, seconds)


def test_the_rate_of_an_outage_soon_after_a_reconnection_is_measured_since_that_reconnection(monkeypatch):
    """A 30 fps camera on a clock of the test's own: 60 frames, away 2 s (3 refused openings and
    the one that works, 0.5 s each), back for 10 frames, away 0.5 s. The second outage's rate
    is the 30 frames/s measured since the reconnection, not an average over the first outage
    (the last 30 arrivals, 20 before it and 10 after: 29 intervals in 2.97 s, 9.8 frames/s and
    4 frames lost instead of 15)."""
    from types import SimpleNamespace

    import numpy as np

    from rd_edge.runtime import live

    clock = [1000.0]
    monkeypatch.setattr(live, "time", SimpleNamespace(time=lambda: clock[0], monotonic=time.monotonic))

    class Cam:
        fps = 30.0

        def __init__(self, frames):
            self.left = frames

        def read(self):
            if self.left == 0:
                return None, None  # the stream ended
            self.left -= 1
            clock[0] += 1 / 30
            return np.zeros((4, 4, 3), np.uint8), None

        def release(self):
            pass

    openings = []

    def opener():
        openings.append(clock[0])
        clock[0] += 0.5  # the back-off wait, on the test's clock
        if len(openings) <= 3:
            raise OSError("not there")
        return Cam(10 if len(openings) == 4 else 40)

    loop = live.LiveLoop("cam", Cam(60), opener, read_timeout=5.0, reconnect=Backoff(0.001, 0.001))
    try:
        for _ in loop.frames():
            if len(loop.outages) == 2 and loop.outages[1].end is not None:
                break
    finally:
        loop.close()
    first, second = loop.outages
    assert first.rate == pytest.approx(30.0) and first.seconds == pytest.approx(2.0 + 1 / 30)
    assert first.frames_lost == 60 and first.attempts == 4
    assert second.rate == pytest.approx(30.0)  # the 10 frames since the reconnection
    assert second.seconds == pytest.approx(0.5 + 1 / 30) and second.frames_lost == 15
    assert second.start == pytest.approx(first.end + 9 / 30)  # the last of those 10 frames


def test_an_outage_is_exit_code_2_also_when_reconnect_brings_the_stream_back(tiny_onnx, camera, tmp_path):
    from rd_edge.runtime.cli import build_parser

    records_path = tmp_path / "r.jsonl"
    later([0.5, 1.2], camera.go_away, camera.come_back)
    rc = main(
        [str(tiny_onnx), f"line={camera.url}", "--reconnect", "--limit", "40", "--json", str(records_path)]
    )
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    errors = [r for r in records if r["error"] is not None]
    assert len(errors) == 1 and errors[0]["error"].endswith("; reconnecting (--reconnect)")
    assert records[-1]["error"] is None  # back: the run went on to its --limit
    assert any(r["outage"]["end"] for r in records if r["error"] is None and "outage" in r)
    assert rc == 2
    text = " ".join(build_parser().format_help().split())
    assert "exit code 2 (with --reconnect too, even when the source comes back)" in text
