"""rd-infer: run an exported RD model over images, folders, videos, cameras or GStreamer pipelines.

stdout: one line per scored input (sinks.console.result_line), nothing else; stderr: header, progress,
warnings, summary. Exit code 0 when every input was scored, 2 when any input failed (each still
has its record), 1 for an error that stops the run (missing model, model without rd_edge metadata,
a source that cannot be opened) or, with --fail-on-anomaly, when any input was NG; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from rd_edge.core.choices import InferencePrecision, values
from rd_edge.core.cli import (
    DefaultsHelpFormatter,
    int_at_least,
    name_list,
    port_number,
    run_cli,
    show_progress,
)
from rd_edge.core.errors import RdEdgeError
from rd_edge.core.urls import mask_url

from .backends import registered_backends

if TYPE_CHECKING:  # the client needs tritonclient: imported only for --server
    from .client import RemoteDetector

EXIT_OK = 0
EXIT_ANOMALY = 1  # with --fail-on-anomaly: some input was NG (1 is also a run-stopping error)
EXIT_INPUT_FAILED = 2  # some input could not be scored; wins over EXIT_ANOMALY


def exit_code(errors: int, anomalies: int, fail_on_anomaly: bool) -> int:
    """2 when an input failed, else 1 when an input was NG and the caller asked for it, else 0."""
    if errors:
        return EXIT_INPUT_FAILED
    return EXIT_ANOMALY if fail_on_anomaly and anomalies else EXIT_OK


def _size(text: str) -> Tuple[int, int]:
    """'WIDTHxHEIGHT' -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1920x1080, got {text!r}") from None
    return width, height


