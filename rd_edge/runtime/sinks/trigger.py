"""Triggered inspection: a PLC asks a stream for one inspection and gets that frame's Result.

``TriggerBoard.request(stream)`` hands the live source a token (software trigger for a GenICam
camera in ``--trigger`` mode, else the next frame read) and returns a Future; the board is the
*last* sink, so when the Future resolves every other sink (the OPC UA nodes among them) already
has the result. A request that the run cannot answer any more fails with TriggerError.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future
from typing import Any, Dict, Sequence

from .base import Result, Sink, SinkError


class TriggerError(SinkError):
    """A trigger for an unknown or non-live stream, or one the run ended before answering."""


class TriggerBoard(Sink):
    """Trigger requests to live sources, answered with the Result of the frame taken."""

    name = "trigger"

    def __init__(self, sources: Sequence[Any]) -> None:
        self._sources = {s.label: s for s in sources}
        self._pending: Dict[int, "Future[Result]"] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False

    def request(self, stream: str) -> "Future[Result]":
        """Ask ``stream`` for one inspection (any thread); the Future gets its Result."""
        source = self._sources.get(stream)
        if source is None or not hasattr(source, "request_trigger"):
            live = [label for label, s in self._sources.items() if hasattr(s, "request_trigger")]
            raise TriggerError(
                f"no live stream {stream!r} to trigger; live streams: {', '.join(live) or 'none'}"
            )
        future: "Future[Result]" = Future()
        with self._lock:
            if self._closed:
                raise TriggerError("the run has ended: no more inspections")
            token = next(self._ids)
            self._pending[token] = future
        source.request_trigger(token)
        return future

    def write(self, result: Result) -> None:
        for token in result.item.triggers:
            with self._lock:
                future = self._pending.pop(token, None)
            if future is not None and not future.done():
                future.set_result(result)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(TriggerError("the run ended before this inspection"))
