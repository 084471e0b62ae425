"""MQTT sink against a real broker (mosquitto): every record once, in order, retained, across a restart."""

import json
import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("paho.mqtt.client")
from broker import MOSQUITTO, Broker, Subscriber  # noqa: E402
from pipeline_parts import FrameSource, make_detector  # noqa: E402

from rd_edge.runtime.cli import main  # noqa: E402
from rd_edge.runtime.pipeline import Pipeline  # noqa: E402
from rd_edge.runtime.sinks import SinkError  # noqa: E402
from rd_edge.runtime.sinks.mqtt import MqttSink, parse_mqtt_url  # noqa: E402

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (.ci/run installs it)")


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def write_clip(path, n, seed):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 30))
    rng = np.random.default_rng(seed)
    for _ in range(n):
        writer.write(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    writer.release()
    return path


def frames_by_stream(messages):
    streams = {}
    for m in messages:
        streams.setdefault(m["stream"], []).append(m["frame"])
    return streams


def test_rd_infer_publishes_every_record_once_in_order_and_retains_the_last(tiny_onnx, broker, tmp_path):
    a, b = write_clip(tmp_path / "a.avi", 5, 0), write_clip(tmp_path / "b.avi", 4, 1)
    subscriber = Subscriber(broker.port, "line1/#")
    records_path = tmp_path / "r.jsonl"
    try:
        rc = main(
            [
                str(tiny_onnx),
                str(a),
                str(b),
                "--mqtt",
                broker.url("line1"),
                "--json",
                str(records_path),
                "--batch-size",
                "3",
                "--quiet",
            ]
        )
        messages = subscriber.wait_for(9)
    finally:
        subscriber.close()
    assert rc == 0
    assert frames_by_stream(messages) == {"a": [0, 1, 2, 3, 4], "b": [0, 1, 2, 3]}  # once each, in order
    assert {m["_topic"] for m in messages} == {"line1/a", "line1/b"}
    written = [json.loads(line) for line in records_path.read_text().splitlines()]
    assert sorted(
        ({k: v for k, v in m.items() if k != "_topic"} for m in messages),
        key=lambda r: (r["stream"], r["frame"]),
    ) == sorted(written, key=lambda r: (r["stream"], r["frame"]))
    late = Subscriber(broker.port, "line1/#", client_id="late-dashboard")  # subscribes after the run
    try:
        deadline = time.monotonic() + 5
        while len(late.retained) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        late.close()
    assert {t: r["frame"] for t, r in late.retained.items()} == {"line1/a": 4, "line1/b": 3}


@pytest.mark.parametrize("buffer", [10000, 8])
def test_a_broker_restart_loses_nothing_beyond_the_buffer(tiny_onnx, broker, buffer):
    """Stop the broker mid-run for ~1 s (~30 frames), restart it on the same port."""
    n = 50
    subscriber = Subscriber(broker.port, "line2/#")
    sink = MqttSink(broker.url("line2"), buffer=buffer, min_delay=0.1, max_delay=0.4)
    outage = {}

    def restart_broker_mid_run():
        subscriber.wait_for(10, timeout=20)
        broker.stop()
        outage["down"] = time.monotonic()
        time.sleep(1.0)
        broker.start()
        outage["up"] = time.monotonic()

    restarter = threading.Thread(target=restart_broker_mid_run, daemon=True)
    restarter.start()
    try:
        with make_detector(tiny_onnx) as det:
            summary = Pipeline(det, [FrameSource("cam", n, period=0.03)], [sink]).run()
        restarter.join(20)
        messages = subscriber.wait_for(n - sink.dropped)
    finally:
        subscriber.close()
    assert "up" in outage and summary.frames == n and sink.unsent == 0
    first_seen = list(dict.fromkeys(m["frame"] for m in messages))  # QoS 1: a resend may repeat one
    missing = sorted(set(range(n)) - set(first_seen))
    assert first_seen == sorted(first_seen)  # in order across the restart
    assert len(missing) == sink.dropped  # lost = exactly what the full buffer dropped
    if buffer >= n:
        assert missing == []
    else:
        assert sink.dropped > 0 and missing == list(
            range(missing[0], missing[0] + len(missing))
        )  # oldest first
        assert f"{sink.dropped} dropped" in summary.text()


def test_bad_addresses_are_clear_errors():
    assert parse_mqtt_url("mqtt://user:pw@host:1884/a/b") == ("host", 1884, "a/b", "user", "pw")
    assert parse_mqtt_url("mqtt://host/line")[:3] == ("host", 1883, "line")
    for bad in (
        "host:1883/line",
        "mqtt://host:1883",
        "mqtt://host/line/#",
        "http://host/line",
        "mqtt://host:99999/x",
    ):
        with pytest.raises(SinkError, match="expected mqtt://HOST"):
            parse_mqtt_url(bad)


def test_rd_infer_with_a_bad_mqtt_address_is_one_line_and_exit_1(tiny_onnx, tmp_path, capsys):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((24, 32, 3), np.uint8))
    assert main([str(tiny_onnx), str(image), "--mqtt", "broker:1883"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: MQTT address 'broker:1883' not understood") and err.count("\n") == 1


def test_a_full_buffer_drops_the_oldest_records_and_keeps_the_newest():
    """Buffer of 3, no broker (a closed port): five records queued, the two oldest dropped, the
    queue holds frames 2, 3, 4 in order (what is published once the broker is back)."""
    from ports import free_ports

    from rd_edge.runtime.sinks.base import Result
    from rd_edge.runtime.sources import SourceItem

    sink = MqttSink(f"mqtt://127.0.0.1:{free_ports()[0]}/line", buffer=3, flush_timeout=0.1)
    try:
        for i in range(5):
            sink.write(
                Result("cam", i, SourceItem(f"f{i}.png", f"f{i}", None, "unreadable"), error="unreadable")
            )
        queued = [json.loads(payload)["frame"] for _, payload in sink._pending]  # not yet handed to paho
        assert (queued, sink.dropped) == ([2, 3, 4], 2)
    finally:
        sink.close()
