"""The device's half of `make jetson-sim`: one check per call, run inside the arm64 root.

    python3 checks.py CHECK     (CHECK: env, numpy-kept, torch-free, folder, video, detector,
                                 thresholds, tiled, mqtt, evidence)

Exit 0 when the check holds; the last line printed is its one-line result. Written for the
oldest Python the runtime supports (3.8): no newer syntax here either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WORK = Path(os.environ.get("RD_SIM_WORK", "/opt/rd-sim/work"))
PLAIN = WORK / "plain" / "model.onnx"
TILED = WORK / "tiled" / "model.onnx"
REFERENCE = json.loads((WORK / "reference.json").read_text())
# Scores on aarch64 (ONNX Runtime's ARM kernels, the distribution's OpenCV) against x86: float32
# reductions in another order; the video adds another libjpeg's decoding of the same MJPG frames.
RTOL = {"folder": 1e-3, "video": 1e-2, "tiled": 1e-3}


class CheckFailed(Exception):
    pass


def rd_infer(*args: str) -> subprocess.CompletedProcess[str]:
    """rd-infer, drift check off: a two-step model's calibration leaves too few normal scores
    below its threshold for a drift reference (rd-infer refuses that)."""
    return subprocess.run(
        ["rd-infer", *args, "--drift-window", "0"], capture_output=True, text=True, check=False, timeout=600
    )


def records(jsonl: Path) -> list[dict]:
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def key(source: str, root: Path) -> str:
    return str(Path(source).relative_to(root)) if source.startswith(str(root)) else source


def score_inputs(name: str, model: Path, source: Path, root: Path, *extra: str) -> dict[str, float]:
    """rd-infer over ``source``; its scores by input, checked against the x86 reference."""
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "out.jsonl"
        proc = rd_infer(str(model), str(source), "--json", str(jsonl), "--quiet", *extra)
        if proc.returncode != 0:
            raise CheckFailed(f"rd-infer exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        got = {key(r["source"], root): r["score"] for r in records(jsonl)}
    compare(name, got)
    return got


def compare(name: str, got: dict[str, float]) -> None:
    want = REFERENCE[name]
    if sorted(got) != sorted(want):
        raise CheckFailed(f"inputs {sorted(got)} != reference {sorted(want)}")
    worst = max(abs(got[k] - want[k]) / abs(want[k]) for k in want)
    if worst > RTOL[name]:
        raise CheckFailed(f"scores differ from x86 by {worst:.2e} relative (> {RTOL[name]:g})")
    print(f"{len(got)} inputs, scores = x86 within {worst:.1e} relative (tolerance {RTOL[name]:g})")


def check_env() -> None:
    import platform

    import cv2
    import numpy

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = "not installed"
    print(
        f"arch={platform.machine()} python={platform.python_version()} numpy={numpy.__version__} "
        f"({Path(numpy.__file__).parent.parent}) opencv={cv2.__version__} onnxruntime={ort}"
    )


def check_numpy_kept() -> None:
    """The venv sees the system's numpy, the one the system OpenCV was built against."""
    import numpy

    kept = os.environ["SYSTEM_NUMPY"]
    where = Path(numpy.__file__).parent.parent
    if numpy.__version__ != kept or not str(where).startswith("/usr/lib/python3"):
        raise CheckFailed(f"numpy {numpy.__version__} from {where}, expected the system's {kept}")
    import cv2  # noqa: F401  (the import that a replaced numpy breaks)

    print(f"numpy {numpy.__version__} from {where} (the system's), cv2 imports")


def check_torch_free() -> None:
    import rd_edge.runtime  # noqa: F401

    loaded = sorted(m for m in ("torch", "onnx", "sklearn", "scipy") if m in sys.modules)
    if loaded:
        raise CheckFailed(f"importing rd_edge.runtime loaded {loaded}")
    print("import rd_edge.runtime loads none of torch, onnx, sklearn, scipy")


def check_folder() -> None:
    score_inputs("folder", PLAIN, WORK / "test", WORK / "test")


def check_video() -> None:
    score_inputs("video", PLAIN, WORK / "line.avi", WORK)


def check_tiled() -> None:
    from rd_edge.runtime import Detector

    score_inputs("tiled", TILED, WORK / "test-big", WORK / "test-big")
    import cv2

    with Detector(str(TILED)) as det:
        frame = cv2.imread(str(WORK / "test-big" / "good" / "000.png"))
        grid = det.tile_grid(frame.shape[:2])
        pred = det.predict(frame)
    want = REFERENCE["tiled"]["good/000.png"]
    if abs(pred.score - want) > RTOL["tiled"] * abs(want):
        raise CheckFailed(f"Detector on the tiled model: {pred.score} vs x86 {want}")
    print(
        f"{len(REFERENCE['tiled'])} frames of {frame.shape[1]}x{frame.shape[0]} in {len(grid)} tiles each, "
        f"scores = x86; Detector agrees"
    )


