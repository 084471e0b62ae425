"""A run report a person opens: ``index.html`` (thumbnails, verdicts, scores, a score histogram
with the threshold, a summary per source) and ``results.csv`` beside it.

Written by ``rd-infer --report DIR`` (one row per scored input) and ``rd-eval --report DIR`` (one
row per test image, plus ROC and PR curves and a table per defect type). Self-contained: inline
SVG charts, thumbnails as files under ``DIR/thumbs``, no scripts, no network; torch-free (the
Jetson runtime writes it too).
"""

from __future__ import annotations

import csv
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .files import PathLike, write_text_atomic

THUMB_WIDTH = 192  # px: enough to see the outlined region, small enough for hundreds of rows
CSV_FIELDS = ("source", "group", "label", "score", "normalized_score", "verdict", "error", "thumbnail")
_COLOURS = {"OK": "#2e7d32", "NG": "#c62828", "error": "#757575", "good": "#2e7d32", "defect": "#c62828"}


@dataclass
class ReportRow:
    """One scored input. ``group``: its source (rd-infer) or defect type (rd-eval); ``label``:
    the ground truth when known ("good" or a defect type), else None."""

    source: str
    group: str
    score: Optional[float]
    verdict: str  # "OK" | "NG" | "error"
    normalized_score: Optional[float] = None
    label: Optional[str] = None
    error: Optional[str] = None
    thumbnail: Optional[str] = None  # relative to the report folder


@dataclass
class Curve:
    """A chart line: name, x and y values (e.g. ROC: false-positive rate, true-positive rate)."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    x_label: str
    y_label: str
    note: str = ""


@dataclass
class Report:
    """What the page shows; ``tables`` are (title, header, rows) shown after the summary."""

    title: str
    threshold: Optional[float]
    rows: List[ReportRow] = field(default_factory=list)
    facts: List[Tuple[str, str]] = field(default_factory=list)  # (name, value) lines at the top
    curves: List[Curve] = field(default_factory=list)
    tables: List[Tuple[str, List[str], List[List[str]]]] = field(default_factory=list)


def write_thumbnail(folder: Path, index: int, overlay_bgr: np.ndarray) -> str:
    """Downscale an overlay to THUMB_WIDTH and write it as JPEG; returns its path relative to the report."""
    from .images import cv2

    h, w = overlay_bgr.shape[:2]
    if w > THUMB_WIDTH:
        overlay_bgr = cv2.resize(
            overlay_bgr, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA
        )
    name = f"thumbs/{index:06d}.jpg"
    (folder / "thumbs").mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".jpg", overlay_bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise OSError("JPEG encoding failed")
    data.tofile(str(folder / name))
    return name


def write_report(folder: PathLike, report: Report) -> Path:
    """Write ``folder/index.html`` and ``folder/results.csv``; returns the page's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_csv(folder / "results.csv", report.rows)
    return write_text_atomic(folder / "index.html", render_html(report))


def _write_csv(path: Path, rows: Sequence[ReportRow]) -> None:
    lines: List[List[str]] = [list(CSV_FIELDS)]
    for r in rows:
        lines.append(
            [
                r.source,
                r.group,
                r.label or "",
                _num(r.score),
                _num(r.normalized_score),
                r.verdict,
                r.error or "",
                r.thumbnail or "",
            ]
        )
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    write_text_atomic(path, buffer.getvalue())


def _num(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.6g}"


