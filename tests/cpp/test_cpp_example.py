"""The C++ example (cpp_examples/): build rd_infer with CMake, run it on an exported model, and
check it against the Python runtime (scores within 1e-3 relative, same files, same exit codes,
the same overlay pixels from the same map).

The build goes to cpp_examples/build/pytest (git-ignored) and is reused by later runs. Skipped
with a reason where cmake, a C++ compiler or OpenCV's development files are missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pytest

from rd_edge.core.metadata import METADATA_FORMAT_VERSION

pytestmark = pytest.mark.cpp

CPP_DIR = Path(__file__).resolve().parents[2] / "cpp_examples"
BUILD_DIR = CPP_DIR / "build" / "pytest"
LINE = re.compile(
    r"^(?P<path>.+) score=(?P<score>\S+) normalized=(?P<normalized>[01]\.\d{3}) "
    r"verdict=(?P<verdict>OK|NG) latency_ms=(?P<latency>\S+)$"
)
REL_TOL = 1e-3


def _run(cmd: Sequence[object], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)


def _tail(proc: subprocess.CompletedProcess, lines: int = 40) -> str:
    return "\n".join((proc.stdout + proc.stderr).splitlines()[-lines:])


def _drop_stale_cache(build_dir: Path) -> None:
    """A cache configured from another checkout makes cmake refuse the folder: start afresh."""
    cache = build_dir / "CMakeCache.txt"
    if not cache.is_file():
        return
    match = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", cache.read_text(errors="replace"), re.M)
    if match is None or Path(match.group(1)).resolve() != CPP_DIR.resolve():
        shutil.rmtree(build_dir)


@pytest.fixture(scope="session")
def rd_infer() -> Dict[str, object]:
    """Configure (warnings as errors) and build rd_infer once; its path and the CMake output."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found (apt-get install cmake)")
    if not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        pytest.skip("no C++ compiler found (apt-get install g++)")
    _drop_stale_cache(BUILD_DIR)
    configure = _run(
        [cmake, "-S", CPP_DIR, "-B", BUILD_DIR, "-DCMAKE_BUILD_TYPE=Release", "-DRD_WERROR=ON"], timeout=300
    )
    if configure.returncode != 0:
        errors = configure.stderr
        if re.search(r'provided by\s+"OpenCV"|Could NOT find OpenCV|OpenCV.*(not found|NOT found)', errors):
            pytest.skip("OpenCV development files not found (apt-get install libopencv-dev)")
        pytest.fail(f"cmake configure failed:\n{_tail(configure)}")
    build = _run([cmake, "--build", BUILD_DIR, "-j2"], timeout=600)
    if build.returncode != 0:
        pytest.fail(f"building rd_infer failed (warnings are errors here):\n{_tail(build)}")
    exe = BUILD_DIR / "rd_infer"
    assert exe.is_file(), f"the build did not produce {exe}"
    return {"exe": exe, "configure": configure.stdout}


def _parse_lines(stdout: str) -> List[Dict[str, object]]:
    records = []
    for line in stdout.splitlines():
        match = LINE.match(line)
        assert match, f"unexpected stdout line from rd_infer: {line!r}"
        records.append(
            {
                "path": match["path"],
                "score": float(match["score"]),
                "normalized": float(match["normalized"]),
                "anomalous": int(match["verdict"] == "NG"),
                "latency_ms": float(match["latency"]),
            }
        )
    return records


