"""What every sink shares: the ``Result`` of one frame, the ``Sink`` protocol, ``SinkError``.

The pipeline (rd_edge.runtime.pipeline) hands each Result to every sink in one thread, in
per-source capture order; ``Result.record()`` is the JSON object all of them write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from rd_edge.core.errors import RdEdgeError

from ..detector import Prediction
from ..live import iso_time
from ..sources import SourceItem


@dataclass
class Result:
    """One captured frame's outcome: a prediction or an error, never both."""

    stream: str  # the source's label ("camera0", a video's stem, ...)
    index: int  # capture index within the source; dropped frames count, so gaps show drops
    item: SourceItem
    prediction: Optional[Prediction] = None
    error: Optional[str] = None
    captured_at: float = 0.0  # time.time() when the frame was read
    dropped_before: int = 0  # live sources: frames dropped between the previous result and this
    seconds: Dict[str, float] = field(default_factory=dict)  # this frame's share of each stage
    extra: Dict[str, Any] = field(default_factory=dict)  # fields sinks add to the record (evidence)

    def record(self) -> Dict[str, Any]:
        """The JSON object every sink writes: names the source and frame; scores null on error."""
        base = {
            "source": self.item.name,
            "stream": self.stream,
            "frame": self.index,
            "time": iso_time(self.captured_at),
        }
        p = self.prediction
        scores: Dict[str, Any]
        if p is None:
            scores = {
                "score": None,
                "normalized_score": None,
                "is_anomalous": None,
                "latency_ms": None,
                "error": self.error or "unknown error",
            }
        else:
            scores = {
                "score": float(p.score),
                "normalized_score": float(p.normalized_score),
                "is_anomalous": bool(p.is_anomalous),
                "latency_ms": round(float(p.timings["total_ms"]), 3),
                "error": None,
            }
        live: Dict[str, Any] = {}
        if self.item.camera_time is not None:  # the camera's clock (GigE: since power-up, or PTP time)
            live["camera_timestamp"] = round(self.item.camera_time, 6)
        if self.item.outage is not None:  # the outage this error begins, or this frame ends
            live["outage"] = self.item.outage.record()
        return {**base, **scores, **live, **self.extra}


class SinkError(RdEdgeError):
    """A sink that cannot be set up or used: a bad address, a missing package, a closed sink."""


class Sink:
    """Where results go. ``write`` runs in one thread, in per-source capture order."""

    name = "sink"

    def write(self, result: Result) -> None:
        """Take one result. Raising is reported and counted; the run goes on."""

    def close(self) -> None:
        """Flush and release. Idempotent."""

    def summary(self) -> Optional[str]:
        """A line for the run's summary (e.g. messages not delivered), or None."""
        return None
