"""Where the pipeline's results go; each sink is optional and they compose (a list).

- Sink, Result, SinkError (sinks.base): the protocol every sink follows.
- ConsoleSink (sinks.console): rd-infer's result lines, progress, PNGs, annotated videos, --show.
- JsonlSink: one JSON object per line, flushed per result (an interrupted run keeps every record).
- MqttSink: one message per result on PREFIX/<stream>, QoS 1, retained (rd_edge.runtime.sinks.mqtt).
- EvidenceSink: anomalous frames with their map overlay + JSON, within a disk budget.
- MetricsSink: a Prometheus /metrics endpoint.

Sinks with optional dependencies (paho-mqtt, prometheus_client) import them when created.
"""

from .base import Result, Sink, SinkError
from .console import ConsoleSink
from .jsonl import JsonlSink

__all__ = ["ConsoleSink", "JsonlSink", "Result", "Sink", "SinkError"]
