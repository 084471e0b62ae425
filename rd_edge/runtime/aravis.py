"""GenICam cameras (GigE Vision, USB3 Vision) through Aravis: ``aravis://<device id or address>``.

Aravis (LGPL, Debian/Ubuntu/JetPack package ``libaravis-0.8-0``) is reached through a thin
ctypes layer over the ~30 C functions used here, not PyGObject: PyGObject from PyPI needs the
GObject-introspection and cairo build chain, and the system's ``python3-gi`` is invisible from a
virtual environment (and tied to the system Python), whereas ctypes works in any environment
that can load the shared library, on a Jetson as on a PC.

    aravis://192.168.10.20                    the camera at that address (GigE Vision)
    aravis://Basler-21234567                  a device id as Aravis lists it (arv-tool-0.8)
    aravis://192.168.10.20?ExposureTime=5000&PixelFormat=BayerRG8   features for this camera

Features come from a camera file (``--camera-file``, YAML or JSON: a mapping of GenICam feature
names to values, applied in file order) and then the URL's query, and are read back once set.
``ExposureTime``, ``Gain`` and ``AcquisitionFrameRate`` fall back to the older SFNC names
(``ExposureTimeAbs``, ``GainRaw``, ``AcquisitionFrameRateAbs``) on cameras that only have those.
Frames carry the camera's timestamp; incomplete or lost buffers (and gaps in the frame ids)
count as drops. ``triggered``: TriggerMode=On with TriggerSource=Software, one frame per
``trigger()``.
"""

from __future__ import annotations

import ctypes
import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np

from rd_edge.core.errors import RdEdgeError

from .pixel_formats import to_bgr

LIBRARY = "libaravis-0.8.so.0"
SCHEME = "aravis://"
BUFFERS = 8  # buffers queued to the stream: enough for a slow consumer at camera rate
ALIASES = {
    "ExposureTime": "ExposureTimeAbs",
    "Gain": "GainRaw",
    "AcquisitionFrameRate": "AcquisitionFrameRateAbs",
}
_INSTALL = (
    "install Aravis: apt-get install libaravis-0.8-0 (Debian, Ubuntu, JetPack; the tools: aravis-tools-cli)"
)


class AravisError(RdEdgeError):
    """Aravis missing, a camera that cannot be opened, a feature that cannot be set."""


class _GError(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_int), ("message", ctypes.c_char_p)]


_P, _S = ctypes.c_void_p, ctypes.c_char_p
_E = ctypes.POINTER(ctypes.POINTER(_GError))
_SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {  # name -> (restype, argtypes)
    "arv_camera_new": (_P, [_S, _E]),
    "arv_camera_get_device": (_P, [_P]),
    "arv_camera_get_string": (_S, [_P, _S, _E]),
    "arv_camera_get_payload": (ctypes.c_uint, [_P, _E]),
    "arv_camera_create_stream": (_P, [_P, _P, _P, _E]),
    "arv_camera_start_acquisition": (None, [_P, _E]),
    "arv_camera_stop_acquisition": (None, [_P, _E]),
    "arv_camera_execute_command": (None, [_P, _S, _E]),
    "arv_camera_get_float": (ctypes.c_double, [_P, _S, _E]),
    "arv_device_get_feature": (_P, [_P, _S]),
    "arv_device_set_features_from_string": (ctypes.c_bool, [_P, _S, _E]),
    "arv_gc_feature_node_get_value_as_string": (_S, [_P, _E]),
    "arv_buffer_new": (_P, [ctypes.c_size_t, _P]),
    "arv_stream_push_buffer": (None, [_P, _P]),
    "arv_stream_timeout_pop_buffer": (_P, [_P, ctypes.c_uint64]),
    "arv_buffer_get_status": (ctypes.c_int, [_P]),
    "arv_buffer_get_image_data": (_P, [_P, ctypes.POINTER(ctypes.c_size_t)]),
    "arv_buffer_get_image_width": (ctypes.c_int, [_P]),
    "arv_buffer_get_image_height": (ctypes.c_int, [_P]),
    "arv_buffer_get_image_pixel_format": (ctypes.c_uint32, [_P]),
    "arv_buffer_get_timestamp": (ctypes.c_uint64, [_P]),
    "arv_buffer_get_frame_id": (ctypes.c_uint64, [_P]),
    "g_object_unref": (None, [_P]),
    "g_error_free": (None, [ctypes.POINTER(_GError)]),
}
_lib: Optional[ctypes.CDLL] = None
_lib_lock = threading.Lock()


