"""The console sink: what rd-infer hands to the operator. A result line per input on stdout
(the same as the C++ example's), warnings on stderr, a progress bar, overlays and masks as PNG,
annotated videos, an OpenCV window (--show).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rd_edge.core.cli import stdout_closed
from rd_edge.core.errors import RdEdgeError

from .base import Result, Sink

# Container suffix -> FourCC that OpenCV's bundled FFmpeg (and GStreamer on a Jetson) writes.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 25.0  # when the source does not say (a camera reporting 0, a pipeline)


def result_line(record: Dict[str, Any]) -> str:
    """One scored input as one stdout line, the same as the C++ example's:
    ``<source> score=<float32, exact> normalized=<0..1> verdict=<OK|NG> latency_ms=<ms>``."""
    return (
        f"{record['source']} score={record['score']:.9g} normalized={record['normalized_score']:.3f} "
        f"verdict={'NG' if record['is_anomalous'] else 'OK'} latency_ms={record['latency_ms']:.3f}"
    )


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_CODECS


class AnnotatedVideoWriter:
    """Writes overlay frames to a video file, opened on the first frame (its size fixes the
    video's); frames of another size are resized to it. ``fps`` None: DEFAULT_FPS.

    ``segment_seconds``: a camera runs for days, so the video rotates: STEM-000001.mp4,
    STEM-000002.mp4, ... of that many seconds of frames each (at ``fps``); ``keep`` segments at
    most, the oldest deleted first (None: all kept)."""

    def __init__(
        self,
        path: Path,
        fps: Optional[float] = None,
        segment_seconds: Optional[float] = None,
        keep: Optional[int] = None,
    ) -> None:
        if not is_video_path(path):
            raise RdEdgeError(
                f"cannot write a video to {path}: expected one of the suffixes "
                f"{', '.join(sorted(VIDEO_CODECS))}"
            )
        self.base = path
        self.path = path
        self.fps = float(fps) if fps else DEFAULT_FPS
        self.frames = 0
        self.segment_frames = max(1, round(segment_seconds * self.fps)) if segment_seconds else None
        self.keep = keep
        self.segments: List[Path] = []
        self._in_segment = 0
        self._writer: Any = None
        self._size: Optional[Tuple[int, int]] = None  # (width, height)

    def write(self, image: np.ndarray) -> None:
        """Append one BGR uint8 frame (starting the next segment when this one is full)."""
        import cv2

        if self._writer is not None and self.segment_frames and self._in_segment >= self.segment_frames:
            self.close()
        if self._writer is None:
            self._next_segment()
            self._open(image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(image))
        self.frames += 1
        self._in_segment += 1

    def _next_segment(self) -> None:
        """With rotation: the next numbered file, and the oldest beyond ``keep`` deleted."""
        if not self.segment_frames:
            return
        n = len(self.segments) + 1
        self.path = self.base.with_name(f"{self.base.stem}-{n:06d}{self.base.suffix}")
        self.segments.append(self.path)
        self._in_segment = 0
        while self.keep is not None and len([p for p in self.segments if p.exists()]) >= self.keep:
            oldest = next(p for p in self.segments if p.exists())
            oldest.unlink(missing_ok=True)

    def _open(self, width: int, height: int) -> None:
        import cv2

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RdEdgeError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        codec = VIDEO_CODECS[self.path.suffix.lower()]
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*codec), self.fps, (width, height))
        if not writer.isOpened():
            writer.release()
            raise RdEdgeError(
                f"cannot write video {self.path}: this OpenCV has no {codec!r} encoder for "
                f"{self.path.suffix}; try an .avi (MJPG) file"
            )
        self._writer = writer
        if self._size is None:  # every segment keeps the first frame's size
            self._size = (width, height)

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "AnnotatedVideoWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def progress_bar(total: Optional[int], unit: str, disable: bool) -> Any:
    """A tqdm bar on stderr; a silent stand-in where tqdm is not installed (a bare Jetson)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit=unit, disable=disable, file=sys.stderr, dynamic_ncols=True)


