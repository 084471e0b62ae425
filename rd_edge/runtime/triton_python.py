"""The ``rd_edge`` model for Triton's Python backend: the Detector behind Triton's HTTP/gRPC.

The model repository's ``1/model.py`` (written by rd-serve) only re-exports
:class:`TritonPythonModel`; Triton runs it in its Python-backend stub process, one process per
model instance. Interface (config: :func:`rd_edge.runtime.triton_repo.detector_model_config`):

- inputs, one of: ``IMAGE`` BYTES [B,1] (an encoded PNG/JPEG/BMP/TIFF per item) or ``FRAME``
  UINT8 [B,H,W,3] (BGR);
- outputs: ``SCORE`` FP32 [B,1], ``IS_ANOMALOUS`` BOOL [B,1], ``NORMALIZED_SCORE`` FP32 [B,1],
  ``ANOMALY_MAP`` FP16 [B,H,W] at the frame's size (computed and sent only when requested).

Dynamic batching hands ``execute`` several requests at once: all their frames go through the
Detector as one list (batches of up to max_batch_size). A request whose image does not decode
gets its own error response; the others in the same batch are answered normally.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from rd_edge.core.errors import ImageReadError, RdEdgeError
from rd_edge.core.images import MAX_DISPLAY_PIXELS

from .triton_repo import parameter_values

OUTPUTS = ("SCORE", "IS_ANOMALOUS", "NORMALIZED_SCORE", "ANOMALY_MAP")


def decode_items(items: np.ndarray, max_pixels: Optional[int] = None) -> List[np.ndarray]:
    """IMAGE tensor (object array of bytes, [B] or [B,1]) -> BGR uint8 frames; ImageReadError
    naming the item that does not decode or exceeds the pixel cap (rd_edge.core.images).
    ``max_pixels``: downscale larger images on decode (as rd-infer does)."""
    from rd_edge.core.images import decode_image

    return [
        decode_image(bytes(item), f"IMAGE item {i}", max_pixels) for i, item in enumerate(items.reshape(-1))
    ]


def frames_of(
    image: Optional[np.ndarray], frame: Optional[np.ndarray], max_pixels: Optional[int] = None
) -> List[np.ndarray]:
    """The request's frames from exactly one of its IMAGE / FRAME inputs."""
    if (image is None) == (frame is None):
        found = "both" if image is not None else "neither"
        raise ImageReadError(
            f"a request carries exactly one of IMAGE (encoded images) or FRAME (BGR uint8 "
            f"[B,H,W,3]); found {found}"
        )
    if image is not None:
        return decode_items(image, max_pixels)
    assert frame is not None  # exactly one of the two, checked above
    if frame.ndim != 4 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ImageReadError(f"FRAME must be uint8 [B,H,W,3] (BGR), found {frame.dtype} {list(frame.shape)}")
    return list(frame)


def output_arrays(predictions: Sequence[Any], names: Sequence[str]) -> Dict[str, np.ndarray]:
    """The requested outputs of one request's predictions, batch first."""
    arrays: Dict[str, np.ndarray] = {}
    if "SCORE" in names:
        arrays["SCORE"] = np.array([[p.score] for p in predictions], np.float32)  # [B,1]
    if "IS_ANOMALOUS" in names:
        arrays["IS_ANOMALOUS"] = np.array([[p.is_anomalous] for p in predictions], bool)
    if "NORMALIZED_SCORE" in names:
        arrays["NORMALIZED_SCORE"] = np.array([[p.normalized_score] for p in predictions], np.float32)
    if "ANOMALY_MAP" in names:
        shapes = {p.anomaly_map.shape for p in predictions}
        if len(shapes) > 1:
            raise ImageReadError(
                f"ANOMALY_MAP needs frames of one size per request, found {sorted(shapes)}; "
                f"send differently sized images in separate requests"
            )
        arrays["ANOMALY_MAP"] = np.stack([p.anomaly_map for p in predictions]).astype(np.float16)  # [B,H,W]
    return arrays


class TritonPythonModel:
    """Triton Python-backend model: one Detector per model instance (stub process)."""

    def initialize(self, args: Dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils  # only exists inside Triton's stub

        from .detector import Detector

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        params = parameter_values(config.get("parameters", {}))
        options: Dict[str, Any] = {}
        if params.get("threads"):
            options["threads"] = int(params["threads"])
        # The thresholds rd-serve resolved (and logged) at start, not a re-read of thresholds.json.
        model = Path(args["model_repository"]) / str(args["model_version"]) / params["model_file"]
        self.detector = Detector(
            model,
            threshold=float(params["threshold"]),
            pixel_threshold=float(params["pixel_threshold"]),
            batch_size=int(config.get("max_batch_size") or 1),
            **options,
        )
        # As rd-infer: the model sees its input size, so larger images are decoded reduced; a tiled
        # model needs every pixel (the shared cap of rd_edge.core.images still applies).
        self.max_pixels = None if self.detector.metadata.tiling is not None else MAX_DISPLAY_PIXELS

    def execute(self, requests: List[Any]) -> List[Any]:
        responses: List[Any] = [None] * len(requests)
        jobs = []  # (request index, frames, requested output names)
        for i, request in enumerate(requests):
            try:
                frames = frames_of(
                    self._input(request, "IMAGE"), self._input(request, "FRAME"), self.max_pixels
                )
                jobs.append((i, frames, list(request.requested_output_names()) or list(OUTPUTS)))
            except RdEdgeError as exc:
                responses[i] = self._error(exc)
        try:
            predictions = self.detector.predict([f for _, frames, _ in jobs for f in frames]) if jobs else []
        except RdEdgeError:
            predictions = None  # one bad frame (e.g. non-finite outputs): score each request alone
        start = 0
        for i, frames, names in jobs:
            responses[i] = self._respond(predictions, start, frames, names)
            start += len(frames)
        return responses

    def _respond(
        self, predictions: Optional[List[Any]], start: int, frames: List[np.ndarray], names: List[str]
    ) -> Any:
        pb = self._pb
        try:
            mine = (
                predictions[start : start + len(frames)]
                if predictions is not None
                else self.detector.predict(frames)
            )
            arrays = output_arrays(mine, names)
        except RdEdgeError as exc:
            return self._error(exc)
        return pb.InferenceResponse(output_tensors=[pb.Tensor(name, value) for name, value in arrays.items()])

    def _input(self, request: Any, name: str) -> Optional[np.ndarray]:
        tensor = self._pb.get_input_tensor_by_name(request, name)
        return None if tensor is None else tensor.as_numpy()

    def _error(self, exc: Exception) -> Any:
        """An error response: INVALID_ARG (HTTP 400) for a bad input, INTERNAL (500) otherwise."""
        error = self._pb.TritonError
        code = getattr(error, "INVALID_ARG" if isinstance(exc, ImageReadError) else "INTERNAL", None)
        return self._pb.InferenceResponse(error=error(str(exc)) if code is None else error(str(exc), code))

    def finalize(self) -> None:
        self.detector.close()
