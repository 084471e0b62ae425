"""What the station page shows, kept by a sink in the pipeline's sink thread.

Cheap per result (counters, a score point, references to the newest frame): rendering the live
overlay and encoding it as JPEG happens only when a browser asks for it, at most ``live_fps``
times a second per stream whatever the number of viewers, in the web server's threads, on the
frame scaled down to what the page can show (LIVE_PIXELS). No page open: no rendering at all.
What a page polls is kept small: the score chart's new points only (``snapshot(since)``), OK
frames as thumbnails, the review folder's labels read again only when it changed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rd_edge.core import review
from rd_edge.core.errors import RdEdgeError

from ..pipeline import StreamStats
from ..sinks.base import Result, Sink

HISTORY_SECONDS = 300.0  # the score chart: the last 5 minutes
HISTORY_POINTS = 600  # at most this many points per stream go to the page
RECENT_OK = 8  # OK frames offered for "missed defect"
GALLERY = 24  # newest NG entries listed per stream
# The live overlay is shown at most 300 CSS px high (station.css): rendered on the frame scaled to
# at most 1280x720 (enough for that on a 2x screen), not on a 5 MP camera's full frame.
LIVE_PIXELS = 1280 * 720
THUMB_SIDE = 320  # recent OK frames: shown 150x100 CSS px, sent at most 320 px wide or high


@dataclass
class _Frame:
    """A frame kept by reference (sources read a new array per frame: no copy)."""

    index: int
    frame: np.ndarray
    prediction: Any
    record: dict[str, Any]


@dataclass
class _Stream(StreamStats):  # frames, anomalies (NG), errors; and:
    ok: int = 0
    times: deque[float] = field(default_factory=lambda: deque(maxlen=60))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    # (point number, time, score, NG) of the last HISTORY_SECONDS
    history: deque[tuple[int, float, float, bool]] = field(default_factory=lambda: deque(maxlen=20000))
    newest: _Frame | None = None
    recent_ok: deque[_Frame] = field(default_factory=lambda: deque(maxlen=RECENT_OK))
    drift: dict[str, Any] | None = None
    jpeg: tuple[int, bytes, float] | None = None  # (frame index, bytes, when rendered)


class Station:
    """The station's state: live streams (fed by ``write``), the evidence folder (gallery) and
    the review folder (marks). ``detector``: renders overlays; None for an evidence folder alone."""

    def __init__(
        self,
        evidence: Path | None,
        review_dir: Path,
        detector: Any = None,
        streams: Sequence[str] = (),
        live_fps: float = 5.0,
        title: str = "rd-edge station",
    ) -> None:
        self.evidence = None if evidence is None else Path(evidence)
        self.review_dir = Path(review_dir)
        self.detector = detector
        self.live_fps = float(live_fps)
        self.title = title
        self.live = detector is not None
        self.finished = False
        self.streams: dict[str, _Stream] = {s: _Stream() for s in streams}
        self.threshold = None if detector is None else float(detector.threshold)
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._points = 0  # chart points so far, all streams: a page asks for those after its last
        self._labels: tuple[Any, dict[str, str]] | None = None  # (review folder's state, labels)
        self.run_id = format(int(time.time() * 1000), "x")  # in image URLs the browser may cache

    # --- fed by the pipeline (sink thread) ----------------------------------------------------

    def write(self, result: Result) -> None:
        record = result.record()
        with self._lock:
            now = time.time()
            s = self.streams.setdefault(result.stream, _Stream())
            s.frames += 1
            s.times.append(time.perf_counter())
            p, image = result.prediction, result.item.frame
            if p is None or image is None:
                s.errors += 1
                return
            s.anomalies += int(p.is_anomalous)
            s.ok += int(not p.is_anomalous)
            s.latencies.append(float(p.timings["total_ms"]))
            self._points += 1
            s.history.append((self._points, now, float(p.score), bool(p.is_anomalous)))
            while s.history[0][1] < now - HISTORY_SECONDS:
                s.history.popleft()
            kept = _Frame(result.index, image, p, record)
            s.newest = kept
            if not p.is_anomalous:
                s.recent_ok.append(kept)
            if result.extra.get("drift") is not None:
                s.drift = result.extra["drift"]

    # --- read by the web server ---------------------------------------------------------------

    def snapshot(self, since: int | None = None) -> dict[str, Any]:
        """Everything the page shows but images: per-stream counters, rates, chart points, drift.
        ``since``: the "points" of the page's previous snapshot; only chart points after it are
        sent (the page keeps the last 5 minutes), else those of the last 5 minutes."""
        with self._lock:
            now, points = time.time(), self._points
            streams = {name: self._stream_view(name, s, since) for name, s in sorted(self.streams.items())}
        if not self.live:  # an evidence folder: its streams are its subfolders
            for name in self._evidence_streams():
                streams.setdefault(name, {"name": name, "live": False})
        return {
            "title": self.title,
            "live": self.live,
            "finished": self.finished,
            "threshold": self.threshold,
            "live_fps": self.live_fps,
            "now": now,
            "points": points,
            "history_seconds": HISTORY_SECONDS,
            "streams": list(streams.values()),
        }

    def _stream_view(self, name: str, s: _Stream, since: int | None) -> dict[str, Any]:
        span = s.times[-1] - s.times[0] if len(s.times) > 1 else 0.0
        judged = s.ok + s.anomalies
        points = []
        for n, t, v, ng in reversed(s.history):  # newest first: a page's poll reads only what is new
            if since is not None and n <= since:
                break
            points.append((t, v, ng))
        points.reverse()
        step = max(1, len(points) // HISTORY_POINTS)
        return {
            "name": name,
            "live": True,
            "frames": s.frames,
            "ok": s.ok,
            "ng": s.anomalies,
            "errors": s.errors,
            "yield": s.ok / judged if judged else None,
            "fps": (len(s.times) - 1) / span if span > 0 else None,
            "latency_ms": float(np.median(s.latencies)) if s.latencies else None,
            "newest": s.newest.index if s.newest else None,
            "history": [[round(t, 2), v, ng] for i, (t, v, ng) in enumerate(points) if ng or i % step == 0],
            "drift": s.drift,
        }

    def live_jpeg(self, stream: str) -> tuple[int, bytes] | None:
        """The newest frame's overlay as JPEG (frame index, bytes); rendered at most live_fps
        times a second per stream whatever the number of viewers."""
        import cv2

        with self._lock:
            s = self.streams.get(stream)
            newest, cached = (s.newest, s.jpeg) if s else (None, None)
        if newest is None or not hasattr(self.detector, "render"):  # none, or a remote model: no overlay
            return None
        with self._render_lock:
            if cached and (cached[0] == newest.index or time.time() - cached[2] < 1.0 / self.live_fps):
                return cached[0], cached[1]
            from rd_edge.core.images import downscale_to_budget

            overlay = self.detector.render(downscale_to_budget(newest.frame, LIVE_PIXELS), newest.prediction)
            ok, data = cv2.imencode(".jpg", overlay, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if not ok:
                return None
            jpeg = (newest.index, data.tobytes(), time.time())
            with self._lock:
                self.streams[stream].jpeg = jpeg
        return jpeg[0], jpeg[1]

    def recent_ok(self, stream: str) -> list[dict[str, Any]]:
        with self._lock:
            s = self.streams.get(stream)
            frames = list(s.recent_ok) if s else []
        marks = self.labels()
        return [
            {
                "id": f"ok:{stream}:{f.index}",
                "frame": f.index,
                "score": f.record["score"],
                "time": f.record["time"],
                "image": f"/api/ok/{stream}/{f.index}.jpg?run={self.run_id}",
                "review": marks.get(review.mark_key(stream, f"frame{f.index:08d}")),
            }
            for f in reversed(frames)
        ]

    def ok_jpeg(self, stream: str, index: int) -> bytes | None:
        """A recent OK frame as a JPEG thumbnail (at most THUMB_SIDE px wide or high)."""
        import cv2

        found = self._find_ok(stream, index)
        if found is None:
            return None
        k = -(-max(found.frame.shape[:2]) // THUMB_SIDE)  # a whole factor: OpenCV's fast INTER_AREA
        thumb = found.frame
        if k > 1:
            thumb = cv2.resize(thumb, None, fx=1.0 / k, fy=1.0 / k, interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 80])
        return data.tobytes() if ok else None

    def _find_ok(self, stream: str, index: int) -> _Frame | None:
        with self._lock:
            s = self.streams.get(stream)
            return next((f for f in (s.recent_ok if s else ()) if f.index == index), None)

    # --- evidence folder ----------------------------------------------------------------------

    def _evidence_streams(self) -> list[str]:
        if self.evidence is None or not self.evidence.is_dir():
            return []
        return sorted(p.name for p in self.evidence.iterdir() if p.is_dir() and not p.name.startswith("."))

    def gallery(self, stream: str, limit: int = GALLERY) -> list[dict[str, Any]]:
        """The newest complete evidence entries of ``stream`` (the JSON marks one complete)."""
        folder = self._stream_folder(stream)
        if folder is None:
            return []
        entries, marks = [], self.labels()
        for meta in sorted(folder.glob("*.json"), reverse=True)[:limit]:
            try:
                record = json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # removed by the budget meanwhile
            entries.append(
                {
                    "id": f"ev:{stream}:{meta.stem}",
                    "entry": meta.stem,
                    "frame": record.get("frame"),
                    "score": record.get("score"),
                    "time": record.get("time"),
                    "image": f"/evidence/{stream}/{meta.stem}.jpg",
                    "original": meta.with_suffix(".png").is_file(),
                    "review": marks.get(review.mark_key(stream, meta.stem)),
                }
            )
        return entries

    def _stream_folder(self, stream: str) -> Path | None:
        if self.evidence is None or stream not in self._evidence_streams():
            return None
        return self.evidence / stream

    def evidence_file(self, stream: str, name: str) -> Path | None:
        """A file of the evidence folder by stream and name, never outside it."""
        folder = self._stream_folder(stream)
        if folder is None or "/" in name or "\\" in name or name.startswith("."):
            return None
        path = folder / name
        return path if path.is_file() else None

    # --- review --------------------------------------------------------------------------------

    def mark(self, item: str, label: str) -> dict[str, Any]:
        """Save a mark for ``item`` ("ev:<stream>:<entry>" or "ok:<stream>:<frame>"); it becomes
        the frame's label ("new": False when that was its label already and nothing was written)."""
        kind, _, rest = item.partition(":")
        stream, _, name = rest.rpartition(":")
        if kind == "ev":
            if label not in (review.FALSE_ALARM, review.CONFIRMED):
                raise review.ReviewError(
                    f"an NG frame is marked {review.FALSE_ALARM} or {review.CONFIRMED}, not {label}"
                )
            entry, png, record = self._evidence_item(stream, name)
        elif kind == "ok":
            if label != review.MISSED:
                raise review.ReviewError(f"an OK frame is marked {review.MISSED}, not {label}")
            entry, png, record = self._ok_item(stream, name)
        else:
            raise review.ReviewError(
                f"unknown item {item!r}: expected ev:<stream>:<entry> or ok:<stream>:<frame>"
            )
        path, new = review.write_mark(self.review_dir, label, stream, entry, png, record)
        self._labels = None
        return {"saved": str(path), "new": new, "label": label}

    def labels(self) -> dict[str, str]:
        """review.labels of the review folder, read again only when one of its label folders
        changed (each poll of the gallery asks; a shift's marks are many files)."""
        state: list[int | None] = []
        for label in review.REVIEW_LABELS:
            try:
                state.append(os.stat(self.review_dir / label).st_mtime_ns)
            except OSError:
                state.append(None)
        key = tuple(state)
        cached = self._labels
        if cached is not None and cached[0] == key:
            return cached[1]
        found = review.labels(self.review_dir)
        # a folder changed within the last 2 s may change again within its clock's resolution,
        # unseen: such a state is read again at the next call
        recent = max((t for t in state if t is not None), default=0) > (time.time() - 2.0) * 1e9
        self._labels = None if recent else (key, found)
        return found

    def _evidence_item(self, stream: str, name: str) -> tuple[str, bytes, dict[str, Any]]:
        meta, original = self.evidence_file(stream, f"{name}.json"), self.evidence_file(stream, f"{name}.png")
        if meta is None:
            raise review.ReviewError(f"no evidence entry {stream}/{name} (removed by the disk budget?)")
        if original is None:
            raise review.ReviewError(
                f"evidence entry {stream}/{name} has no original frame (only the overlay); "
                f"rd-infer --station keeps them"
            )
        return name, original.read_bytes(), json.loads(meta.read_text(encoding="utf-8"))

    def _ok_item(self, stream: str, name: str) -> tuple[str, bytes, dict[str, Any]]:
        import cv2

        found = self._find_ok(stream, int(name)) if name.isdigit() else None
        if found is None:
            raise review.ReviewError(
                f"OK frame {name} of {stream} is no longer kept (only the last {RECENT_OK})"
            )
        ok, data = cv2.imencode(".png", found.frame, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise RdEdgeError("PNG encoding failed")
        return f"frame{found.index:08d}", data.tobytes(), found.record


class StationSink(Sink):
    """The pipeline's side of the station: hands each result to it; marks the end."""

    name = "station"

    def __init__(self, station: Station) -> None:
        self.station = station

    def write(self, result: Result) -> None:
        self.station.write(result)

    def close(self) -> None:
        self.station.finished = True
