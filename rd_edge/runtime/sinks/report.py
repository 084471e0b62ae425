"""``rd-infer --report DIR``: the run as a page a person opens (rd_edge.core.report): a thumbnail
of each input's overlay with its verdict and score, the score histogram with the threshold, a
summary per source (per sub-folder for one folder), and results.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

from rd_edge.core.report import Report, ReportRow, write_report, write_thumbnail

from .base import Result, Sink


class ReportSink(Sink):
    """Collects one row per input (a thumbnail written at once, so memory stays small) and writes
    index.html and results.csv on close."""

    name = "report"

    def __init__(self, folder: Path, detector: Any, model: str, several_streams: bool) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.detector = detector
        self.model = model
        self.several_streams = several_streams
        self.rows: List[ReportRow] = []
        self.written: Optional[Path] = None

    def write(self, result: Result) -> None:
        record = result.record()
        p = result.prediction
        thumb = None
        if p is not None and result.item.frame is not None:
            thumb = write_thumbnail(self.folder, len(self.rows), self.detector.render(result.item.frame, p))
        verdict = "error" if p is None else ("NG" if p.is_anomalous else "OK")
        self.rows.append(
            ReportRow(
                source=record["source"],
                group=self._group(result),
                score=record["score"],
                normalized_score=record["normalized_score"],
                verdict=verdict,
                error=record["error"],
                thumbnail=thumb,
            )
        )

    def _group(self, result: Result) -> str:
        """The stream when there are several; else the input's sub-folder (good, scratch, ...)."""
        if self.several_streams:
            return result.stream
        parent = Path(result.item.key).parent
        return result.stream if str(parent) in ("", ".") else str(parent)

    def close(self) -> None:
        if self.written is not None:
            return
        threshold = getattr(self.detector, "threshold", None)
        facts = [("model", self.model)]
        pixel = getattr(self.detector, "pixel_threshold", None)
        if pixel is not None:
            facts.append(("pixel threshold", f"{pixel:.6g} (outlined regions: map > pixel threshold)"))
        self.written = write_report(
            self.folder,
            Report(title=f"rd-infer: {self.model}", threshold=threshold, rows=self.rows, facts=facts),
        )

    def summary(self) -> Optional[str]:
        return f"report: {self.written} ({len(self.rows)} inputs)" if self.written else None