@pytest.fixture
def extra_images(tmp_path):
    """Frames the demo set lacks: other sizes (resize path), grayscale, 16-bit, BGRA, JPEG."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(7)
    base = (rng.random((72, 100, 3)) * 200 + 30).astype(np.uint8)
    folder = tmp_path / "extra"
    (folder / "nested").mkdir(parents=True)
    assert cv2.imwrite(str(folder / "wide.png"), base)
    assert cv2.imwrite(str(folder / "nested" / "gray.png"), cv2.cvtColor(base, cv2.COLOR_BGR2GRAY))
    assert cv2.imwrite(
        str(folder / "deep.png"),
        base.astype(np.uint16) * 257 + rng.integers(0, 257, base.shape).astype(np.uint16),
    )
    assert cv2.imwrite(str(folder / "alpha.png"), cv2.cvtColor(base[:40, :50], cv2.COLOR_BGR2BGRA))
    assert cv2.imwrite(str(folder / "small.jpg"), base[:31, :45])
    (folder / ".hidden.png").write_bytes(b"skipped: hidden names are not listed")
    return folder


def test_scores_match_python_runtime(rd_infer, r18_onnx, demo_category, extra_images, tmp_path):
    cv2 = pytest.importorskip("cv2")
    from rd_edge.core.images import list_images, read_image
    from rd_edge.core.postprocess import normalize_score, render_overlay
    from rd_edge.runtime import Detector
    from rd_edge.runtime.sinks.console import result_line

    assert "rd_infer backends: opencv" in rd_infer["configure"]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    out = tmp_path / "out"
    proc = _run([rd_infer["exe"], r18_onnx, demo_category / "test", extra_images, corrupt, "--out", out])

    assert proc.returncode == 2, _tail(proc)  # the corrupt file failed, the rest was scored
    assert f"{corrupt}" in proc.stderr and "cannot decode" in proc.stderr
    assert re.search(r"latency ms: count \d+, mean [\d.]+, p50 [\d.]+, p99 [\d.]+", proc.stderr), proc.stderr
    records = _parse_lines(proc.stdout)
    expected = [str(p) for p in list_images(demo_category / "test") + list_images(extra_images)]
    assert [r["path"] for r in records] == expected  # one line per good image, Python's order

    with Detector(r18_onnx, backend="ort", batch_size=1) as detector:
        worst = 0.0
        for record in records:
            frame = read_image(record["path"])
            pred = detector.predict(frame)
            rel = abs(record["score"] - pred.score) / max(abs(pred.score), 1e-12)
            worst = max(worst, rel)
            assert rel <= REL_TOL, f"{record['path']}: C++ score {record['score']} vs Python {pred.score}"
            if abs(pred.score - detector.threshold) > 1e-3 * abs(detector.threshold):
                assert record["anomalous"] == int(pred.is_anomalous), record["path"]
            assert record["latency_ms"] > 0
            # The same line format as Python's rd-infer, and the same normalized score for its score.
            expected_n = float(normalize_score(record["score"], detector.threshold, detector.score_scale))
            assert record["normalized"] == pytest.approx(expected_n, abs=5e-4), record["path"]
            ours = {
                "source": record["path"],
                "score": record["score"],
                "normalized_score": expected_n,
                "is_anomalous": bool(record["anomalous"]),
                "latency_ms": record["latency_ms"],
            }
            assert LINE.match(result_line(ours)), result_line(ours)

        # The overlay follows rd-infer --out: DIR/overlays/<key>.png; drawn from the same map and
        # score (C++ writes its frame-size map to DIR/maps/<key>.tiff), Python's pixels are identical.
        by_path = {r["path"]: r for r in records}
        keys = [
            ("wide.png", "wide"),
            ("small.jpg", "small"),
            ("nested/gray.png", "nested/gray"),
            ("deep.png", "deep"),
            ("alpha.png", "alpha"),
        ]
        keys += [
            (p.relative_to(demo_category / "test"), p.relative_to(demo_category / "test").with_suffix(""))
            for p in list_images(demo_category / "test")
        ]
        for name, key in keys:
            path = (extra_images if (extra_images / name).exists() else demo_category / "test") / name
            frame = read_image(path)
            cpp_map = cv2.imread(str(out / "maps" / f"{key}.tiff"), cv2.IMREAD_UNCHANGED)
            assert cpp_map is not None and cpp_map.dtype == np.float32 and cpp_map.shape == frame.shape[:2], (
                key
            )
            ours = cv2.imread(str(out / "overlays" / f"{key}.png"))
            theirs = render_overlay(
                frame,
                cpp_map,
                by_path[str(path)]["score"],
                detector.threshold,
                detector.score_scale,
                detector.threshold,
            )
            assert ours is not None and ours.shape == theirs.shape, key
            differs = np.argwhere((ours != theirs).any(axis=2))
            assert len(differs) == 0, (
                f"{key}: {len(differs)} overlay pixels differ from Python's, e.g. {differs[:5]}"
            )
            saved_mask = cv2.imread(str(out / "masks" / f"{key}.png"), cv2.IMREAD_GRAYSCALE)
            assert saved_mask.shape == frame.shape[:2]
            assert np.array_equal(saved_mask > 0, cpp_map > detector.threshold), key
    print(f"{len(records)} images, max relative score difference C++ vs Python {worst:.2e}")


def _with_metadata(src: Path, dst: Path, edit) -> Path:
    """A copy of the ONNX model whose rd_edge metadata went through ``edit`` (None: removed)."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(src))
    (entry,) = [p for p in model.metadata_props if p.key == "rd_edge"]
    meta = json.loads(entry.value)
    del model.metadata_props[:]
    new = edit(meta)
    if new is not None:
        model.metadata_props.add(key="unrelated", value="x")
        model.metadata_props.add(key="rd_edge", value=json.dumps(new))
    onnx.save(model, str(dst))
    return dst