def summary_by_group(rows: Sequence[ReportRow]) -> List[List[str]]:
    """Per source (or defect type): inputs, NG, OK, errors, mean and max score."""
    groups: Dict[str, List[ReportRow]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    out = []
    for name, members in sorted(groups.items()):
        scores = [r.score for r in members if r.score is not None]
        count = {v: sum(r.verdict == v for r in members) for v in ("NG", "OK", "error")}
        out.append(
            [
                name,
                str(len(members)),
                str(count["NG"]),
                str(count["OK"]),
                str(count["error"]),
                _num(float(np.mean(scores))) if scores else "",
                _num(max(scores)) if scores else "",
            ]
        )
    return out


def render_html(report: Report) -> str:
    """The page: facts, histogram, curves, summary and extra tables, then one card per input."""
    rows = report.rows
    n_ng = sum(r.verdict == "NG" for r in rows)
    n_err = sum(r.verdict == "error" for r in rows)
    facts = [
        ("inputs", f"{len(rows)}: {n_ng} NG, {len(rows) - n_ng - n_err} OK, {n_err} errors"),
        *report.facts,
    ]
    if report.threshold is not None:
        facts.insert(1, ("image threshold", f"{report.threshold:.6g} (NG when score > threshold)"))
    parts = [
        f"<h1>{_e(report.title)}</h1>",
        _facts(facts),
        "<h2>Scores</h2>",
        histogram_svg(rows, report.threshold),
    ]
    if report.curves:
        parts += (
            ["<h2>Curves</h2>", '<div class="charts">'] + [curve_svg(c) for c in report.curves] + ["</div>"]
        )
    parts += [
        "<h2>Summary</h2>",
        _table(["group", "inputs", "NG", "OK", "errors", "mean score", "max score"], summary_by_group(rows)),
    ]
    for title, header, body in report.tables:
        parts += [f"<h2>{_e(title)}</h2>", _table(header, body)]
    parts += ["<h2>Inputs</h2>", '<div class="cards">'] + [_card(r) for r in _ordered(rows)] + ["</div>"]
    return _PAGE.format(title=_e(report.title), body="\n".join(parts))


def _ordered(rows: Sequence[ReportRow]) -> List[ReportRow]:
    """NG first, highest scores first: what a person checks first."""
    rank = {"NG": 0, "error": 1, "OK": 2}
    return sorted(
        rows, key=lambda r: (rank.get(r.verdict, 3), -(r.score if r.score is not None else -math.inf))
    )


def _card(r: ReportRow) -> str:
    image = f'<img src="{_e(r.thumbnail)}" alt="{_e(r.source)}" loading="lazy">' if r.thumbnail else ""
    score = f"score {r.score:.4g}" if r.score is not None else _e(r.error or "")
    label = f' <span class="label">{_e(r.label)}</span>' if r.label else ""
    return (
        f'<figure class="card {_e(r.verdict)}">{image}<figcaption><b>{_e(r.verdict)}</b> {score}{label}'
        f'<br><span class="src">{_e(r.source)}</span></figcaption></figure>'
    )


def _facts(facts: Sequence[Tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts) + "</dl>"


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


# --- charts (inline SVG) -----------------------------------------------------------------------

W, H, PAD = 560, 240, 40


def histogram_svg(rows: Sequence[ReportRow], threshold: Optional[float], bins: int = 30) -> str:
    """Stacked histogram of scores, by ground truth (good/defect) when known, else by verdict;
    the threshold as a dashed line."""
    scored = [r for r in rows if r.score is not None and math.isfinite(r.score)]
    if not scored:
        return "<p>no scores</p>"
    labelled = all(r.label is not None for r in scored)
    key = (lambda r: "good" if r.label == "good" else "defect") if labelled else (lambda r: r.verdict)
    kinds = ["good", "defect"] if labelled else ["OK", "NG"]
    values = np.array([r.score for r in scored], float)
    lo, hi = float(values.min()), float(values.max())
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    counts = {
        k: np.histogram(np.array([r.score for r in scored if key(r) == k], float), edges)[0] for k in kinds
    }
    top = max(1, int(np.sum(list(counts.values()), axis=0).max()))
    sx = lambda v: PAD + (v - lo) / (hi - lo) * (W - 2 * PAD)  # noqa: E731
    sy = lambda c: H - PAD - c / top * (H - 2 * PAD)  # noqa: E731
    shapes = []
    base = np.zeros(bins)
    for k in kinds:
        for i, c in enumerate(counts[k]):
            if c:
                shapes.append(
                    f'<rect x="{sx(edges[i]):.1f}" y="{sy(base[i] + c):.1f}" '
                    f'width="{max(1.0, sx(edges[i + 1]) - sx(edges[i]) - 1):.1f}" '
                    f'height="{sy(base[i]) - sy(base[i] + c):.1f}" fill="{_COLOURS[k]}"/>'
                )
        base = base + counts[k]
    if threshold is not None:
        x = sx(threshold)
        shapes.append(
            f'<line x1="{x:.1f}" y1="{PAD - 10}" x2="{x:.1f}" y2="{H - PAD}" stroke="#000" '
            f'stroke-dasharray="5,3"/><text x="{x + 4:.1f}" y="{PAD - 2}">threshold {threshold:.4g}</text>'
        )
    legend = "".join(
        f'<rect x="{PAD + 90 * i}" y="6" width="10" height="10" fill="{_COLOURS[k]}"/>'
        f'<text x="{PAD + 14 + 90 * i}" y="15">{k} ({int(counts[k].sum())})</text>'
        for i, k in enumerate(kinds)
    )
    axes = _axes(f"{lo:.4g}", f"{hi:.4g}", "score", "0", str(top), "images")
    return _svg("".join(shapes) + legend + axes, "score histogram")


def curve_svg(curve: Curve) -> str:
    """A line chart on [0, 1] x [0, 1] (ROC, PR), with its note (e.g. the AUROC) as the title."""
    pts = " ".join(
        f"{PAD + x * (W - 2 * PAD):.1f},{H - PAD - y * (H - 2 * PAD):.1f}" for x, y in zip(curve.x, curve.y)
    )
    body = f'<polyline points="{pts}" fill="none" stroke="#1565c0" stroke-width="2"/>'
    body += f'<text x="{PAD}" y="{PAD - 14}" font-weight="bold">{_e(curve.name)} {_e(curve.note)}</text>'
    return _svg(body + _axes("0", "1", curve.x_label, "0", "1", curve.y_label), curve.name)


def _axes(x0: str, x1: str, x_label: str, y0: str, y1: str, y_label: str) -> str:
    return (
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#444"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#444"/>'
        f'<text x="{PAD}" y="{H - PAD + 16}">{_e(x0)}</text>'
        f'<text x="{W - PAD}" y="{H - PAD + 16}" text-anchor="end">{_e(x1)}</text>'
        f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">{_e(x_label)}</text>'
        f'<text x="{PAD - 4}" y="{H - PAD}" text-anchor="end">{_e(y0)}</text>'
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{_e(y1)}</text>'
        f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" text-anchor="middle">{_e(y_label)}</text>'
    )


def _svg(body: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'role="img" aria-label="{_e(label)}" font-family="sans-serif" font-size="11">{body}</svg>'
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }}
dt {{ font-weight: bold; }} dd {{ margin: 0; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ border: 1px solid #ccc; padding: .2em .6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.cards {{ display: flex; flex-wrap: wrap; gap: .6em; }}
.card {{ margin: 0; width: 192px; border: 3px solid #ccc; font-size: 12px; }}
.card.NG {{ border-color: #c62828; }} .card.OK {{ border-color: #2e7d32; }} .card.error {{ border-color: #757575; }}
.card img {{ width: 100%; display: block; }}
.card figcaption {{ padding: .2em .3em; overflow-wrap: anywhere; }}
.src {{ color: #666; }} .label {{ background: #eee; padding: 0 .3em; }}
</style></head><body>
{body}
</body></html>
"""
