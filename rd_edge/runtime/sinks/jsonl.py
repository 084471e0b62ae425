"""JSON Lines: one record per result, flushed each time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Optional

from rd_edge.core.errors import RdEdgeError
from rd_edge.core.files import PathLike

from .base import Result, Sink


class JsonlSink(Sink):
    """Writes ``Result.record()`` as one line per result to ``path`` (parent folders created)."""

    name = "jsonl"

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: Optional[IO[str]] = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise RdEdgeError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def write(self, result: Result) -> None:
        if self._file is None:
            raise RdEdgeError(f"{self.path} is closed")
        self._file.write(json.dumps(result.record(), allow_nan=False) + "\n")  # NaN is not JSON
        self._file.flush()  # an interrupted run keeps every record written so far

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