def test_threshold_from_flag_when_metadata_has_none(rd_infer, r18_onnx, demo_category, tmp_path):
    # JSON that OpenCV's reader rejects as such (null, true, NaN, \u escapes, empty keys) must still parse.
    model = _with_metadata(
        r18_onnx,
        tmp_path / "no_threshold.onnx",
        lambda m: dict(
            m, threshold=None, extra={"note": 'caf\u00e9 "/"', "": 1, "flag": True, "nan": float("nan")}
        ),
    )
    image = sorted((demo_category / "test" / "good").glob("*.png"))[0]

    proc = _run([rd_infer["exe"], model, image])
    assert proc.returncode == 1 and "no threshold" in proc.stderr and "--threshold" in proc.stderr, _tail(
        proc
    )
    assert proc.stdout == ""

    low = _run([rd_infer["exe"], model, image, "--threshold", "0"])
    high = _run([rd_infer["exe"], model, image, "--threshold=1e9"])
    assert low.returncode == 0 and high.returncode == 0, _tail(low) + _tail(high)
    assert [r["anomalous"] for r in _parse_lines(low.stdout)] == [1]
    assert [r["anomalous"] for r in _parse_lines(high.stdout)] == [0]

    # --pixel-threshold moves the mask and outline, never the verdict.
    cv2 = pytest.importorskip("cv2")
    px = _run(
        [
            rd_infer["exe"],
            model,
            image,
            "--threshold=1e9",
            "--pixel-threshold",
            "-1",
            "--out",
            tmp_path / "px",
        ]
    )
    assert px.returncode == 0 and [r["anomalous"] for r in _parse_lines(px.stdout)] == [0], _tail(px)
    mask = cv2.imread(str(tmp_path / "px" / "masks" / f"{image.stem}.png"), cv2.IMREAD_GRAYSCALE)
    assert mask is not None and (mask == 255).all()
    bad = _run([rd_infer["exe"], model, image, "--pixel-threshold", "x"])
    assert bad.returncode == 2 and "--pixel-threshold expects a number" in bad.stderr  # usage, as argparse