def library() -> ctypes.CDLL:
    """libaravis with the signatures above; AravisError (one line) when it is not installed."""
    global _lib
    with _lib_lock:
        if _lib is None:
            try:
                lib = ctypes.CDLL(LIBRARY)
                gobject = ctypes.CDLL("libgobject-2.0.so.0")
                glib = ctypes.CDLL("libglib-2.0.so.0")
            except OSError as exc:
                raise AravisError(f"aravis:// sources need {LIBRARY} ({exc}); {_INSTALL}") from None
            for name, (restype, argtypes) in _SIGNATURES.items():
                owner = gobject if name == "g_object_unref" else glib if name == "g_error_free" else lib
                function = getattr(owner, name)
                function.restype, function.argtypes = restype, argtypes
                setattr(lib, name, function)
            _lib = lib
        return _lib


def _call(name: str, *args: Any) -> Any:
    """Call an Aravis function that takes a GError** last; its error becomes an AravisError."""
    lib = library()
    error = ctypes.POINTER(_GError)()
    value = getattr(lib, name)(*args, ctypes.byref(error))
    if error:
        message = (error.contents.message or b"").decode(errors="replace")
        lib.g_error_free(error)
        raise AravisError(message or f"{name} failed")
    return value


def parse_spec(spec: str) -> Tuple[str, Dict[str, str]]:
    """'aravis://ADDRESS?Feature=value&...' -> (device id or address, {feature: value})."""
    parts = urlsplit(spec)
    device = unquote(parts.netloc + parts.path).strip("/")
    if not device:
        raise AravisError(f"{spec!r}: expected aravis://<device id or address>, e.g. aravis://192.168.10.20")
    return device, dict(parse_qsl(parts.query, keep_blank_values=True))


