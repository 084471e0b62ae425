#!/usr/bin/env python3
"""Print the summary table at the end of `make demo` from the files the demo steps wrote.

Reads DEMO/model.pt (training summary), DEMO/metrics.json (rd-eval), DEMO/model.onnx (export),
DEMO/thresholds.json (rd-calibrate) and DEMO/infer.jsonl (rd-infer records); a step whose file is
missing is shown as not run.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def training_rows(demo: Path):
    from rd_edge.checkpoint import read_checkpoint

    data = read_checkpoint(demo / "model.pt")
    t, cfg = data["training"], data["config"]
    return [("backbone / image size", f"{cfg['model']['backbone']} / {cfg['model']['image_size'][0]} px"),
            ("training", f"{t['step']} steps in {t['seconds']:.0f} s, final loss {t['final_loss']:.4f}"),
            ("threshold (mean + 3 std of held-out normals)", f"{data['threshold']:.4f}")]


def eval_rows(demo: Path):
    m = json.loads((demo / "metrics.json").read_text())
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    return [("rd-eval image AUROC / pixel AUROC", f"{pct(m['image_auroc'])} / {pct(m['pixel_auroc'])}"),
            ("rd-eval AUPRO (FPR 0.3) / image F1-max", f"{pct(m['aupro'])} / {pct(m['image_f1_max'])}")]


def export_rows(demo: Path):
    onnx_path = demo / "model.onnx"
    return [("rd-export", f"{onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB)")]


def calibrate_rows(demo: Path):
    from rd_edge.core.thresholds import Thresholds

    t = Thresholds.read(demo / "thresholds.json")
    r = t.report
    return [(f"rd-calibrate ({t.method}) image / pixel threshold", f"{t.image_threshold:.4f} / {t.pixel_threshold:.4f}"),
            ("rd-calibrate false alarms / escapes", f"{r['false_alarms']}/{r['n_good']} / {r['escapes']}/{r['n_defective']}")]


def infer_rows(demo: Path):
    from rd_edge.metrics import auroc_or_nan

    records = [json.loads(line) for line in (demo / "infer.jsonl").read_text().splitlines() if line.strip()]
    ok = [r for r in records if not r.get("error")]
    labels = [0 if "/good/" in r["source"].replace("\\", "/") else 1 for r in ok]
    scores = [r["score"] for r in ok]
    latency = np.array([r["latency_ms"] for r in ok])
    rows = [("rd-infer (ONNX Runtime)", f"{len(records)} images, {sum(r['is_anomalous'] for r in ok)} flagged, "
                                        f"{len(records) - len(ok)} errors"),
            ("rd-infer latency mean / p99", f"{latency.mean():.1f} / {np.percentile(latency, 99):.1f} ms")]
    if len(set(labels)) == 2:
        rows.append(("rd-infer image AUROC", f"{100 * auroc_or_nan(labels, scores):.1f}"))
    return rows


def main(demo: str) -> int:
    demo_dir = Path(demo)
    rows = []
    for step, needs in ((training_rows, "model.pt"), (eval_rows, "metrics.json"),
                        (export_rows, "model.onnx"), (calibrate_rows, "thresholds.json"),
                        (infer_rows, "infer.jsonl")):
        if (demo_dir / needs).is_file():
            rows += step(demo_dir)
        else:
            rows.append((step.__name__.replace("_rows", ""), f"not run ({demo_dir / needs} missing)"))
    width = max(len(k) for k, _ in rows)
    print("\nrd-edge demo summary")
    print("-" * (width + 40))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "demo"))