def test_unusable_models_exit_1_and_bad_arguments_2(rd_infer, r18_onnx, demo_category, tmp_path):
    exe = rd_infer["exe"]
    image = sorted((demo_category / "test" / "good").glob("*.png"))[0]
    no_meta = _with_metadata(r18_onnx, tmp_path / "no_meta.onnx", lambda m: None)
    newer = _with_metadata(
        r18_onnx, tmp_path / "newer.onnx", lambda m: dict(m, format_version=METADATA_FORMAT_VERSION + 1)
    )
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not really a plan")
    cases = [
        ([no_meta, image], "has no 'rd_edge' metadata"),
        (
            [newer, image],
            f"metadata format version {METADATA_FORMAT_VERSION + 1} is newer than this rd_infer reads",
        ),
        ([image, image], "as an ONNX model"),
        ([tmp_path / "missing.onnx", image], "not found"),
        ([plan, image], "has no sidecar"),
        ([r18_onnx, image, "--backend", "trt"], "serialized plan"),
    ]
    for args, message in cases:
        proc = _run([exe, *args])
        assert proc.returncode == 1 and message in proc.stderr, f"{args}: {_tail(proc)}"
        assert proc.stdout == "", args
    # A command line that does not parse is a usage error: exit 2 with the usage, as argparse
    for args, message in [
        ([r18_onnx, image, "--threshold", "abc"], "--threshold expects a number"),
        ([r18_onnx], "usage: rd_infer"),
    ]:
        proc = _run([exe, *args])
        assert proc.returncode == 2 and message in proc.stderr, f"{args}: {_tail(proc)}"
        assert proc.stdout == "", args

    # With its sidecar, the plan gets as far as the backend (this build's, or the message saying it is missing).
    meta = json.loads(_read_rd_edge(r18_onnx))
    Path(f"{plan}.json").write_text(
        json.dumps(
            {
                "tensorrt_version": "10.3.0",
                "gpu_name": "Orin",
                "compute_capability": [8, 7],
                "precision": "fp32",
                "min_batch": 1,
                "max_batch": 1,
                "onnx_sha256": "0" * 64,
                "rd_edge": meta,
            },
            indent=2,
        )
    )
    proc = _run([exe, plan, image])
    assert proc.returncode == 1, _tail(proc)
    built = _run([exe, "--help"]).stdout
    if "Backends built: opencv, trt" not in built:
        assert "built without the TensorRT backend" in proc.stderr, _tail(proc)


def _read_rd_edge(path: Path) -> str:
    onnx = pytest.importorskip("onnx")
    return next(p.value for p in onnx.load(str(path)).metadata_props if p.key == "rd_edge")


def test_resize_rule_from_metadata_matches_python(rd_infer, r18_onnx, extra_images, tmp_path):
    """A model trained with area shrinking: C++ resizes as Python does (larger frames by area)."""
    from rd_edge.core.images import read_image
    from rd_edge.runtime import Detector

    scores = {}
    for rule in ("area-shrink/linear-enlarge", "linear"):
        model = _with_metadata(r18_onnx, tmp_path / f"{rule[:4]}.onnx", lambda m: dict(m, resize=rule))
        proc = _run([rd_infer["exe"], model, extra_images / "wide.png", extra_images / "small.jpg"])
        assert proc.returncode == 0, _tail(proc)
        records = _parse_lines(proc.stdout)
        with Detector(model, backend="ort", batch_size=1) as detector:
            for record in records:
                want = detector.predict(read_image(record["path"])).score
                assert abs(record["score"] - want) <= REL_TOL * abs(want), (rule, record["path"])
        scores[rule] = [r["score"] for r in records]
    # wide.png (72x100) is shrunk to 64x64: the rules differ; small.jpg is enlarged: both bilinear.
    assert scores["linear"][0] != scores["area-shrink/linear-enlarge"][0]
    assert scores["linear"][1] == scores["area-shrink/linear-enlarge"][1]


