"""One-line errors instead of tracebacks, and the unclear cases made clear (issue 21)."""

import os
import re
import sys

import cv2
import numpy as np
import pytest

from rd_edge.runtime.cli import main as rd_infer


def one_line(err: str) -> bool:
    err = err.strip()
    return err.startswith("error: ") and "\n" not in err and "Traceback" not in err


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.full((40, 50, 3), 90, np.uint8))
    return path


def test_ports_out_of_range_are_refused_by_the_parser(tiny_onnx, image, tmp_path, capsys):
    from rd_edge.cli.main import build_parser
    from rd_edge.cli.main import main as rd_edge
    from rd_edge.runtime.serve import main as rd_serve

    for run, argv in (
        (rd_infer, [str(tiny_onnx), str(image), "--metrics-port", "70000"]),
        (rd_infer, [str(tiny_onnx), str(image), "--station", "70000", "--evidence", "x"]),
        (rd_serve, [str(tiny_onnx), "--http-port", "70000"]),
        (rd_edge, ["station", str(tmp_path), "--port", "70000"]),  # not uvicorn's OverflowError
    ):
        with pytest.raises(SystemExit) as info:
            run(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "expected a port number" in err and "Traceback" not in err
    assert build_parser().parse_args(["station", str(tmp_path), "--port", "0"]).port == 0  # any free one


def test_metrics_port_0_prints_the_port_it_bound_on_loopback(tiny_onnx, image, capsys):
    assert rd_infer([str(tiny_onnx), str(image), "--metrics-port", "0", "--quiet"]) == 0
    match = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", capsys.readouterr().err)
    assert match and 0 < int(match.group(1)) < 65536


def test_a_huge_camera_index_is_one_line(tiny_onnx, capsys):
    assert rd_infer([str(tiny_onnx), "99999999999999999999"]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "camera index 99999999999999999999 out of range" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_a_device_as_model_says_what_it_is(tmp_path, image, capsys):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    for model in (fifo, "/dev/zero"):
        assert rd_infer([str(model), str(image)]) == 1
        err = capsys.readouterr().err
        assert one_line(err) and "not a regular file (a FIFO, device or socket)" in err


def test_demo_data_into_an_existing_file_is_one_line(tmp_path, capsys):
    from rd_edge.cli.main import main as rd_edge

    existing = tmp_path / "file.txt"
    existing.write_text("keep me")
    assert (
        rd_edge(
            [
                "demo-data",
                str(existing),
                "--categories",
                "weave",
                "--image-size",
                "64",
                "--n-train",
                "2",
                "--n-test-good",
                "1",
                "--n-test-per-defect",
                "1",
            ]
        )
        == 1
    )
    assert one_line(capsys.readouterr().err) and existing.read_text() == "keep me"


def test_ctrl_c_inside_an_optional_import_is_a_stop_not_a_missing_package(tmp_path, monkeypatch):
    """Ctrl-C while onnxruntime loads said 'onnxruntime ... not installed' (rc 1, not 130)."""
    from rd_edge.core.cli import run_cli
    from rd_edge.core.errors import BackendError
    from rd_edge.core.optional import import_optional

    (tmp_path / "rd_interrupted.py").write_text(
        "try:\n    raise KeyboardInterrupt\nexcept KeyboardInterrupt:\n    raise ImportError('partially initialised')\n"
    )
    (tmp_path / "rd_broken.py").write_text("raise ImportError('libfoo.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run_cli(lambda: import_optional("rd_interrupted", "a test", "pip install x") and 0) == 130
    # SIGTERM there (the CLI raises Terminated) stays SIGTERM: exit 143
    (tmp_path / "rd_terminated.py").write_text(
        "from rd_edge.core.cli import Terminated\n"
        "try:\n    raise Terminated('terminated')\nexcept KeyboardInterrupt:\n    raise ImportError('partially initialised')\n"
    )
    assert run_cli(lambda: import_optional("rd_terminated", "a test", "pip install x") and 0) == 143
    with pytest.raises(BackendError, match="installed but failed to import: libfoo.so"):
        import_optional("rd_broken", "a test", "pip install x")
    with pytest.raises(BackendError, match="not installed here: pip install x"):
        import_optional("rd_not_there_at_all", "a test", "pip install x")
    for name in ("rd_interrupted", "rd_terminated", "rd_broken"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"format_version": 1, "threshold": ' + "1" + "0" * 400 + "}", "threshold must be a finite number"),
        ("[" * 100_000 + "]" * 100_000, "nested too deep"),
    ],
)
def test_onnx_metadata_beyond_range_or_nested_deep_is_one_error(text, message, metadata_factory):
    """10**400 as a threshold (OverflowError) and JSON nested 100,000 deep (RecursionError)."""
    import json

    from rd_edge.core.errors import MetadataError
    from rd_edge.core.metadata import ModelMetadata

    if text.startswith("{"):
        data = json.loads(metadata_factory().to_json())
        data["threshold"] = 10**400
        text = json.dumps(data)
    with pytest.raises(MetadataError, match=message):
        ModelMetadata.from_json(text, "m.onnx")