def _positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rd-infer",
        formatter_class=DefaultsHelpFormatter,
        description="Score images, folders, videos, cameras or GStreamer pipelines with an exported RD\n"
        "model (.onnx for ONNX Runtime, .engine for TensorRT).\n\n"
        "stdout: one line per input: <source> score=S normalized=N verdict=OK|NG latency_ms=L\n"
        "stderr: header, progress, warnings, summary (--quiet: warnings only).",
        epilog="Exit code: 0 all inputs scored, 2 some inputs failed (see their records), 1 error or, "
        "with --fail-on-anomaly, some input NG.",
    )
    p.add_argument("model", help="model.onnx or model.engine written by rd-export")
    p.add_argument(
        "source",
        nargs="*",
        help="image, folder (recursive), video file, camera index (0), rtsp:// URL or GStreamer "
        "pipeline (contains '!'); several run together, sharing inference batches; NAME=SOURCE "
        "names one (records, topics); with --csi, CSI sensor ids (0 when none)",
    )
    p.add_argument(
        "--source",
        action="append",
        default=[],
        dest="more_sources",
        metavar="SOURCE",
        help="one more source (repeatable), same forms as SOURCE",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto"] + registered_backends(),
        help="inference backend; auto: by model suffix",
    )
    p.add_argument(
        "--providers",
        type=name_list,
        metavar="A,B",
        help="ONNX Runtime providers, e.g. cuda or tensorrt,cuda; none given: cpu",
    )
    p.add_argument(
        "--threads",
        type=int_at_least(1),
        metavar="N",
        help="inference threads (ort, openvino); none given: the backend's, one per core",
    )
    p.add_argument(
        "--no-spinning",
        action="store_true",
        help="ort: idle worker threads sleep instead of spinning (pays on a CPU shared with other work)",
    )
    p.add_argument(
        "--precision",
        choices=values(InferencePrecision),
        default=None,
        help="openvino: inference precision of float layers; none given: the model's (fp32 unless "
        "exported for bf16)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="image threshold on the score; none given: MODEL.thresholds.json beside the model, else "
        "the model's",
    )
    p.add_argument(
        "--pixel-threshold",
        type=float,
        metavar="P",
        help="pixel threshold for masks and overlays; none given: MODEL.thresholds.json, the model's, "
        "else the image threshold",
    )
    p.add_argument(
        "--tile-batch",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="tiled models: at most N tiles per model call (default: 64, fewer for tiles over "
        "147 px: 16 MB of input per call); bounds memory on large frames",
    )
    p.add_argument(
        "--batch-size",
        type=int_at_least(1),
        default=1,
        metavar="N",
        help="frames per inference call (1: lowest latency)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR|CLIP",
        help="images/folders: overlays (DIR/overlays) and masks (DIR/masks) as PNG per input; "
        "videos/cameras: an annotated video, CLIP (.mp4 .avi .mkv .mov .m4v) or DIR/<name>.mp4",
    )
    p.add_argument(
        "--segment-seconds",
        type=float,
        metavar="S",
        help="videos/cameras with --out: rotate the annotated video every S seconds of frames "
        "(STEM-000001.mp4, STEM-000002.mp4, ...) instead of one ever-growing file",
    )
    p.add_argument(
        "--segments",
        type=int_at_least(1),
        metavar="N",
        help="with --segment-seconds: keep the N newest segments, delete older ones",
    )
    p.add_argument(
        "--png-frames",
        action="store_true",
        help="videos/cameras: also write each frame's overlay and mask as PNG (beside the video)",
    )
    p.add_argument(
        "--fail-on-anomaly",
        action="store_true",
        help="exit code 1 when any input is NG (2 still wins: an input failed)",
    )
    p.add_argument(
        "--json", type=Path, dest="json_path", metavar="PATH", help="write JSON Lines, one object per input"
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write a report to open in a browser: DIR/index.html (overlay thumbnails, verdicts, "
        "scores, score histogram with the threshold, summary per source) and DIR/results.csv",
    )
    p.add_argument("--show", action="store_true", help="show overlays in a window (q or Esc stops)")
    p.add_argument(
        "--limit",
        type=int_at_least(1),
        metavar="N",
        help="stop after N inputs (a live source: N frames read; stale ones are dropped as usual, "
        "so it can give fewer records, the last frame read always among them)",
    )
    p.add_argument("--csi", action="store_true", help="read a Jetson CSI camera (nvarguscamerasrc)")
    p.add_argument("--csi-size", type=_size, default="1920x1080", metavar="WxH", help="CSI capture size")
    p.add_argument("--csi-fps", type=int_at_least(1), default=30, metavar="N", help="CSI frame rate")
    p.add_argument(
        "--csi-flip", type=int, default=0, choices=range(8), metavar="0-7", help="nvvidconv flip-method"
    )
    p.add_argument(
        "--mqtt",
        metavar="mqtt://HOST:PORT/PREFIX",
        help="publish each result as JSON on PREFIX/<source> (QoS 1, retained), buffered while the "
        "broker is away",
    )
    p.add_argument(
        "--mqtt-buffer",
        type=int_at_least(1),
        default=10000,
        metavar="N",
        help="results held while the MQTT broker is away; beyond, the oldest are dropped",
    )
    p.add_argument(
        "--evidence",
        type=Path,
        metavar="DIR",
        help="keep each anomalous frame as DIR/<source>/<time>_<frame>.jpg (map overlay) + .json",
    )
    p.add_argument(
        "--evidence-max-mb",
        type=_positive_float,
        metavar="MB",
        help="evidence disk budget; the oldest entries are removed first; none given: no limit",
    )
    p.add_argument(
        "--metrics-port",
        type=port_number(allow_any=True),
        metavar="PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics while running (0: a free port, "
        "printed at start)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address of the metrics endpoint (0.0.0.0: every interface, no authentication)",
    )
    p.add_argument(
        "--read-timeout",
        type=_positive_float,
        default=5.0,
        metavar="S",
        help="cameras, pipelines and streams: seconds without a frame before the source counts as "
        "lost: an outage, with an error record and exit code 2 (with --reconnect too, even when "
        "the source comes back)",
    )
    p.add_argument(
        "--reconnect",
        action="store_true",
        help="cameras, pipelines and streams: after an outage, reopen the source with back-off "
        "(0.5 s doubling to 10 s) until it is back; each outage is recorded (start, end, "
        "frames lost)",
    )
    p.add_argument(
        "--drift-window",
        type=int_at_least(0),
        default=200,
        metavar="N",
        help="score drift: compare the last N OK scores per stream with the normal scores "
        "rd-calibrate recorded in MODEL.thresholds.json (KS statistic, warns once); 0: off",
    )
    p.add_argument(
        "--station",
        type=port_number(allow_any=True),
        metavar="PORT",
        help="serve the operator's station (live view, counters, score chart, NG gallery, review, "
        "drift) on http://127.0.0.1:PORT/; needs --evidence (the gallery) and the station extra",
    )
    p.add_argument(
        "--station-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address to serve the station on; any other than 127.0.0.1 requires the token printed "
        "at start (0.0.0.0: every interface)",
    )
    p.add_argument(
        "--station-fps",
        type=_positive_float,
        default=5.0,
        metavar="N",
        help="at most N live images per second and stream are rendered for the page",
    )
    p.add_argument(
        "--review",
        type=Path,
        metavar="DIR",
        help="where the station saves review marks; none given: 'review' beside the evidence folder",
    )
    p.add_argument(
        "--station-linger",
        type=_positive_float,
        metavar="S",
        help="after the last input, keep the station up S more seconds for review (Ctrl-C ends)",
    )
    p.add_argument(
        "--realtime",
        action="store_true",
        help="read video files at their frame rate, as the camera delivered them (demos, the station)",
    )
    p.add_argument(
        "--opcua",
        metavar="opc.tcp://HOST:PORT",
        help="serve results, counters, model identity and a Trigger method per stream to a PLC over "
        "OPC UA (node model: docs/jetson.md); anonymous on a loopback address only",
    )
    p.add_argument(
        "--opcua-user",
        metavar="USER",
        help="--opcua on another address: the one user allowed (password in the environment variable "
        "RD_EDGE_OPCUA_PASSWORD); needs --opcua-cert and --opcua-key (Basic256Sha256)",
    )
    p.add_argument("--opcua-cert", type=Path, metavar="CERT.der", help="--opcua: the server's certificate")
    p.add_argument("--opcua-key", type=Path, metavar="KEY.pem", help="--opcua: the server's private key")
    p.add_argument(
        "--camera-file",
        type=Path,
        metavar="FILE",
        help="aravis:// cameras: GenICam features to set, a YAML or JSON mapping applied in order "
        "(e.g. ExposureTime: 5000, PixelFormat: BayerRG8); the URL's ?Feature=value wins",
    )
    p.add_argument(
        "--trigger",
        action="store_true",
        help="triggered inspection: live sources are inspected only when asked (--opcua Trigger); "
        "aravis:// cameras run with TriggerMode On, TriggerSource Software",
    )
    p.add_argument(
        "--sequential",
        action="store_true",
        help="run the stages one after another in one thread instead of pipelined",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar, header or summary on stderr (result lines and warnings stay)",
    )
    p.add_argument(
        "--server",
        metavar="URL",
        help="score on a Triton server running rd-serve (http://HOST:8000 or grpc://HOST:8001) "
        "instead of a local model; then every positional argument is a SOURCE",
    )
    return p


def _backend_options(args: argparse.Namespace) -> Dict[str, Any]:
    """--threads, --no-spinning, --precision as loader options, only those given (a backend that
    does not take one says so)."""
    given = {
        "threads": args.threads,
        "spinning": False if args.no_spinning else None,
        "precision": args.precision,
    }
    return {k: v for k, v in given.items() if v is not None}


def _source_specs(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> List[Tuple[Optional[str], str]]:
    """(label or None, spec) per source: SOURCE... (with --csi: CSI sensor ids) and --source."""
    extra = [_split_label(spec) for spec in args.more_sources]
    if not args.csi:
        if not args.source and not extra:
            parser.error("SOURCE is required (or --csi for a Jetson CSI camera)")
        return [_split_label(spec) for spec in args.source] + extra
    from .sources import csi_pipeline

    width, height = args.csi_size
    pipelines = []
    for sensor in args.source or ["0"]:
        if not sensor.isdigit():
            parser.error(f"with --csi, SOURCE is the sensor id (an integer), got {sensor!r}")
        pipelines.append((None, csi_pipeline(int(sensor), width, height, args.csi_fps, args.csi_flip)))
    return pipelines + extra


def _split_label(spec: str) -> Tuple[Optional[str], str]:
    """'left=rtsp://...' -> ('left', 'rtsp://...'); an existing path or a pipeline is never split."""
    name, sep, rest = spec.partition("=")
    if sep and rest and re.fullmatch(r"[A-Za-z0-9_.-]+", name) and not Path(spec).exists():
        return name, rest
    return None, spec


def _draws_overlays(args: argparse.Namespace) -> bool:
    """Whether some output draws overlays, which need the server to send the anomaly maps."""
    return any(
        (
            args.out is not None,
            args.show,
            args.evidence is not None,
            args.report is not None,
            getattr(args, "station", None) is not None,
        )
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run rd-infer; returns the exit code."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)  # SOURCE... may follow options: MODEL --csi 0 1
    if args.segments is not None and args.segment_seconds is None:
        parser.error("--segments needs --segment-seconds S")
    if args.segment_seconds is not None and not args.segment_seconds > 0:
        parser.error(f"--segment-seconds expects a number of seconds > 0, got {args.segment_seconds}")
    if args.evidence_max_mb is not None and args.evidence is None:
        parser.error("--evidence-max-mb needs --evidence DIR")
    if args.station is not None and args.evidence is None:
        parser.error(
            "--station needs --evidence DIR: its gallery shows the evidence folder, and review marks "
            "save the original frames kept there"
        )
    if args.server is not None:  # no local model: the first positional is a source too
        if args.backend != "auto" or args.providers or _backend_options(args):
            parser.error(
                "--backend, --providers, --threads, --no-spinning and --precision set up a local "
                "backend; the server has its own"
            )
        args.source, args.model = [args.model] + list(args.source), args.server
    specs = _source_specs(parser, args)
    return run_cli(lambda: _run(args, specs))


def _run(args: argparse.Namespace, specs: List[Tuple[Optional[str], str]]) -> int:
    from rd_edge.core.images import require_opencv

    from .detector import Detector
    from .pipeline import Pipeline
    from .sinks.console import ConsoleSink

    require_opencv()  # every source is decoded with it: one error now, not one warning per image

    detector: Union[Detector, RemoteDetector]
    if args.server is not None:
        from .client import RemoteDetector

        detector = RemoteDetector(
            args.server,
            batch_size=args.batch_size,
            threshold=args.threshold,
            pixel_threshold=args.pixel_threshold,
            anomaly_map=_draws_overlays(args),
        )
    else:
        detector = Detector(
            args.model,
            backend=args.backend,
            threshold=args.threshold,
            pixel_threshold=args.pixel_threshold,
            providers=args.providers,
            batch_size=args.batch_size,
            tile_batch=args.tile_batch,
            **_backend_options(args),
        )
    with detector, contextlib.ExitStack() as stack:
        sources = [
            stack.enter_context(source) for source in _open_sources(specs, args.limit, _live_options(args))
        ]
        for source in sources:
            source.pace = args.realtime and source.kind == "video"
        _bound_decoded_images(detector, sources)
        sinks = _build_sinks(detector, sources, args, stack)
        if not args.quiet:
            _print_header(detector, sources, args)
        pipeline = Pipeline(
            detector, sources, sinks, batch_size=args.batch_size, pipelined=not args.sequential
        )
        for sink in sinks:
            if isinstance(sink, ConsoleSink):
                sink.stop = pipeline.stop  # closing the --show window ends the run
        with _stop_on_sigterm(pipeline) as terminated:
            summary = pipeline.run()
            _linger(getattr(args, "station_url", None), args.station_linger, terminated, args.quiet)
    recorder = next(s for s in sinks if isinstance(s, ConsoleSink))
    if recorder.stdout_closed:
        return 0  # `rd-infer ... | head`: the reader has what it wanted
    if not args.quiet:
        print(summary.text(), file=sys.stderr)
    if summary.interrupted and not terminated:
        return 130  # Ctrl-C; SIGTERM is how a service is stopped: a normal end
    anomalies = sum(s.anomalies for s in summary.streams.values())
    return exit_code(summary.errors, anomalies, args.fail_on_anomaly)


def _bound_decoded_images(detector: Any, sources: Sequence[Any]) -> None:
    """Images above MAX_DISPLAY_PIXELS are downscaled once on decode: the model sees its input
    size either way, and overlays, masks and maps stay bounded (a 20000x20000 PNG took 7.9 GB
    with --out). Not for tiled models: their tiles need the full resolution."""
    from rd_edge.core.images import MAX_DISPLAY_PIXELS

    if getattr(getattr(detector, "metadata", None), "tiling", None) is not None:
        return
    for source in sources:
        if hasattr(source, "max_pixels"):
            source.max_pixels = MAX_DISPLAY_PIXELS


def _live_options(args: argparse.Namespace) -> Any:
    from .live import Backoff
    from .sources import LiveOptions

    features: Tuple[Tuple[str, str], ...] = ()
    if args.camera_file is not None:
        from .aravis import read_camera_file

        features = tuple(read_camera_file(args.camera_file).items())
    return LiveOptions(args.read_timeout, Backoff() if args.reconnect else None, args.trigger, features)


def _open_sources(specs: List[Tuple[Optional[str], str]], limit: Optional[int], live: Any) -> List[Any]:
    """Open every source (SourceError for one that cannot be opened); labels made unique."""
    from .sources import clean_label, open_source

    sources, seen = [], set()
    try:
        for label, spec in specs:
            source = open_source(spec, limit, clean_label(label) if label else None, live)
            base, n = source.label, 2
            while source.label in seen:
                source.label, n = f"{base}-{n}", n + 1
            seen.add(source.label)
            sources.append(source)
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources


def _build_sinks(
    detector: Any, sources: List[Any], args: argparse.Namespace, stack: contextlib.ExitStack
) -> List[Any]:
    """The sinks the options ask for; each is closed by the pipeline."""
    from .sinks import JsonlSink
    from .sinks.console import ConsoleSink, progress_bar

    sinks: List[Any] = []

    def add(sink: Any) -> None:
        stack.callback(sink.close)  # closed even when a later sink fails to start (close is idempotent)
        sinks.append(sink)

    if args.evidence is not None:  # first: the records of the sinks after it name the evidence file
        from .sinks.evidence import EvidenceSink, refuse_inside

        refuse_inside(args.evidence, {"--json": args.json_path, "--out": args.out})
        add(
            EvidenceSink(
                args.evidence, detector, max_mb=args.evidence_max_mb, originals=args.station is not None
            )
        )
    reference = _drift_reference(detector, args)
    if reference is not None:  # before the sinks that publish records: they carry the statistic
        from .sinks.drift import DriftSink

        try:
            add(DriftSink(reference, window=args.drift_window, threshold=detector.threshold))
        except (
            RdEdgeError
        ) as exc:  # drift is a side watch: a reference that cannot serve must not stop the line
            print(f"warning: drift monitoring off: {exc}", file=sys.stderr)
    if args.json_path is not None:
        add(JsonlSink(args.json_path))
    if args.report is not None:
        from .sinks.report import ReportSink

        add(ReportSink(args.report, detector, str(args.model), several_streams=len(sources) > 1))
    if args.mqtt is not None:
        from .sinks.mqtt import MqttSink

        add(MqttSink(args.mqtt, buffer=args.mqtt_buffer))
    recorder = ConsoleSink(
        detector,
        args.out,
        args.png_frames,
        args.show,
        prefix_keys=len(sources) > 1,
        sources=sources,
        segment_seconds=args.segment_seconds,
        segments=args.segments,
    )
    recorder.progress = progress_bar(
        total=_total(sources),
        unit="img" if sources[0].kind == "folder" else "frame",
        disable=args.quiet
        or not show_progress()
        or (len(sources) == 1 and sources[0].kind in ("image", "file")),
    )
    add(recorder)
    if args.station is not None:
        add(_start_station(detector, sources, args, stack))
    board = None
    if args.opcua is not None:
        from .sinks.trigger import TriggerBoard

        board = TriggerBoard(sources)
        add(_start_opcua(detector, sources, args, board))
    if args.metrics_port is not None:  # last: it observes the time the other sinks took
        from .sinks.metrics import MetricsSink

        metrics = MetricsSink(args.metrics_port, host=args.metrics_host, streams=[s.label for s in sources])
        add(metrics)
        print(
            f"rd-infer: metrics on http://{args.metrics_host}:{metrics.port}/metrics",
            file=sys.stderr,
            flush=True,
        )
    if board is not None:  # after every other sink: a trigger is answered once the result is published
        add(board)
    return sinks


def _start_opcua(detector: Any, sources: List[Any], args: argparse.Namespace, board: Any) -> Any:
    """The OPC UA server sink (--opcua), with its security for a non-loopback address."""
    import os

    from .sinks.opcua import NAMESPACE, OpcUaSecurity, OpcUaSink

    security = None
    if args.opcua_user is not None:
        password = os.environ.get("RD_EDGE_OPCUA_PASSWORD")
        if not password or args.opcua_cert is None or args.opcua_key is None:
            raise RdEdgeError(
                "--opcua-user needs the password in RD_EDGE_OPCUA_PASSWORD and --opcua-cert, --opcua-key"
            )
        security = OpcUaSecurity(args.opcua_user, password, args.opcua_cert, args.opcua_key)
    triggered = [s.label for s in sources if getattr(s, "triggered", False)]
    sink = OpcUaSink(
        args.opcua,
        [s.label for s in sources],
        getattr(detector.runner, "path", None),
        (detector.threshold, getattr(detector, "pixel_threshold", detector.threshold)),
        board,
        triggered,
        security,
    )
    print(
        f"rd-infer: OPC UA on {sink.endpoint} (namespace {NAMESPACE}, nodes ns=<its index>;s=RdEdge...)",
        file=sys.stderr,
        flush=True,
    )
    return sink


def _start_station(
    detector: Any, sources: List[Any], args: argparse.Namespace, stack: contextlib.ExitStack
) -> Any:
    """The station's sink; its web server runs until the ExitStack closes (after any linger)."""
    from .station import Station, StationServer, StationSink

    review = args.review if args.review is not None else args.evidence.parent / "review"
    station = Station(
        args.evidence,
        review,
        detector=detector,
        streams=[s.label for s in sources],
        live_fps=args.station_fps,
        title=f"rd-edge station: {Path(mask_url(str(args.model))).name}",
    )
    server = StationServer(station, args.station, host=args.station_host)
    stack.callback(server.close)
    args.station_url = server.url
    token = " (the token in it is needed from other machines)" if server.token else ""
    print(f"station: {server.url} (review marks go to {review}){token}", file=sys.stderr, flush=True)
    return StationSink(station)


def _linger(url: Optional[str], seconds: Optional[float], terminated: List[bool], quiet: bool) -> None:
    """Keep the station up after the run, until ``seconds`` passed, Ctrl-C or SIGTERM."""
    import time

    if url is None or not seconds or terminated:
        return
    if not quiet:
        print(
            f"run finished; the station stays up at {url} for {seconds:g} s (Ctrl-C ends)",
            file=sys.stderr,
            flush=True,
        )
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not terminated:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass


def _drift_reference(detector: Any, args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """The calibration's normal scores for drift monitoring, None when off or not recorded."""
    if args.drift_window == 0 or args.server is not None:
        return None
    from rd_edge.core.drift import MIN_WINDOW

    from .sinks.drift import drift_reference

    if args.drift_window < MIN_WINDOW:
        raise RdEdgeError(f"--drift-window must be 0 (off) or >= {MIN_WINDOW}, got {args.drift_window}")
    return drift_reference(args.model, detector.metadata)


def _total(sources: List[Any]) -> Optional[int]:
    totals = [s.total for s in sources]
    return None if any(t is None for t in totals) else sum(totals)


@contextlib.contextmanager
def _stop_on_sigterm(pipeline: Any) -> Iterator[List[bool]]:
    """SIGTERM stops the pipeline cleanly (flush, close, summary); yields a flag list (truthy once it came)."""
    import signal

    came: List[bool] = []

    def handler(signum: int, frame: Any) -> None:
        came.append(True)
        pipeline.stop()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (rd-infer called from a library): no handler
        yield came
        return
    try:
        yield came
    finally:
        signal.signal(signal.SIGTERM, previous)


def _thresholds_text(detector: Any) -> str:
    """'threshold T (source), pixel threshold P (source)'; a remote model has the image threshold only."""
    sources = getattr(detector, "thresholds", None)
    if sources is None:  # a remote model: the server's threshold for image and pixels
        return f"threshold {detector.threshold:.6g}"
    # How it was chosen (rd-calibrate's method, rd-train's held-out images): how much to trust it.
    basis = f", {sources.image_basis}" if sources.image_basis else ""
    return (
        f"threshold {detector.threshold:.6g} ({sources.image_source}{basis}), pixel threshold "
        f"{detector.pixel_threshold:.6g} ({sources.pixel_source})"
    )


def _print_header(detector: Any, sources: List[Any], args: argparse.Namespace) -> None:
    runner = detector.runner  # None for --server: the server runs the model
    providers = getattr(runner, "providers", None)
    detail = (runner.describe() if runner is not None else "") or ", ".join(providers or [])
    backend = detector.backend + (f" ({detail})" if detail else "")
    described = "; ".join(_describe_source(s, len(sources) > 1) for s in sources)
    print(
        f"rd-infer: {mask_url(str(args.model))} on {backend}, preprocessing on {detector.preprocess_device}, "
        f"{_thresholds_text(detector)}; {described}",
        file=sys.stderr,
    )
    if detector.preprocess_fallback_reason:
        print(
            f"note: CUDA preprocessing unavailable, using the CPU: {detector.preprocess_fallback_reason}",
            file=sys.stderr,
        )


def _describe_source(source: Any, named: bool) -> str:
    count = f" ({source.total} inputs)" if source.total is not None and source.total > 1 else ""
    camera = getattr(source, "camera", None)  # a GenICam camera: what it is, the features as read back
    if camera is not None:
        features = ", ".join(f"{k}={v}" for k, v in camera.applied.items())
        count += f" ({camera.description}{'; ' + features if features else ''})"
    return f"{source.label + ': ' if named else ''}{source.kind} {source.description}{count}"


if __name__ == "__main__":
    sys.exit(main())