def test_thresholds_json_beside_the_model_is_read_as_python_reads_it(
    rd_infer, r18_onnx, demo_category, tmp_path
):
    """Command line > thresholds.json (rd-calibrate) > metadata, for the verdict and the mask, as in the Detector."""
    cv2 = pytest.importorskip("cv2")
    from rd_edge.core.thresholds import Thresholds
    from rd_edge.runtime import Detector

    model = tmp_path / "m" / "model.onnx"
    model.parent.mkdir()
    shutil.copy(r18_onnx, model)
    images = sorted((demo_category / "test").rglob("*.png"))[:6]
    with Detector(model) as det:
        frames = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in images]
        scores = sorted(p.score for p in det.predict(frames))
    middle = (scores[2] + scores[3]) / 2  # three above, three below: a file the metadata cannot explain
    Thresholds(image_threshold=middle, pixel_threshold=-1.0, method="f1").write(
        model.parent / "thresholds.json"
    )

    proc = _run([rd_infer["exe"], model, *images, "--out", tmp_path / "out"])
    assert (
        proc.returncode == 0 and "thresholds from" in proc.stderr and "thresholds.json (f1)" in proc.stderr
    ), _tail(proc)
    with Detector(model) as det:  # the Python runtime reads the same file
        expected = [int(p.is_anomalous) for p in det.predict(frames)]
    assert [r["anomalous"] for r in _parse_lines(proc.stdout)] == expected and sum(expected) == 3
    mask = cv2.imread(str(tmp_path / "out" / "masks" / f"{images[0].stem}.png"), cv2.IMREAD_GRAYSCALE)
    assert mask is not None and (mask == 255).all()  # the file's pixel threshold (-1) drew the mask

    flag = _run([rd_infer["exe"], model, *images, "--threshold=1e9"])
    assert [r["anomalous"] for r in _parse_lines(flag.stdout)] == [0] * 6  # the command line wins

    (model.parent / "thresholds.json").write_text(
        '{"format": "rd_edge.thresholds", "format_version": 1, '
        '"image_threshold": NaN, "pixel_threshold": null}'
    )
    bad = _run([rd_infer["exe"], model, images[0]])
    assert bad.returncode == 1 and "image_threshold must be a finite number" in bad.stderr, _tail(bad)
    (model.parent / "thresholds.json").write_text('{"threshold": 1.0}')
    foreign = _run([rd_infer["exe"], model, images[0]])
    assert foreign.returncode == 1 and "is not an rd-edge thresholds file" in foreign.stderr, _tail(foreign)


def test_thresholds_belong_to_one_model_as_in_python(rd_infer, r18_onnx, demo_category, tmp_path):
    """MODEL.thresholds.json is the model's own; a folder's thresholds.json naming another model is
    not used (issue 21, case 9), as in the Python runtime."""
    pytest.importorskip("cv2")
    from rd_edge.core.thresholds import Thresholds, thresholds_path

    model = tmp_path / "m" / "model.onnx"
    model.parent.mkdir()
    shutil.copy(r18_onnx, model)
    image = sorted((demo_category / "test").rglob("*.png"))[0]
    Thresholds(image_threshold=-1e9, method="f1", model="model_int8.onnx").write(
        model.parent / "thresholds.json"
    )
    other = _run([rd_infer["exe"], model, image])
    assert other.returncode == 0 and "belongs to model_int8.onnx" in other.stderr, _tail(other)
    assert "thresholds.json (f1)" not in other.stderr
    Thresholds(image_threshold=-1e9, method="zero-escape", model="model.onnx").write(thresholds_path(model))
    own = _run([rd_infer["exe"], model, image])
    assert own.returncode == 0 and "model.onnx.thresholds.json (zero-escape)" in own.stderr, _tail(own)
    assert [r["anomalous"] for r in _parse_lines(own.stdout)] == [1]