def check_detector() -> None:
    import cv2

    from rd_edge.runtime import Detector

    paths = sorted((WORK / "test").rglob("*.png"))
    frames = [cv2.imread(str(p)) for p in paths]
    with Detector(str(PLAIN)) as det:
        batch = det.predict(frames)
        single = [det.predict(f) for f in frames[:2]]  # emulation is slow: two suffice
        backend = det.backend
        threshold = det.threshold
    got = {str(p.relative_to(WORK / "test")): pred.score for p, pred in zip(paths, batch)}
    compare("folder", got)
    for one, many in zip(single, batch):
        if abs(one.score - many.score) > 1e-5 * abs(one.score):
            raise CheckFailed(f"single-frame score {one.score} != in the batch {many.score}")
    for pred in batch:
        if pred.is_anomalous != (pred.score > threshold):
            raise CheckFailed(f"verdict {pred.is_anomalous} for score {pred.score}, threshold {threshold}")
    print(
        f"Detector ({backend}): {len(frames)} frames as one batch = x86, one by one = in the batch; "
        f"verdict = score > {threshold:.4g}"
    )


def check_thresholds() -> None:
    from rd_edge.runtime import Detector

    calibrated = REFERENCE["thresholds"]
    with Detector(str(PLAIN)) as det:
        resolved = det.thresholds
    beside = str(WORK / "plain" / "model.onnx.thresholds.json")
    got = (resolved.image, resolved.image_source, resolved.pixel, resolved.pixel_source)
    want = (calibrated["image_threshold"], beside, calibrated["pixel_threshold"], beside)
    if got != want:
        raise CheckFailed(f"Detector's thresholds {got}, expected {want}")
    with Detector(str(PLAIN), threshold=0.5) as det:
        if det.thresholds.image_source != "argument" or det.threshold != 0.5:
            raise CheckFailed(f"threshold=0.5 gave {det.threshold} from {det.thresholds.image_source}")
    proc = rd_infer(str(PLAIN), str(WORK / "test"), "--threshold", "0", "--quiet")
    verdicts = [line.split("verdict=")[1].split()[0] for line in proc.stdout.splitlines()]
    if proc.returncode != 0 or not verdicts or set(verdicts) != {"NG"}:
        raise CheckFailed(f"rd-infer --threshold 0: exit {proc.returncode}, verdicts {verdicts}")
    print(
        f"model.onnx.thresholds.json read (image {resolved.image:.4g}, pixel {resolved.pixel:.4g}); "
        f"argument > file; rd-infer --threshold 0 flags all {len(verdicts)}"
    )


def check_mqtt() -> None:
    import paho.mqtt.client as mqtt

    port = int(os.environ["MQTT_PORT"])
    prefix = f"jetson-sim/{os.environ.get('RELEASE', 'device')}/{os.getpid()}"
    received: list[dict] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"jetson-sim-{os.getpid()}")
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(prefix + "/#", qos=1)
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not subscribed.wait(20):
            raise CheckFailed(f"no subscription on the broker at 127.0.0.1:{port}")
        proc = rd_infer(
            str(PLAIN), str(WORK / "test"), "--mqtt", f"mqtt://127.0.0.1:{port}/{prefix}", "--quiet"
        )
        if proc.returncode != 0:
            raise CheckFailed(f"rd-infer --mqtt exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        want = len(REFERENCE["folder"])
        deadline = time.monotonic() + 20
        while len(received) < want and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    got = {key(r["source"], WORK / "test"): r["score"] for r in received}
    compare("folder", got)


def check_evidence() -> None:
    ref = sorted(REFERENCE["folder"].values())
    threshold = (ref[len(ref) // 2 - 1] + ref[len(ref) // 2]) / 2  # about half the inputs anomalous
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "out.jsonl"
        evidence = Path(tmp) / "evidence"
        proc = rd_infer(
            str(PLAIN),
            str(WORK / "test"),
            "--threshold",
            repr(threshold),
            "--evidence",
            str(evidence),
            "--json",
            str(jsonl),
            "--quiet",
        )
        if proc.returncode != 0:
            raise CheckFailed(f"rd-infer --evidence exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        recs = records(jsonl)
        flagged = [r for r in recs if r["is_anomalous"]]
        saved = sorted(evidence.rglob("*.jpg"))
        import cv2

        if not flagged or len(saved) != len(flagged) or any(not r.get("evidence") for r in flagged):
            raise CheckFailed(f"{len(flagged)} anomalous records, {len(saved)} JPEGs in {evidence}")
        if any(cv2.imread(str(p)) is None for p in saved):
            raise CheckFailed("an evidence JPEG does not decode")
    print(
        f"{len(flagged)} of {len(recs)} frames anomalous -> {len(saved)} evidence JPEGs (decodable) with records"
    )


CHECKS = {
    "env": check_env,
    "numpy-kept": check_numpy_kept,
    "torch-free": check_torch_free,
    "folder": check_folder,
    "video": check_video,
    "detector": check_detector,
    "thresholds": check_thresholds,
    "tiled": check_tiled,
    "mqtt": check_mqtt,
    "evidence": check_evidence,
}

if __name__ == "__main__":
    try:
        CHECKS[sys.argv[1]]()
    except CheckFailed as exc:
        print(exc)
        sys.exit(1)
