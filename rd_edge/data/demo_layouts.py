"""The synthetic demo data in every layout rd-edge reads (MVTec AD 2, VisA, plain folders).

The images are the MVTec AD demo categories (rd_edge.data.synthetic) rearranged, so each layout
holds the same pictures and the tests can check that every layout trains and evaluates.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path
from typing import Any, List, Sequence

from rd_edge.core.errors import DatasetError
from rd_edge.core.files import PathLike
from rd_edge.data.layouts import VISA_SPLIT
from rd_edge.data.mvtec import GOOD, MVTecCategory

MVTEC2_VALIDATION_EVERY = 6  # every 6th training image goes to validation/good


def write_demo_layout(root: PathLike, layout: str, categories: Sequence[str], **settings: Any) -> List[Path]:
    """Write the demo categories under ``root`` in ``layout``; returns what ``--data`` (or
    ``--good`` for folders) should name, one per category."""
    from rd_edge.data.synthetic import write_demo_dataset

    root = Path(root)
    if layout == "mvtec":
        return write_demo_dataset(root, categories=categories, **settings)
    convert = {"mvtec2": _to_mvtec2, "visa": _to_visa, "folders": _to_folders}.get(layout)
    if convert is None:
        raise ValueError(f"unknown layout {layout!r}; expected mvtec, mvtec2, visa or folders")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".demo-") as tmp:
        written = write_demo_dataset(tmp, categories=categories, **settings)
        out = [convert(MVTecCategory(folder), root) for folder in written]
    return out


def _fresh(folder: Path) -> Path:
    if folder.exists():
        if any(folder.iterdir()):
            raise DatasetError(f"{folder} exists and is not empty; choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _to_mvtec2(cat: MVTecCategory, root: Path) -> Path:
    out = _fresh(root / cat.name)
    for i, p in enumerate(cat.train_paths()):
        split = "validation" if i % MVTEC2_VALIDATION_EVERY == MVTEC2_VALIDATION_EVERY - 1 else "train"
        _copy(p, out / split / GOOD / p.name)
    for s in cat.test_samples():
        if not s.is_anomalous:
            _copy(s.path, out / "test_public" / GOOD / s.path.name)
            continue
        stem = f"{s.defect_type}_{s.path.stem}"  # MVTec AD 2 has one "bad" folder for all types
        _copy(s.path, out / "test_public" / "bad" / f"{stem}{s.path.suffix}")
        if s.mask_path is not None:
            _copy(s.mask_path, out / "test_public" / "ground_truth" / "bad" / f"{stem}_mask.png")
    return out


def _to_visa(cat: MVTecCategory, root: Path) -> Path:
    """VisA: <object>/Data/Images/{Normal,Anomaly}, <object>/Data/Masks/Anomaly, split_csv/1cls.csv."""
    obj = cat.name
    _fresh(root / obj)
    rows = []
    data = Path(obj) / "Data"
    for p in cat.train_paths():
        rows.append(
            [obj, "train", "normal", _copy(p, root / data / "Images" / "Normal" / f"train_{p.name}"), ""]
        )
    for s in cat.test_samples():
        name = f"{s.defect_type}_{s.path.name}"
        if not s.is_anomalous:
            rows.append([obj, "test", "normal", _copy(s.path, root / data / "Images" / "Normal" / name), ""])
            continue
        image = _copy(s.path, root / data / "Images" / "Anomaly" / name)
        mask = (
            _copy(s.mask_path, root / data / "Masks" / "Anomaly" / f"{Path(name).stem}.png")
            if s.mask_path
            else ""
        )
        rows.append([obj, "test", "anomaly", image, mask])
    split = root / VISA_SPLIT
    existing = _visa_rows_except(split, obj)
    split.parent.mkdir(parents=True, exist_ok=True)
    with open(split, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(existing)
        for row in rows:  # paths relative to the VisA root, as in the real file
            writer.writerow([str(v.relative_to(root)) if isinstance(v, Path) else v for v in row])
    return root / obj


def _visa_rows_except(split: Path, obj: str) -> List[List[str]]:
    if not split.is_file():
        return []
    with open(split, newline="", encoding="utf-8") as f:
        return [r for r in list(csv.reader(f))[1:] if r and r[0] != obj]


def _to_folders(cat: MVTecCategory, root: Path) -> Path:
    """root/<category>/{good,defect,masks}: good = train + test good, masks as <stem>.png."""
    out = _fresh(root / cat.name)
    for p in cat.train_paths():
        _copy(p, out / "good" / f"train_{p.name}")
    for s in cat.test_samples():
        name = f"{s.defect_type}_{s.path.name}"
        if not s.is_anomalous:
            _copy(s.path, out / "good" / name)
            continue
        _copy(s.path, out / "defect" / name)
        if s.mask_path is not None:
            _copy(s.mask_path, out / "masks" / f"{Path(name).stem}.png")
    return out