def test_python_and_cpp_agree_on_exit_codes_and_help(rd_infer, r18_onnx, demo_category, tmp_path):
    """The same inputs through Python's rd-infer and the C++ rd_infer end with the same exit code:
    0 all scored, 2 some input unreadable (the rest scored), 1 a SOURCE that does not exist (an
    error before any scoring) or a threshold that is not finite, 2 a usage error (argparse's
    code: no arguments, an unknown option, a value that is not a number or not a choice); both
    --help texts say where the thresholds come from."""
    import sys

    python_infer = Path(sys.executable).parent / "rd-infer"
    good = sorted((demo_category / "test" / "good").glob("*.png"))[0]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    cases = {
        "all scored": ([good], 0),
        "one unreadable": ([good, corrupt], 2),
        "missing folder": ([tmp_path / "no_such_folder"], 1),
        "missing file": ([good, tmp_path / "x.png"], 1),
    }
    for name, (inputs, code) in cases.items():
        args = [r18_onnx, *inputs, "--threshold", "1e9"]
        cpp, py = _run([rd_infer["exe"], *args]), _run([python_infer, *args, "--quiet"])
        assert (cpp.returncode, py.returncode) == (code, code), (
            f"{name}: C++ {_tail(cpp)}\nPython {_tail(py)}"
        )
        if code == 1:
            assert "not found" in cpp.stderr and "not found" in py.stderr, name
    usage_cases = {
        "no arguments": ([], 2),
        "only the model": ([r18_onnx], 2),
        "unknown option": ([r18_onnx, good, "--bogus"], 2),
        "option without its value": ([r18_onnx, good, "--threshold"], 2),
        "threshold not a number": ([r18_onnx, good, "--threshold", "abc"], 2),
        "pixel threshold not a number": ([r18_onnx, good, "--pixel-threshold=x"], 2),
        "unknown backend": ([r18_onnx, good, "--backend", "nope"], 2),
        "threshold not finite": ([r18_onnx, good, "--threshold", "nan"], 1),
        "pixel threshold not finite": ([r18_onnx, good, "--pixel-threshold", "inf"], 1),
        "not finite, and no SOURCE": ([r18_onnx, "--threshold", "nan"], 2),  # usage first
    }
    for name, (args, code) in usage_cases.items():
        cpp, py = _run([rd_infer["exe"], *args]), _run([python_infer, *args])
        assert (cpp.returncode, py.returncode) == (code, code), (
            f"{name}: C++ {_tail(cpp)}\nPython {_tail(py)}"
        )
        assert cpp.stdout == "" and py.stdout == "", name
        assert ("usage: rd_infer" in cpp.stderr) == (code == 2), f"{name}: {_tail(cpp)}"
        assert ("usage: rd-infer" in py.stderr) == (code == 2), f"{name}: {_tail(py)}"
    cpp_help, py_help = _run([rd_infer["exe"], "--help"]).stdout, _run([python_infer, "--help"]).stdout
    for text in (cpp_help, py_help):
        assert "thresholds.json" in text and "2 some" in text and "1 error" in text
    assert "usage error" in cpp_help and "1 error (usage" not in cpp_help
    assert "(default: the model's)" not in cpp_help


