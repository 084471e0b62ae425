"""Outputs: JSON (the full report), a Markdown table, a PNG bar chart (p50, p99 whiskers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

COLUMNS = (  # (header, key, format)
    ("backend", "backend", "{}"),
    ("precision", "precision", "{}"),
    ("batch", "batch_size", "{}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p90 ms", "p90_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("mean ms", "mean_ms", "{:.1f}"),
    ("min ms", "min_ms", "{:.1f}"),
    ("p50 ms/img", "p50_ms_per_image", "{:.1f}"),
    ("img/s", "throughput_ips", "{:.2f}"),
    ("pre ms", "preprocess_ms", "{:.2f}"),
    ("infer ms", "inference_ms", "{:.1f}"),
    ("post ms", "postprocess_ms", "{:.2f}"),
    ("GFLOP/s", "gflops_per_s", "{:.0f}"),
    ("% peak", "peak_fraction", "{:.0%}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("x reference", "ratio_to_reference", "{:.2f}"),
    ("ratio range", "ratio_range", "{}"),
    ("\\|Δscore\\|", "score_diff_vs_reference", "{:.1e}"),  # \| : a literal bar inside a Markdown cell
    ("other CPU %", "other_cpu_pct", "{:.1f}"),
)


def write_json(report: Dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def _cell(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def results_table(results: List[Dict[str, Any]]) -> str:
    """The result rows as a GitHub Markdown table."""
    lines = [
        "| " + " | ".join(h for h, _, _ in COLUMNS) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(COLUMNS))) + "|",
    ]
    for row in results:
        values = {**row.get("details", {}), **row}  # other_cpu_pct and the ratios live in details
        if values.get("ratio_min") is not None:
            values["ratio_range"] = f"{values['ratio_min']:.2f}–{values['ratio_max']:.2f}"
        lines.append("| " + " | ".join(_cell(values.get(key), fmt) for _, key, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def _low_peak_line(peaks: Optional[Dict[str, Any]]) -> str:
    if not peaks:
        return "bf16/int8 peaks: not measured (--no-peak)"
    measured = ", ".join(f"{k} {v}" for k, v in peaks["measured"].items())
    return (
        f"bf16/int8 peaks ({peaks['method']}): **{peaks['bf16_gops']} / {peaks['int8_gops']} GOPS** "
        f"({measured}); bf16 and int8 rows' `% peak` divide by these"
    )


def _peak_line(peak: Optional[Dict[str, Any]]) -> str:
    if not peak:
        return "fp32 peak: not measured (--no-peak)"
    measured = ", ".join(f"{k} {v}" for k, v in peak["measured_sgemm_gflops"].items())
    line = (
        f"fp32 peak (measured sgemm, {peak['method']}): **{peak['achievable_gflops']} GFLOP/s** ({measured})"
    )
    nominal = peak.get("nominal")
    if nominal:
        line += (
            f"; nominal {nominal['gflops']:.0f} GFLOP/s = {nominal['cores']} cores x "
            f"{nominal['ghz']:.2f} GHz (reported clock) x {nominal['flop_per_cycle']} FLOP/cycle "
            f"({nominal['basis']})"
        )
        if nominal.get("implied_ghz"):
            line += f"; the measured peak implies {nominal['implied_ghz']} GHz at that FLOP/cycle"

    return line


def markdown_report(report: Dict[str, Any]) -> str:
    """Machine label, model, the table, and the skipped backends with their reasons."""
    system, model = report["system"], report.get("model") or {}
    versions = ", ".join(f"{k} {v}" for k, v in system["versions"].items() if v)
    lines = [
        f"**Machine**: {system['cpu']}, {system['cores']} cores, {system['threads']} threads, "
        f"GPU: {system['gpu'] or 'none'}; load average at start {system['load_average_start']}, "
        f"at end {system.get('load_average_end')}",
        f"**Versions**: {versions}",
        f"**Model**: {model.get('backbone')} at {model.get('image_size')}, "
        f"{_fmt_gflop(model.get('gflop_per_image'))} GFLOP per image ({model.get('counting', '')})",
        _peak_line(system.get("fp32_peak")),
        _low_peak_line(system.get("low_precision_peaks")),
        f"**Input**: {report['settings']['frames']}; {report['settings']['iters']} timed calls after "
        f"{report['settings']['warmup']} warm-up per row and round; times per batch call",
        f"**Rounds**: {report['settings'].get('rounds', 1)}, interleaved (every row once per round, each in its "
        f"own process); x reference = the row's median time / reference's in the same round, the median "
        f"over rounds, with its range",
        "",
        results_table(report["results"]),
    ]
    if report["skipped"]:
        lines += ["", "Skipped:"] + [f"- `{s['backend']}`: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"


def _fmt_gflop(value: Optional[float]) -> str:
    return "?" if value is None else f"{value:.1f}"


def write_markdown(report: Dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_report(report))


def write_plot(report: Dict[str, Any], path: Path) -> None:
    """One panel per batch size: p50 per batch call as bars, whiskers up to p99."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    results = report["results"]
    batches = sorted({r["batch_size"] for r in results}) or [1]
    fig, axes = plt.subplots(1, len(batches), figsize=(4.5 * len(batches), 4), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        rows = [r for r in results if r["batch_size"] == batch]
        labels = [f"{r['backend']}\n{r['precision']}" for r in rows]
        p50 = [r["p50_ms"] for r in rows]
        whiskers = [[0.0] * len(rows), [r["p99_ms"] - r["p50_ms"] for r in rows]]
        bars = ax.bar(range(len(rows)), p50, yerr=whiskers, capsize=4, color="tab:blue")
        ratios = [r.get("details", {}).get("ratio_to_reference") for r in rows]
        ax.bar_label(
            bars,
            labels=[f"{v:.1f}" + (f"\nx{q:.2f}" if q is not None else "") for v, q in zip(p50, ratios)],
            fontsize=7,
            padding=2,
        )  # p50 ms, and the ratio to reference
        ax.margins(y=0.18)  # room for the labels above the tallest whisker
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(f"batch {batch}")
        ax.set_ylabel("ms per batch call (p50, whisker p99)")
    model = report.get("model") or {}
    fig.suptitle(
        f"{model.get('backbone', '')} {model.get('image_size', '')} on "
        f"{report['system']['cpu']} ({report['system']['threads']} threads)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
