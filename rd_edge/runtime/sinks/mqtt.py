"""MQTT: one JSON message per result on PREFIX/<stream>, QoS 1, retained, in order, through outages.

    sink = MqttSink("mqtt://broker.local:1883/line1")   # topics line1/camera0, line1/camera1, ...

- Delivery: QoS 1 (at least once: after a reconnect a message may come twice; records carry
  ``stream`` and ``frame`` to deduplicate). Retained, so a dashboard that subscribes later gets
  each stream's last state at once.
- Order: messages go out in windows of ``window``; the next window only after the broker
  acknowledged the previous one, so a reconnect never reorders them.
- Outages: paho reconnects by itself with exponential back-off (``min_delay`` doubling up to
  ``max_delay`` seconds). Meanwhile results wait in a buffer of ``buffer`` messages (plus the
  window in flight); when it is full the oldest is dropped and counted. The pipeline never waits
  for the broker.
- ``close`` waits up to ``flush_timeout`` seconds for the buffer to drain; what is left is
  reported by ``summary()``.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from typing import Any, Deque, Optional, Set, Tuple
from urllib.parse import unquote, urlsplit

from rd_edge.core.optional import import_optional
from rd_edge.core.urls import mask_url

from .base import Result, Sink, SinkError

DEFAULT_PORT = 1883
MAX_PREFIX_BYTES = 65535 - 1024  # room for "/<stream>"


def parse_mqtt_url(url: str) -> Tuple[str, int, str, Optional[str], Optional[str]]:
    """'mqtt://[user:password@]host[:port]/prefix' -> (host, port, prefix, user, password)."""
    parts = urlsplit(url)
    prefix = parts.path.strip("/")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        port = -1
    if parts.scheme != "mqtt" or not parts.hostname or not prefix or port < 1 or "+" in prefix or "#" in url:
        raise SinkError(
            f"MQTT address {mask_url(url)!r} not understood: expected mqtt://HOST[:PORT]/PREFIX "
            f"(e.g. mqtt://127.0.0.1:1883/line1; PREFIX without + or #)"
        )
    if len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:  # paho refuses topics over 65535 bytes, in its thread
        raise SinkError(
            f"MQTT topic prefix of {len(prefix.encode('utf-8'))} bytes: at most {MAX_PREFIX_BYTES} "
            f"(MQTT topics are at most 65535 bytes, and the stream name follows the prefix)"
        )
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, prefix, user, password


class MqttSink(Sink):
    """Publishes ``Result.record()`` to PREFIX/<stream> (see the module docstring)."""

    name = "mqtt"

    def __init__(
        self,
        url: str,
        buffer: int = 10000,
        window: int = 20,
        min_delay: float = 1.0,
        max_delay: float = 30.0,
        flush_timeout: float = 10.0,
        keepalive: int = 30,
    ) -> None:
        if buffer < 1 or window < 1:
            raise SinkError(f"MQTT buffer and window must be >= 1, got {buffer} and {window}")
        mqtt = import_optional(
            "paho.mqtt.client",
            "the MQTT sink",
            "pip install paho-mqtt (or the rd-edge extra cpu, gpu or jetson)",
            SinkError,
        )
        self.host, self.port, self.prefix, user, password = parse_mqtt_url(url)
        self.address = f"mqtt://{self.host}:{self.port}/{self.prefix}"
        self.buffer, self.window, self.flush_timeout = buffer, window, flush_timeout
        self.sent = self.dropped = 0
        self.unsent = 0  # left at close
        self._pending: Deque[Tuple[str, str]] = deque()  # (topic, payload) not yet handed to paho
        self._acked: Set[int] = set()
        self._in_flight = 0
        self._connected = False
        self._closing = self._abandon = False
        self._cond = threading.Condition()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"rd-edge-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        if user is not None:
            client.username_pw_set(user, password)
        client.max_inflight_messages_set(window)
        client.reconnect_delay_set(min_delay=min_delay, max_delay=max_delay)  # exponential back-off
        client.on_connect, client.on_disconnect, client.on_publish = (
            self._on_connect,
            self._on_disconnect,
            self._on_publish,
        )
        self._client = client
        try:
            client.connect_async(self.host, self.port, keepalive=keepalive)
        except (OSError, ValueError) as exc:
            raise SinkError(f"cannot use MQTT broker {self.address}: {exc}") from exc
        client.loop_start()  # paho's network thread: connects, reconnects, resends what was in flight
        self._sender = threading.Thread(target=self._send_loop, daemon=True, name="rd-mqtt")
        self._sender.start()

    # --- paho callbacks (paho's thread) -------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._cond:
            self._connected = not getattr(reason_code, "is_failure", False)
            self._cond.notify_all()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    # --- the sink -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def write(self, result: Result) -> None:
        """Queue the result's message; never waits for the broker."""
        payload = json.dumps(result.record(), allow_nan=False)
        with self._cond:
            if self._closing:
                raise SinkError("MQTT sink is closed")
            if len(self._pending) >= self.buffer:  # broker away for long: keep the newest
                self._pending.popleft()
                self.dropped += 1
            self._pending.append((f"{self.prefix}/{result.stream}", payload))
            self._cond.notify_all()

    def _send_loop(self) -> None:
        """Hand messages to paho one window at a time, the next only when all were acknowledged."""
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: (
                        self._abandon
                        or (self._closing and not self._pending)
                        or (self._pending and self._connected)
                    )
                )
                if self._abandon or not self._pending:
                    return
                batch = [self._pending.popleft() for _ in range(min(self.window, len(self._pending)))]
                self._in_flight = len(batch)
            # paho keeps a message it could not send (connection lost meanwhile) and sends it after
            # reconnecting, in order, so each message is handed over exactly once.
            mids = [self._client.publish(topic, payload, qos=1, retain=True).mid for topic, payload in batch]
            with self._cond:
                self._cond.wait_for(lambda: self._abandon or all(m in self._acked for m in mids))
                if self._abandon:
                    return
                self._acked.difference_update(mids)
                self.sent += len(batch)
                self._in_flight = 0

    def close(self) -> None:
        """Wait up to flush_timeout for the buffer to drain, then disconnect. Idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._sender.join(self.flush_timeout)
        with self._cond:
            self._abandon = True
            self.unsent = len(self._pending) + self._in_flight
            self._cond.notify_all()
        self._sender.join(1.0)
        self._client.disconnect()
        self._client.loop_stop()

    def summary(self) -> Optional[str]:
        text = f"mqtt: {self.sent} messages delivered to {self.address}"
        if self.dropped:
            text += f", {self.dropped} dropped (oldest first: the broker was away longer than the buffer of {self.buffer})"
        if self.unsent:
            text += f", {self.unsent} not delivered (broker unreachable at the end)"
        return text
