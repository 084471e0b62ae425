"""Exception hierarchy of rd-edge.

Every error that a user can cause (a bad file, a wrong folder, a mismatched model) is raised as
a subclass of :class:`RdEdgeError`, so command-line tools can print its message without a
traceback and library users can catch one base class.
"""

from __future__ import annotations


class RdEdgeError(Exception):
    """Base class of every error rd-edge raises on purpose."""


class ImageReadError(RdEdgeError):
    """An image or mask file is missing, empty, undecodable or of an unsupported layout."""


class DatasetError(RdEdgeError):
    """A dataset folder does not have the expected layout or content."""


class CheckpointError(RdEdgeError):
    """A checkpoint file is missing, corrupt or of an unsupported format version."""


class MetadataError(RdEdgeError):
    """Model metadata (ONNX properties, engine sidecar) is missing or inconsistent."""


class BackendError(RdEdgeError):
    """An inference backend is unavailable or failed to load or run a model."""


class ExportError(RdEdgeError):
    """Exporting a model to ONNX or TensorRT failed."""


class VerificationError(ExportError):
    """An exported model's outputs do not match the reference model within tolerance."""


class OutputError(RdEdgeError):
    """An output path cannot be written: a folder, read-only, no permission, or the disk is full."""


class ConfigError(RdEdgeError, ValueError):
    """An argument or setting is of the wrong type or out of range (checked before any work)."""


class NonFiniteOutputError(BackendError):
    """The model produced NaN or infinite scores for some frames: never a verdict.

    ``predictions`` holds one entry per input frame, in order: the Prediction of each frame
    whose outputs were finite, None for the others, so callers can keep the good results and
    record :data:`FRAME_ERROR` for the rest.
    """

    FRAME_ERROR = "model produced non-finite scores"

    def __init__(self, message: str, predictions: list) -> None:
        super().__init__(message)
        self.predictions = predictions


class CalibrationError(RdEdgeError):
    """Thresholds cannot be calibrated from the given data with the chosen method."""


class OpenCVNumpyError(RdEdgeError, ImportError):
    """``import cv2`` failed because the numpy here is not the one OpenCV was built for (numpy 2
    in a venv that shadows the system numpy JetPack's / the distribution's OpenCV needs)."""
