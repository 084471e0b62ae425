"""The review folder: an operator's marks on frames, kept for calibration and training.

    REVIEW/false_alarm/<stream>__<entry>.png        flagged NG, but good: a good image
    REVIEW/confirmed_defect/<stream>__<entry>.png   flagged NG, and a defect
    REVIEW/missed_defect/<stream>__<entry>.png      passed OK, but a defect (an escape)
    ... each with <same name>.json: {"record": the frame's record, "review": {"label", "time"}}

The PNG is the original frame (what the model saw, not the overlay). Files are written
atomically, the JSON last (it marks a complete entry), and nothing is ever deleted or
overwritten: marking a frame again under another label adds a second entry, and readers take
the newest mark per frame. ``rd-calibrate --review`` and ``rd-train --good`` read this folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import RdEdgeError
from .files import PathLike, write_bytes_atomic, write_text_atomic

FALSE_ALARM, CONFIRMED, MISSED = "false_alarm", "confirmed_defect", "missed_defect"
REVIEW_LABELS = (FALSE_ALARM, CONFIRMED, MISSED)
GOOD_LABELS, DEFECT_LABELS = (FALSE_ALARM,), (CONFIRMED, MISSED)


class ReviewError(RdEdgeError):
    """A mark that cannot be made: unknown label, no original frame, a folder that cannot be written."""


@dataclass(frozen=True)
class Mark:
    label: str
    key: str  # <stream>__<entry>: one frame
    image: Path
    time: str


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "frame"


def write_mark(
    folder: PathLike, label: str, stream: str, entry: str, png: bytes, record: dict[str, Any]
) -> tuple[Path, bool]:
    """Save one mark; returns (its PNG path, False when this frame already had this label)."""
    if label not in REVIEW_LABELS:
        raise ReviewError(f"review label {label!r} unknown; expected one of {', '.join(REVIEW_LABELS)}")
    key = mark_key(stream, entry)
    image = Path(folder) / label / f"{key}.png"
    meta = image.with_suffix(".json")
    if meta.is_file():
        return image, False
    when = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = json.dumps(
        {"record": record, "review": {"label": label, "time": when, "stream": stream, "entry": entry}},
        indent=1,
        allow_nan=False,
    )
    try:
        write_bytes_atomic(image, png)
        write_text_atomic(meta, text + "\n")  # last: marks a complete entry
    except OSError as exc:
        raise ReviewError(f"cannot save the review mark in {folder}: {exc.strerror or exc}") from exc
    return image, True


def read_marks(folder: PathLike) -> list[Mark]:
    """The newest mark per frame (complete entries only), oldest first."""
    newest: dict[str, Mark] = {}
    for label in REVIEW_LABELS:
        for meta in sorted((Path(folder) / label).glob("*.json")):
            image = meta.with_suffix(".png")
            try:
                when = str(json.loads(meta.read_text(encoding="utf-8"))["review"]["time"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not one of ours
            if image.is_file() and (meta.stem not in newest or newest[meta.stem].time < when):
                newest[meta.stem] = Mark(label, meta.stem, image, when)
    return sorted(newest.values(), key=lambda m: m.time)


def reviewed_images(folder: PathLike) -> tuple[list[Path], list[Path]]:
    """(good images, defective images) of a review folder: false alarms are good; confirmed and
    missed defects are defective. ReviewError when the folder holds no marks."""
    root = Path(folder)
    if not root.is_dir():
        raise ReviewError(
            f"expected a review folder at {root} (written by the station), found "
            f"{'a file' if root.exists() else 'nothing'}"
        )
    marks = read_marks(root)
    if not marks:
        raise ReviewError(
            f"{root} holds no review marks ({', '.join(f'{x}/*.png+.json' for x in REVIEW_LABELS)})"
        )
    good = [m.image for m in marks if m.label in GOOD_LABELS]
    return good, [m.image for m in marks if m.label in DEFECT_LABELS]


def mark_key(stream: str, entry: str) -> str:
    """The name a frame's marks share: <stream>__<entry>."""
    return f"{_safe(stream)}__{_safe(entry)}"


def labels(folder: PathLike) -> dict[str, str]:
    """{mark_key: newest label} of a review folder (empty when there is none yet)."""
    return {m.key: m.label for m in read_marks(folder)}
