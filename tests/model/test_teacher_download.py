"""The ImageNet teacher download against a real HTTP server on 127.0.0.1 (started and stopped here).

The server holds a small torchvision-layout file: a resnet18 state dict saved with torch.save and
named as torchvision names its files, by the first 8 hex digits of its sha256.
"""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from rd_edge.cli.train import main as train_main
from rd_edge.core.files import sha256_file
from rd_edge.model import weights
from rd_edge.model.resnet import ResNetEncoder, backbone_spec


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        body = srv.files.get(name)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after is not None:  # an interrupted transfer: half the promised bytes, then close
            self.wfile.write(body[: srv.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """(name, bytes) of a resnet18 torchvision-layout file named by its real sha256 prefix."""
    torch.manual_seed(3)
    encoder = ResNetEncoder(backbone_spec("resnet18"))
    path = tmp_path_factory.mktemp("weights") / "w.pth"
    torch.save(encoder.state_dict(), path)
    data = path.read_bytes()
    return f"resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth", data


@pytest.fixture
def server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.cut_after = {}, [], None
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty torch hub cache ($TORCH_HOME) for this test; its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def _url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/models"


def _serve(srv, monkeypatch, teacher_file, body=None):
    name, data = teacher_file
    monkeypatch.setitem(weights.TORCHVISION_FILES, "resnet18", name)
    srv.files[name] = data if body is None else body
    return name


def _leftovers(cache: Path):
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def test_default_teacher_downloads_verifies_and_caches_once(
    server, cache, monkeypatch, teacher_file, demo_category, tmp_path
):
    name = _serve(server, monkeypatch, teacher_file)
    monkeypatch.setenv("RD_EDGE_WEIGHTS_URL", _url(server))  # the mirror override, no --teacher-weights
    common = [
        "--data",
        str(demo_category),
        "--backbone",
        "resnet18",
        "--image-size",
        "64",
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert train_main(common + ["--out", str(tmp_path / "a.pt")]) == 0
    assert server.requests == [f"/models/{name}"]
    assert (
        _leftovers(cache) == [name]
        and sha256_file(cache / name) == hashlib.sha256(teacher_file[1]).hexdigest()
    )
    assert train_main(common + ["--out", str(tmp_path / "b.pt")]) == 0
    assert len(server.requests) == 1  # cached: not downloaded again

    data = torch.load(tmp_path / "a.pt", weights_only=True)
    assert data["teacher"] == {"source": "imagenet", "file": name, "sha256": sha256_file(cache / name)}
    served = torch.load(cache / name, weights_only=True)
    for key in ("conv1.weight", "layer3.1.bn2.running_var"):  # the teacher is the file's, unchanged
        assert torch.equal(data["state_dict"][f"teacher.{key}"], served[key])

    pytest.importorskip("onnx")
    from rd_export.onnx_export import export_onnx

    report = export_onnx(tmp_path / "a.pt", tmp_path / "a.onnx", verify=False)
    assert report.metadata.teacher == data["teacher"]


def test_weights_url_flag_and_a_local_path(server, cache, monkeypatch, teacher_file, tmp_path):
    name = _serve(server, monkeypatch, teacher_file)
    path = weights.imagenet_weights("resnet18", base_url=_url(server) + "/", progress=False)
    assert path == cache / name and server.requests == [f"/models/{name}"]
    record = weights.resolve_teacher(str(path), "resnet18")
    assert record["source"] == "file" and record["sha256"] == sha256_file(path)
    assert weights.resolve_teacher("none", "resnet18") is None


def _fails(monkeypatch, base_url, match):
    with pytest.raises(weights.TeacherDownloadError, match=match) as info:
        weights.imagenet_weights("resnet18", base_url=base_url, progress=False)
    message = str(info.value)
    assert "\n" not in message and "'none'" in message
    return message


def test_hash_mismatch_caches_nothing(server, cache, monkeypatch, teacher_file):
    name = _serve(server, monkeypatch, teacher_file, body=teacher_file[1][:-1] + b"x")
    message = _fails(monkeypatch, _url(server), "hash check")
    assert name in message and _leftovers(cache) == []


def test_404_names_the_file_the_cache_folder_and_none(server, cache, monkeypatch, teacher_file):
    name, _ = teacher_file
    monkeypatch.setitem(weights.TORCHVISION_FILES, "resnet18", name)  # not served
    message = _fails(monkeypatch, _url(server), "HTTP 404")
    assert name in message and str(cache) in message and _leftovers(cache) == []


def test_connection_refused(cache, monkeypatch, teacher_file):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(weights.TORCHVISION_FILES, "resnet18", teacher_file[0])
    _fails(monkeypatch, f"http://127.0.0.1:{port}/models", "refused")
    assert _leftovers(cache) == []


def test_interrupted_transfer_leaves_no_partial_file(server, cache, monkeypatch, teacher_file):
    _serve(server, monkeypatch, teacher_file)
    server.cut_after = len(teacher_file[1]) // 2
    _fails(monkeypatch, _url(server), "cannot download|hash check")
    assert _leftovers(cache) == []


def test_offline_cli_fails_in_one_line(cache, monkeypatch, demo_category, tmp_path, capsys):
    monkeypatch.setenv("RD_EDGE_WEIGHTS_URL", "http://127.0.0.1:9/models")
    code = train_main(
        [
            "--data",
            str(demo_category),
            "--backbone",
            "resnet18",
            "--image-size",
            "64",
            "--steps",
            "1",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "m.pt"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert (
        code == 1 and err.count("\n") == 0 and err.startswith("error: cannot download the ImageNet teacher")
    )
    assert weights.TORCHVISION_FILES["resnet18"] in err and str(cache) in err and "'none'" in err
    assert not (tmp_path / "m.pt").exists()
