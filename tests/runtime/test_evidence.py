"""Evidence folder: anomalous frames with overlay + JSON, atomic, within a disk budget, disk full survived."""

import json
import resource
import subprocess
import sys

import cv2
import numpy as np
from pipeline_parts import FrameSource, ListSink

from rd_edge.runtime import Detector
from rd_edge.runtime.pipeline import Pipeline
from rd_edge.runtime.sinks.evidence import EvidenceSink


def folder_bytes(folder):
    """Bytes of the entries (the manifest, .rd_edge_evidence, is outside the budget)."""
    return sum(p.stat().st_size for p in folder.rglob("[!.]*") if p.is_file())


def run(detector, folder, n, max_mb=None, stream="cam", size=(120, 160)):
    sink, results = EvidenceSink(folder, detector, max_mb=max_mb), ListSink()
    summary = Pipeline(detector, [FrameSource(stream, n, noise=True, size=size)], [sink, results]).run()
    return sink, results, summary


def test_a_run_writing_3x_the_budget_leaves_the_folder_within_it_newest_kept(tiny_onnx, tmp_path):
    folder, budget_mb = tmp_path / "evidence", 0.15
    with Detector(tiny_onnx, threshold=0.0) as det:  # every frame anomalous
        sink, results, summary = run(det, folder, 40, max_mb=budget_mb)
    entry = folder_bytes(folder) / len(list(folder.rglob("*.jpg")))
    assert sink.saved == 40 and entry * 40 >= 3 * budget_mb * 1e6  # the run really wrote 3x the budget
    assert folder_bytes(folder) <= budget_mb * 1e6 == sink.budget
    kept = sorted(folder.rglob("*.json"))
    assert sink.removed == 40 - len(kept) > 0
    frames = [json.loads(p.read_text())["frame"] for p in kept]
    assert frames == list(range(40 - len(kept), 40))  # oldest removed first
    record = json.loads(kept[-1].read_text())
    assert (
        record["is_anomalous"] is True
        and record["stream"] == "cam"
        and record["evidence"] == str(kept[-1].with_suffix(".jpg"))
    )
    image = cv2.imread(record["evidence"])
    assert image.shape == (32 + 120 * 2, 160 * 2, 3)  # the overlay: legend band, frame enlarged to >= 256 px
    assert not list(folder.rglob(".*.tmp"))  # atomic writes leave no temporary files
    assert "oldest removed" in summary.text() and summary.errors == 0


def test_entries_from_an_earlier_run_count_and_go_first(tiny_onnx, tmp_path):
    folder = tmp_path / "evidence"
    with Detector(tiny_onnx, threshold=0.0) as det:
        run(det, folder, 6, stream="old")
        before = folder_bytes(folder)
        sink, _, _ = run(det, folder, 4, max_mb=before / 1e6, stream="new")
    assert folder_bytes(folder) <= before
    assert sorted(p.parent.name for p in folder.rglob("*.json")).count("new") == 4  # the newest stay


def test_normal_frames_leave_no_evidence_and_records_say_so(tiny_onnx, tmp_path):
    folder = tmp_path / "evidence"
    with Detector(tiny_onnx, threshold=1e6) as det:
        sink, results, _ = run(det, folder, 5)
    assert sink.saved == 0 and not list(folder.rglob("*.jpg"))
    assert all(r.record()["evidence"] is None and "evidence_error" not in r.record() for r in results.results)


def test_disk_full_is_an_error_record_never_a_crash(tiny_onnx, tmp_path):
    """rd-infer in a process whose files may not grow past 12 kB (RLIMIT_FSIZE: the kernel refuses
    the write, as on a full disk): large overlays fail, small ones are kept, every record is there."""
    folder, evidence, records = tmp_path / "in", tmp_path / "evidence", tmp_path / "r.jsonl"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):  # noise compresses badly (~35 kB as an overlay JPEG); flat grey to a few hundred bytes
        frame = (
            rng.integers(0, 256, (200, 260, 3), dtype=np.uint8)
            if i % 2
            else np.full((200, 260, 3), 90, np.uint8)
        )
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    limit = 12_000

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rd_edge.runtime.cli",
            str(tiny_onnx),
            str(folder),
            "--threshold",
            "0",
            "--evidence",
            str(evidence),
            "--json",
            str(records),
        ],
        preexec_fn=small_files,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr  # some inputs failed, the run finished
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(rows) == 6 and all(r["score"] is not None and r["is_anomalous"] for r in rows)  # verdicts kept
    failed = [r for r in rows if r.get("evidence_error")]
    assert [r["source"].endswith(("f1.png", "f3.png", "f5.png")) for r in failed] == [True] * 3
    assert all("File too large" in r["evidence_error"] and r["evidence"] is None for r in failed)
    saved = [r for r in rows if not r.get("evidence_error")]
    assert len(saved) == 3 and all(cv2.imread(r["evidence"]) is not None for r in saved)
    assert sorted(p.name for p in evidence.rglob("[!.]*") if p.is_file()) == sorted(
        [
            n
            for r in saved
            for n in (r["evidence"].rsplit("/", 1)[1], r["evidence"].rsplit("/", 1)[1][:-4] + ".json")
        ]
    )
    assert "3 not saved" in proc.stderr and "Traceback" not in proc.stderr  # the summary is on stderr