def read_camera_file(path: Path) -> Dict[str, str]:
    """A camera file: a YAML or JSON mapping of GenICam feature names to values (file order kept)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise AravisError(f"cannot read camera file {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise AravisError(
                f"{path}: YAML camera files need PyYAML (pip install '.[genicam]'); or write it as JSON"
            ) from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AravisError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise AravisError(
            f"{path}: expected a mapping of GenICam feature names to values, e.g. "
            f'{{"ExposureTime": 5000, "PixelFormat": "BayerRG8"}}'
        )
    return {name: _feature_text(value) for name, value in data.items()}


def _feature_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def frame_gap(last: int, frame_id: int) -> int:
    """Frames missing between two camera frame ids; GigE Vision 1.x block ids are 16 bits and
    wrap from 65535 to 1 (0 is never used)."""
    if frame_id > last:
        return frame_id - last - 1
    if last >= 0xF000 and frame_id < 0x1000:
        return 0xFFFF - last + frame_id - 1
    return 0  # a restarted camera counts from the start again


class AravisCamera:
    """An open camera streaming into queued buffers: a ``Capture`` for the live loop.

    ``features`` are set in order before acquisition starts (``applied``: each feature's name
    as set, an older alias where the camera has only that, and the value the camera reports
    back); ``triggered``: one frame per ``trigger()``.
    """

    def __init__(
        self,
        device: str,
        features: Optional[Dict[str, str]] = None,
        triggered: bool = False,
        buffer_timeout: float = 1.0,
    ) -> None:
        lib = library()
        self.device_name, self.triggered = device, triggered
        self._timeout_us = int(buffer_timeout * 1e6)
        self.camera = _call("arv_camera_new", device.encode())
        if not self.camera:
            raise AravisError(
                f"no GenICam camera {device!r}: check the address or id (arv-tool-0.8 lists them)"
            )
        self.stream: Optional[int] = None
        try:
            self.device = lib.arv_camera_get_device(self.camera)
            wanted = dict(features or {})
            if triggered:
                wanted.update(
                    {"TriggerSelector": "FrameStart", "TriggerMode": "On", "TriggerSource": "Software"}
                )
            self.applied = dict(self.set_feature(name, value) for name, value in wanted.items())
            self.fps: Optional[float] = None if triggered else self._frame_rate()
            self._start()
        except BaseException:
            self.release()
            raise
        self.lost = 0  # frames missing between complete ones (incomplete buffers or never arrived)
        self.incomplete = 0  # buffers that arrived incomplete
        self.frame_id: Optional[int] = None  # the camera's id of the last frame read

    @property
    def description(self) -> str:
        vendor = _call("arv_camera_get_string", self.camera, b"DeviceVendorName") or b""
        model = _call("arv_camera_get_string", self.camera, b"DeviceModelName") or b""
        return f"{vendor.decode()} {model.decode()} at {self.device_name}".strip()

    def feature(self, name: str) -> str:
        """A feature's current value as text; AravisError when the camera has no such feature."""
        node = library().arv_device_get_feature(self.device, name.encode())
        if not node:
            raise AravisError(f"camera {self.device_name!r} has no feature {name!r}")
        return (_call("arv_gc_feature_node_get_value_as_string", node) or b"").decode()

    def set_feature(self, name: str, value: str) -> Tuple[str, str]:
        """Set a feature (or its older SFNC alias): (the name set, the value the camera reports back)."""
        lib = library()
        if not lib.arv_device_get_feature(self.device, name.encode()) and name in ALIASES:
            name = ALIASES[name]
        if not lib.arv_device_get_feature(self.device, name.encode()):
            raise AravisError(
                f"camera {self.device_name!r} has no feature {name!r} (arv-tool-0.8 features "
                f"lists what it has)"
            )
        try:
            _call("arv_device_set_features_from_string", self.device, f"{name}={value}".encode())
        except AravisError as exc:
            raise AravisError(f"camera {self.device_name!r}: cannot set {name}={value}: {exc}") from None
        return name, self.feature(name)

    def _frame_rate(self) -> Optional[float]:
        for name in ("AcquisitionFrameRate", "AcquisitionFrameRateAbs"):
            try:
                return float(self.feature(name))
            except (AravisError, ValueError):
                continue
        return None

    def _start(self) -> None:
        lib = library()
        payload = _call("arv_camera_get_payload", self.camera)
        self.stream = _call("arv_camera_create_stream", self.camera, None, None)
        if not self.stream:
            raise AravisError(f"camera {self.device_name!r}: cannot open a stream")
        for _ in range(BUFFERS):
            lib.arv_stream_push_buffer(self.stream, lib.arv_buffer_new(payload, None))
        _call("arv_camera_start_acquisition", self.camera)

    def trigger(self) -> None:
        """One software trigger (TriggerSoftware): the camera exposes one frame."""
        _call("arv_camera_execute_command", self.camera, b"TriggerSoftware")

    def read(self) -> Tuple[Optional[np.ndarray], Optional[float]]:
        """The next complete frame as BGR and its camera timestamp (s). Incomplete buffers are
        skipped (``incomplete``; the gap in frame ids counts them in ``lost``). AravisError
        after ``buffer_timeout`` seconds without a complete one (the live loop: an outage)."""
        lib = library()
        deadline = time.monotonic() + self._timeout_us / 1e6  # incomplete buffers do not extend it
        incomplete_before = self.incomplete
        while True:
            left_us = int((deadline - time.monotonic()) * 1e6)
            buffer = lib.arv_stream_timeout_pop_buffer(self.stream, max(left_us, 0)) if left_us > 0 else None
            if not buffer:
                incomplete = self.incomplete - incomplete_before
                why = f" ({incomplete} incomplete buffers)" if incomplete else ""
                raise AravisError(
                    f"camera {self.device_name!r}: no buffer for {self._timeout_us / 1e6:g} s{why}"
                )
            try:
                got = self._frame(lib, buffer)
            finally:
                lib.arv_stream_push_buffer(self.stream, buffer)  # back to the camera for reuse
            if got is not None:
                return got

    def _frame(self, lib: ctypes.CDLL, buffer: int) -> Optional[Tuple[np.ndarray, float]]:
        if lib.arv_buffer_get_status(buffer) != 0:  # not ARV_BUFFER_STATUS_SUCCESS: incomplete
            self.incomplete += 1  # its frame id is not to be trusted; the gap below counts it
            return None
        frame_id = int(lib.arv_buffer_get_frame_id(buffer))
        if self.frame_id is not None:  # frames between two complete ones: incomplete or never arrived
            self.lost += frame_gap(self.frame_id, frame_id)
        self.frame_id = frame_id
        size = ctypes.c_size_t(0)
        address = lib.arv_buffer_get_image_data(buffer, ctypes.byref(size))
        data = ctypes.string_at(address, size.value)  # a copy: the buffer goes back to the camera
        width, height = lib.arv_buffer_get_image_width(buffer), lib.arv_buffer_get_image_height(buffer)
        bgr = to_bgr(data, width, height, int(lib.arv_buffer_get_image_pixel_format(buffer)))
        return bgr, lib.arv_buffer_get_timestamp(buffer) / 1e9

    def release(self) -> None:
        """Stop acquisition and free the stream and camera. Idempotent."""
        lib = library()
        if self.stream:
            try:
                _call("arv_camera_stop_acquisition", self.camera)
            except AravisError:
                pass  # the camera is gone: nothing to stop
            lib.g_object_unref(self.stream)
            self.stream = None
        if self.camera:
            lib.g_object_unref(self.camera)
            self.camera = None
