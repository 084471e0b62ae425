"""Live sources that survive: cameras and streams with a read timeout, outages and reconnection.

A camera or a network stream runs until it is stopped; it never ends on its own. So when one
stops delivering frames (the server went away, a cable was pulled, a capture hangs) that is an
*outage*, never a silent end of the run:

- every read is bounded by ``read_timeout`` seconds: the blocking read runs in a thread of its
  own, so a stuck capture cannot hang the stream (the stuck read is abandoned and its capture
  released when it returns);
- the outage becomes an error item ("stream lost: ..."), which rd-infer records, warns about,
  counts (Prometheus ``rd_edge_source_outages_total``) and answers with a non-zero exit code;
- with ``reconnect`` the source reopens the capture with exponential back-off until it comes
  back or the run stops; the first frame after the outage carries the closed :class:`Outage`
  (start, end, frames lost = its duration x the frame rate measured before it, since the last
  reconnection);
- without ``reconnect`` the error item is the source's last.

The capture itself is anything with ``read() -> (frame or None, camera time or None)`` and
``release()``, made by an ``opener``: OpenCV (cameras, RTSP/HTTP, GStreamer) and Aravis
(GenICam) share this one loop.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Protocol, Tuple

import numpy as np

from rd_edge.core.errors import RdEdgeError
from rd_edge.core.images import to_bgr_uint8

DEFAULT_READ_TIMEOUT = 5.0  # seconds without a frame before a live source counts as lost


class Capture(Protocol):
    """An open camera or stream."""

    fps: Optional[float]  # the rate it announces, None if unknown

    def read(self) -> Tuple[Optional[np.ndarray], Optional[float]]:
        """(frame, camera timestamp in seconds or None); frame None: the stream ended or broke.
        May raise (the stream broke)."""

    def release(self) -> None:
        """Free the device or connection."""


class StreamLost(RdEdgeError):
    """A live source stopped delivering frames (end, error or read timeout)."""


@dataclass(frozen=True)
class Backoff:
    """Reconnection waits: ``initial`` seconds, doubled after each failed attempt up to ``maximum``."""

    initial: float = 0.5
    maximum: float = 10.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * 2.0, self.maximum)


@dataclass
class Outage:
    """One period without frames. ``start``: arrival of the last frame before it (time.time());
    ``end``: arrival of the first frame after it (None while it lasts or when the source ended
    in it); ``frames_lost``: frames the source would have delivered meanwhile (duration x
    ``rate``, the frame rate measured before the outage since the capture was last opened, else
    the announced one)."""

    reason: str
    start: float
    detected: float
    end: Optional[float] = None
    rate: Optional[float] = None
    attempts: int = 0  # reconnection attempts made
    frames_lost: Optional[int] = None

    @property
    def seconds(self) -> Optional[float]:
        return None if self.end is None else self.end - self.start

    def close(self, end: float) -> None:
        self.end = end
        if self.rate:
            # frames due strictly between the last frame before and the first after the outage
            self.frames_lost = max(0, int(round((end - self.start) * self.rate)) - 1)

    def record(self) -> Dict[str, Any]:
        """The JSON form (times as ISO 8601 UTC)."""
        out = asdict(self)
        for key in ("start", "detected", "end"):
            out[key] = iso_time(out[key])
        out["seconds"] = None if self.seconds is None else round(self.seconds, 3)
        out["rate"] = None if self.rate is None else round(self.rate, 3)
        return out

    def text(self) -> str:
        """One line for the summary."""
        until = f"-> {iso_time(self.end)} ({self.seconds:.1f} s)" if self.end is not None else "-> end of run"
        lost = (
            f", ~{self.frames_lost} frames lost at {self.rate:.1f} frames/s"
            if self.frames_lost is not None
            else ""
        )
        tries = f", {self.attempts} reconnection attempts" if self.attempts else ""
        return f"outage {iso_time(self.start)} {until}{lost}{tries}: {self.reason}"


def iso_time(t: Optional[float]) -> Optional[str]:
    """time.time() -> ISO 8601 UTC with milliseconds and a Z (None stays None)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TimedReader:
    """Runs a capture's blocking ``read`` in a thread of its own, one read per request, so the
    caller can wait with a timeout. After a timeout the reader is abandoned: the thread releases
    the capture once the stuck read returns (never while another thread reads it)."""

    def __init__(self, capture: Capture, name: str) -> None:
        self.capture = capture
        self._want = threading.Semaphore(0)
        self._answers: "queue.Queue[Tuple[str, Any]]" = queue.Queue(1)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f"rd-read-{name}", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            while True:
                self._want.acquire()
                if self._closed:
                    return
                try:
                    answer: Tuple[str, Any] = ("ok", self.capture.read())
                except Exception as exc:  # noqa: BLE001  a broken stream is an outage, not a crash
                    answer = ("error", exc)
                if self._closed:
                    return
                self._answers.put(answer)
        finally:
            self.capture.release()

    def read(self, timeout: float, interrupted: threading.Event) -> Tuple[np.ndarray, Optional[float]]:
        """The next frame; StreamLost on end, error or ``timeout`` seconds without a frame."""
        self._want.release()
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, value = self._answers.get(timeout=min(0.1, max(deadline - time.monotonic(), 0.001)))
                break
            except queue.Empty:
                if interrupted.is_set():
                    raise StreamLost("stopped") from None
                if time.monotonic() >= deadline:
                    raise StreamLost(f"no frame for {timeout:g} s (read timeout)") from None
        if kind == "error":
            raise StreamLost(f"read failed: {_describe(value)}")
        frame, stamp = value
        if frame is None:
            raise StreamLost("the stream ended (server or device gone)")
        return frame, stamp

    def close(self, wait: float = 2.0) -> None:
        """Stop the thread; it releases the capture (after a read still in progress returns)."""
        self._closed = True
        self._want.release()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=wait)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if isinstance(exc, RdEdgeError) and text else f"{type(exc).__name__}: {text}"


