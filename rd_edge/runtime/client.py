"""Talk to the ``rd_edge`` model on a Triton server (rd-serve, or a repository on the official
container) over HTTP or gRPC, with tritonclient (``pip install '.[client]'``).

    with TritonClient("http://gpu-server:8000") as client:      # or "grpc://gpu-server:8001"
        preds = client.predict_encoded([open("a.png", "rb").read()])   # IMAGE: encoded files
        pred = client.predict(frame_bgr_uint8, anomaly_map=True)     # FRAME: raw BGR, lossless

:class:`RemoteDetector` wraps a client in the Detector's step interface (preprocess -> infer ->
postprocess), so rd-infer's pipeline, sinks and overlays work unchanged: ``rd-infer --server URL``.
"""

from __future__ import annotations

import threading
import time
from importlib import import_module
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union, cast
from urllib.parse import urlparse

import numpy as np

from rd_edge.core.errors import BackendError
from rd_edge.core.metadata import ModelMetadata
from rd_edge.core.optional import lazy_import
from rd_edge.core.postprocess import normalize_score, score_scale
from rd_edge.core.thresholds import check_threshold
from rd_edge.core.urls import mask_url, mask_urls, url_credentials

from .detector import Batch, Detector, Prediction
from .triton_repo import DETECTOR_MODEL_NAME

_HINT = "pip install '.[client]'"
_http = lazy_import("tritonclient.http", "talking to a Triton server over HTTP", _HINT)
_grpc = lazy_import("tritonclient.grpc", "talking to a Triton server over gRPC", _HINT)
_utils = lazy_import("tritonclient.utils", "talking to a Triton server", _HINT)

SCALARS = ("SCORE", "IS_ANOMALOUS", "NORMALIZED_SCORE")


class ServerError(BackendError):
    """The Triton server could not be reached or refused a request (its message is kept)."""


def parse_url(url: str) -> Tuple[str, str, bool]:
    """'http://h:8000' / 'https://h' / 'grpc://h:8001' / 'h:8000' -> (protocol, host:port, ssl)."""
    try:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        scheme, hostname, port = parsed.scheme.lower(), parsed.hostname, parsed.port
    except ValueError:  # a port that is no number or out of range, a broken [IPv6] literal
        scheme, hostname, port = "", None, None
    if scheme not in ("http", "https", "grpc", "grpcs") or not hostname:
        raise ServerError(
            f"server URL {mask_url(url)!r}: expected http://HOST:PORT, https://HOST:PORT or grpc://HOST:PORT"
        )
    default_port = {"http": 8000, "https": 443, "grpc": 8001, "grpcs": 8001}[scheme]
    host = f"[{hostname}]" if ":" in hostname else hostname
    return (
        "grpc" if scheme.startswith("grpc") else "http",
        f"{host}:{port or default_port}",
        scheme in ("https", "grpcs"),
    )


