"""Smoke test of benchmarks/latency.py on a tiny model: schema, rows, outputs. No timing asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from helpers import make_checkpoint

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
SYSTEM_KEYS = {"cpu", "cores", "threads", "gpu", "versions", "fp32_peak"}
RESULT_KEYS = {
    "backend",
    "precision",
    "batch_size",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "min_ms",
    "throughput_ips",
    "preprocess_ms",
    "inference_ms",
    "postprocess_ms",
    "peak_rss_mb",
    "gflops_per_s",
}
NUMBER_KEYS = RESULT_KEYS - {"backend", "precision", "batch_size"}
REQUESTED = ("reference", "torch", "ort", "ort-int8", "trt", "openvino")


def _load_latency():
    """benchmarks/latency.py as a module (it is a script, not an installed package)."""
    spec = importlib.util.spec_from_file_location("rd_latency_bench", BENCH / "latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expected_rows() -> set:
    """Backends that can run on this machine: they must have produced numbers."""
    from rd_edge.runtime.backends import why_unavailable

    rows = {"reference", "torch", "ort"}
    try:
        from rd_export.quantize import quantize_int8  # noqa: F401

        rows.add("ort-int8")
    except ImportError:
        pass
    if why_unavailable("trt") is None:
        rows.add("trt")
    if why_unavailable("openvino") is None:
        rows.add("openvino")
    return rows


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("latency")
    checkpoint = make_checkpoint(tmp / "r18.pt", "resnet18", 64)
    outputs = {"json": tmp / "out.json", "markdown": tmp / "out.md", "plot": tmp / "out.png"}
    code = _load_latency().main(
        [
            "--model",
            str(checkpoint),
            "--backends",
            ",".join(REQUESTED),
            "--batch-sizes",
            "1,2",
            "--iters",
            "2",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--frame-size",
            "160x120",
            "--no-peak",
            "--quiet",
            "--json",
            str(outputs["json"]),
            "--markdown",
            str(outputs["markdown"]),
            "--plot",
            str(outputs["plot"]),
        ]
    )
    assert code == 0
    return json.loads(outputs["json"].read_text()), outputs


@pytest.mark.slow  # the shared bench_run fixture runs the whole benchmark (~20 s)
def test_json_schema(bench_run):
    report, _ = bench_run
    assert SYSTEM_KEYS <= set(report["system"])
    assert report["system"]["threads"] == 1
    assert report["model"]["gflop_per_image"] > 0
    for row in report["results"]:
        assert RESULT_KEYS <= set(row), RESULT_KEYS - set(row)
        assert row["batch_size"] in (1, 2)
        for key in NUMBER_KEYS:
            assert isinstance(row[key], (int, float)) and row[key] >= 0, (row["backend"], key, row[key])
        assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    for entry in report["skipped"]:
        assert set(entry) == {"backend", "reason"} and entry["reason"].strip()


@pytest.mark.slow  # the shared bench_run fixture runs the whole benchmark (~20 s)
def test_every_available_backend_measured(bench_run):
    report, _ = bench_run
    measured = {(r["backend"], r["batch_size"]) for r in report["results"]}
    for backend in _expected_rows():
        assert {(backend, 1), (backend, 2)} <= measured, f"{backend} produced no numbers: {report['skipped']}"
    # Nothing requested silently dropped: each is measured or skipped with a reason.
    accounted = {r["backend"] for r in report["results"]} | {
        s["backend"].split()[0] for s in report["skipped"]
    }
    assert set(REQUESTED) <= accounted


@pytest.mark.slow  # the shared bench_run fixture runs the whole benchmark (~20 s)
def test_rows_see_the_same_frames_and_model(bench_run):
    """fp32 rows give the reference's scores on the same frames (a parity check, not timing)."""
    report, _ = bench_run
    for row in report["results"]:
        if row["precision"] == "fp32" and row["backend"] != "reference":
            assert row["score_diff_vs_reference"] < 1e-3, row


