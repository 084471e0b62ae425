"""rd-infer's drift monitoring: the drifting video warns once, the stable one never; the records,
the Prometheus gauge and thresholds.json carry it."""

import json

import pytest
from ports import free_ports
from station_scene import make_scene

from rd_edge.runtime.cli import main


def test_drift_warns_once_for_the_ramp_only_and_records_carry_it(tmp_path, capsys):
    scene = make_scene(tmp_path, n=150)
    records_path = tmp_path / "r.jsonl"
    code = main(
        [
            str(scene["model"]),
            f"stable={scene['stable']}",
            f"drift={scene['drift']}",
            "--json",
            str(records_path),
            "--quiet",
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert err.count("warning: score drift on drift at frame") == 1 and "drift on stable" not in err
    records = [json.loads(x) for x in records_path.read_text().splitlines()]
    last = {r["stream"]: r["drift"] for r in records}
    assert last["drift"]["drifting"] and last["drift"]["ks"] > 0.8
    assert not any(r["drift"] and r["drift"]["drifting"] for r in records if r["stream"] == "stable")
    assert last["stable"]["reference"] == 40 and last["stable"]["window"] > 100


def test_drift_gauge_and_off_switch(tmp_path, capsys):
    pytest.importorskip("prometheus_client")
    from rd_edge.runtime.sinks.drift import DriftSink
    from rd_edge.runtime.sinks.metrics import MetricsSink

    scene = make_scene(tmp_path, n=60)
    assert (
        main(
            [
                str(scene["model"]),
                str(scene["drift"]),
                "--drift-window",
                "0",
                "--json",
                str(tmp_path / "off.jsonl"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "drift" not in json.loads((tmp_path / "off.jsonl").read_text().splitlines()[-1])
    assert main([str(scene["model"]), str(scene["drift"]), "--drift-window", "5", "--quiet"]) == 1
    assert "--drift-window must be 0 (off) or >= 30" in capsys.readouterr().err
    # every reference score above the threshold: a warning, the run goes on without drift
    assert (
        main(
            [
                str(scene["model"]),
                str(scene["drift"]),
                "--threshold",
                "0.001",
                "--json",
                str(tmp_path / "low.jsonl"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "warning: drift monitoring off: the drift reference has 0 of its 40" in capsys.readouterr().err
    assert "drift" not in json.loads((tmp_path / "low.jsonl").read_text().splitlines()[0])
    # the gauges, after a run against a reference far above every score
    (port,) = free_ports(1)
    from pipeline_parts import FrameSource

    from rd_edge.runtime import Detector
    from rd_edge.runtime.pipeline import Pipeline

    reference = {"count": 20, "values": [10.0 + i for i in range(20)]}  # far above every score
    metrics = MetricsSink(port, host="127.0.0.1")
    try:
        with Detector(scene["model"], threshold=1e6) as det:  # every frame OK
            Pipeline(
                det, [FrameSource("cam", 40)], [DriftSink(reference, window=30, warn=lambda t: None), metrics]
            ).run()
    finally:
        metrics.close()
    assert metrics.registry.get_sample_value("rd_edge_drift_ks", {"source": "cam"}) == 1.0
    assert metrics.registry.get_sample_value("rd_edge_drifting", {"source": "cam"}) == 1.0


def test_ng_frames_never_enter_the_sinks_window_and_each_stream_has_its_own():
    """40 OK frames like the reference on stream a, then 40 NG frames far above it: a's window still
    holds the 40 OK scores and does not drift; stream b (OK frames only, shifted) drifts alone."""
    import numpy as np

    from rd_edge.core.drift import reference_from_scores
    from rd_edge.runtime.detector import Prediction
    from rd_edge.runtime.sinks.base import Result
    from rd_edge.runtime.sinks.drift import DriftSink
    from rd_edge.runtime.sources import SourceItem

    rng = np.random.default_rng(28)
    sink = DriftSink(
        reference_from_scores(rng.normal(1.0, 0.1, 60)), window=60, warn=lambda text: None, threshold=2.0
    )

    def write(stream, i, score):
        ng = score > 2.0
        result = Result(
            stream,
            i,
            SourceItem(f"{i}.png", str(i), None, None),
            prediction=Prediction(score, 0.9 if ng else 0.1, ng, np.zeros((2, 2), np.float32)),
        )
        sink.write(result)
        return result.extra["drift"]

    for i, s in enumerate(rng.normal(1.0, 0.1, 40)):
        write("a", i, float(s))
    for i in range(40, 80):
        state = write("a", i, 5.0 + i)
    assert state["window"] == 40 and not state["drifting"]
    for i, s in enumerate(rng.normal(1.6, 0.1, 40)):
        other = write("b", i, float(s))
    assert other["window"] == 40 and other["drifting"] and list(sink.warned) == ["b"]
