"""The HTML report's counts with errors among the inputs (issue 28: values, not shapes)."""

import re

from rd_edge.core.report import Report, ReportRow, render_html, summary_by_group


def test_errors_are_neither_ng_nor_ok_in_the_facts_and_the_summary():
    rows = [
        ReportRow("a.png", "cam1", 0.9, "NG"),
        ReportRow("b.png", "cam1", 0.1, "OK"),
        ReportRow("c.png", "cam1", None, "error", error="unreadable"),
        ReportRow("d.png", "cam2", 0.7, "NG"),
        ReportRow("e.png", "cam2", None, "error", error="empty"),
    ]
    page = render_html(Report("run", 0.5, rows))
    assert re.search(r"5: 2 NG, 1 OK, 2 errors", page)
    assert summary_by_group(rows) == [
        ["cam1", "3", "1", "1", "1", "0.5", "0.9"],
        ["cam2", "2", "1", "0", "1", "0.7", "0.7"],
    ]
