"""Prometheus endpoint: per-source frames, anomalies, errors, drops and per-stage latency, scraped over HTTP."""

import urllib.request

import pytest

pytest.importorskip("prometheus_client")
from pipeline_parts import FrameSource, ListSink, make_detector  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from rd_edge.runtime.pipeline import Pipeline  # noqa: E402
from rd_edge.runtime.sinks import Sink, SinkError  # noqa: E402
from rd_edge.runtime.sinks.metrics import MetricsSink  # noqa: E402


class Scraper(Sink):
    """Listed before the MetricsSink, so its close() runs while the endpoint still serves."""

    def __init__(self, port_of):
        self.port_of, self.samples = port_of, {}

    def close(self):
        url = f"http://127.0.0.1:{self.port_of()}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_per_source_and_time_each_stage(tiny_onnx):
    metrics = MetricsSink(0, host="127.0.0.1", streams=["line", "cam", "idle"])
    scraper, results = Scraper(lambda: metrics.port), ListSink()
    sources = [
        FrameSource("line", 6, black={1, 4}),
        FrameSource("cam", 60, period=0.002, live=True),
        FrameSource("idle", 0),
    ]
    with make_detector(tiny_onnx, delay=0.01, fail_on_black=True) as det:
        summary = Pipeline(det, sources, [results, scraper, metrics]).run()
    s = scraper.samples
    assert value(s, "rd_edge_frames_total", source="line") == 6
    assert value(s, "rd_edge_errors_total", source="line") == 2  # the two black frames
    assert value(s, "rd_edge_frames_total", source="cam") == len(results.by_stream("cam"))
    assert value(s, "rd_edge_dropped_frames_total", source="cam") == summary.streams["cam"].dropped > 0
    assert ("rd_edge_frames_total", (("source", "idle"),)) in s  # exported at 0 from the start
    anomalous = sum(r.prediction.is_anomalous for r in results.results if r.prediction is not None)
    assert sum(value(s, "rd_edge_anomalies_total", source=k) for k in ("line", "cam")) == anomalous
    for stage in ("decode", "preprocess", "inference", "postprocess", "sink"):
        assert value(s, "rd_edge_stage_seconds_count", stage=stage) == summary.frames
    # the slow runner: every frame's inference share is >= 10 ms / batch size
    assert (
        value(s, "rd_edge_stage_seconds_sum", stage="inference")
        >= 0.01 * summary.frames / det.batch_size * 0.9
    )
    assert value(s, "rd_edge_latency_seconds_count", source="line") == 6


def test_a_port_in_use_is_a_clear_error():
    first = MetricsSink(0, host="127.0.0.1")
    try:
        with pytest.raises(SinkError, match="cannot serve metrics on 127.0.0.1"):
            MetricsSink(first.port, host="127.0.0.1")
    finally:
        first.close()