# --- only our own files (issue 21, case 1) ---------------------------------------------------------


def test_the_budget_removes_only_entries_the_sink_wrote(tiny_onnx, tmp_path):
    """Files of someone else inside the evidence folder (a stream's subfolder too), even with
    evidence-like names and suffixes, are never counted nor removed; entries of an earlier run are."""
    folder = tmp_path / "evidence"
    with Detector(tiny_onnx, threshold=0.0) as det:
        run(det, folder, 3, stream="cam")
        foreign = [
            folder / "notes.jpg",
            folder / "cam" / "20200101T000000-000Z_00000001.jpg",
            folder / "cam" / "photo.jpg",
        ]
        for path in foreign:
            path.write_bytes(b"\xff\xd8 not ours" * 1000)
        ours = sorted(folder.rglob("*Z_0000000?.json"))
        sink, _, _ = run(det, folder, 4, max_mb=folder_bytes(folder / "cam") / 2e6, stream="cam")
    assert all(p.read_bytes().startswith(b"\xff\xd8 not ours") for p in foreign)
    assert sink.removed >= 3 and not any(p.exists() for p in ours)  # the earlier run's entries went first


def test_a_folder_holding_a_model_or_results_is_refused(tiny_onnx, tmp_path):
    import pytest

    from rd_edge.runtime.pipeline import SinkError

    for name in ("thresholds.json", "metrics.json", "model.onnx", "results.jsonl"):
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        (folder / name).write_text("{}")
        with Detector(tiny_onnx, threshold=0.0) as det, pytest.raises(SinkError, match=f"holds {name}"):
            EvidenceSink(folder, det, max_mb=1)
        assert (folder / name).read_text() == "{}"


def test_rd_infer_refuses_its_json_inside_the_evidence_folder(tiny_onnx, tmp_path, capsys):
    from rd_edge.runtime.cli import main

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.full((40, 50, 3), 90, np.uint8))
    evidence = tmp_path / "ev"
    rc = main(
        [
            str(tiny_onnx),
            str(image),
            "--threshold",
            "0",
            "--evidence",
            str(evidence),
            "--evidence-max-mb",
            "1",
            "--json",
            str(evidence / "results.json"),
        ]
    )
    err = capsys.readouterr().err
    assert rc != 0 and "inside the evidence folder" in err and "Traceback" not in err
    assert not (evidence / "results.json").exists()


def test_stream_names_never_leave_the_folder_or_become_wildcards(tiny_onnx, tmp_path):
    """A good behaviour kept (issue 21): labels with '..', '/', '#', '+' are cleaned before they
    name a folder or an MQTT topic level."""
    from rd_edge.runtime.sources import clean_label

    folder = tmp_path / "evidence"
    with Detector(tiny_onnx, threshold=0.0) as det:
        for label in ("..", "../up", "a/b", "#", "+", "x#y+z/.."):
            clean = clean_label(label)
            assert not set(clean) & set("/#+") and clean not in (".", "..")
            run(det, folder, 1, stream=clean)
    written = [p.resolve() for p in folder.rglob("*.jpg")]
    assert written and all(folder.resolve() in p.parents for p in written)


def test_an_earlier_runs_entries_are_removed_oldest_first_by_time_not_name(tiny_onnx, tmp_path):
    """The earlier run's entries get file times in the reverse of their name order: the budget
    removes the ones with the oldest times first, whatever their names (issue 28: identities)."""
    import os

    folder = tmp_path / "evidence"
    with Detector(tiny_onnx, threshold=0.0) as det:
        run(det, folder, 6, stream="old")
        old = sorted((folder / "old").glob("*.json"))  # name order = capture order
        for age, meta in enumerate(old):  # the first captured gets the newest time
            for part in meta.parent.glob(meta.stem + ".*"):
                os.utime(part, (1_000_000 - age * 100, 1_000_000 - age * 100))
        run(det, folder, 3, max_mb=folder_bytes(folder) / 1e6, stream="new")
    kept = sorted((folder / "old").glob("*.json"))
    assert 0 < len(kept) < len(old)
    assert kept == old[: len(kept)]  # the newest by time (the first names) stay


def test_originals_are_lossless_png_without_row_filters():
    """--station keeps each NG frame as PNG at level 0 (stored, not compressed): row filters
    cannot shrink stored data and cost the sink thread 4x the encoding, so every row has none."""
    import struct
    import zlib

    import pytest

    from rd_edge.runtime.sinks.evidence import _png

    if not hasattr(cv2, "IMWRITE_PNG_FILTER"):
        pytest.skip(f"OpenCV {cv2.__version__} has no PNG filter option (4.11+)")
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    data = _png(frame)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), frame)
    idat, at = b"", 8
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at : at + 4]), data[at + 4 : at + 8]
        idat += data[at + 8 : at + 8 + length] if kind == b"IDAT" else b""
        at += 12 + length
    rows = zlib.decompress(idat)
    stride = 1 + 64 * 3
    assert len(rows) == 48 * stride and {rows[i] for i in range(0, len(rows), stride)} == {0}
