"""File helpers every layer needs: content hashes and writes that never leave half a file."""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

from .errors import OutputError

PathLike = Union[str, "os.PathLike[str]"]


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (models are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_path(target: PathLike, suffix: str = "", keep_failed: Optional[PathLike] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one rename.

    On any exception (Ctrl-C included) the temporary file is removed and ``target`` is left as
    it was, so an interrupted write never destroys a good file. ``suffix`` is appended to the
    temporary name (".onnx" where a tool picks its reader by suffix). ``keep_failed``: on an
    ordinary exception (not Ctrl-C) the temporary file is moved there instead of removed, for
    inspection. A process killed with SIGKILL leaves ``.<name>.*.tmp*``; see remove_stale_temps.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX + suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets the usual mode
        os.replace(tmp_path, target)
    except Exception:
        if keep_failed is not None and tmp_path.is_file() and tmp_path.stat().st_size > 0:
            os.replace(tmp_path, keep_failed)
        tmp_path.unlink(missing_ok=True)
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def stale_temps(target: PathLike) -> List[Path]:
    """Temporary files atomic_path left beside ``target`` when its process was killed (SIGKILL)."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.*{TEMP_SUFFIX}*"))


def remove_stale_temps(target: PathLike) -> List[Path]:
    """Remove stale_temps(target); returns what was removed. Call only where this process owns
    ``target`` (e.g. rd-train's --out): another writer's live temporary file looks the same."""
    removed = []
    for path in stale_temps(target):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def check_writable_file(target: PathLike, what: str = "output") -> Path:
    """``target`` as a Path, once it is known that a file can be written there: OutputError when it
    is a folder, its folder cannot be made, or a file cannot be created in it (probed, so
    permissions, read-only mounts and a full disk's inode limit all show before any work)."""
    target = Path(target)
    if target.is_dir():
        raise OutputError(
            f"cannot write {what} {target}: it is a folder; expected a file path such as {target / 'name'}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
    except OSError as exc:
        raise OutputError(
            f"cannot write {what} {target}: {exc.strerror or exc}; choose a writable location"
        ) from exc
    os.close(fd)
    os.unlink(probe)
    return target


def write_bytes_atomic(target: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (see atomic_path)."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text_atomic(target: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically (see atomic_path)."""
    return write_bytes_atomic(target, text.encode("utf-8"))


def leaves_folder(relative: str) -> bool:
    """True when a path written relative to some folder is absolute or climbs out of it ('..'):
    a path read from a file (a split CSV, a model's external data) must stay where it is listed."""
    parts = Path(os.path.normpath(relative)).parts
    return Path(relative).is_absolute() or not parts or parts[0] == ".."


def not_a_file(path: Path) -> str:
    """What ``path`` is when it is not a regular file: "a folder", "not a regular file (a FIFO,
    device or socket)" or "no such file" (for messages that say what was found)."""
    if path.is_dir():
        return "a folder"
    if path.exists():
        return "not a regular file (a FIFO, device or socket)"
    return "no such file"


def output_keys(files: Sequence[Path], root: Optional[Path] = None) -> List[str]:
    """Output names for input files: the path relative to ``root`` (default: the files' common
    folder) without suffix; the suffix is kept where two files differ only by it (a.png, a.jpg).
    a/x.png and b/x.png get a/x and b/x: outputs never overwrite each other."""
    if root is None and files:
        root = Path(os.path.commonpath([str(Path(f).parent) for f in files]))
    rel = [Path(f).relative_to(root) if root is not None else Path(Path(f).name) for f in files]
    stems = [r.with_suffix("").as_posix() for r in rel]
    clashes = {s for s, count in Counter(stems).items() if count > 1}
    return [f"{s}_{r.suffix.lstrip('.').lower()}" if s in clashes else s for s, r in zip(stems, rel)]
