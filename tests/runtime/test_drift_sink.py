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
    code = main([str(scene["model"]), f"stable={scene['stable']}", f"drift={scene['drift']}", "--json",
                 str(records_path), "--quiet"])
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
    assert main([str(scene["model"]), str(scene["drift"]), "--drift-window", "0", "--json",
                 str(tmp_path / "off.jsonl"), "--quiet"]) == 0
    assert "drift" not in json.loads((tmp_path / "off.jsonl").read_text().splitlines()[-1])
    assert main([str(scene["model"]), str(scene["drift"]), "--drift-window", "5", "--quiet"]) == 1
    assert "--drift-window must be 0 (off) or >= 30" in capsys.readouterr().err
    # every reference score above the threshold: a warning, the run goes on without drift
    assert main([str(scene["model"]), str(scene["drift"]), "--threshold", "0.001", "--json",
                 str(tmp_path / "low.jsonl"), "--quiet"]) == 0
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
            Pipeline(det, [FrameSource("cam", 40)], [DriftSink(reference, window=30, warn=lambda t: None),
                                                     metrics]).run()
    finally:
        metrics.close()
    assert metrics.registry.get_sample_value("rd_edge_drift_ks", {"source": "cam"}) == 1.0
    assert metrics.registry.get_sample_value("rd_edge_drifting", {"source": "cam"}) == 1.0
