"""Evidence folder: each anomalous frame as a JPEG with its map overlay, plus its record as JSON.

    DIR/<stream>/<UTC time>_<frame>.jpg   the frame, anomaly map coloured over it, defect outlined
    DIR/<stream>/<UTC time>_<frame>.json  the record (score, verdict, source, frame, time)
    DIR/<stream>/<UTC time>_<frame>.png   with ``originals``: the frame itself, lossless (what
                                          the station's review saves; rd-infer --station)

Files are written atomically (a reader never sees half a file; the JSON, written last, marks a
complete entry). With a budget (``max_mb``, in MB = 10^6 bytes) the oldest entries are removed
before a new one would overflow it, so the folder never holds more; entries of earlier runs count
too. A write that fails (disk full, no permission) is never a crash: the record gets
``evidence_error`` and the run goes on.

Only files this sink wrote are ever removed: an entry is ours when its name has the pattern above
and the manifest ``DIR/.rd_edge_evidence`` (one ``<stream>/<name>`` per line, outside the budget,
rewritten when mostly stale) lists it. A folder
holding a model or results (``*.onnx``, ``*.engine``, ``*.pt``, ``thresholds.json``, ``*.jsonl``,
any other JSON that is not an entry, ...) is refused up front: evidence goes in a folder of its own.
"""

from __future__ import annotations

import json
import re
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np

from rd_edge.core.files import PathLike, write_bytes_atomic, write_text_atomic

from .base import Result, Sink, SinkError

_SUFFIXES = (".jpg", ".png", ".json")
MANIFEST = ".rd_edge_evidence"
_ENTRY = re.compile(r"\d{8}T\d{6}-\d{3}Z_\d{8}")  # _entry_name's pattern
# Files that say "this folder holds a model or results": evidence must not share it with them.
_MODEL_SUFFIXES = (".onnx", ".engine", ".plan", ".pt", ".pth", ".ckpt", ".data", ".jsonl", ".csv", ".npy")


