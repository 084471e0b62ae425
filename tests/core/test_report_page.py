"""The run report's files (rd_edge.core.report) built from rows by hand: results.csv's columns
and values, the page's order, escaping and charts, thumbnails. tests/runtime/test_report.py
checks the same files end to end through rd-infer/rd-eval; test_report_counts.py the counts."""

import csv
import re

import numpy as np
import pytest

from rd_edge.core.report import (
    CSV_FIELDS,
    THUMB_WIDTH,
    Curve,
    Report,
    ReportRow,
    curve_svg,
    histogram_svg,
    render_html,
    write_report,
    write_thumbnail,
)

ROWS = [
    ReportRow("cam1/ok.png", "cam1", 0.1234567891, "OK", normalized_score=0.2, thumbnail="thumbs/000000.jpg"),
    ReportRow("cam1/scratch, deep.png", "cam1", 2.5, "NG", normalized_score=4.0, label="scratch"),
    ReportRow("cam2/bad.png", "cam2", None, "error", error="cannot decode image cam2/bad.png"),
    ReportRow("cam2/worse.png", "cam2", 7.0, "NG"),
]


def test_results_csv_has_the_documented_columns_and_values(tmp_path):
    page = write_report(tmp_path / "report", Report("run", 0.5, ROWS))
    assert page == tmp_path / "report" / "index.html" and page.is_file()
    with open(tmp_path / "report" / "results.csv", newline="") as f:
        lines = list(csv.reader(f))
    assert (
        lines[0]
        == list(CSV_FIELDS)
        == [
            "source",
            "group",
            "label",
            "score",
            "normalized_score",
            "verdict",
            "error",
            "thumbnail",
        ]
    )
    assert lines[1:] == [  # input order; 6 significant digits; unknown values empty
        ["cam1/ok.png", "cam1", "", "0.123457", "0.2", "OK", "", "thumbs/000000.jpg"],
        ["cam1/scratch, deep.png", "cam1", "scratch", "2.5", "4", "NG", "", ""],
        ["cam2/bad.png", "cam2", "", "", "", "error", "cannot decode image cam2/bad.png", ""],
        ["cam2/worse.png", "cam2", "", "7", "", "NG", "", ""],
    ]


def test_cards_show_ng_first_highest_score_first_then_errors_then_ok():
    page = render_html(Report("run", 0.5, ROWS))
    cards = re.findall(r'<span class="src">([^<]*)</span>', page)
    assert cards == ["cam2/worse.png", "cam1/scratch, deep.png", "cam2/bad.png", "cam1/ok.png"]
    # an error's card says why instead of a score; a scored card gives the score
    assert '<figure class="card error"><figcaption><b>error</b> cannot decode image cam2/bad.png<br>' in page
    assert (
        "<b>NG</b> score 7<br>" in page and '<b>NG</b> score 2.5 <span class="label">scratch</span>' in page
    )


def test_the_threshold_and_its_rule_are_stated_when_known():
    page = render_html(Report("run", 0.5, ROWS))
    assert "<dt>image threshold</dt><dd>0.5 (NG when score &gt; threshold)</dd>" in page
    assert "threshold 0.5</text>" in page  # the dashed line on the histogram
    page = render_html(Report("run", None, ROWS))
    assert "image threshold" not in page and "threshold" not in histogram_svg(ROWS, None)


def test_names_from_the_inputs_are_escaped_and_the_page_has_no_scripts():
    """File names and messages come from the user's folders and payloads: shown as text, never markup."""
    evil = '<img src=x onerror="alert(1)">.png'
    rows = [
        ReportRow(evil, "<b>cam</b>", 1.0, "NG", thumbnail='t".jpg'),
        ReportRow("e", "g", None, "error", error="<script>x</script>"),
    ]
    page = render_html(Report("<script>title</script>", 0.5, rows, facts=[("model", "<m>")]))
    assert evil not in page and "<script" not in page and 'onerror="' not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.png" in page
    assert "<title>&lt;script&gt;title&lt;/script&gt;</title>" in page
    assert '<img src="t&quot;.jpg"' in page and "<td>&lt;b&gt;cam&lt;/b&gt;</td>" in page
    assert "<dd>&lt;m&gt;</dd>" in page
    assert not re.search(r"(src|href)=\"https?:", page)  # self-contained: nothing fetched


def test_the_histogram_splits_by_ground_truth_when_every_row_has_one():
    labelled = [
        ReportRow("a", "good", 0.1, "OK", label="good"),
        ReportRow("b", "good", 0.6, "NG", label="good"),
        ReportRow("c", "scratch", 0.9, "NG", label="scratch"),
        ReportRow("d", "hole", 0.8, "NG", label="hole"),
        ReportRow("e", "hole", None, "error", label="hole"),  # not scored: not counted
    ]
    svg = histogram_svg(labelled, 0.5)
    assert "good (2)</text>" in svg and "defect (2)</text>" in svg
    assert "OK (" not in svg
    by_verdict = histogram_svg([*labelled[:3], ReportRow("f", "x", 0.7, "NG")], 0.5)  # one row unlabelled
    assert "OK (1)</text>" in by_verdict and "NG (3)</text>" in by_verdict
    unscored = [ReportRow("e", "g", None, "error"), ReportRow("n", "g", float("nan"), "NG")]
    assert histogram_svg(unscored, 0.5) == "<p>no scores</p>"


def test_curves_are_drawn_on_the_unit_square_with_their_note():
    svg = curve_svg(
        Curve(
            "ROC",
            [0.0, 0.5, 1.0],
            [0.0, 0.75, 1.0],
            "false-positive rate",
            "true-positive rate",
            "AUROC 0.875",
        )
    )
    # x 0..1 -> 40..520 px, y 0..1 -> 200..40 px (up is better)
    assert '<polyline points="40.0,200.0 280.0,80.0 520.0,40.0"' in svg
    assert ">ROC AUROC 0.875</text>" in svg and 'aria-label="ROC"' in svg
    page = render_html(Report("eval", 0.5, ROWS, curves=[Curve("PR", [0, 1], [1, 0], "recall", "precision")]))
    assert "<h2>Curves</h2>" in page and 'aria-label="PR"' in page


def test_thumbnails_are_jpegs_192_px_wide_named_by_index(tmp_path):
    import cv2

    overlay = np.zeros((300, 400, 3), np.uint8)
    overlay[:, 200:] = (0, 0, 255)
    name = write_thumbnail(tmp_path, 7, overlay)
    assert name == "thumbs/000007.jpg"
    thumb = cv2.imread(str(tmp_path / name))
    assert thumb.shape == (144, THUMB_WIDTH, 3) and THUMB_WIDTH == 192  # aspect kept
    assert thumb[72, 150, 2] > 200 and thumb[72, 40, 2] < 30  # the right half stays red
    small = np.full((20, 30, 3), 128, np.uint8)  # never enlarged
    assert cv2.imread(str(tmp_path / write_thumbnail(tmp_path, 8, small))).shape == (20, 30, 3)


@pytest.mark.parametrize("count", [0, 1])
def test_a_report_with_few_rows_is_still_a_page(tmp_path, count):
    rows = ROWS[:count]
    page = write_report(tmp_path, Report("empty run", 0.5, rows)).read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert f"<dd>{count}: 0 NG, {count} OK, 0 errors</dd>" in page
    assert page.count('<figure class="card ') == count
