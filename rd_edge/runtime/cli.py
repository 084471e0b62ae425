"""rd-infer: run an exported RD model over images, folders, videos, cameras or GStreamer pipelines.

Exit code 0 when every input was scored, 2 when any input failed (each still has its record),
1 for an error that stops the run (missing model, model without rd_edge metadata, a source
that cannot be opened), 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rd_edge.core.cli import int_at_least, name_list, run_cli
from rd_edge.core.errors import NonFiniteOutputError, RdEdgeError
from .backends import registered_backends

_EXIT_INPUT_FAILED = 2


def _size(text: str) -> Tuple[int, int]:
    """'WIDTHxHEIGHT' -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1920x1080, got {text!r}") from None
    return width, height


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rd-infer",
        description="Score images, folders, videos, cameras or GStreamer pipelines with an exported "
                    "RD model (.onnx for ONNX Runtime, .engine for TensorRT).",
        epilog="Exit code: 0 all inputs scored, 2 some inputs failed (see their records), 1 error.")
    p.add_argument("model", help="model.onnx or model.engine written by rd-export")
    p.add_argument("source", nargs="?",
                   help="image, folder (recursive), video file, camera index (0) or GStreamer pipeline "
                        "(contains '!'); with --csi, the CSI sensor id (default 0)")
    p.add_argument("--backend", default="auto", choices=["auto"] + registered_backends(),
                   help="inference backend (default: by model suffix)")
    p.add_argument("--providers", type=name_list, metavar="A,B",
                   help="ONNX Runtime providers, e.g. cuda or tensorrt,cuda (default: cpu)")
    p.add_argument("--threshold", type=float, help="anomaly threshold on the score (default: the model's)")
    p.add_argument("--batch-size", type=int_at_least(1), default=1, metavar="N",
                   help="frames per inference call (default: 1, lowest latency)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write heat-map overlays (DIR/overlays) and binary masks (DIR/masks) per input")
    p.add_argument("--json", type=Path, dest="json_path", metavar="PATH",
                   help="write JSON Lines, one object per input")
    p.add_argument("--show", action="store_true", help="show overlays in a window (q or Esc stops)")
    p.add_argument("--limit", type=int_at_least(1), metavar="N", help="stop after N inputs")
    p.add_argument("--csi", action="store_true", help="read a Jetson CSI camera (nvarguscamerasrc)")
    p.add_argument("--csi-size", type=_size, default=(1920, 1080), metavar="WxH",
                   help="CSI capture size (default: 1920x1080)")
    p.add_argument("--csi-fps", type=int_at_least(1), default=30, metavar="N", help="CSI frame rate (default: 30)")
    p.add_argument("--csi-flip", type=int, default=0, choices=range(8), metavar="0-7",
                   help="nvvidconv flip-method (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, notes or summary")
    return p