def test_ng_without_region_says_no_area_in_both(rd_infer, r18_onnx, demo_category, tmp_path):
    """An NG image with no pixel above the pixel threshold: both overlays write "no area"."""
    import sys

    import cv2

    image = sorted((demo_category / "test" / "good").glob("*.png"))[0]
    args = [r18_onnx, image, "--threshold", "-1", "--pixel-threshold", "1e9"]
    for name, cmd in (("cpp", [rd_infer["exe"]]), ("python", [Path(sys.executable).parent / "rd-infer"])):
        proc = _run([*cmd, *args, "--out", tmp_path / name])
        assert proc.returncode == 0, _tail(proc)
        overlay = cv2.imread(str(next((tmp_path / name / "overlays").rglob("*.png"))))
        u = max(1, overlay.shape[1] // 256)
        corner = overlay[36 * u : 50 * u, 4 * u : 88 * u]
        assert int((corner == 255).all(axis=2).sum()) > 50, f"{name}: no 'no area' text"


def test_a_score_equal_to_the_threshold_is_ok_as_in_python(rd_infer, r18_onnx, demo_category):
    """NG means score > threshold (issue 28: the boundary itself). The threshold passed is the
    image's float32 score written out exactly, so C++ compares the score with itself."""
    import numpy as np

    image = sorted((demo_category / "test" / "good").glob("*.png"))[0]
    first = _run([rd_infer["exe"], r18_onnx, image, "--threshold", "0"])
    assert first.returncode == 0, _tail(first)
    score = float(np.float32(_parse_lines(first.stdout)[0]["score"]))  # %.9g gives the float32 back
    equal = _run([rd_infer["exe"], r18_onnx, image, "--threshold", repr(score)])
    below = _run(
        [rd_infer["exe"], r18_onnx, image, "--threshold", repr(float(np.nextafter(np.float32(score), -1)))]
    )
    assert [r["anomalous"] for r in _parse_lines(equal.stdout)] == [0], _tail(equal)
    assert [r["anomalous"] for r in _parse_lines(below.stdout)] == [1], _tail(below)


def test_a_frame_shrunk_on_one_side_and_enlarged_on_the_other_is_resized_bilinearly(
    rd_infer, r18_onnx, tmp_path
):
    """Non-square (issue 28): 100x40 to the model's 64x64 enlarges the width, so the area rule
    is not used (both languages: area only when no side enlarges); C++ and Python agree."""
    import numpy as np

    from rd_edge.core.images import read_image
    from rd_edge.runtime import Detector

    cv2 = pytest.importorskip("cv2")
    image = tmp_path / "tall.png"
    assert cv2.imwrite(str(image), np.random.default_rng(7).integers(0, 256, (100, 40, 3), dtype=np.uint8))
    model = _with_metadata(
        r18_onnx, tmp_path / "area.onnx", lambda m: dict(m, resize="area-shrink/linear-enlarge")
    )
    proc = _run([rd_infer["exe"], model, image])
    assert proc.returncode == 0, _tail(proc)
    (record,) = _parse_lines(proc.stdout)
    with Detector(model, backend="ort", batch_size=1) as detector:
        want = detector.predict(read_image(image)).score
    assert abs(record["score"] - want) <= REL_TOL * abs(want), (record["score"], want)


def test_the_latency_summary_is_numpys_percentile_of_the_printed_latencies(rd_infer, r18_onnx, demo_category):
    """p50 of 4 images interpolates between the 2nd and 3rd latency (numpy's linear rule), the
    mean is their mean; within the 0.001 ms the printed values are rounded to."""
    import re

    import numpy as np

    images = sorted((demo_category / "test" / "good").glob("*.png"))[:4]
    proc = _run([rd_infer["exe"], r18_onnx, *images, "--threshold", "0"])
    assert proc.returncode == 0, _tail(proc)
    latencies = [r["latency_ms"] for r in _parse_lines(proc.stdout)]
    summary = re.search(r"count 4, mean (\S+), p50 (\S+), p99 (\S+)", proc.stderr)
    assert summary and len(latencies) == 4, proc.stderr
    mean, p50, p99 = (float(v) for v in summary.groups())
    assert abs(mean - np.mean(latencies)) <= 0.0021 and abs(p50 - np.percentile(latencies, 50)) <= 0.0021
    assert abs(p99 - np.percentile(latencies, 99)) <= 0.0021


def test_backend_tensorrt_is_the_trt_alias_as_in_python(rd_infer, r18_onnx, demo_category):
    """--backend tensorrt means trt (Python's alias too): on an ONNX file both say a plan is needed,
    neither calls it an unknown backend."""
    image = sorted((demo_category / "test" / "good").glob("*.png"))[0]
    trt = _run([rd_infer["exe"], r18_onnx, image, "--backend", "trt"])
    alias = _run([rd_infer["exe"], r18_onnx, image, "--backend", "tensorrt"])
    assert trt.returncode == alias.returncode == 1 and "unknown backend" not in alias.stderr, _tail(alias)
    assert alias.stderr == trt.stderr and "runs a serialized plan" in alias.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_a_non_finite_threshold_is_refused_as_in_python(rd_infer, r18_onnx, demo_category, value):
    image = sorted((demo_category / "test" / "good").glob("*.png"))[0]
    proc = _run([rd_infer["exe"], r18_onnx, image, "--threshold", value])
    assert proc.returncode == 1 and f"--threshold expects a number, got '{value}'" in proc.stderr, _tail(proc)
