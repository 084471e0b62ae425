"""What rd-infer hands to the operator and to scripts: the result line, the annotated video, the
exit code. Small pieces, so any driver (the sequential loop, a pipelined runtime) can use them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from rd_edge.core.errors import RdEdgeError

EXIT_OK = 0
EXIT_ANOMALY = 1  # with --fail-on-anomaly: some input was NG (1 is also a run-stopping error)
EXIT_INPUT_FAILED = 2  # some input could not be scored; wins over EXIT_ANOMALY

# Container suffix -> FourCC that OpenCV's bundled FFmpeg (and GStreamer on a Jetson) writes.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 25.0  # when the source does not say (a camera reporting 0, a pipeline)


def result_line(record: Dict[str, Any]) -> str:
    """One scored input as one stdout line, the same as the C++ example's:
    ``<source> score=<float32, exact> normalized=<0..1> verdict=<OK|NG> latency_ms=<ms>``."""
    return (f"{record['source']} score={record['score']:.9g} normalized={record['normalized_score']:.3f} "
            f"verdict={'NG' if record['is_anomalous'] else 'OK'} latency_ms={record['latency_ms']:.3f}")


def exit_code(errors: int, anomalies: int, fail_on_anomaly: bool) -> int:
    """2 when an input failed, else 1 when an input was NG and the caller asked for it, else 0."""
    if errors:
        return EXIT_INPUT_FAILED
    return EXIT_ANOMALY if fail_on_anomaly and anomalies else EXIT_OK


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_CODECS


class AnnotatedVideoWriter:
    """Writes overlay frames to a video file, opened on the first frame (its size fixes the
    video's); frames of another size are resized to it. ``fps`` None: DEFAULT_FPS."""

    def __init__(self, path: Path, fps: Optional[float] = None) -> None:
        if not is_video_path(path):
            raise RdEdgeError(f"cannot write a video to {path}: expected one of the suffixes "
                              f"{', '.join(sorted(VIDEO_CODECS))}")
        self.path = path
        self.fps = float(fps) if fps else DEFAULT_FPS
        self.frames = 0
        self._writer: Any = None
        self._size: Optional[Tuple[int, int]] = None  # (width, height)

    def write(self, image: np.ndarray) -> None:
        """Append one BGR uint8 frame."""
        import cv2

        if self._writer is None:
            self._open(image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(image))
        self.frames += 1

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
            raise RdEdgeError(f"cannot write video {self.path}: this OpenCV has no {codec!r} encoder for "
                              f"{self.path.suffix}; try an .avi (MJPG) file")
        self._writer, self._size = writer, (width, height)

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "AnnotatedVideoWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
