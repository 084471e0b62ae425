"""A real MQTT broker for tests: Debian's mosquitto on 127.0.0.1 and a free port, plus a subscriber."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

from ports import free_ports

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)


class Broker:
    """mosquitto with a generated config; persistence on, so a restart keeps persistent sessions
    (and their queued QoS 1 messages) the way a production broker does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (self.port,) = free_ports(1)
        self.config = folder / "mosquitto.conf"
        # ``user``: mosquitto started as root drops to user "mosquitto", which cannot write here.
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
            f"persistence true\npersistence_location {folder}/\n"
        )
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 10.0) -> "Broker":
        log = open(self.folder / "mosquitto.log", "ab")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()}")
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence database and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def url(self, prefix: str) -> str:
        return f"mqtt://127.0.0.1:{self.port}/{prefix}"


class Subscriber:
    """A paho client with a persistent session (clean_session=False, QoS 1 subscription): what a
    line's MES would use, so messages published while it reconnects are queued for it."""

    def __init__(self, port: int, topic: str, client_id: str = "rd-edge-test-subscriber") -> None:
        import paho.mqtt.client as mqtt

        self.topic = topic
        self.live: List[dict] = []  # forwarded as they were published
        self.retained: Dict[str, dict] = {}  # replayed on subscribe: the topics' last state
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("subscription not acknowledged")

    def _on_message(self, client, userdata, message) -> None:
        record = json.loads(message.payload)
        record["_topic"] = message.topic
        with self._lock:
            if message.retain:
                self.retained[message.topic] = record
            else:
                self.live.append(record)

    def wait_for(self, count: int, timeout: float = 15.0) -> List[dict]:
        """The live messages once ``count`` distinct (stream, frame) arrived, or at the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len({(r["stream"], r["frame"]) for r in self.live}) >= count:
                    break
            time.sleep(0.02)
        time.sleep(0.2)  # late duplicates, if any
        with self._lock:
            return list(self.live)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
