"""Prometheus metrics at http://HOST:PORT/metrics while rd-infer runs (prometheus_client).

    rd_edge_frames_total{source}          frames with a result (scored or failed)
    rd_edge_anomalies_total{source}       frames judged anomalous
    rd_edge_errors_total{source}          frames that failed (or whose evidence could not be saved)
    rd_edge_dropped_frames_total{source}  live sources: stale frames skipped for the newest
    rd_edge_stage_seconds{stage}          histogram: each frame's time in decode, preprocess,
                                          inference, postprocess (its batch's share) and sink
    rd_edge_latency_seconds{source}       histogram: capture to result written
    rd_edge_last_score{source}            the newest frame's normalized score (threshold at 0.5)
    rd_edge_source_outages_total{source}  live sources: outages (stream lost: end, error, read timeout)
    rd_edge_source_frames_lost_total{source}  frames an outage cost (its duration x the frame rate)
    rd_edge_source_up{source}             1 while a live source delivers frames, 0 during an outage
    rd_edge_drift_ks{source}              KS statistic of the recent OK scores against the
                                          calibration's normal scores (rd_edge.core.drift)
    rd_edge_drifting{source}              1 while that drift is over the documented level

The metrics live in a registry of their own (not prometheus_client's global one), so several
sinks, e.g. in tests, never clash.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

from rd_edge.core.optional import import_optional

from .base import Result, Sink, SinkError

# 1 ms .. 10 s: per-frame stage times on a Jetson (a few ms) up to a CPU with a large model.
BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class MetricsSink(Sink):
    """Serves the metrics above on ``port`` (0: a free one, then ``self.port``) of ``host`` (this
    machine only by default; "0.0.0.0": every interface) until closed.
    ``streams``: source labels to export at 0 from the start (a dashboard sees them at once)."""

    name = "metrics"

    def __init__(self, port: int, host: str = "127.0.0.1", streams: Sequence[str] = ()) -> None:
        prom = import_optional(
            "prometheus_client",
            "the Prometheus metrics endpoint",
            "pip install prometheus_client (or the rd-edge extra cpu, gpu or jetson)",
            SinkError,
        )
        self.registry = registry = prom.CollectorRegistry()
        per_source = dict(labelnames=["source"], registry=registry)
        self.frames = prom.Counter("rd_edge_frames", "Frames with a result (scored or failed)", **per_source)
        self.anomalies = prom.Counter("rd_edge_anomalies", "Frames judged anomalous", **per_source)
        self.errors = prom.Counter(
            "rd_edge_errors", "Frames that failed or whose evidence was not saved", **per_source
        )
        self.dropped = prom.Counter(
            "rd_edge_dropped_frames", "Live sources: stale frames skipped for the newest", **per_source
        )
        self.latency = prom.Histogram(
            "rd_edge_latency_seconds", "Capture to result written", buckets=BUCKETS, **per_source
        )
        self.score = prom.Gauge(
            "rd_edge_last_score", "Newest normalized score (threshold at 0.5)", **per_source
        )
        self.outages = prom.Counter(
            "rd_edge_source_outages", "Live sources: outages (stream lost)", **per_source
        )
        self.frames_lost = prom.Counter(
            "rd_edge_source_frames_lost", "Frames lost in outages (duration x rate)", **per_source
        )
        self.up = prom.Gauge(
            "rd_edge_source_up", "1 while a live source delivers frames, 0 in an outage", **per_source
        )
        self.drift = prom.Gauge(
            "rd_edge_drift_ks", "KS statistic: recent OK scores vs calibration normals", **per_source
        )
        self.drifting = prom.Gauge(
            "rd_edge_drifting", "1 while the score drift is over its level", **per_source
        )
        self.stages = prom.Histogram(
            "rd_edge_stage_seconds",
            "Per-frame time in each pipeline stage",
            labelnames=["stage"],
            buckets=BUCKETS,
            registry=registry,
        )
        for stream in streams:
            for metric in (
                self.frames,
                self.anomalies,
                self.errors,
                self.dropped,
                self.outages,
                self.frames_lost,
            ):
                metric.labels(stream)
            self.up.labels(stream).set(1)
        try:
            self._server, self._thread = prom.start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise SinkError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc} "
                f"(another program on that port? pick another with --metrics-port)"
            ) from exc
        self.port = self._server.server_address[1]

    def write(self, result: Result) -> None:
        source = result.stream
        self.frames.labels(source).inc()
        if result.dropped_before:
            self.dropped.labels(source).inc(result.dropped_before)
        outage = result.item.outage
        if outage is not None and outage.end is None:  # it begins
            self.outages.labels(source).inc()
            self.up.labels(source).set(0)
        elif outage is not None:  # the first frame after it
            self.frames_lost.labels(source).inc(outage.frames_lost or 0)
            self.up.labels(source).set(1)
        p = result.prediction
        if p is None or result.extra.get("evidence_error"):
            self.errors.labels(source).inc()
        if p is not None:
            self.anomalies.labels(source).inc(int(p.is_anomalous))
            self.score.labels(source).set(p.normalized_score)
        drift = result.extra.get("drift")
        if drift:
            self.drift.labels(source).set(drift["ks"])
            self.drifting.labels(source).set(int(drift["drifting"]))
        for stage, seconds in result.seconds.items():
            self.stages.labels(stage).observe(seconds)
        self.latency.labels(source).observe(max(time.time() - result.captured_at, 0.0))

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def summary(self) -> Optional[str]:
        return None