class RateMeter:
    """Frames per second over the last ``window`` arrivals (what the source really delivers);
    ``last``: the latest arrival, also across :meth:`restart`."""

    def __init__(self, window: int = 30) -> None:
        self._arrivals: Deque[float] = deque(maxlen=window)
        self.last: Optional[float] = None

    def tick(self, when: float) -> None:
        self._arrivals.append(when)
        self.last = when

    def restart(self) -> None:
        """Measure afresh (a reopened capture): arrivals from before an outage would average
        the outage into the rate."""
        self._arrivals.clear()

    def rate(self) -> Optional[float]:
        if len(self._arrivals) < 5:
            return None
        span = self._arrivals[-1] - self._arrivals[0]
        return (len(self._arrivals) - 1) / span if span > 0 else None


@dataclass
class Reading:
    """What the live loop hands on: a frame (with the camera's timestamp) or an outage's error."""

    frame: Optional[np.ndarray]
    camera_time: Optional[float] = None
    outage: Optional[Outage] = None  # the outage this error begins, or this frame ends (a copy)
    error: Optional[str] = None
    lost: int = 0  # frames the camera or the transport lost just before this one
    triggers: Tuple[int, ...] = ()  # trigger requests this frame (or error) answers


class LiveLoop:
    """The read loop every live source shares: timed reads, outages, reconnection with back-off,
    triggers.

    ``opener()`` returns a new Capture (raising when the device or server is not there);
    ``first``: the capture already opened (a source that cannot be opened at start is an error
    before the run). ``finite(frames_read)``: True when an end after that many frames is the
    normal end of a finite stream (a clip served over HTTP), not an outage. ``triggered``: read
    only when ``request()`` asks (a capture with ``trigger()`` gets a software trigger first);
    otherwise free-running, and a request is answered by the next frame read.
    """

    def __init__(
        self,
        label: str,
        first: Capture,
        opener: Callable[[], Capture],
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        reconnect: Optional[Backoff] = None,
        finite: Optional[Callable[[int], bool]] = None,
        triggered: bool = False,
    ) -> None:
        if not read_timeout > 0 or math.isinf(read_timeout):
            raise ValueError(f"read_timeout must be a number of seconds > 0, got {read_timeout!r}")
        self.label, self.opener = label, opener
        self.read_timeout, self.reconnect = float(read_timeout), reconnect
        self.finite = finite or (lambda frames: False)
        self.triggered = triggered
        self.announced_fps = first.fps
        self.outages: List[Outage] = []
        self.interrupted = threading.Event()
        self._requests: "queue.Queue[int]" = queue.Queue()
        self._reader: Optional[TimedReader] = TimedReader(first, label)
        self._meter = RateMeter()
        self._read = 0  # frames read from the current capture
        self._lost_seen = 0  # the current capture's lost count already reported

    def request(self, token: int) -> None:
        """Ask for one frame (any thread); the Reading that answers carries ``token``."""
        self._requests.put(token)

    def frames(self) -> Iterator[Reading]:
        """A Reading per frame, and one (with ``error``) when an outage begins. Ends after an
        unrecovered outage, at a finite end, or when interrupted."""
        pending: Optional[Outage] = None
        while not self.interrupted.is_set() and self._reader is not None:
            tokens = self._tokens(wait=self.triggered)
            if tokens is None:
                return
            try:
                frame, stamp = self._next(self._reader)
            except StreamLost as lost:
                if self.interrupted.is_set() or (
                    str(lost).startswith("the stream ended") and self.finite(self._read)
                ):
                    return
                outage = self._begin(str(lost))
                note = "; reconnecting (--reconnect)" if self.reconnect else ""
                yield Reading(
                    None, outage=replace(outage), error=f"stream lost: {lost}{note}", triggers=tokens
                )
                if self.reconnect is None or not self._reopen(self.reconnect, outage):
                    return
                pending = outage
                continue
            now = time.time()
            self._meter.tick(now)
            self._read += 1
            if pending is not None:
                pending.close(now)
            yield Reading(frame, stamp, pending and replace(pending), None, self._newly_lost(), tokens)
            pending = None

    def _next(self, reader: TimedReader) -> Tuple[np.ndarray, Optional[float]]:
        """One frame; in triggered mode the capture is software-triggered first."""
        trigger = getattr(reader.capture, "trigger", None) if self.triggered else None
        if trigger is not None:
            try:
                trigger()
            except Exception as exc:  # noqa: BLE001  a camera that cannot be triggered is lost
                raise StreamLost(f"trigger failed: {_describe(exc)}") from None
        return reader.read(self.read_timeout, self.interrupted)

    def _tokens(self, wait: bool) -> Optional[Tuple[int, ...]]:
        """Pending trigger requests; with ``wait``, block until there is one (None: interrupted)."""
        tokens: List[int] = []
        while wait and not tokens:
            try:
                tokens.append(self._requests.get(timeout=0.1))
            except queue.Empty:
                if self.interrupted.is_set():
                    return None
        while True:
            try:
                tokens.append(self._requests.get_nowait())
            except queue.Empty:
                return tuple(tokens)

    def _newly_lost(self) -> int:
        lost = int(getattr(self._reader.capture, "lost", 0)) if self._reader is not None else 0
        new, self._lost_seen = max(0, lost - self._lost_seen), lost
        return new

    def _begin(self, reason: str) -> Outage:
        self._drop_reader()
        now = time.time()
        rate = None if self.triggered else self._meter.rate() or self.announced_fps  # triggered: no rate
        outage = Outage(reason, start=self._meter.last or now, detected=now, rate=rate)
        self.outages.append(outage)
        return outage

    def _reopen(self, backoff: Backoff, outage: Outage) -> bool:
        """Reopen with back-off until it works (True) or the run stops (False)."""
        for delay in backoff.delays():
            if self.interrupted.wait(delay):
                return False
            outage.attempts += 1
            try:
                capture = self.opener()
            except Exception:  # noqa: BLE001  still away: wait longer
                continue
            if self.interrupted.is_set():
                capture.release()
                return False
            self._reader, self._read, self._lost_seen = TimedReader(capture, self.label), 0, 0
            self._meter.restart()  # the next outage's rate: measured on this capture only
            return True
        return False  # pragma: no cover  (delays() never ends)

    def _drop_reader(self) -> None:
        if self._reader is not None:
            self._reader.close(wait=0.0)  # a stuck read keeps its thread; it releases on return
            self._reader = None

    def close(self) -> None:
        self.interrupted.set()
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def frame_or_error(frame: np.ndarray) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """A capture's frame as BGR uint8, or the reason it cannot be converted."""
    try:
        return to_bgr_uint8(frame), None
    except RdEdgeError as exc:
        return None, str(exc)