class TritonClient:
    """The ``rd_edge`` model on one Triton server. Not shared between threads: make one per thread.

    Credentials in the URL (``http://user:password@host:8000``) are sent as HTTP Basic
    authentication with every request (for a proxy in front of Triton); ``url`` keeps them masked.
    """

    def __init__(self, url: str, model: str = DETECTOR_MODEL_NAME, timeout: float = 60.0) -> None:
        self.url, self.model_name, self.timeout = mask_url(url), model, float(timeout)
        self.protocol, address, ssl = parse_url(url)
        module = (_grpc if self.protocol == "grpc" else _http).load()
        if self.protocol == "grpc":
            self._client = module.InferenceServerClient(address, ssl=ssl)
        else:
            self._client = module.InferenceServerClient(
                address, ssl=ssl, connection_timeout=self.timeout, network_timeout=self.timeout
            )
        user, password = url_credentials(url if "://" in url else f"http://{url}")
        if user is not None:
            auth = import_module(f"{module.__name__}.auth")
            self._client.register_plugin(auth.BasicAuth(user, password or ""))
        self._module = module
        self._config: Optional[Dict[str, Any]] = None

    # --- server state -------------------------------------------------------------------------

    def ready(self) -> bool:
        """True when the server is up and the model is loaded."""
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model_name))
        except Exception:  # noqa: BLE001 - tritonclient raises several types for a refused connection
            return False

    def config(self) -> Dict[str, Any]:
        """The model's configuration (as JSON), fetched once."""
        if self._config is None:
            config = self._call(lambda: self._client.get_model_config(self.model_name, **self._json_kw()))
            self._config = config.get("config", config)  # gRPC wraps it in {"config": ...}
        return self._config

    def parameters(self) -> Dict[str, str]:
        """The model's ``parameters``: threshold, rd_edge metadata JSON, ..."""
        return {k: v.get("string_value", "") for k, v in self.config().get("parameters", {}).items()}

    @property
    def metadata(self) -> ModelMetadata:
        return ModelMetadata.from_json(
            self.parameters().get("rd_edge"), source=f"model {self.model_name!r} at {self.url}"
        )

    @property
    def threshold(self) -> float:
        """The server's image threshold."""
        return self._threshold("threshold")

    @property
    def pixel_threshold(self) -> float:
        """The server's pixel threshold (for masks drawn on this side)."""
        return self._threshold("pixel_threshold")

    def _threshold(self, key: str) -> float:
        params = self.parameters()
        if key not in params:
            raise ServerError(
                f"model {self.model_name!r} at {self.url} has no {key} parameter; is it rd-serve's?"
            )
        value: Any = params[key]
        try:
            value = float(value)
        except ValueError:
            pass  # a string: refused below, naming the server
        return check_threshold(value, key, f"model {self.model_name!r} at {self.url}")

    @property
    def max_batch(self) -> int:
        """Items per request the server accepts (larger lists are split into several requests)."""
        return int(self.config().get("max_batch_size") or 1)

    def statistics(self) -> Dict[str, Any]:
        """Triton's inference statistics of the model (counts, batch sizes formed, queue/compute times)."""
        return self._call(lambda: self._client.get_inference_statistics(self.model_name, **self._json_kw()))

    # --- inference ----------------------------------------------------------------------------

    def predict_encoded(self, images: Sequence[bytes], anomaly_map: bool = False) -> List[Prediction]:
        """Encoded images (PNG/JPEG/... file contents) -> Predictions in order (requests of at
        most max_batch images)."""
        results: List[Prediction] = []
        for chunk in _chunks(list(images), self.max_batch):
            data = np.empty((len(chunk), 1), dtype=object)  # [B,1] BYTES
            data[:, 0] = [bytes(image) for image in chunk]
            results.extend(self._infer("IMAGE", data, "BYTES", anomaly_map))
        return results

    def predict(
        self, frames: Union[np.ndarray, Sequence[np.ndarray]], anomaly_map: bool = False
    ) -> Union[Prediction, List[Prediction]]:
        """BGR uint8 frames (one [H,W,3] or a list) -> Prediction(s); same-sized neighbours share a request."""
        single = isinstance(frames, np.ndarray) and frames.ndim == 3
        results = self.predict_frames([cast(np.ndarray, frames)] if single else list(frames), anomaly_map)
        return results[0] if single else results

    def predict_frames(self, frames: Sequence[np.ndarray], anomaly_map: bool = False) -> List[Prediction]:
        """A list of BGR uint8 frames -> one Prediction each, in order."""
        results: List[Prediction] = []
        for run in _same_size_runs(list(frames)):
            for chunk in _chunks(run, self.max_batch):
                results.extend(self._infer("FRAME", np.stack(chunk), "UINT8", anomaly_map))  # [B,H,W,3]
        return results

    def _infer(self, name: str, data: np.ndarray, datatype: str, anomaly_map: bool) -> List[Prediction]:
        m = self._module
        tensor = m.InferInput(name, list(data.shape), datatype)
        tensor.set_data_from_numpy(data)
        names = SCALARS + (("ANOMALY_MAP",) if anomaly_map else ())
        outputs = [m.InferRequestedOutput(n) for n in names]
        t0 = time.perf_counter()
        result = self._call(
            lambda: self._client.infer(self.model_name, [tensor], outputs=outputs, **self._timeout_kw())
        )
        share = (time.perf_counter() - t0) * 1000.0 / len(data)
        scores, flags, normalized = (result.as_numpy(n).reshape(-1) for n in SCALARS)
        maps = result.as_numpy("ANOMALY_MAP") if anomaly_map else None  # [B,H,W] float16
        return [
            Prediction(
                score=float(scores[i]),
                normalized_score=float(normalized[i]),
                is_anomalous=bool(flags[i]),
                anomaly_map=None if maps is None else maps[i].astype(np.float32),
                timings={"inference_ms": share, "total_ms": share},
            )
            for i in range(len(data))
        ]

    def _call(self, request: Any) -> Any:
        try:
            return request()
        except _utils.load().InferenceServerException as exc:
            raise ServerError(f"{self.url}: {mask_urls(str(exc.message() or exc))}") from exc
        except OSError as exc:  # refused / reset connections (HTTP client)
            raise ServerError(
                f"cannot reach the Triton server at {self.url} ({mask_urls(str(exc))}); is rd-serve running?"
            ) from exc

    def _json_kw(self) -> Dict[str, Any]:
        return {"as_json": True} if self.protocol == "grpc" else {}

    def _timeout_kw(self) -> Dict[str, Any]:
        return {"client_timeout": self.timeout} if self.protocol == "grpc" else {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "TritonClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _chunks(items: List[Any], size: int) -> List[List[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _same_size_runs(frames: List[np.ndarray]) -> List[List[np.ndarray]]:
    """Consecutive frames of equal shape, grouped (a FRAME tensor has one [H,W,3] per request)."""
    runs: List[List[np.ndarray]] = []
    for frame in frames:
        if runs and runs[-1][0].shape == frame.shape:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return runs


class RemoteDetector:
    """The Detector's interface (predict, preprocess -> infer -> postprocess, threshold,
    render) served by a Triton server: what ``rd-infer --server URL`` runs.

    The thresholds are the server's; a ``threshold`` given here re-grades the server's scores on
    this side (is_anomalous, normalized_score), a ``pixel_threshold`` changes the masks. ``anomaly_map``: fetch maps (needed for
    overlays and masks).
    """

    backend = "triton"
    preprocess_device = "server"
    preprocess_fallback_reason: Optional[str] = None
    runner = None

    def __init__(
        self,
        url: str,
        batch_size: int = 8,
        anomaly_map: bool = False,
        threshold: Optional[float] = None,
        pixel_threshold: Optional[float] = None,
        timeout: float = 60.0,
    ) -> None:
        if threshold is not None:  # as the Detector does, before connecting to anything
            threshold = check_threshold(threshold, "threshold")
        if pixel_threshold is not None:
            pixel_threshold = check_threshold(pixel_threshold, "pixel_threshold")
        # One client per thread: the HTTP client (gevent) fails in any thread but the one that made
        # it ("Cannot switch to a different thread"), and the pipeline infers in its own thread.
        self._url, self._timeout = url, timeout
        self._local = threading.local()
        self._clients: List[TritonClient] = []
        self._clients_lock = threading.Lock()
        try:
            if not self.client.ready():
                raise ServerError(
                    f"no ready model {DETECTOR_MODEL_NAME!r} at {mask_url(url)}; start one with "
                    f"`rd-serve MODEL` or check the URL"
                )
            self.batch_size = min(
                int(batch_size), int(self.client.config().get("max_batch_size") or batch_size)
            )
            self.metadata = self.client.metadata
            # Arguments first (checked above), else the server's (checked as they are read).
            self.threshold = threshold if threshold is not None else self.client.threshold
            self.pixel_threshold = (
                pixel_threshold if pixel_threshold is not None else self.client.pixel_threshold
            )
        except BaseException:
            self.close()
            raise
        self.anomaly_map = anomaly_map
        self._local_threshold = threshold is not None

    @property
    def client(self) -> TritonClient:
        """The calling thread's client (made on its first use)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = TritonClient(self._url, timeout=self._timeout)
            with self._clients_lock:
                self._clients.append(client)
        return client

    @property
    def score_scale(self) -> float:
        return score_scale(self.metadata.score_stats)

    render = Detector.render  # the same overlay as a local Detector (uses the three values above)

    def predict(self, frames: Union[np.ndarray, Sequence[np.ndarray]]) -> Union[Prediction, List[Prediction]]:
        single = isinstance(frames, np.ndarray) and frames.ndim == 3
        batch = self.infer(self.preprocess([cast(np.ndarray, frames)] if single else list(frames)))
        predictions = [p for p in self.postprocess(batch) if p is not None]  # the server answers each
        return predictions[0] if single else predictions

    def preprocess(self, frames: Sequence[np.ndarray]) -> Batch:
        """Only converts to BGR uint8: resizing and normalizing happen on the server."""
        from rd_edge.core.images import to_bgr_uint8

        t0 = time.perf_counter()
        frames = [to_bgr_uint8(f) for f in frames]
        return Batch(frames, None, seconds={"preprocess": time.perf_counter() - t0})

    def infer(self, batch: Batch) -> Batch:
        t0 = time.perf_counter()
        predictions = self.client.predict_frames(batch.frames, anomaly_map=self.anomaly_map)
        held = np.empty(len(predictions), dtype=object)  # [N] Predictions from the server
        held[:] = predictions
        batch.outputs = {"predictions": held}
        batch.seconds["inference"] = time.perf_counter() - t0
        return batch

    def postprocess(self, batch: Batch) -> List[Optional[Prediction]]:
        if batch.outputs is None:
            raise ValueError("postprocess needs an inferred batch: call infer(batch) first")
        predictions = list(batch.outputs["predictions"])
        share = 1000.0 / max(len(predictions), 1)
        timings = {f"{step}_ms": batch.seconds.get(step, 0.0) * share for step in ("preprocess", "inference")}
        timings["postprocess_ms"] = 0.0
        timings["total_ms"] = sum(timings.values())
        for p in predictions:
            if self._local_threshold:
                p.is_anomalous = p.score > self.threshold
                p.normalized_score = float(normalize_score(p.score, self.threshold, self.score_scale))
            p.timings = dict(timings)
        return predictions

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a client of a thread that is gone: nothing to keep
                pass

    def __enter__(self) -> "RemoteDetector":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["RemoteDetector", "ServerError", "TritonClient", "parse_url"]
