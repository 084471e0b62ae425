"""The review folder: an operator's marks on frames, kept for calibration and training.

    REVIEW/false_alarm/<stream>__<entry>.png        flagged NG, but good: a good image
    REVIEW/confirmed_defect/<stream>__<entry>.png   flagged NG, and a defect
    REVIEW/missed_defect/<stream>__<entry>.png      passed OK, but a defect (an escape)
    ... each with <same name>.json: {"record": the frame's record, "review": {"label", "time"}}

The PNG is the original frame (what the model saw, not the overlay). Files are written
atomically, the JSON last (it marks a complete entry), and nothing is ever deleted or
overwritten: marking a frame under another label than its newest mark's adds an entry, named
``<stream>__<entry>~2``, ``~3``, ... where that label's folder already holds one of this frame
(false alarm, defect, false alarm again: false_alarm/<key>, confirmed_defect/<key>,
false_alarm/<key>~2), and readers take the newest mark per frame, so an operator correcting a
mistake ends with the label chosen last. Marking a frame with the label its newest mark has
already writes nothing. A new mark's time is never before the frame's newest mark's (one
millisecond after it if the clock says otherwise), so the newest is the last one made.
``rd-calibrate --review`` and ``rd-train --good`` read this folder.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .errors import RdEdgeError
from .files import PathLike, write_bytes_atomic, write_text_atomic

FALSE_ALARM, CONFIRMED, MISSED = "false_alarm", "confirmed_defect", "missed_defect"
REVIEW_LABELS = (FALSE_ALARM, CONFIRMED, MISSED)
GOOD_LABELS, DEFECT_LABELS = (FALSE_ALARM,), (CONFIRMED, MISSED)
_AGAIN = "~"  # <key>~2: a frame's second entry under one label (never in a key: see _safe)
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
_MS = timedelta(milliseconds=1)
_WRITING = threading.Lock()  # the station's web threads: one mark at a time


class ReviewError(RdEdgeError):
    """A mark that cannot be made: unknown label, no original frame, a folder that cannot be written."""


@dataclass(frozen=True)
class Mark:
    label: str
    key: str  # <stream>__<entry>: one frame
    image: Path
    time: str
    seq: int = 1  # 1 for <key>.png, n for <key>~n.png (orders marks of one time)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "frame"


def write_mark(
    folder: PathLike, label: str, stream: str, entry: str, png: bytes, record: dict[str, Any]
) -> tuple[Path, bool]:
    """Save one mark, which becomes the frame's newest; returns (its PNG path, True), or (the
    newest mark's PNG path, False) when the frame's newest mark has this label already (nothing
    written)."""
    if label not in REVIEW_LABELS:
        raise ReviewError(f"review label {label!r} unknown; expected one of {', '.join(REVIEW_LABELS)}")
    key = mark_key(stream, entry)
    with _WRITING:
        previous = _newest(_marks(folder, key))
        if previous is not None and previous.label == label:
            return previous.image, False
        now = datetime.now(timezone.utc)
        if previous is not None:
            try:
                now = max(now, datetime.strptime(previous.time, _TIME).replace(tzinfo=timezone.utc) + _MS)
            except ValueError:
                pass  # not our format: the clock alone
        when = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        image = _free_name(Path(folder) / label, key)
        text = json.dumps(
            {"record": record, "review": {"label": label, "time": when, "stream": stream, "entry": entry}},
            indent=1,
            allow_nan=False,
        )
        try:
            write_bytes_atomic(image, png)
            write_text_atomic(image.with_suffix(".json"), text + "\n")  # last: marks a complete entry
        except OSError as exc:
            raise ReviewError(f"cannot save the review mark in {folder}: {exc.strerror or exc}") from exc
    return image, True


def _free_name(folder: Path, key: str) -> Path:
    """<key>.png, else the first <key>~n.png (n = 2, 3, ...) with neither it nor its .json there."""
    n, image = 1, folder / f"{key}.png"
    while image.exists() or image.with_suffix(".json").exists():
        n += 1
        image = folder / f"{key}{_AGAIN}{n}.png"
    return image


def _marks(folder: PathLike, key: str = "*") -> list[Mark]:
    """The complete entries of the folder (``key``: of one frame only), in no particular order."""
    found = []
    for label in REVIEW_LABELS:
        here = Path(folder) / label
        patterns = ["*.json"] if key == "*" else [f"{key}.json", f"{key}{_AGAIN}*.json"]
        for meta in (m for pattern in patterns for m in here.glob(pattern)):
            frame, _, n = meta.stem.partition(_AGAIN)
            image = meta.with_suffix(".png")
            try:
                when = str(json.loads(meta.read_text(encoding="utf-8"))["review"]["time"])
                seq = int(n) if n else 1
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not one of ours
            if image.is_file():
                found.append(Mark(label, frame, image, when, seq))
    return found


def _newest(marks: list[Mark]) -> Mark | None:
    return max(marks, key=lambda m: (m.time, m.seq), default=None)


def read_marks(folder: PathLike) -> list[Mark]:
    """The newest mark per frame (complete entries only), oldest first."""
    per_frame: dict[str, list[Mark]] = {}
    for m in _marks(folder):
        per_frame.setdefault(m.key, []).append(m)
    newest = [_newest(marks) for marks in per_frame.values()]
    return sorted((m for m in newest if m is not None), key=lambda m: (m.time, m.key))


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
