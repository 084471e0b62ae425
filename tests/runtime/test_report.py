"""The run report a person opens: rd-infer --report and rd-eval --report write index.html and
results.csv that say the same as the records; the page is looked at in headless Chromium."""

import csv
import json

import pytest

from rd_edge.runtime.cli import main as infer_main
from rdbench.browser import chromium, missing


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_infer_report_agrees_with_the_records_and_renders(tiny_onnx, demo_category, tmp_path):
    report, records_path = tmp_path / "report", tmp_path / "r.jsonl"
    assert (
        infer_main(
            [
                str(tiny_onnx),
                str(demo_category / "test"),
                "--report",
                str(report),
                "--json",
                str(records_path),
                "--quiet",
            ]
        )
        == 0
    )
    records = {r["source"]: r for r in map(json.loads, records_path.read_text().splitlines())}
    rows = read_csv(report / "results.csv")
    assert len(rows) == len(records) > 0
    for row in rows:  # same verdict and score as the JSON record of that input
        record = records[row["source"]]
        assert row["verdict"] == ("NG" if record["is_anomalous"] else "OK")
        assert float(row["score"]) == pytest.approx(record["score"], rel=1e-5)
        assert (report / row["thumbnail"]).is_file()
    groups = {row["group"] for row in rows}  # per sub-folder of the one folder source
    assert groups == {p.name for p in (demo_category / "test").iterdir()}
    page = (report / "index.html").read_text()
    assert "threshold" in page and page.count('class="card ') == len(rows)
    if missing():
        pytest.skip(missing())
    with chromium(1200, 900) as browser:
        browser.get((report / "index.html").as_uri())
        from selenium.webdriver.support.ui import WebDriverWait

        def loaded(driver) -> int:
            return driver.execute_script(
                "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
            )

        # lazy images below the fold may not load in a headless window: the first rows must (the
        # page decodes them after load, which takes a while on a busy machine)
        WebDriverWait(browser, 20).until(lambda d: loaded(d) >= min(5, len(rows)))
        assert browser.execute_script("return document.querySelectorAll('svg rect').length") > 0
        summary = browser.execute_script("return document.querySelectorAll('table')[0].rows.length")
        assert summary == len(groups) + 1


def test_eval_report_has_curves_per_type_and_calibrated_verdicts(r18_checkpoint, demo_category, tmp_path):
    import shutil

    from rd_edge.cli.evaluate import main as eval_main
    from rd_edge.core.files import sha256_file
    from rd_edge.core.thresholds import Thresholds, thresholds_path

    model = tmp_path / "m.pt"
    shutil.copy(r18_checkpoint, model)
    # thresholds.json calibrated for these weights: rd-eval's verdicts and overlays use it, as rd-infer does
    Thresholds(1.0, 0.9, method="manual", model="m.onnx", checkpoint_sha256=sha256_file(model)).write(
        thresholds_path(model)
    )
    report = tmp_path / "eval"
    assert (
        eval_main(
            [
                str(model),
                "--data",
                str(demo_category),
                "--report",
                str(report),
                "--quiet",
                "--json",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["threshold"] == 1.0 and metrics["threshold_source"].endswith("thresholds.json")
    rows = read_csv(report / "results.csv")
    assert all(r["verdict"] == ("NG" if float(r["score"]) > 1.0 else "OK") for r in rows)
    assert {r["label"] for r in rows} == {p.name for p in (demo_category / "test").iterdir()}
    page = (report / "index.html").read_text()
    assert 'aria-label="ROC"' in page and 'aria-label="PR"' in page and "Metrics per defect type" in page
    # other weights' thresholds file is not taken: the checkpoint's own threshold is
    from rd_edge.checkpoint import load_checkpoint
    from rd_edge.evaluate import checkpoint_thresholds

    Thresholds(5.0, None, checkpoint_sha256="f" * 64).write(thresholds_path(model))
    assert checkpoint_thresholds(model, load_checkpoint(model))[2] == "checkpoint"


def test_eval_verdict_counts_by_hand():
    """Good scores 0.1 0.6 0.7, defect scores 0.4 0.5 0.9 at threshold 0.5: 2 of 3 good flagged,
    2 of 3 defects escape (0.5 is not above 0.5)."""
    from rd_edge.eval_report import verdict_counts

    assert (
        verdict_counts([0, 0, 0, 1, 1, 1], [0.1, 0.6, 0.7, 0.4, 0.5, 0.9], 0.5)
        == "false alarms 2/3, escapes 2/3"
    )
    assert verdict_counts([0, 1], [0.2, 0.8], 0.5) == "false alarms 0/1, escapes 0/1"
