"""Where the pipeline's results go; each sink is optional and they compose (a list).

- JsonlSink: one JSON object per line, flushed per result (an interrupted run keeps every record).
- MqttSink: one message per result on PREFIX/<stream>, QoS 1, retained (rd_edge.runtime.sinks.mqtt).
- EvidenceSink: anomalous frames with their map overlay + JSON, within a disk budget.
- MetricsSink: a Prometheus /metrics endpoint.

Sinks with optional dependencies (paho-mqtt, prometheus_client) import them when created.
"""
from ..pipeline import Result, Sink, SinkError
from .jsonl import JsonlSink

__all__ = ["JsonlSink", "Result", "Sink", "SinkError"]