class _NoBar:
    disable = True

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class ConsoleSink(Sink):
    """The console sink: a result line per input on stdout (warnings on stderr), progress bar,
    overlays and masks as PNG (--out DIR), annotated videos (--out for videos/cameras), --show."""

    name = "output"

    def __init__(
        self,
        detector: Any,
        out: Optional[Path] = None,
        png_frames: bool = False,
        show: bool = False,
        prefix_keys: bool = False,
        sources: Sequence[Any] = (),
        segment_seconds: Optional[float] = None,
        segments: Optional[int] = None,
    ) -> None:
        self.detector = detector
        self.out, self.videos = _outputs(out, png_frames, sources, segment_seconds, segments)
        self.show = show
        self.prefix_keys = prefix_keys  # several sources: DIR/overlays/<stream>/...
        self.progress: Any = _NoBar()
        self.stop: Any = None  # set by the caller: what closing the window (or stdout) calls
        self.stdout_closed = False

    def write(self, result: Result) -> None:
        """Record one input; closing the --show window stops the run."""
        self.progress.update(1)
        item, prediction = result.item, result.prediction
        self._echo(result.record())
        video = self.videos.get(result.stream)
        if prediction is None:
            if video is not None and item.frame is not None:
                video.write(item.frame)  # unscored, but the clip keeps every frame read
            return
        if item.frame is not None and (self.out is not None or video is not None or self.show):
            overlay, mask = self._render(item.frame, prediction)
            key = f"{result.stream}/{item.key}" if self.prefix_keys else item.key
            if self.out is not None:
                _write_png(self.out / "overlays" / f"{key}.png", overlay)
                _write_png(self.out / "masks" / f"{key}.png", mask)
            if video is not None:
                video.write(overlay)
            if self.show and not self._show(overlay) and self.stop is not None:
                self.stop()

    def _echo(self, record: Dict[str, Any]) -> None:
        """The result line on stdout, a warning on stderr; through tqdm when its bar is showing."""
        outage = record.get("outage")
        if outage and outage.get("end"):  # the first frame after an outage
            self._say(
                f"note: {record['stream']}: back after {outage['seconds']:.1f} s, "
                f"~{outage['frames_lost']} frames lost",
                sys.stderr,
            )
        if record["error"] is not None:
            self._say(f"warning: {record['source']}: {record['error']}", sys.stderr)
        else:
            self._say(result_line(record), sys.stdout)
        if record.get("evidence_error"):  # scored, but its evidence could not be kept
            self._say(f"warning: {record['source']}: {record['evidence_error']}", sys.stderr)

    def _say(self, line: str, stream: Any) -> None:
        if self.stdout_closed and stream is sys.stdout:
            return
        try:
            if not self.progress.disable:
                self.progress.write(line, file=stream)
            else:
                print(line, file=stream, flush=True)
        except BrokenPipeError:  # the reader went away (| head): stop quietly, as head users expect
            stdout_closed()
            self.stdout_closed = True
            if self.stop is not None:
                self.stop()

    def _render(self, frame: np.ndarray, prediction: Any) -> Tuple[np.ndarray, np.ndarray]:
        mask = prediction.anomaly_map > self.detector.pixel_threshold  # [H,W] bool at the frame size
        return self.detector.render(frame, prediction), mask.astype(np.uint8) * np.uint8(255)

    def _show(self, overlay: np.ndarray) -> bool:
        import cv2

        try:
            cv2.imshow("rd-infer", overlay)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:  # headless OpenCV build or no display
            print(
                f"warning: --show needs an OpenCV with GUI support and a display; continuing "
                f"without the window ({str(exc).strip().splitlines()[-1]})",
                file=sys.stderr,
            )
            self.show = False
            return True
        return key not in (ord("q"), 27)

    def summary(self) -> Optional[str]:
        if not self.videos:
            return None
        return "; ".join(
            f"annotated video: {v.path} ({v.frames} frames"
            + (
                f", segment {len(v.segments)}, {sum(p.exists() for p in v.segments)} kept)"
                if v.segments
                else ")"
            )
            for v in self.videos.values()
        )

    def close(self) -> None:
        for video in self.videos.values():
            video.close()
        self.progress.close()
        if self.show:
            import cv2

            cv2.destroyAllWindows()
            self.show = False


def _outputs(
    out: Optional[Path],
    png_frames: bool,
    sources: Sequence[Any],
    segment_seconds: Optional[float] = None,
    segments: Optional[int] = None,
) -> Tuple[Optional[Path], Dict[str, AnnotatedVideoWriter]]:
    """(folder for PNGs or None, {stream label: video writer}) for --out. A video path: the clip
    (several streams: CLIP-<label>.mp4 ...); a folder: PNGs for images and folders, DIR/<label>.mp4
    for videos and cameras (and their PNGs only with --png-frames)."""
    if out is None:
        return None, {}
    streams = [s for s in sources if getattr(s, "is_stream", False)]
    if is_video_path(out):
        if len(streams) <= 1:
            paths = {s.label: out for s in streams} or {s.label: out for s in sources[:1]}
        else:
            paths = {s.label: out.with_name(f"{out.stem}-{s.label}{out.suffix}") for s in streams}
        folder = out.parent / out.stem if png_frames else None
    else:
        paths = {s.label: out / f"{s.label}.mp4" for s in streams}
        folder = out if png_frames or len(streams) < len(sources) else None
    fps = {s.label: s.fps for s in sources}
    return folder, {
        label: AnnotatedVideoWriter(path, fps[label], segment_seconds, segments)
        for label, path in paths.items()
    }


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".png", image)
        if not ok:
            raise OSError("PNG encoding failed")
        data.tofile(str(path))  # tofile, not imwrite: non-ASCII paths work on every OS
    except OSError as exc:
        raise RdEdgeError(f"cannot write {path}: {exc.strerror or exc}") from exc