@pytest.mark.slow  # the shared bench_run fixture runs the whole benchmark (~20 s)
def test_markdown_and_plot_written(bench_run):
    _, outputs = bench_run
    text = outputs["markdown"].read_text()
    assert "| backend | precision | batch |" in text and "reference" in text
    assert outputs["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every table line has as many cells as the header (a bare | inside a cell would add one).
    import re

    table = [line for line in text.splitlines() if line.startswith("|")]
    cells = [len(re.split(r"(?<!\\)\|", line)) for line in table]
    assert len(table) >= 3 and len(set(cells)) == 1, cells
    assert "**Rounds**: 2, interleaved" in text  # --iters 2: at most 2 rounds


@pytest.mark.slow  # the shared bench_run fixture runs the whole benchmark (~20 s)
def test_rows_run_in_interleaved_rounds_with_ratios_to_reference(bench_run):
    report, _ = bench_run
    assert report["settings"]["rounds"] == 2
    for row in report["results"]:
        details = row["details"]
        assert len(details["round_p50_ms"]) == 2 and row["iters"] == 2, row["backend"]
        assert details["ratio_min"] <= details["ratio_to_reference"] <= details["ratio_max"]
        if row["backend"] == "reference":
            assert details["ratio_per_round"] == [1.0, 1.0]


def test_merge_rounds_and_reference_ratios():
    _rdbench()
    from rdbench.results import Measurement, add_reference_ratios, build_result, merge_rounds

    def m(backend, ms, r):
        return Measurement(
            backend,
            "fp32",
            1,
            ms,
            ms,
            ms,
            ms,
            [1.0],
            100.0,
            50.0,
            None,
            0.1,
            "x",
            {"round": r, "other_cpu_pct": 10.0 * (r + 1)},
        )

    # Round 2 is twice as slow for everyone (the host got busy): the ratios do not move.
    parts = [
        m("reference", [10, 10], 0),
        m("ort", [5, 5], 0),
        m("reference", [20, 20], 1),
        m("ort", [10, 10], 1),
    ]
    merged = merge_rounds(parts)
    assert [x.backend for x in merged] == ["reference", "ort"] and merged[1].e2e_ms == [5, 5, 10, 10]
    assert merged[1].details["round_p50_ms"] == [5.0, 10.0] and merged[1].details["other_cpu_pct"] == 15.0
    rows = [build_result(x, 4, None, None, None) for x in merged]
    add_reference_ratios(rows)
    assert rows[1].details["ratio_per_round"] == [0.5, 0.5] and rows[1].details["ratio_to_reference"] == 0.5


def test_bad_backend_is_a_clear_error(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "r18.pt", "resnet18", 64)
    assert _load_latency().main(["--model", str(checkpoint), "--backends", "ort,tensorflow", "--quiet"]) == 2
    assert "tensorflow" in capsys.readouterr().err


def _rdbench():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))


def test_crashing_worker_becomes_a_skip():
    """A worker that dies is reported with its error, and the run goes on."""
    _rdbench()
    from rdbench.results import Job
    from rdbench.runner import run_jobs

    job = Job("no-such-backend", "fp32", "model.pt", [1], 1, 0, 1, (64, 48))
    measurements, skipped = run_jobs([job], progress=False)
    assert measurements == []
    assert skipped[0].backend == "no-such-backend" and "unknown backend" in skipped[0].reason


def test_cpu_peak_small():
    _rdbench()
    from rdbench.system import cpu_peak

    peak = cpu_peak(threads=1, n=64, repeats=1)
    assert peak["achievable_gflops"] > 0
    assert any(isinstance(v, float) for v in peak["measured_sgemm_gflops"].values())


def test_low_precision_peaks_small():
    """bf16 and int8 GEMM peaks (the limits of the OpenVINO and int8 rows) measure real rates."""
    _rdbench()
    from rdbench.peaks import low_precision_peaks

    peaks = low_precision_peaks(threads=1, n=256, repeats=1)
    assert peaks["int8_gops"] > 0 and set(peaks["measured"]) == {
        "openvino_bf16_gemm",
        "openvino_int8_gemm",
        "ort_u8s8_gemm",
    }


def test_stream_mode_reports_both_modes_and_stage_shares(tmp_path, r18_checkpoint, r18_onnx):
    import cv2
    import numpy as np

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(12):
        writer.write(np.random.default_rng(i).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()
    out = tmp_path / "stream.json"
    code = _load_latency().main(
        [
            "--model",
            str(r18_checkpoint),
            "--onnx",
            str(r18_onnx),
            "--stream",
            str(video),
            "--repeats",
            "1",
            "--threads",
            "1",
            "--json",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    section = json.loads(out.read_text())["stream"]
    assert set(section["modes"]) == {"pipelined", "sequential"}
    for row in section["modes"].values():
        assert row["frames"] == 12 and row["fps"] > 0
        assert sum(row["stage_share"].values()) == pytest.approx(1.0)
        assert row["stage_ms"]["inference"] > 0 and row["stage_ms"]["decode"] > 0
    assert section["speedup"] == pytest.approx(
        section["modes"]["pipelined"]["fps"] / section["modes"]["sequential"]["fps"]
    )