class EvidenceSink(Sink):
    """Keeps anomalous frames as evidence (see the module docstring).

    ``detector`` supplies the threshold and colour range of the overlay. ``quality``: JPEG quality.
    ``originals``: also keep the frame itself as PNG (for review and retraining).
    """

    name = "evidence"

    def __init__(
        self,
        folder: PathLike,
        detector: Any,
        max_mb: Optional[float] = None,
        quality: int = 90,
        originals: bool = False,
    ) -> None:
        if max_mb is not None and not max_mb > 0:
            raise SinkError(f"the evidence budget must be > 0 MB, got {max_mb}")
        self.folder = Path(folder)
        _refuse_shared_folder(self.folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(
                f"cannot create the evidence folder {self.folder}: {exc.strerror or exc}"
            ) from exc
        self.detector = detector
        self.budget = None if max_mb is None else int(max_mb * 1_000_000)
        self.quality = int(quality)
        self.originals = originals
        self.saved = self.removed = self.failed = 0
        self._entries: Deque[Tuple[List[Path], int]] = deque(_existing_entries(self.folder))  # oldest first
        self.bytes = sum(size for _, size in self._entries)
        self._manifest = self.folder / MANIFEST
        self._listed = len(self._entries)  # lines in the manifest; rewritten when mostly stale
        self._rewrite_manifest()

    def write(self, result: Result) -> None:
        result.extra.update(evidence=None)
        p = result.prediction
        if p is None or not p.is_anomalous:
            return
        stem = self.folder / result.stream / _entry_name(result)
        image = self._overlay_jpeg(result)
        frame = result.item.frame
        original = _png(frame) if self.originals and frame is not None else b""
        result.extra["evidence"] = str(stem.with_suffix(".jpg"))
        record = json.dumps(result.record(), allow_nan=False, indent=1).encode("utf-8")
        size = len(image) + len(original) + len(record)
        if self.budget is not None and size > self.budget:
            self._fail(result, f"{size} bytes, larger than the whole budget of {self.budget}")
            return
        self._make_room(size)
        try:
            self._list(stem)  # first: a crash between the two never leaves a file we do not know
            write_bytes_atomic(stem.with_suffix(".jpg"), image)
            if original:
                write_bytes_atomic(stem.with_suffix(".png"), original)
            write_bytes_atomic(stem.with_suffix(".json"), record)  # last: marks a complete entry
        except OSError as exc:  # disk full, quota, permissions: an error record, never a crash
            _remove([stem.with_suffix(s) for s in _SUFFIXES])
            self._fail(result, exc.strerror or str(exc))
            return
        self._entries.append(([stem.with_suffix(s) for s in _SUFFIXES], size))  # .png may be absent
        self.bytes += size
        self.saved += 1

    def _overlay_jpeg(self, result: Result) -> bytes:
        import cv2

        overlay = self.detector.render(result.item.frame, result.prediction)  # rd-infer --out's overlay
        ok, data = cv2.imencode(".jpg", overlay, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise SinkError("JPEG encoding of the evidence overlay failed")
        return np.asarray(data).tobytes()

    def _make_room(self, size: int) -> None:
        """Remove the oldest entries until ``size`` more bytes fit the budget."""
        while self.budget is not None and self._entries and self.bytes + size > self.budget:
            paths, old = self._entries.popleft()
            _remove(paths)
            self.bytes -= old
            self.removed += 1
        if self._listed > 2 * len(self._entries) + 100:  # bounded manifest on a run of months
            self._rewrite_manifest()

    def _list(self, stem: Path) -> None:
        with open(self._manifest, "a", encoding="utf-8") as f:
            f.write(stem.relative_to(self.folder).as_posix() + "\n")
        self._listed += 1

    def _rewrite_manifest(self) -> None:
        lines = [paths[0].with_suffix("").relative_to(self.folder).as_posix() for paths, _ in self._entries]
        try:
            write_text_atomic(self._manifest, "".join(f"{line}\n" for line in lines))
        except OSError as exc:
            raise SinkError(
                f"cannot write the evidence manifest {self._manifest}: {exc.strerror or exc}"
            ) from exc
        self._listed = len(lines)

    def _fail(self, result: Result, reason: str) -> None:
        result.extra["evidence"] = None
        result.extra["evidence_error"] = f"evidence not saved in {self.folder}: {reason}"
        self.failed += 1

    def summary(self) -> Optional[str]:
        budget = f" of {self.budget / 1e6:g} MB" if self.budget is not None else ""
        text = (
            f"evidence: {self.saved} anomalous frames saved in {self.folder} "
            f"({self.bytes / 1e6:.2f} MB{budget})"
        )
        if self.removed:
            text += f", {self.removed} oldest removed"
        if self.failed:
            text += f", {self.failed} not saved (see evidence_error in their records)"
        return text


def _png(frame: np.ndarray) -> bytes:
    """The frame as uncompressed PNG: lossless, and cheap in the sink thread (256x256 on the
    2-core test host: 0.5 ms at level 0 without row filters, 2.3 with libpng's choice of filter,
    which stored data cannot use, 9.8 at level 1; twice the disk, which --evidence-max-mb
    bounds). OpenCV before 4.11 has no filter option: its default filters, same file."""
    import cv2

    params = [cv2.IMWRITE_PNG_COMPRESSION, 0]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    ok, data = cv2.imencode(".png", frame, params)
    if not ok:
        raise SinkError("PNG encoding of the evidence frame failed")
    return np.asarray(data).tobytes()


def _entry_name(result: Result) -> str:
    """'20261129T083511-123Z_00000042': sorts by time, unique per stream and frame."""
    when = datetime.fromtimestamp(result.captured_at, timezone.utc)
    return f"{when:%Y%m%dT%H%M%S}-{when.microsecond // 1000:03d}Z_{result.index:08d}"  # no dot: one suffix


def _is_entry(relative: str) -> bool:
    """'<stream>/<time>Z_<frame>': a name this sink gives (stream labels have no '/' or '..')."""
    parts = relative.split("/")
    return len(parts) == 2 and parts[0] not in ("", ".", "..") and _ENTRY.fullmatch(parts[1]) is not None


def _refuse_shared_folder(folder: Path) -> None:
    """SinkError when ``folder`` holds a model or results: the budget must never reach them."""
    if not folder.is_dir():
        return
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).as_posix()
        foreign_json = path.suffix == ".json" and not _is_entry(relative[: -len(".json")])
        if path.is_file() and (path.suffix.lower() in _MODEL_SUFFIXES or foreign_json):
            raise SinkError(
                f"the evidence folder {folder} holds {relative}, a model or results file; "
                f"evidence with a disk budget needs a folder of its own, e.g. {folder / 'evidence'}"
            )


def refuse_inside(folder: Path, outputs: Dict[str, Optional[PathLike]]) -> None:
    """SinkError when an output (``{"--json": path}``) would be written inside the evidence folder."""
    root = Path(folder).resolve()
    for option, path in outputs.items():
        if path is not None and root in (Path(path).resolve(), *Path(path).resolve().parents):
            raise SinkError(
                f"{option} {path} is inside the evidence folder {folder}; evidence with a "
                f"disk budget needs a folder of its own: write {option} elsewhere"
            )


def _existing_entries(folder: Path) -> List[Tuple[List[Path], int]]:
    """Entries of earlier runs listed in the manifest, oldest first, so the budget covers them."""
    try:
        listed = (folder / MANIFEST).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise SinkError(f"cannot read the evidence manifest {folder / MANIFEST}: {exc}") from exc
    entries = []
    for relative in dict.fromkeys(line.strip() for line in listed):
        if not _is_entry(relative):
            continue  # never a path of someone else's
        paths = [p for p in (folder / f"{relative}{s}" for s in _SUFFIXES) if p.is_file()]
        if paths:
            stats = [p.stat() for p in paths]
            entries.append((max(s.st_mtime for s in stats), paths, sum(s.st_size for s in stats)))
    return [(paths, size) for _, paths, size in sorted(entries, key=lambda e: e[0])]


def _remove(paths: List[Path]) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