def _source_spec(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """SOURCE, or the CSI pipeline built from --csi options."""
    if not args.csi:
        if args.source is None:
            parser.error("SOURCE is required (or --csi for a Jetson CSI camera)")
        return args.source
    from .sources import csi_pipeline

    sensor = args.source if args.source is not None else "0"
    if not sensor.isdigit():
        parser.error(f"with --csi, SOURCE is the sensor id (an integer), got {sensor!r}")
    width, height = args.csi_size
    return csi_pipeline(int(sensor), width, height, args.csi_fps, args.csi_flip)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run rd-infer; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    spec = _source_spec(parser, args)
    return run_cli(lambda: _run(args, spec))


def _run(args: argparse.Namespace, spec: str) -> int:
    from .detector import Detector
    from .sources import open_source

    detector = Detector(args.model, backend=args.backend, threshold=args.threshold,
                        providers=args.providers, batch_size=args.batch_size)
    with detector, open_source(spec, args.limit) as source:
        if not args.quiet:
            _print_header(detector, source, args)
        with _Recorder(detector, args) as recorder:
            _process(detector, source, recorder, quiet=args.quiet)
        stats = recorder.stats
    if not args.quiet:
        print(stats.summary())
    return _EXIT_INPUT_FAILED if stats.errors else 0


def _print_header(detector: Any, source: Any, args: argparse.Namespace) -> None:
    providers = getattr(detector.runner, "providers", None)
    backend = detector.backend + (f" ({', '.join(providers)})" if providers else "")
    count = f" ({source.total} inputs)" if source.total is not None and source.total > 1 else ""
    print(f"rd-infer: {args.model} on {backend}, preprocessing on {detector.preprocess_device}, "
          f"threshold {detector.threshold:.6g}; {source.kind} {source.description}{count}", file=sys.stderr)
    if detector.preprocess_fallback_reason:
        print(f"note: CUDA preprocessing unavailable, using the CPU: {detector.preprocess_fallback_reason}",
              file=sys.stderr)


def _process(detector: Any, source: Any, recorder: "_Recorder", quiet: bool) -> None:
    """Read the source in chunks of batch_size, score the good frames, record every item."""
    bar = _progress_bar(total=source.total, unit="img" if source.kind == "folder" else "frame",
                        disable=quiet or source.kind in ("image", "file"))
    recorder.progress = bar
    pending: List[Any] = []
    try:
        for item in source:
            pending.append(item)
            if len(pending) >= detector.batch_size:
                if not _flush(detector, pending, recorder):
                    return
                bar.update(len(pending))
                pending = []
        _flush(detector, pending, recorder)
        bar.update(len(pending))
    finally:
        bar.close()


def _progress_bar(total: Optional[int], unit: str, disable: bool) -> Any:
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


def _flush(detector: Any, items: List[Any], recorder: "_Recorder") -> bool:
    """Score the items that have a frame, record all of them in order; False to stop the run."""
    import cv2

    good = [item for item in items if item.frame is not None]
    predictions: Dict[int, Any] = {}
    failure: Optional[str] = None
    if good:
        try:
            predictions = dict(zip(map(id, good), detector.predict([item.frame for item in good])))
        except NonFiniteOutputError as exc:  # the finite frames keep their results
            predictions = {id(item): p for item, p in zip(good, exc.predictions) if p is not None}
            failure = exc.FRAME_ERROR
        except (RdEdgeError, cv2.error) as exc:  # keep going; these inputs get the error
            failure = str(exc).strip() or type(exc).__name__
    keep_going = True
    for item in items:
        prediction = predictions.get(id(item))
        error = item.error if item.frame is None else (failure if prediction is None else None)
        keep_going = recorder.record(item, prediction, error) and keep_going
    return keep_going


class _Stats:
    """Counts and latencies for the summary."""

    def __init__(self) -> None:
        self.inputs = self.anomalies = self.errors = 0
        self.latencies: List[float] = []
        self.started = time.perf_counter()

    def add(self, prediction: Any, error: Optional[str]) -> None:
        self.inputs += 1
        if error is not None:
            self.errors += 1
            return
        self.anomalies += int(prediction.is_anomalous)
        self.latencies.append(prediction.timings["total_ms"])

    def summary(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        text = f"inputs {self.inputs}, anomalous {self.anomalies}, errors {self.errors}"
        if self.latencies:
            lat = np.asarray(self.latencies)
            text += (f"; latency mean {lat.mean():.2f} ms, p99 {np.percentile(lat, 99):.2f} ms; "
                     f"{len(lat) / elapsed:.1f} frames/s")
        return text


class _Recorder:
    """Writes each input's JSON line, overlay and mask, shows it, and keeps the statistics."""

    def __init__(self, detector: Any, args: argparse.Namespace) -> None:
        self.detector = detector
        self.out: Optional[Path] = args.out
        self.show = args.show
        self.echo = not args.quiet  # one line per input when there is no progress bar
        self.stats = _Stats()
        self.progress: Any = None
        self._json: Optional[IO[str]] = None
        if args.json_path is not None:
            self._json = _open_for_writing(args.json_path)

    def record(self, item: Any, prediction: Any, error: Optional[str]) -> bool:
        """Record one input; returns False when the user closed the window (stop)."""
        self.stats.add(prediction, error)
        record = _record_dict(item.name, prediction, error)
        if self._json is not None:
            self._json.write(json.dumps(record, allow_nan=False) + "\n")  # NaN is not JSON
            self._json.flush()  # an interrupted run keeps every record written so far
        self._echo(record)
        if prediction is None:
            return True
        if self.out is not None or self.show:
            overlay, mask = self._render(item.frame, prediction)
            if self.out is not None:
                _write_png(self.out / "overlays" / f"{item.key}.png", overlay)
                _write_png(self.out / "masks" / f"{item.key}.png", mask)
            if self.show:
                return self._show(overlay)
        return True

    def _echo(self, record: Dict[str, Any]) -> None:
        bar_visible = self.progress is not None and not self.progress.disable
        if record["error"] is not None and self.echo:
            message = f"warning: {record['source']}: {record['error']}"
            (self.progress.write(message, file=sys.stderr) if bar_visible else print(message, file=sys.stderr))
        elif self.echo and not bar_visible:
            flag = "ANOMALOUS" if record["is_anomalous"] else "ok"
            print(f"{record['source']}: score {record['score']:.6g} (normalized "
                  f"{record['normalized_score']:.3f}) {flag}, {record['latency_ms']:.1f} ms")

    def _render(self, frame: np.ndarray, prediction: Any) -> Tuple[np.ndarray, np.ndarray]:
        from rd_edge.core.postprocess import heatmap_overlay

        mask = prediction.anomaly_map > self.detector.threshold  # [H,W] bool at the frame size
        vmin, vmax = self.detector.display_range()
        overlay = heatmap_overlay(frame, prediction.anomaly_map, vmin, vmax, mask=mask)
        return overlay, mask.astype(np.uint8) * np.uint8(255)

    def _show(self, overlay: np.ndarray) -> bool:
        import cv2

        try:
            cv2.imshow("rd-infer", overlay)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:  # headless OpenCV build or no display
            print(f"warning: --show needs an OpenCV with GUI support and a display; continuing "
                  f"without the window ({str(exc).strip().splitlines()[-1]})", file=sys.stderr)
            self.show = False
            return True
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self._json is not None:
            self._json.close()
            self._json = None
        if self.show:
            import cv2

            cv2.destroyAllWindows()

    def __enter__(self) -> "_Recorder":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _record_dict(source: str, prediction: Any, error: Optional[str]) -> Dict[str, Any]:
    """The JSON Lines object of one input; scores are null when it failed."""
    if prediction is None:
        return {"source": source, "score": None, "normalized_score": None, "is_anomalous": None,
                "latency_ms": None, "error": error or "unknown error"}
    return {"source": source, "score": float(prediction.score),
            "normalized_score": float(prediction.normalized_score),
            "is_anomalous": bool(prediction.is_anomalous),
            "latency_ms": round(float(prediction.timings["total_ms"]), 3), "error": None}


def _open_for_writing(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise RdEdgeError(f"cannot write {path}: {exc.strerror or exc}") from exc


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


if __name__ == "__main__":
    sys.exit(main())
