"""rd-serve against a real Triton server (the tritonserver that nvidia-pytriton ships).

The server runs from the serve environment (`make serve-env`: numpy<2 for Triton's Python-backend
stub), on 127.0.0.1 and free ports, and is stopped at the end; clients run here.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.http")
pytest.importorskip("tritonclient.grpc")

from ports import free_ports  # noqa: E402

from rd_edge.core.images import list_images, read_image  # noqa: E402
from rd_edge.runtime import Detector  # noqa: E402
from rd_edge.runtime.client import RemoteDetector, ServerError, TritonClient  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RD_SERVE = Path(os.environ.get("RD_SERVE", ROOT / ".venv-serve" / "bin" / "rd-serve"))
MAX_BATCH = 4
STARTUP_S = 90


@pytest.fixture(scope="module")
def server(r18_onnx, tmp_path_factory):
    """rd-serve on r18_onnx; yields (http_url, grpc_url); stopped (SIGTERM) and checked at the end."""
    if not RD_SERVE.is_file():
        pytest.skip(f"no {RD_SERVE}: run `make serve-env` (rd-serve's own environment, numpy<2)")
    http, grpc, metrics = free_ports(3)
    log = tmp_path_factory.mktemp("serve") / "rd-serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(RD_SERVE),
                str(r18_onnx),
                "--http-port",
                str(http),  # default host: 127.0.0.1
                "--grpc-port",
                str(grpc),
                "--metrics-port",
                str(metrics),
                "--max-batch",
                str(MAX_BATCH),
                "--threads",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    urls = (
        f"http://127.0.0.1:{http}",
        f"grpc://127.0.0.1:{grpc}",
        f"http://127.0.0.1:{metrics}/metrics",
        log,
    )
    try:
        probe = TritonClient(urls[0])
        deadline = time.monotonic() + STARTUP_S
        while not probe.ready():
            assert proc.poll() is None, f"rd-serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"rd-serve not ready in {STARTUP_S} s:\n{log.read_text()[-3000:]}"
            )
            time.sleep(0.2)
        probe.close()
        yield urls + (proc.pid,)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    assert code == 0, f"rd-serve did not stop cleanly ({code}):\n{log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def demo_images(demo_category):
    paths = list_images(demo_category / "test")
    assert len(paths) >= 6
    return paths


@pytest.fixture(scope="module")
def local(r18_onnx, demo_images):
    """The in-process Detector's predictions for the demo images (the reference)."""
    with Detector(r18_onnx) as detector:
        return detector.predict([read_image(p) for p in demo_images])


def assert_same(remote, local_predictions):
    assert len(remote) == len(local_predictions)
    for r, ref in zip(remote, local_predictions):
        assert abs(r.score - ref.score) <= 1e-5
        assert abs(r.normalized_score - ref.normalized_score) <= 1e-5
        assert r.is_anomalous == ref.is_anomalous


def test_http_images_score_as_the_in_process_detector(server, r18_onnx, demo_images, local):
    with TritonClient(server[0]) as client:
        remote = []
        for start in range(0, len(demo_images), MAX_BATCH):  # batched requests, encoded files as sent
            remote += client.predict_encoded([p.read_bytes() for p in demo_images[start : start + MAX_BATCH]])
        with Detector(r18_onnx) as detector:
            assert client.threshold == detector.threshold and client.metadata == detector.metadata
            assert client.pixel_threshold == detector.pixel_threshold
    assert_same(remote, local)
    assert len({round(p.score, 6) for p in remote}) > 1  # really per image, not one value repeated


def test_grpc_frames_and_maps_match_the_in_process_detector(server, r18_onnx, demo_images, local):
    frames = [read_image(p) for p in demo_images]
    with TritonClient(server[1]) as client:
        remote = client.predict(frames)  # FRAME: raw BGR, one request per same-size run
        with_map = client.predict(frames[0], anomaly_map=True)
    assert_same(remote, local)
    assert with_map.anomaly_map.shape == frames[0].shape[:2]
    np.testing.assert_allclose(
        with_map.anomaly_map, local[0].anomaly_map, rtol=2e-3, atol=1e-3
    )  # FP16 on the wire
    assert remote[0].anomaly_map is None  # maps only when asked for


