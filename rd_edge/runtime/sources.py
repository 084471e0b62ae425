"""Inputs for rd-infer: an image, a folder of images, a video file, a camera or a GStreamer pipeline.

Every source yields SourceItems in order. A bad input (unreadable, corrupt or empty file, an
odd layout that cannot be converted) becomes an item with ``error`` set instead of an
exception, so a run never stops on one file and never loses its record. Only a source that
cannot be opened at all (no such path, a camera or pipeline that will not open) raises.
Live sources (cameras, pipelines, network streams) read through ``live.LiveLoop``: a read
timeout, an error item for each outage and, when asked, reconnection with back-off.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

import numpy as np

from rd_edge.core.errors import RdEdgeError
from rd_edge.core.files import output_keys
from rd_edge.core.images import IMAGE_EXTENSIONS, list_images, read_image, to_bgr_uint8
from rd_edge.core.urls import mask_urls

from .live import (
    DEFAULT_READ_TIMEOUT,
    Backoff,
    Capture,
    LiveLoop,
    Outage,
    frame_or_error,
)


class SourceError(RdEdgeError):
    """A SOURCE that cannot be opened: no such path, a camera or pipeline that fails to open."""


@dataclass
class SourceItem:
    """One input: ``frame`` (HxWx3 uint8 BGR) or ``error`` (what was wrong), never both."""

    name: str  # the record's "source": a file path, or "<video>#<frame index>"
    key: str  # relative path (no suffix) under which --out writes this input's images
    frame: Optional[np.ndarray]
    error: Optional[str]
    camera_time: Optional[float] = (
        None  # the camera's own timestamp in seconds (its clock), where it gives one
    )
    outage: Optional[Outage] = None  # live sources: the outage this item begins (error) or ends (frame)
    lost_before: int = 0  # frames the camera or transport lost just before this one (counted as drops)
    triggers: Tuple[int, ...] = ()  # trigger requests this item answers


def csi_pipeline(
    sensor_id: int = 0, width: int = 1920, height: int = 1080, fps: int = 30, flip: int = 0
) -> str:
    """GStreamer pipeline for a Jetson CSI camera: nvarguscamerasrc -> nvvidconv -> BGR appsink.

    ``flip`` is nvvidconv's flip-method (0 none, 2 rotate 180, ...). The appsink keeps only the
    newest frame (drop=true max-buffers=1) so a slow model sees fresh frames, not a backlog.
    """
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! videoconvert ! "
        f"video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )


# Sources that produce frames at their own pace: a pipeline drops a stale frame for the newest.
LIVE_KINDS = ("camera", "pipeline", "stream")
_URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class Source:
    """Base: ``kind``, ``total`` (frame count where known, after --limit), ``label`` (a short
    name for topics and folders, e.g. "camera0" or a video's stem) and iteration."""

    kind = "source"
    label = "source"
    fps: Optional[float] = None  # frames per second where the source says (videos, cameras)
    is_stream = False  # frames of one scene (video, camera, pipeline): --out writes a video

    @property
    def live(self) -> bool:
        """True for cameras, GStreamer pipelines and network streams (they never wait for us)."""
        return self.kind in LIVE_KINDS

    def __init__(self, description: str, total: Optional[int], limit: Optional[int]) -> None:
        self.description = description
        self.limit = limit
        self.total = total if limit is None else (limit if total is None else min(total, limit))

    def __iter__(self) -> Iterator[SourceItem]:
        return islice(self._items(), self.limit)  # limit None: all items

    def _items(self) -> Iterator[SourceItem]:
        raise NotImplementedError

    def close(self) -> None:
        """Release a capture device or file. Idempotent."""

    def interrupt(self) -> None:
        """Stop waiting (a read, a reconnection back-off): iteration ends soon. Any thread."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ImageFilesSource(Source):
    """One image file or every image under a folder (recursive, sorted)."""

    def __init__(self, files: List[Path], root: Optional[Path], limit: Optional[int]) -> None:
        self.kind = "folder" if root is not None else "image"
        super().__init__(str(root or files[0]), len(files), limit)
        self.files = files
        self.keys = output_keys(files, root)
        self.max_pixels: Optional[int] = None  # downscale larger images on decode (rd-infer sets it)

    def _items(self) -> Iterator[SourceItem]:
        for path, key in zip(self.files, self.keys):
            try:
                frame, error = read_image(path, self.max_pixels), None
            except Exception as exc:  # noqa: BLE001  one bad file must not stop the run
                frame, error = None, _describe(exc)
            yield SourceItem(str(path), key, frame, error)


class CaptureSource(Source):
    """Frames of a video file through cv2.VideoCapture."""

    def __init__(
        self,
        capture: Any,
        kind: str,
        description: str,
        key_prefix: str,
        total: Optional[int],
        limit: Optional[int],
    ) -> None:
        self.kind = kind
        super().__init__(description, total, limit)
        self.capture = capture
        self.key_prefix = key_prefix
        self.announced = total  # a video file's header frame count (before --limit); None if unknown
        self.shortfall: Optional[str] = None
        self.is_stream = True
        fps = float(capture.get(_cv2().CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps <= 1000.0 else None  # some cameras report 0 or garbage
        self.pace = False  # video files: deliver frames at the file's fps, as the camera did (--realtime)

    def _items(self) -> Iterator[SourceItem]:
        index, started = 0, time.monotonic()
        while True:
            if self.pace and self.fps:
                time.sleep(max(0.0, started + index / self.fps - time.monotonic()))
            ok, frame = self.capture.read()
            if not ok or frame is None:  # end of file, or the stream stopped
                yield from self._truncated(index)
                return
            name, key = f"{self.description}#{index}", f"{self.key_prefix}/frame_{index:06d}"
            try:
                yield SourceItem(name, key, to_bgr_uint8(frame), None)
            except RdEdgeError as exc:
                yield SourceItem(name, key, None, str(exc))
            index += 1

    def _truncated(self, read: int) -> Iterator[SourceItem]:
        """An error item when a video file ends before the frame count its header announced (a
        truncated or corrupt file): the frames never read are not silently missing."""
        if self.kind != "video" or not self.announced or read >= self.announced:
            return
        self.shortfall = (
            f"{self.description}: read {read} of {self.announced} frames the header announced; "
            f"the file is truncated or corrupt"
        )
        yield SourceItem(f"{self.description}#{read}", f"{self.key_prefix}/truncated", None, self.shortfall)

    def close(self) -> None:
        self.capture.release()


class LiveSource(Source):
    """A camera, GStreamer pipeline, network stream or GenICam camera: never waits for the
    pipeline, every read bounded by ``read_timeout``, an outage becomes an error item (with
    ``reconnect``: then reconnection with back-off); ``outages`` lists them all."""

    is_stream = True
    camera: Any = None  # a GenICam camera: its description and features as set (aravis://)

    def __init__(
        self,
        kind: str,
        description: str,
        key_prefix: str,
        first: Capture,
        opener: Callable[[], Capture],
        limit: Optional[int],
        live: "LiveOptions",
        finite: Optional[Callable[[int], bool]] = None,
    ) -> None:
        self.kind = kind
        super().__init__(description, None, limit)
        self.key_prefix = key_prefix
        self.fps = first.fps if first.fps and 0.0 < first.fps <= 1000.0 else None
        self.loop = LiveLoop(
            description, first, opener, live.read_timeout, live.reconnect, finite, live.triggered
        )

    @property
    def outages(self) -> List[Outage]:
        return self.loop.outages

    @property
    def triggered(self) -> bool:
        return self.loop.triggered

    def request_trigger(self, token: int) -> None:
        """One inspection on request (a PLC's trigger): the item that answers carries ``token``."""
        self.loop.request(token)

    def _items(self) -> Iterator[SourceItem]:
        for index, reading in enumerate(self.loop.frames()):
            name, key = f"{self.description}#{index}", f"{self.key_prefix}/frame_{index:06d}"
            frame, error = reading.frame, reading.error
            if frame is not None:
                frame, error = frame_or_error(frame)
            yield SourceItem(
                name, key, frame, error, reading.camera_time, reading.outage, reading.lost, reading.triggers
            )

    def interrupt(self) -> None:
        self.loop.interrupted.set()

    def close(self) -> None:
        self.loop.close()


class OpenCvCapture:
    """A Capture over cv2.VideoCapture: a camera index, a GStreamer pipeline or a network stream
    (FFmpeg, with its own open and read timeouts so an abandoned read returns)."""

    def __init__(self, target: Any, kind: str, read_timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        cv2 = _cv2()
        try:
            if kind == "pipeline":
                capture = cv2.VideoCapture(target, cv2.CAP_GSTREAMER)
            elif kind == "stream":
                ms = int(read_timeout * 1000)
                capture = cv2.VideoCapture(
                    target,
                    cv2.CAP_FFMPEG,
                    [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(ms, 10000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms],
                )
            else:
                capture = cv2.VideoCapture(target)
        except (cv2.error, OverflowError) as exc:  # e.g. a camera index OpenCV cannot hold
            raise SourceError(f"cannot open {kind} {_masked(target)!r}: {exc}; {_OPEN_HINTS[kind]}") from exc
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open {kind} {_masked(target)!r}: {_OPEN_HINTS[kind]}")
        self.capture = capture
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps: Optional[float] = fps if 0.0 < fps <= 1000.0 else None
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0
        self.frame_count = int(count) if 0 < count < 1e9 else None  # a clip served over HTTP has one

    def read(self) -> Tuple[Optional[np.ndarray], Optional[float]]:
        ok, frame = self.capture.read()
        return (frame if ok and frame is not None else None), None

    def release(self) -> None:
        self.capture.release()


MAX_CAMERA_INDEX = 9999  # OpenCV takes a C int; /dev/videoN numbers are small

_OPEN_HINTS = {
    "pipeline": "check the pipeline with gst-launch-1.0, and that this OpenCV has GStreamer "
    "(cv2.getBuildInformation(); on Jetson use JetPack's OpenCV, not a pip one)",
    "stream": "check the URL (e.g. with ffprobe) and that this OpenCV has FFmpeg",
    "camera": "check the index and that no other program holds the camera",
}


def _masked(target: Any) -> str:
    """A stream's address, or a GStreamer pipeline, with every password masked (records, errors)."""
    return mask_urls(str(target))


class FailedSource(Source):
    """A single input that could not be opened (e.g. a corrupt video): one error record."""

    kind = "file"

    def __init__(self, path: Path, error: str) -> None:
        super().__init__(str(path), 1, None)
        self.path, self.error = path, error

    def _items(self) -> Iterator[SourceItem]:
        yield SourceItem(str(self.path), self.path.stem, None, self.error)


def _cv2() -> Any:
    import cv2

    return cv2


@dataclass(frozen=True)
class LiveOptions:
    """How live sources read: seconds without a frame before an outage; reconnect or end;
    ``triggered``: inspect only on request (GenICam cameras: software trigger); GenICam
    ``features`` (camera file, then the URL's query) for aravis:// sources."""

    read_timeout: float = DEFAULT_READ_TIMEOUT
    reconnect: Optional[Backoff] = None
    triggered: bool = False
    features: Tuple[Tuple[str, str], ...] = ()


def open_source(
    spec: str, limit: Optional[int] = None, label: Optional[str] = None, live: LiveOptions = LiveOptions()
) -> Source:
    """Open SOURCE as rd-infer understands it; SourceError when it cannot be opened at all.

    A string containing "!" is a GStreamer pipeline; rtsp://, http(s)://... a network stream
    (OpenCV's FFmpeg backend); an existing folder is a folder of images;
    an existing file with an image extension is one image, any other file a video; digits
    (when no such file exists) are a camera index. ``live``: read timeout and reconnection of
    cameras, pipelines and streams.
    """
    source = _open(spec, limit, live)
    source.label = label or _default_label(source, spec)
    return source


def _open(spec: str, limit: Optional[int], live: LiveOptions) -> Source:
    if "!" in spec:
        return _open_live(spec, "pipeline", "pipeline", limit, live)
    if spec.lower().startswith(_URL_SCHEMES):
        return _open_live(spec, "stream", "stream", limit, live)
    if spec.lower().startswith("aravis://"):
        return _open_aravis(spec, limit, live)
    path = Path(spec)
    if path.is_dir():
        files = list_images(path, recursive=True)
        if not files:
            raise SourceError(
                f"no images in folder {path} (looked recursively for {', '.join(IMAGE_EXTENSIONS)})"
            )
        return ImageFilesSource(files, path, limit)
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return ImageFilesSource([path], None, limit)
        return _open_video(path, limit)
    if spec.isdigit():
        if int(spec) > MAX_CAMERA_INDEX:
            raise SourceError(
                f"camera index {spec} out of range: expected 0..{MAX_CAMERA_INDEX} (the N of /dev/videoN)"
            )
        return _open_live(int(spec), "camera", f"camera{spec}", limit, live)
    raise SourceError(
        f"SOURCE {spec!r} not found: expected an image file, a folder, a video file, "
        f"a camera index (e.g. 0), an rtsp:// URL or a GStreamer pipeline (containing '!')"
    )


def _default_label(source: Source, spec: str) -> str:
    """ "camera0", "gstreamer", the stream's host, or the file or folder name without suffix."""
    if spec.lower().startswith("aravis://"):
        return clean_label(spec[len("aravis://") :].split("?")[0].strip("/"))
    if source.kind == "camera":
        return f"camera{spec}"
    if source.kind == "pipeline":
        return "csi" + spec.split("sensor-id=")[1].split()[0] if "nvarguscamerasrc" in spec else "gstreamer"
    if source.kind == "stream":
        return clean_label(_hostname(spec))
    return clean_label(Path(spec).stem or Path(spec).resolve().name)


def _hostname(url: str) -> str:
    try:
        return urlsplit(url).hostname or "stream"
    except ValueError:
        return "stream"


def clean_label(text: str) -> str:
    """A label safe as one MQTT topic level and one folder name: [A-Za-z0-9_.-], others -> "_"."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", text).strip("._")
    return cleaned or "source"


def _open_video(path: Path, limit: Optional[int]) -> Source:
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        return FailedSource(
            path,
            f"cannot open {path} as an image ({', '.join(IMAGE_EXTENSIONS)}) "
            f"or a video OpenCV can decode; the file is corrupt or of another type",
        )
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return CaptureSource(capture, "video", str(path), path.stem, count if count > 0 else None, limit)


def _open_live(target: Any, kind: str, key_prefix: str, limit: Optional[int], live: LiveOptions) -> Source:
    """A camera index, a GStreamer pipeline or a network stream; frame count unknown."""

    def opener() -> OpenCvCapture:
        return OpenCvCapture(target, kind, live.read_timeout)

    first = opener()
    # A stream's description goes into every record: never its password.
    description = {"pipeline": "gstreamer", "stream": _masked(target)}.get(kind, f"camera:{target}")
    return LiveSource(
        kind,
        description,
        key_prefix,
        first,
        opener,
        limit,
        live,
        _finite_rule(target, kind, first.frame_count),
    )


def _open_aravis(spec: str, limit: Optional[int], live: LiveOptions) -> Source:
    """aravis://<device id or address>[?Feature=value&...]: a GenICam camera through Aravis."""
    from .aravis import AravisCamera, parse_spec

    device, query = parse_spec(spec)
    features = {**dict(live.features), **query}

    def opener() -> AravisCamera:
        return AravisCamera(device, features, live.triggered, buffer_timeout=live.read_timeout)

    first = opener()
    source = LiveSource(
        "camera", f"aravis://{device}", f"aravis_{clean_label(device)}", first, opener, limit, live
    )
    source.camera = first  # features as read back, for the header
    return source


def _finite_rule(target: Any, kind: str, frame_count: Optional[int]) -> Optional[Callable[[int], bool]]:
    """When the end of a live source is its normal end, not an outage: a clip served over HTTP
    that delivered the frames its header announced; a GStreamer pipeline reading a file or
    told how many buffers to make. Cameras never end."""
    if kind == "stream" and frame_count:
        return lambda read: read >= frame_count
    if kind == "pipeline" and re.search(r"\b(multi)?filesrc\b|num-buffers=", str(target)):
        return lambda read: True
    return None


def _describe(exc: Exception) -> str:
    """An error message for a record: RdEdgeErrors say it all; others get their type."""
    return str(exc) if isinstance(exc, RdEdgeError) else f"{type(exc).__name__}: {exc}"