def test_corrupt_image_is_a_clear_error_and_the_server_keeps_serving(server, demo_images, local):
    good = demo_images[0].read_bytes()
    corrupt = [b"definitely not an image", good[: len(good) // 3], b""]
    for url in server[:2]:
        with TritonClient(url) as client:
            for data in corrupt:
                with pytest.raises(ServerError, match=r"cannot (decode|use) IMAGE item 0"):
                    client.predict_encoded([data])
            assert_same(client.predict_encoded([good]), local[:1])

    # Good and corrupt requests in flight together (dynamic batching may put them in one
    # execute): only the corrupt ones fail.
    results, errors = {}, {}

    def send(i):
        with TritonClient(server[0]) as client:
            try:
                results[i] = client.predict_encoded([corrupt[0] if i % 3 == 0 else good])[0]
            except ServerError as exc:
                errors[i] = str(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(errors) == [0, 3, 6] and all("cannot decode" in e for e in errors.values())
    assert_same([results[i] for i in sorted(results)], local[:1] * 6)


@pytest.mark.parametrize("protocol", [0, 1], ids=["http", "grpc"])
def test_rd_infer_server_gives_the_local_records(
    server, demo_category, demo_images, local, tmp_path, capsys, protocol
):
    """Every input scored over HTTP as over gRPC (HTTP lost its first batch: the pipeline infers in
    another thread than the one that made the client)."""
    from rd_edge.runtime.cli import main

    out = tmp_path / "remote.jsonl"
    rc = main(
        [
            "--server",
            server[protocol],
            str(demo_category / "test"),
            "--json",
            str(out),
            "--batch-size",
            "3",
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["error"] for r in records] == [None] * len(demo_images)
    by_name = {Path(r["source"]).parts[-2:]: r for r in records}  # defect/000.png
    for path, ref in zip(demo_images, local):
        record = by_name[path.parts[-2:]]
        assert abs(record["score"] - ref.score) <= 1e-5 and record["is_anomalous"] == ref.is_anomalous


def test_rd_infer_server_down_is_one_line(capsys, demo_images):
    from rd_edge.runtime.cli import main

    (port,) = free_ports(1)
    assert main(["--server", f"http://127.0.0.1:{port}", str(demo_images[0]), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no ready model 'rd_edge' at") and "Traceback" not in err


def test_metrics_endpoint_counts_inferences(server):
    import urllib.request

    with urllib.request.urlopen(server[2], timeout=10) as response:
        text = response.read().decode()
    counts = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('nv_inference_request_success{model="rd_edge"')
    ]
    assert counts and counts[0] > 0


def test_remote_detector_without_server_module(monkeypatch):
    """The client names the extra to install when tritonclient is missing."""
    monkeypatch.setitem(sys.modules, "tritonclient.http", None)
    with pytest.raises(Exception, match=r"pip install '\.\[client\]'"):
        RemoteDetector("http://127.0.0.1:1")


def test_a_client_side_threshold_regrades_as_a_local_detector(server, r18_onnx, demo_images, local):
    threshold = float(np.median([p.score for p in local]))  # splits the demo images into both verdicts
    frames = [read_image(p) for p in demo_images]
    with RemoteDetector(server[0], threshold=threshold) as remote, Detector(
        r18_onnx, threshold=threshold
    ) as here:
        got, want = remote.predict(frames), here.predict(frames)
    assert {p.is_anomalous for p in want} == {True, False}
    assert_same(got, want)


# --- nobody let in (issue 21, cases 4 and 5) --------------------------------------------------------


def test_rd_serve_listens_on_loopback_only_by_default_and_says_so(server):
    import socket

    port = int(server[0].rsplit(":", 1)[1])
    assert "listening on 127.0.0.1 only" in server[3].read_text()
    with socket.socket() as s:  # 127.0.0.2 is this machine too, but not the address bound
        assert s.connect_ex(("127.0.0.2", port)) != 0


def test_the_config_api_shows_no_filesystem_path(server, r18_onnx):
    import urllib.request

    with urllib.request.urlopen(f"{server[0]}/v2/models/rd_edge/config", timeout=10) as response:
        text = response.read().decode()
    assert '"model_file"' in text and str(r18_onnx.parent) not in text and "/tmp" not in text


def test_shared_memory_and_repository_apis_are_closed(server):
    import urllib.error
    import urllib.request

    for path, data in (
        ("/v2/systemsharedmemory/status", None),
        ("/v2/cudasharedmemory/status", None),
        ("/v2/repository/index", b"{}"),
        ("/v2/repository/models/rd_edge/unload", b"{}"),
    ):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(server[0] + path, data=data), timeout=10)
        assert info.value.code == 403, path
    with TritonClient(server[0]) as client:
        assert client.ready()  # inference and health stay open


def test_image_bombs_are_refused_quickly_and_the_server_stays_bounded(server, demo_images, local):
    """4 concurrent 631-byte JPEGs declaring 20000x20000, a PNG bomb: answered (bounded) in seconds;
    rd-serve's stub process stays far from the 1.2 GB a full decode takes."""
    from helpers import jpeg_bomb
    from huge_png import write_huge_png

    bomb = jpeg_bomb()
    t0 = time.perf_counter()
    results = {}

    def send(i):
        with TritonClient(server[0]) as client:
            results[i] = client.predict_encoded([bomb])[0]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 4 and time.perf_counter() - t0 < 30
    png = Path(server[3]).parent / "bomb.png"
    write_huge_png(png, 10000)
    with TritonClient(server[0]) as client, pytest.raises(ServerError, match="more than the cap"):
        client.predict_encoded([png.read_bytes()])
    with TritonClient(server[0]) as client:
        assert_same(client.predict_encoded([demo_images[0].read_bytes()]), local[:1])
    peak_mib = max(vmhwm_kib(pid) for pid in descendants(server[4])) / 1024
    print(f"rd-serve: peak RSS of its largest process after the bombs: {peak_mib:.0f} MiB")
    assert peak_mib < 1536


def descendants(pid):
    """``pid`` and every process below it (Triton, its Python-backend stubs)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def vmhwm_kib(pid):
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmHWM:")), 0)


def test_rd_infer_server_with_credentials_prints_no_password(server, demo_images, capsys):
    """The header, records and summary of `rd-infer --server http://user:pw@host` mask the password
    (the header used to print the URL as given, and crashed for a server: it has no local runner)."""
    from rd_edge.runtime.cli import main

    port = server[0].rsplit(":", 1)[1]
    url = f"http://operator:p@ssw0rdX@127.0.0.1:{port}"
    assert main(["--server", url, str(demo_images[0])]) == 0
    captured = capsys.readouterr()
    assert "ssw0rdX" not in captured.out + captured.err
    assert "rd-infer: http://operator:***@127.0.0.1" in captured.err and "Traceback" not in captured.err
